"""Any supported Keras model as the reference: named by a source, checked, and copied.

A model SOURCE is a zoo name (:mod:`reference.zoo`) or a saved ``FILE.keras``; a
``MODULE:BUILDER`` source is called by :mod:`compare.sides.keras_side` (it finds modules the
way implementations are found) and handed here as a model. Whatever the source, the model must
be a ``keras.Sequential`` or a functional chain (one input, each layer called once on the
previous layer's output) of the supported layers and options (:data:`SUPPORTED`); anything else
raises :class:`ModelSourceError`, one line naming the layer, the option, its value and what is
supported.

The harness never computes with the user's model object. :func:`convert` makes the model's
copy in a dtype — a Sequential rebuilt from the layers' settings, every layer's dtype policy
and the input's dtype set to ``dtype``, the weights copied cast to ``dtype`` — and
:func:`harness_model` the copy the harness computes with: the same, with each Dropout replaced
by a :class:`~reference.dropout.MaskedDropout` and compiled the way the harness trains
(:func:`reference.model.compile_model`).

A layer's settings are read off the layer's attributes, never through ``layer.get_config()``:
that serialises the dtype policy through keras/src/saving/serialization_lib.py, whose
``tf.available`` imports TensorFlow whenever it is installed — seconds of start-up on a JAX or
torch process that never uses it. Initializers' and regularizers' own ``get_config()`` are
plain (a seed that is an int or None is returned before serialization_lib looks at
TensorFlow).
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np

from reference import zoo
from reference.dropout import MaskedDropout
from reference.model import (
    DTYPES,
    LEARNING_RATE,
    check_dtype,
    compile_model,
    floatx,
    to_numpy,
)
from reference.zoo import Recipe


class ModelSourceError(ValueError):
    """A model source that cannot be the reference: unknown, unreadable, or a model with an
    unsupported layer, option, optimizer or loss. The message is one line."""

    def __init__(self, message: str) -> None:
        if "\n" in message:
            raise AssertionError(f"ModelSourceError messages are one line. Received: {message!r}")
        super().__init__(message)


# -- what is supported ------------------------------------------------------------------------
ACTIVATIONS: Final = ("relu", "tanh", "sigmoid", "softmax", "linear")
INITIALIZERS: Final = (
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
    "VarianceScaling",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "Zeros",
    "Ones",
    "Constant",
)
REGULARIZERS: Final = ("L1", "L2", "L1L2")
_PADDINGS: Final = ("valid", "same")

# Per layer class: the options read (Keras's config keys, in get_config()'s order) and, for the
# options that must keep Keras's default, that default. The kinds: "value" (a plain value),
# "activation", "initializer", "regularizer".
_CONV_DENSE_FIXED: Final = {
    "activity_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
    "lora_rank": None,
}
_LAYERS: Final[dict[str, tuple[tuple[tuple[str, str], ...], dict[str, Any]]]] = {
    "Conv2D": (
        (
            ("filters", "value"),
            ("kernel_size", "value"),
            ("strides", "value"),
            ("padding", "value"),
            ("data_format", "value"),
            ("dilation_rate", "value"),
            ("groups", "value"),
            ("activation", "activation"),
            ("use_bias", "value"),
            ("kernel_initializer", "initializer"),
            ("bias_initializer", "initializer"),
            ("kernel_regularizer", "regularizer"),
            ("bias_regularizer", "regularizer"),
        ),
        _CONV_DENSE_FIXED,
    ),
    "AveragePooling2D": (
        (
            ("pool_size", "value"),
            ("padding", "value"),
            ("strides", "value"),
            ("data_format", "value"),
        ),
        {},
    ),
    "MaxPooling2D": (
        (
            ("pool_size", "value"),
            ("padding", "value"),
            ("strides", "value"),
            ("data_format", "value"),
        ),
        {},
    ),
    "Flatten": ((("data_format", "value"),), {}),
    "Dense": (
        (
            ("units", "value"),
            ("activation", "activation"),
            ("use_bias", "value"),
            ("kernel_initializer", "initializer"),
            ("bias_initializer", "initializer"),
            ("kernel_regularizer", "regularizer"),
            ("bias_regularizer", "regularizer"),
        ),
        {**_CONV_DENSE_FIXED, "quantization_config": None},
    ),
    "Dropout": ((("rate", "value"), ("seed", "value"), ("noise_shape", "value")), {}),
    "BatchNormalization": (
        (
            ("axis", "value"),
            ("momentum", "value"),
            ("epsilon", "value"),
            ("center", "value"),
            ("scale", "value"),
            ("beta_initializer", "initializer"),
            ("gamma_initializer", "initializer"),
            ("moving_mean_initializer", "initializer"),
            ("moving_variance_initializer", "initializer"),
        ),
        {
            "activity_regularizer": None,
            "beta_regularizer": None,
            "gamma_regularizer": None,
            "beta_constraint": None,
            "gamma_constraint": None,
            "synchronized": False,
            "renorm": False,
        },
    ),
    "Activation": ((("activation", "activation"),), {}),
    "ReLU": ((("max_value", "value"), ("negative_slope", "value"), ("threshold", "value")), {}),
    "Softmax": ((("axis", "value"),), {}),
}
SUPPORTED: Final = tuple(_LAYERS)
# The options of a layer class that every layer has (keras.layers.Layer).
_LAYER_FIXED: Final = {"activity_regularizer": None}


def _layer_classes() -> dict[str, type]:
    layers = keras.layers
    return {name: getattr(layers, name) for name in SUPPORTED}


def _listing(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


def _shown(value: Any) -> str:
    """A value for a one-line message: its repr, cut to a readable length."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else f"{text[:77]}..."


def _refuse(layer: str, option: str, value: Any, supported: str) -> ModelSourceError:
    return ModelSourceError(
        f"layer '{layer}': {option}={_shown(value)} is not supported; supported: {supported}"
    )


# -- a layer's options ------------------------------------------------------------------------
def _activation(layer: str, option: str, fn: Any) -> Any:
    for name in ACTIVATIONS:
        if fn is keras.activations.get(name):
            return fn
    raise _refuse(layer, option, getattr(fn, "__name__", fn), _listing(ACTIVATIONS))


def _seed_ok(seed: Any) -> bool:
    return seed is None or (isinstance(seed, int) and not isinstance(seed, bool))


def _initializer(layer: str, option: str, init: Any) -> Any:
    cls = type(init)
    if (
        getattr(keras.initializers, cls.__name__, None) is not cls
        or cls.__name__ not in INITIALIZERS
    ):
        raise _refuse(layer, option, cls.__name__, f"the initializers {_listing(INITIALIZERS)}")
    if not _seed_ok(getattr(init, "_init_seed", None)):
        raise _refuse(layer, f"{option}.seed", type(init._init_seed).__name__, "an int or None")
    for axes in ("input_axes", "output_axes"):
        if getattr(init, axes, None) is not None:
            raise _refuse(layer, f"{option}.{axes}", getattr(init, axes), "None")
    if cls.__name__ == "Constant" and not (
        isinstance(init.value, numbers.Real) and not isinstance(init.value, bool)
    ):
        raise _refuse(layer, f"{option}.value", init.value, "a number")
    return init


def _regularizer(layer: str, option: str, reg: Any) -> Any:
    if reg is None:
        return None
    cls = type(reg)
    if (
        getattr(keras.regularizers, cls.__name__, None) is not cls
        or cls.__name__ not in REGULARIZERS
    ):
        raise _refuse(layer, option, cls.__name__, f"None or {_listing(REGULARIZERS)}")
    return reg


def _value(layer: Any, name: str, option: str, value: Any) -> Any:
    """A plain option's value, checked where only some values are supported."""
    cls = type(layer).__name__
    if option == "padding":
        value = str(value).lower()
        if value not in _PADDINGS:
            raise _refuse(name, option, value, "valid, same")
    elif option == "data_format" and value != "channels_last":
        raise _refuse(name, option, value, "channels_last")
    elif option == "groups" and value != 1:
        raise _refuse(name, option, value, "1")
    elif option == "noise_shape" and value is not None:
        raise _refuse(name, option, value, "None")
    elif option == "seed" and not _seed_ok(value):
        raise _refuse(name, option, value, "an int or None")
    elif option == "axis" and cls == "Softmax" and value not in (-1, [-1], (-1,)):
        raise _refuse(name, option, value, "-1")
    elif option == "axis" and cls == "BatchNormalization":
        rank = len(layer.input.shape) if _has_input(layer) else None
        if value != -1 and (rank is None or value != rank - 1):
            raise _refuse(name, option, value, "-1 (the last axis)")
    elif cls == "ReLU":
        default = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}[option]
        if value != default:
            raise _refuse(name, option, value, f"{default} (ReLU's defaults only)")
    return value


def _has_input(layer: Any) -> bool:
    try:
        layer.input  # noqa: B018 - raises when the layer was never called
    except (AttributeError, ValueError):
        return False
    return True


def layer_options(layer: Any) -> dict[str, Any]:
    """The supported options of a supported layer, under Keras's config keys: plain values,
    the activation function, the initializer and regularizer objects. Raises
    :class:`ModelSourceError` for an unsupported layer class, option or value."""
    name = getattr(layer, "name", "?")
    cls = type(layer)
    classes = _layer_classes()
    if cls.__name__ not in classes or classes[cls.__name__] is not cls:
        raise ModelSourceError(
            f"layer '{name}': {cls.__name__} is not supported; supported layers: "
            f"{_listing(SUPPORTED)}"
        )
    if not layer.trainable:
        raise _refuse(name, "trainable", False, "True (frozen layers are not)")
    policy = layer.dtype_policy
    if getattr(policy, "quantization_mode", None) is not None:
        raise _refuse(name, "dtype", policy.name, "an unquantized float dtype policy")
    options, fixed = _LAYERS[cls.__name__]
    for option, default in {**_LAYER_FIXED, **fixed}.items():
        value = getattr(layer, option, default)
        if value is not default and value != default:
            raise _refuse(name, option, _named(value), _shown(default))
    result: dict[str, Any] = {}
    for option, kind in options:
        value = getattr(layer, option)
        if kind == "activation":
            result[option] = _activation(name, option, value)
        elif kind == "initializer":
            result[option] = _initializer(name, option, value)
        elif kind == "regularizer":
            result[option] = _regularizer(name, option, value)
        else:
            result[option] = _value(layer, name, option, value)
    return result


def _named(value: Any) -> Any:
    """An object in a message by its class name; plain values as they are."""
    if value is None or isinstance(value, (bool, int, float, str, tuple, list)):
        return value
    return type(value).__name__


def serialized(obj: Any, module: str) -> dict[str, Any] | None:
    """An initializer or regularizer as Keras's get_config() shows it
    (``{"module", "class_name", "config", "registered_name"}``), built from the object's own
    get_config() — not through serialization_lib (see the module's docstring)."""
    if obj is None:
        return None
    return {
        "module": module,
        "class_name": type(obj).__name__,
        "config": plain(obj.get_config()),
        "registered_name": None,
    }


def plain(value: Any) -> Any:
    """A value as plain JSON: tuples as lists, NumPy and tensor scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def layer_config(layer: Any) -> dict[str, Any]:
    """A supported layer's settings as plain JSON under Keras's config keys: ``name``, then
    every supported option (the activation by name; initializers and regularizers as
    :func:`serialized` dicts) — the values ``layer.get_config()`` gives for them."""
    config: dict[str, Any] = {"name": layer.name}
    for option, value in layer_options(layer).items():
        if option.endswith("_initializer"):
            config[option] = serialized(value, "keras.initializers")
        elif option.endswith("_regularizer"):
            config[option] = serialized(value, "keras.regularizers")
        elif option == "activation":
            config[option] = value.__name__
        else:
            config[option] = plain(value)
    return config


# -- the model --------------------------------------------------------------------------------
def _functional_class() -> type:
    from keras.src.models.functional import Functional

    return Functional


def chain(model: Any, where: str = "the model") -> list[Any]:
    """The model's layers in order, without the InputLayer, if the model is a Sequential or a
    functional chain of supported layers with unique names, one (H, W, C)-or-other fully known
    input and a softmax ``(classes,)`` output; else :class:`ModelSourceError`."""
    if type(model) is keras.Sequential:
        if not model.built or not model.inputs:
            raise ModelSourceError(
                f"{where}: the Sequential model has no input shape (start it with keras.Input "
                "or build it)"
            )
        layers = list(model.layers)
    elif type(model) is _functional_class():
        layers = _functional_chain(model, where)
    else:
        raise ModelSourceError(
            f"{where}: model class {type(model).__name__} is not supported; supported: "
            "keras.Sequential, or a functional chain keras.Model(inputs, outputs)"
        )
    if not layers:
        raise ModelSourceError(f"{where}: the model has no layers")
    names = [layer.name for layer in layers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ModelSourceError(f"{where}: the layer names {twice} appear more than once")
    for layer in layers:
        layer_options(layer)
    shape = tuple(model.inputs[0].shape[1:])
    if not shape or any(d is None for d in shape):
        raise ModelSourceError(
            f"{where}: the input shape {shape} is not fully known; supported: a fixed shape "
            "such as (28, 28, 1)"
        )
    out = tuple(model.outputs[0].shape[1:])
    if len(out) != 1:
        raise ModelSourceError(
            f"{where}: the output shape {out} is not supported; supported: (classes,) probabilities"
        )
    last = layers[-1]
    if not _is_softmax(last):
        activation = getattr(getattr(last, "activation", None), "__name__", "none")
        raise ModelSourceError(
            f"layer '{last.name}': {type(last).__name__} with activation={activation!r} as the "
            "last layer is not supported; supported: a softmax output (the loss is categorical "
            "cross-entropy on probabilities)"
        )
    return layers


def _is_softmax(layer: Any) -> bool:
    if type(layer).__name__ == "Softmax":
        return True
    return getattr(layer, "activation", None) is keras.activations.get("softmax")


def _functional_chain(model: Any, where: str) -> list[Any]:
    """A functional model's layers from input to output, if it is a chain."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelSourceError(
            f"{where}: the model has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; supported: one of each"
        )
    found: list[Any] = []
    tensor = model.outputs[0]
    while True:
        operation, node_index, _ = tensor._keras_history
        if isinstance(operation, keras.layers.InputLayer):
            break
        node = operation._inbound_nodes[node_index]
        arguments = node.arguments
        if len(arguments.keras_tensors) != 1 or len(arguments.args) != 1:
            raise ModelSourceError(
                f"layer '{operation.name}': takes {len(arguments.keras_tensors)} inputs; "
                "supported: a chain (each layer takes the previous layer's output)"
            )
        if arguments.kwargs:
            raise ModelSourceError(
                f"layer '{operation.name}': is called with {_shown(dict(arguments.kwargs))}; "
                "supported: a call on the previous layer's output alone"
            )
        found.append(operation)
        tensor = arguments.keras_tensors[0]
    found.reverse()
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    if [id(la) for la in found] != [id(la) for la in layers]:
        extra = [la.name for la in layers if all(la is not f for f in found)]
        raise ModelSourceError(
            f"{where}: its layers are not one chain from input to output "
            f"(off the path or used twice: {extra or [la.name for la in found]})"
        )
    return layers


def check_model(model: Any, where: str = "the model") -> None:
    """Raise :class:`ModelSourceError` unless ``model`` is a supported model (:func:`chain`)."""
    chain(model, where)


def _copy_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options with fresh initializer and regularizer objects made from their configs (in the
    current floatx: L1 keeps its factor as a tensor of floatx)."""
    copied: dict[str, Any] = {}
    for option, value in options.items():
        if option.endswith(("_initializer", "_regularizer")) and value is not None:
            value = type(value).from_config(value.get_config())
        copied[option] = value
    return copied


def _copy_layer(layer: Any, dtype: str, masked_dropout: bool) -> Any:
    cls = type(layer)
    options = _copy_options(layer_options(layer))
    if masked_dropout and cls is keras.layers.Dropout:
        return MaskedDropout(options["rate"], seed=options["seed"], name=layer.name, dtype=dtype)
    return cls(**options, name=layer.name, dtype=dtype)


def _weights_of(layer: Any) -> list[Any]:
    return [] if isinstance(layer, MaskedDropout) else list(layer.weights)


def rebuild(model: Any, dtype: str, *, masked_dropout: bool = False) -> keras.Sequential:
    """The supported ``model`` rebuilt as a Sequential in ``dtype`` (every layer's dtype policy
    and the input's dtype), its weights copied cast to ``dtype``; each Dropout a
    :class:`MaskedDropout` with ``masked_dropout``. Uncompiled."""
    check_dtype(dtype)
    layers = chain(model)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    with floatx(dtype), _quiet_numpy():
        copy = keras.Sequential(
            [
                keras.Input(shape, dtype=dtype),
                *(_copy_layer(la, dtype, masked_dropout) for la in layers),
            ],
            name=model.name,
        )
        for source, target in zip(layers, copy.layers, strict=True):
            theirs, ours = _weights_of(source), _weights_of(target)
            if [(w.name, tuple(w.shape)) for w in theirs] != [
                (w.name, tuple(w.shape)) for w in ours
            ]:
                raise ModelSourceError(
                    f"layer '{source.name}': its weights "
                    f"{[(w.name, tuple(w.shape)) for w in theirs]} do not rebuild as "
                    f"{[(w.name, tuple(w.shape)) for w in ours]}"
                )
            for w, v in zip(theirs, ours, strict=True):
                v.assign(to_numpy(w).astype(dtype))
    return copy


def convert(model: Any, dtype: str, *, where: str = "the model") -> keras.Sequential:
    """The checked copy of a supported ``model`` in ``dtype`` with its own weights cast to
    ``dtype`` (:func:`rebuild`); uncompiled."""
    chain(model, where)
    return rebuild(model, dtype)


def harness_model(
    model: Any,
    dtype: str,
    *,
    learning_rate: float = LEARNING_RATE,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> keras.Sequential:
    """The copy of ``model`` the harness computes with: :func:`rebuild` in ``dtype`` with each
    Dropout a :class:`MaskedDropout` (set its masks with
    :func:`reference.set_dropout_masks` before a training-mode call), compiled with SGD(the
    recipe), categorical cross-entropy and accuracy (:func:`reference.model.compile_model`)."""
    copy = rebuild(model, dtype, masked_dropout=True)
    compile_model(copy, dtype, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)
    return copy


# -- sources ----------------------------------------------------------------------------------
def is_zoo(source: str) -> bool:
    return source in zoo.ZOO


def is_file(source: str) -> bool:
    return source.endswith(".keras")


def is_builder(source: str) -> bool:
    return not is_zoo(source) and not is_file(source) and ":" in source.strip(":")


def unknown_source(source: str) -> ModelSourceError:
    return ModelSourceError(
        f"unknown model {source!r}: expected a zoo name ({_listing(zoo.names())}), "
        "FILE.keras, MODULE:BUILDER or path/to/file.py:BUILDER"
    )


def load_model(source: str, dtype: str) -> keras.Sequential:
    """The model a zoo name or a ``.keras`` file names, checked, in ``dtype`` (a zoo model
    built so, a file's model copied with :func:`convert`, its weights cast to ``dtype``);
    uncompiled. Builders (``MODULE:BUILDER``) are called by compare.sides.keras_side."""
    if dtype not in DTYPES:
        raise ModelSourceError(f"unknown dtype {dtype!r}; expected one of {_listing(DTYPES)}")
    if is_zoo(source):
        model = zoo.entry(source).build(dtype)
        chain(model, source)
        return model
    if is_file(source):
        return convert(read_model_file(source), dtype, where=source)
    raise unknown_source(source)


# .keras files: what is read before Keras builds anything (a hostile config.json could make
# Keras allocate a huge layer before any check): the archive's config.json (LeNet-5's is 5 KB)
# and the declared size of its weights, and the widths its layers declare.
MAX_CONFIG_BYTES: Final = 1024**2
MAX_WEIGHTS_BYTES: Final = 256 * 1024**2
_MAX_WIDTH: Final = 4096  # units, filters and input dimensions
_MAX_WINDOW: Final = 64  # kernel and pool sizes
_WEIGHT_MEMBERS: Final = ("model.weights.h5", "model.weights.npz")
_MODEL_CLASSES: Final = ("Sequential", "Functional")


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else f"{text[:197]}..."


def read_archive_config(path: str | Path) -> dict[str, Any]:
    """A ``.keras`` archive's config.json, checked to be a Sequential or Functional model of
    supported layer classes no wider than :data:`_MAX_WIDTH`, before Keras reads it."""
    where = str(path)
    file = Path(path)
    if not file.is_file():
        raise ModelSourceError(f"model file {where}: does not exist or is not a file")
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelSourceError(f"model file {where}: not a .keras archive (no config.json)")
            member = next((n for n in _WEIGHT_MEMBERS if n in names), None)
            if member is None:
                raise ModelSourceError(f"model file {where}: holds no weights")
            for name, limit in (("config.json", MAX_CONFIG_BYTES), (member, MAX_WEIGHTS_BYTES)):
                size = archive.getinfo(name).file_size
                if size > limit:
                    raise ModelSourceError(
                        f"model file {where}: its {name} declares {size} bytes, more than the "
                        f"{limit} supported"
                    )
            with archive.open("config.json") as handle:
                text = handle.read(MAX_CONFIG_BYTES + 1)
    except ModelSourceError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, EOFError) as exc:
        raise ModelSourceError(
            f"model file {where}: not a readable .keras archive ({_brief(exc)})"
        ) from exc
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelSourceError(
            f"model file {where}: its config.json is not JSON ({_brief(exc)})"
        ) from exc
    if not isinstance(config, dict):
        raise ModelSourceError(f"model file {where}: its config.json is not a model's config")
    cls = config.get("class_name")
    if cls not in _MODEL_CLASSES:
        raise ModelSourceError(
            f"model file {where}: model class {cls} is not supported; supported: "
            "keras.Sequential, or a functional chain keras.Model(inputs, outputs)"
        )
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ModelSourceError(f"model file {where}: its config.json lists no layers")
    for entry in layers:
        if not isinstance(entry, dict):
            raise ModelSourceError(f"model file {where}: its config.json has a malformed layer")
        layer_cls = entry.get("class_name")
        settings = entry.get("config")
        name = settings.get("name", "?") if isinstance(settings, dict) else "?"
        if layer_cls != "InputLayer" and layer_cls not in SUPPORTED:
            raise ModelSourceError(
                f"layer '{name}': {layer_cls} is not supported; supported layers: "
                f"{_listing(SUPPORTED)}"
            )
        _check_widths(settings, name, where)
    return config


def _check_widths(settings: Any, name: str, where: str) -> None:
    if not isinstance(settings, dict):
        return
    for key, value in settings.items():
        values = value if isinstance(value, list) else [value]
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if key in ("units", "filters") and any(not 0 < v <= _MAX_WIDTH for v in ints):
            limit = _MAX_WIDTH
        elif key in ("kernel_size", "pool_size") and any(v > _MAX_WINDOW for v in ints):
            limit = _MAX_WINDOW
        elif key in ("batch_shape", "batch_input_shape", "shape") and any(
            v > _MAX_WIDTH for v in ints
        ):
            limit = _MAX_WIDTH
        else:
            continue
        raise ModelSourceError(
            f"layer '{name}': {key}={_shown(value)} is not supported; supported: at most {limit}"
        )


@contextlib.contextmanager
def _quiet_numpy() -> Iterator[None]:
    """Silence the one warning seen around Keras's loading and copying of weights: NumPy 2's
    DeprecationWarning ``__array__ implementation doesn't accept a copy keyword``, which
    TensorFlow 2.21's and Keras 3.15's variables raise when turned into arrays (NumPy then
    copies exactly). Measured on Keras 3.15.1: ``load_model(compile=False, safe_mode=True)``
    of Sequential and functional models of the supported layers (built with keras.Input, with
    input_shape=, or by build(); float32, float64, mixed_float16; compiled, fitted or not)
    warns nothing else on TensorFlow, JAX or torch. Everything else stays an error under
    pytest's ``filterwarnings = error``."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        yield


def read_model_file(path: str | Path) -> Any:
    """The model in a ``.keras`` archive as Keras loads it (``compile=False``,
    ``safe_mode=True``), after :func:`read_archive_config`; checked (:func:`chain`)."""
    where = str(path)
    read_archive_config(path)
    try:
        with _quiet_numpy():
            model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    # Deserialising an arbitrary archive can raise almost anything (ValueError, TypeError,
    # KeyError, AttributeError, OSError, ...); each is this file's fault.
    except Exception as exc:
        raise ModelSourceError(f"model file {where}: Keras cannot load it ({_brief(exc)})") from exc
    chain(model, where)
    return model


# -- recipes ----------------------------------------------------------------------------------
def compile_config(path: str | Path) -> dict[str, Any] | None:
    """The ``compile_config`` a ``.keras`` archive's config.json stores (None when the model was
    saved uncompiled), read without compiling anything."""
    value = read_archive_config(path).get("compile_config")
    if not value:
        return None
    if not isinstance(value, dict):
        raise ModelSourceError(f"model file {path}: its compile_config is not a mapping")
    return value


# Optimizer options the harness's SGD does not have, refused by name when set (None unset).
_OPTIMIZER_REFUSED: Final = (
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "loss_scale_factor",
    "gradient_accumulation_steps",
)
_LOSS_NAMES: Final = {
    "categorical_crossentropy": "categorical_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
}


def recipe_of(source: Any, *, where: str = "the model") -> Recipe | None:
    """The training recipe of a compiled model (a keras.Model) or of a ``.keras`` archive's
    ``compile_config`` (a mapping): SGD's learning rate (a float, as Keras stores it: a float32
    model's is float32-rounded), momentum and nesterov, and the loss. None for an uncompiled
    model (or an empty compile config): the harness then needs the recipe given. Refused, by
    name: any optimizer but SGD, a learning-rate schedule, SGD options the harness does not
    model (:data:`_OPTIMIZER_REFUSED`) and any loss but (sparse) categorical cross-entropy on
    probabilities, unsmoothed. ``batch_size`` is None (Keras does not store it) and
    ``input_scaling`` "unit" (pixels / 255; nothing in a model says otherwise)."""
    if source is None:
        return None
    if isinstance(source, keras.Model):
        if not getattr(source, "compiled", False) or source.optimizer is None:
            return None
        optimizer = _optimizer_of(source.optimizer, where)
        compiled = getattr(source, "_compile_config", None)
        loss_weights = getattr(compiled, "config", {}).get("loss_weights")
        loss = _loss_of(source.loss, where)
    elif isinstance(source, Mapping):
        if not source:
            return None
        optimizer = _optimizer_config(source.get("optimizer"), where)
        loss_weights = source.get("loss_weights")
        loss = _loss_config(source.get("loss"), where)
    else:
        raise TypeError(f"recipe_of takes a keras.Model or a compile config, not {source!r}")
    if loss_weights is not None:
        raise ModelSourceError(f"{where}: loss_weights={_shown(loss_weights)} is not supported")
    learning_rate, momentum, nesterov = optimizer
    return Recipe(learning_rate, momentum=momentum, nesterov=nesterov, loss=loss)


def _optimizer_of(optimizer: Any, where: str) -> tuple[float, float, bool]:
    """A compiled model's optimizer object checked, read from its attributes: its
    ``get_config()`` turns the learning-rate variable into an array through ``np.array``,
    which NumPy 2 warns about on JAX and TensorFlow (the variables' ``__array__`` lacks
    ``copy``)."""
    cls = type(optimizer)
    # On torch, Keras's SGD is keras/src/backend/torch/optimizers/torch_sgd.py's subclass.
    if not (
        isinstance(optimizer, keras.optimizers.SGD)
        and cls.__name__ == "SGD"
        and cls.__module__.startswith("keras.")
    ):
        raise ModelSourceError(
            f"{where}: optimizer {cls.__name__} is not supported; supported: SGD"
        )
    rate = optimizer._learning_rate
    if isinstance(rate, keras.Variable):
        rate = float(to_numpy(rate))
    elif isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) or callable(rate):
        raise ModelSourceError(
            f"{where}: optimizer SGD learning_rate={type(rate).__name__} (a schedule) is not "
            "supported; supported: a constant float"
        )
    config = {option: getattr(optimizer, option, None) for option in _OPTIMIZER_REFUSED}
    config.update(learning_rate=rate, momentum=optimizer.momentum, nesterov=optimizer.nesterov)
    return _optimizer_config({"class_name": "SGD", "config": config}, where)


def _optimizer_config(value: Any, where: str) -> tuple[float, float, bool]:
    """(learning_rate, momentum, nesterov) of a serialised optimizer, if it is a plain SGD."""
    if isinstance(value, str):
        if value.lower() != "sgd":
            raise ModelSourceError(f"{where}: optimizer {value} is not supported; supported: SGD")
        value = {"class_name": "SGD", "config": {}}
    if not isinstance(value, Mapping) or value.get("class_name") != "SGD":
        name = value.get("class_name") if isinstance(value, Mapping) else _shown(value)
        raise ModelSourceError(f"{where}: optimizer {name} is not supported; supported: SGD")
    config = value.get("config") or {}
    for option in _OPTIMIZER_REFUSED:
        setting = config.get(option)
        if setting is not None and setting is not False:
            raise ModelSourceError(
                f"{where}: optimizer SGD {option}={_shown(setting)} is not supported; "
                "supported: SGD(learning_rate, momentum, nesterov) only"
            )
    rate = config.get("learning_rate", 0.01)  # SGD's default
    if isinstance(rate, Mapping) or not isinstance(rate, (int, float)) or isinstance(rate, bool):
        name = rate.get("class_name", "?") if isinstance(rate, Mapping) else _shown(rate)
        raise ModelSourceError(
            f"{where}: optimizer SGD learning_rate={name} (a schedule) is not supported; "
            "supported: a constant float"
        )
    momentum = config.get("momentum", 0.0)
    nesterov = config.get("nesterov", False)
    if (
        not isinstance(momentum, (int, float))
        or isinstance(momentum, bool)
        or not math.isfinite(momentum)
    ):
        raise ModelSourceError(
            f"{where}: optimizer SGD momentum={_shown(momentum)} is not a number"
        )
    if not isinstance(nesterov, bool):
        raise ModelSourceError(f"{where}: optimizer SGD nesterov={_shown(nesterov)} is not a bool")
    if not (math.isfinite(rate) and rate > 0):
        raise ModelSourceError(
            f"{where}: optimizer SGD learning_rate={rate!r} is not supported; supported: a "
            "positive float"
        )
    return float(rate), float(momentum), nesterov


def _loss_of(loss: Any, where: str) -> str:
    """A compiled model's ``loss`` (a string, a Loss object or a loss function) checked."""
    if loss is None or isinstance(loss, (str, list, tuple, Mapping)):
        return _loss_config(loss, where)
    if isinstance(loss, keras.losses.Loss):
        kwargs = dict(getattr(loss, "_fn_kwargs", {}))
        kwargs["reduction"] = loss.reduction
        return _loss_config({"class_name": type(loss).__name__, "config": kwargs}, where)
    if callable(loss):
        name = getattr(loss, "__name__", "?")
        if getattr(keras.losses, name, None) is not loss:
            name = f"{getattr(loss, '__module__', '?')}.{name}"
        return _loss_config({"class_name": "function", "config": name}, where)
    return _loss_config(loss, where)


_LOSS_DEFAULTS: Final = {
    "from_logits": False,
    "label_smoothing": 0.0,
    "axis": -1,
    "ignore_class": None,
    "reduction": "sum_over_batch_size",
}


def _loss_config(value: Any, where: str) -> str:
    """Keras's name of a serialised loss, if the harness's loss computes it."""
    supported = "categorical_crossentropy or sparse_categorical_crossentropy"
    if isinstance(value, (list, tuple)) or (
        isinstance(value, Mapping) and "class_name" not in value
    ):
        raise ModelSourceError(
            f"{where}: loss={_shown(value)} (one per output) is not supported; supported: "
            f"one loss, {supported}"
        )
    if isinstance(value, str):
        if value not in _LOSS_NAMES:
            raise ModelSourceError(
                f"{where}: loss {value} is not supported; supported: {supported}"
            )
        return _LOSS_NAMES[value]
    if not isinstance(value, Mapping):
        raise ModelSourceError(
            f"{where}: loss={_shown(value)} is not supported; supported: {supported}"
        )
    cls, config = value.get("class_name"), value.get("config")
    if cls == "function":
        if config not in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            raise ModelSourceError(
                f"{where}: loss {config} is not supported; supported: {supported}"
            )
        return str(config)
    if cls not in _LOSS_NAMES:
        raise ModelSourceError(f"{where}: loss {cls} is not supported; supported: {supported}")
    for option, default in _LOSS_DEFAULTS.items():
        setting = (config or {}).get(option, default)
        if setting != default:
            raise ModelSourceError(
                f"{where}: loss {cls} {option}={_shown(setting)} is not supported; "
                f"supported: {option}={default!r}"
            )
    return _LOSS_NAMES[str(cls)]


def builder_model(model: Any, where: str) -> Any:
    """A builder's return value, checked to be a supported Keras model."""
    if not isinstance(model, keras.Model):
        raise ModelSourceError(
            f"{where}: the builder returned a {type(model).__name__}; expected a Keras model"
        )
    chain(model, where)
    return model


__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "REGULARIZERS",
    "SUPPORTED",
    "ModelSourceError",
    "Recipe",
    "builder_model",
    "chain",
    "check_model",
    "compile_config",
    "convert",
    "harness_model",
    "is_builder",
    "is_file",
    "is_zoo",
    "layer_config",
    "layer_options",
    "load_model",
    "plain",
    "read_archive_config",
    "read_model_file",
    "rebuild",
    "recipe_of",
    "serialized",
]
