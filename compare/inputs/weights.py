"""The canonical weight set and its files.

The canonical weight set is a ``dict[str, np.ndarray]`` keyed ``"<layer>/<param>"``
(``"conv1/kernel"``, ``"fc1/bias"``) in Keras's layouts (HWIO conv kernels, Dense kernels
``(in, out)``): what ``scratch`` and ``reference`` get and set. Files, chosen by suffix:

``.npz``
    The arrays under those keys; read with ``allow_pickle=False`` (never unpickled).
``.weights.h5``
    Keras's ``model.save_weights`` of the reference LeNet-5.
``.keras``
    Keras's whole-model archive (``model.save``); read with ``safe_mode=True``, and its layers
    must be the LeNet-5 variant's.

Keras is imported only for the last two, so ``.npz`` works without it. Loaded or saved, the
weights must have exactly the variant's keys and shapes, exactly the asked dtype (never cast)
and finite values; anything else raises :class:`InputError` with a one-line message.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import warnings
import zipfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

import numpy as np

import scratch
from compare.errors import InputError
from compare.inputs import validate as numbers
from compare.inputs.atomic import atomic_output, check_output_file
from compare.inputs.data import _float_dtype
from compare.inputs.npz import (
    READ_ERRORS,
    Member,
    brief,
    check_file,
    check_zip_header,
    read_npz,
    shown,
    size_text,
)
from compare.inputs.npz import headers as npz_headers

SUFFIXES: Final = (".npz", ".weights.h5", ".keras")

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]

# The settings of a Keras layer that decide what it computes, under Keras's config names: a
# .keras model whose layers differ in any of them is another architecture even when its
# weights fit, and the implementation protocol's LayerSpec.config carries them.
ARCHITECTURE_KEYS: Final = (
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "data_format",
    "dilation_rate",
    "groups",
    "activation",
    "use_bias",
    "units",
    "pool_size",
    "rate",
    "axis",
    "momentum",
    "epsilon",
    "center",
    "scale",
)
_MAX_NAMES: Final = 12  # names listed in one message
# What .keras loading reads before Keras does: its config.json (LeNet-5's is 5 KB) and its
# weights member (LeNet-5's in float64: 0.5 MB), at most these sizes.
MAX_KERAS_CONFIG_BYTES: Final = 1024**2
MAX_KERAS_WEIGHTS_BYTES: Final = 256 * 1024**2
# A layer declaring more units or filters than this (or an input dimension larger) is no
# LeNet-5 (the widest layer has 120 units); refused from config.json, before Keras builds it.
_MAX_LAYER_WIDTH: Final = 4096
_MAX_KERNEL: Final = 64  # kernel and pool sizes (LeNet-5's: 5 and 2)
_SHAPE_KEYS: Final = (
    "batch_shape",
    "batch_input_shape",
    "input_shape",
    "shape",
    "kernel_size",
    "pool_size",
)
_KERAS_WEIGHT_MEMBERS: Final = ("model.weights.h5", "model.weights.npz")


# -- the weight set ---------------------------------------------------------------------------
def _lenet(variant: str, dtype: str, seed: int = 0) -> scratch.Sequential:
    _float_dtype(dtype)
    if not isinstance(variant, str) or variant not in scratch.VARIANTS:
        raise InputError(
            f"unknown LeNet-5 variant {variant!r}; expected one of "
            f"{', '.join(sorted(scratch.VARIANTS))}"
        )
    return scratch.build_lenet5(variant, dtype, seed=seed)


def expected_layout(variant: str, dtype: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every key of the variant's weight set, in layer order, with its shape and dtype."""
    return {k: (v.shape, v.dtype) for k, v in _lenet(variant, dtype).get_weights().items()}


def initial_weights(variant: str, dtype: str, seed: int) -> dict[str, np.ndarray]:
    """A fresh initialisation (scratch's Keras-style glorot-uniform kernels, zero biases)."""
    seed = numbers.seed(seed)
    return _lenet(variant, dtype, seed).get_weights()


def _model_layout(variant: str, dtype: str, layout: Layout | None) -> Layout:
    """``layout`` (any model's, from its spec) or, without one, the LeNet-5 variant's."""
    return expected_layout(variant, dtype) if layout is None else layout


def _label(model: str) -> str:
    """How messages name the model: "LeNet-5 classic", or "model 'FILE.keras'"."""
    return f"LeNet-5 {model}" if model in scratch.VARIANTS else f"model {model!r}"


def validate(
    weights: Mapping[str, np.ndarray],
    variant: str,
    dtype: str,
    *,
    source: str,
    layout: Layout | None = None,
) -> dict[str, np.ndarray]:
    """The weights as a plain dict in layer order (the same arrays, not copies) if they have
    exactly the model's keys and shapes (``layout``; default: the LeNet-5 ``variant``'s),
    exactly ``dtype`` (nothing is cast) and only finite values; else InputError naming
    ``source``."""
    layout = _model_layout(variant, dtype, layout)
    if not isinstance(weights, Mapping):
        raise InputError(
            f"{source}: weights must be a mapping of '<layer>/<param>' to arrays. "
            f"Received: {type(weights).__name__}"
        )
    _check_keys(weights.keys(), layout, source, variant)
    checked: dict[str, np.ndarray] = {}
    for key, (shape, want) in layout.items():
        value = weights[key]
        if not isinstance(value, np.ndarray):
            raise InputError(f"{source}: '{key}' is a {type(value).__name__}, not a NumPy array")
        _check_array(source, key, value.shape, value.dtype, (shape, want), variant)
        checked[key] = np.asarray(value)
    for key, value in checked.items():
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            raise InputError(
                f"{source}: '{key}' has {bad} non-finite value(s) (NaN or infinity) of {value.size}"
            )
    return checked


def _check_array(
    source: str,
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    want: tuple[tuple[int, ...], np.dtype],
    variant: str,
) -> None:
    """One weight's shape and dtype against the variant's (for arrays, and for .npz headers
    before anything is read)."""
    if shape != want[0]:
        raise InputError(f"{source}: '{key}' has shape {shape}; {_label(variant)} needs {want[0]}")
    if dtype != want[1]:
        raise InputError(
            f"{source}: '{key}' has dtype {dtype}; expected {want[1]} (weights are never cast)"
        )


def _check_keys(keys: Collection[object], layout: Layout, source: str, variant: str) -> None:
    given = set(keys)
    missing = [k for k in layout if k not in given]
    unexpected = sorted((str(k) for k in given if k not in layout), key=str)
    if missing or unexpected:
        raise InputError(
            f"{source}: not the {_label(variant)} weight keys: "
            f"missing {_names(missing)}; unexpected {_names(unexpected)}"
        )


# -- files ------------------------------------------------------------------------------------
def save_weights(path: Path, weights: Mapping[str, np.ndarray], variant: str, dtype: str) -> None:
    """Validate ``weights`` and write them to ``path`` (.npz, .weights.h5 or .keras by suffix;
    the last two through the reference Keras model), atomically: a reader sees the old file or
    the new one, never half of one."""
    path = Path(path)
    suffix = _suffix(path)
    name = shown(path)
    arrays = validate(weights, variant, dtype, source=f"weights to save to {name}")
    check_output_file(path)
    try:
        if suffix == ".npz":
            # The keys are the validated "<layer>/<param>" names, so none can be taken for
            # savez's own keyword (allow_pickle); Any tells mypy as much.
            members: dict[str, Any] = arrays
            with atomic_output(path) as tmp, tmp.open("xb") as handle:
                np.savez(handle, **members)
            return
        reference = _import_reference(path)
        model = reference.build_lenet5(variant, dtype)
        with atomic_output(path) as tmp, _quiet_keras():
            reference.set_weights(model, arrays)
            if suffix == ".keras":
                model.save(str(tmp))
            else:
                model.save_weights(str(tmp))
    except OSError as exc:
        raise InputError(f"cannot write {name}: {brief(exc)}") from exc


def load_weights(
    path: Path, variant: str, dtype: str, *, layout: Layout | None = None
) -> dict[str, np.ndarray]:
    """Read the weights in ``path`` (.npz, .weights.h5 or .keras by suffix) and validate them
    for the model (``layout``; default: the LeNet-5 ``variant``'s) and ``dtype``; any problem
    with the file is an InputError. Models other than the LeNet-5s read .npz files (their own
    ``.keras`` file carries their weights already)."""
    path = Path(path)
    suffix = _suffix(path)
    layout = _model_layout(variant, dtype, layout)
    where = f"weights file {_shown(path)}"
    if suffix != ".npz" and variant not in scratch.VARIANTS:
        raise InputError(f"{where}: weights for {_label(variant)} are read from .npz files")
    check_file(path, where)
    if suffix == ".npz":
        arrays = _read_npz(path, where, layout, variant)
    elif suffix == ".weights.h5":
        arrays = _read_weights_h5(path, where, layout, variant, dtype)
    else:
        arrays = _read_keras(path, where, variant, dtype)
    return validate(arrays, variant, dtype, source=where, layout=layout)


def _suffix(path: Path) -> str:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return suffix
    raise InputError(
        f"weights file {_shown(path)}: unsupported file type; expected one of {', '.join(SUFFIXES)}"
    )


@contextlib.contextmanager
def _open_zip(path: Path, where: str, kind: str) -> Iterator[BinaryIO]:
    """``path`` opened for reading, after checking it starts like a zip archive."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({_brief(exc)})") from exc
    with handle:
        check_zip_header(handle, where, kind)
        yield handle


def _read_npz(path: Path, where: str, layout: Layout, variant: str) -> dict[str, np.ndarray]:
    """The weights of an .npz, their keys, shapes and dtypes checked from the headers first
    (:func:`compare.inputs.npz.read_npz`: nothing is allocated for a header that lies)."""

    def select(keys: list[str]) -> list[str]:
        _check_keys(keys, layout, where, variant)
        return list(layout)

    def check(members: Mapping[str, Member]) -> None:
        for key, want in layout.items():
            _check_array(where, key, members[key].shape, members[key].dtype, want, variant)

    return read_npz(path, where, select, check)


def _read_weights_h5(
    path: Path, where: str, layout: Layout, variant: str, dtype: str
) -> dict[str, np.ndarray]:
    reference = _import_reference(path)
    _check_h5_arrays(path, where, layout, variant, dtype)
    model = reference.build_lenet5(variant, dtype)
    try:
        with _quiet_keras():
            model.load_weights(str(path))
    # Keras and h5py raise many types for a bad file (ValueError, KeyError, OSError, ...).
    except Exception as exc:
        raise InputError(
            f"{where}: Keras cannot load it into LeNet-5 {variant} ({_brief(exc)})"
        ) from exc
    with _quiet_keras():
        return reference.get_weights(model)


def _check_h5_arrays(path: Path, where: str, layout: Layout, variant: str, dtype: str) -> None:
    """What Keras would not say: the arrays under ``layers/`` (where ``save_weights`` keeps a
    model's weights, keyed by position, not by layer name) must be the variant's shapes in
    ``dtype`` — Keras's ``load_weights`` casts other dtypes silently, even float64 down to
    float32."""
    found = _h5_layer_arrays(path, where)
    if not found:
        raise InputError(
            f"{where}: holds no layer weights (nothing under 'layers/'); expected a Keras 3 "
            "model.save_weights file"
        )
    if len(found) != len(layout):
        raise InputError(
            f"{where}: not LeNet-5 {variant} weights: it holds {len(found)} arrays of shapes "
            f"{_names(shape for shape, _ in found)}; the model has {len(layout)}"
        )
    needed = collections.Counter(shape for shape, _ in layout.values())
    held = collections.Counter(shape for shape, _ in found)
    lacking = needed - held
    if lacking:
        keys = [k for k, (shape, _) in layout.items() if shape in lacking]
        raise InputError(
            f"{where}: not LeNet-5 {variant} weights: the model needs shape "
            f"{_names(lacking.elements())} ({_names(keys)}) where the file has "
            f"{_names((held - needed).elements())}"
        )
    _check_dtypes(found, where, dtype)


def _h5_layer_arrays(
    source: Path | IO[bytes], where: str
) -> list[tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every dataset under ``layers/`` of a Keras weights HDF5 file (a path,
    or the bytes of the one inside a .keras archive); nothing is read but the metadata."""
    import h5py

    found: list[tuple[tuple[int, ...], np.dtype]] = []

    def collect(_: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            found.append((tuple(item.shape), item.dtype))

    try:
        with h5py.File(source, "r") as file:
            group = file.get("layers")
            if isinstance(group, h5py.Group):
                group.visititems(collect)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{where}: not a readable HDF5 file ({brief(exc)})") from exc
    return found


def _check_dtypes(found: Iterable[tuple[object, np.dtype]], where: str, dtype: str) -> None:
    others = sorted({str(d) for _, d in found if d != np.dtype(dtype)})
    if others:
        raise InputError(
            f"{where}: holds {', '.join(others)} arrays; expected {dtype} "
            "(Keras would cast them silently, so they are refused)"
        )


def _read_keras(path: Path, where: str, variant: str, dtype: str) -> dict[str, np.ndarray]:
    """A whole-model .keras archive: its config.json checked first (a layer sized like no
    LeNet-5 is refused before Keras builds it), then loaded by Keras with ``safe_mode=True`` and
    checked against the variant; its stored arrays must have the model's dtype (``load_model``
    would cast others silently)."""
    reference = _import_reference(path)
    import keras

    with _open_zip(path, where, "a .keras archive") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                found = _check_keras_archive(archive, where, variant)
        except InputError:
            raise
        except READ_ERRORS as exc:
            raise InputError(f"{where}: not a readable .keras archive ({brief(exc)})") from exc
    try:
        with _quiet_keras():
            model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    # Deserialising an arbitrary archive can raise almost anything (ValueError, TypeError,
    # KeyError, AttributeError, OSError, ...); each is this file's fault.
    except Exception as exc:
        raise InputError(f"{where}: Keras cannot load it ({brief(exc)})") from exc
    expected = reference.build_lenet5(variant, dtype)
    _check_architecture(model, expected, where, variant, keras)
    with _quiet_keras():
        arrays = reference.get_weights(model)
    count = sum(len(layer.weights) for layer in model.layers)
    if len(arrays) != count:
        raise InputError(f"{where}: its layers hold {count} weights under {len(arrays)} names")
    # Keras assigned the stored arrays to the model's variables, casting any other dtype
    # silently (float64 arrays into a float32 model): the stored ones must be the dtype asked
    # for too. (A model of another dtype is refused by validate(), naming its weights.)
    if {value.dtype for value in arrays.values()} == {np.dtype(dtype)}:
        _check_dtypes(found, where, dtype)
    return arrays


def _check_architecture(model: Any, expected: Any, where: str, variant: str, keras: Any) -> None:
    """The loaded model must be LeNet-5 ``variant``: same input shape, layer names, layer types
    and layer settings (activation, padding, units, ...) as ``expected``."""
    prefix = f"{where}: not a LeNet-5 {variant} model"
    layers = [
        la for la in getattr(model, "layers", []) if not isinstance(la, keras.layers.InputLayer)
    ]
    names = [la.name for la in layers]
    want = [la.name for la in expected.layers]
    if names != want:
        raise InputError(f"{prefix}: its layers are {_names(names)}; expected {_names(want)}")
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or shape[1:] != expected.input_shape[1:]:
        raise InputError(f"{prefix}: its input shape is {shape}; expected {expected.input_shape}")
    for got, ref in zip(layers, expected.layers, strict=True):
        if type(got).__name__ != type(ref).__name__:
            raise InputError(
                f"{prefix}: layer '{got.name}' is a {type(got).__name__}; "
                f"expected a {type(ref).__name__}"
            )
        got_config, ref_config = got.get_config(), ref.get_config()
        for key in ARCHITECTURE_KEYS:
            have, need = got_config.get(key), ref_config.get(key)
            if _plain(have) != _plain(need):
                raise InputError(
                    f"{prefix}: layer '{got.name}' has {key}={have!r}; expected {need!r}"
                )


def _check_keras_archive(
    archive: zipfile.ZipFile, where: str, variant: str
) -> list[tuple[tuple[int, ...], np.dtype]]:
    """Before Keras builds anything: config.json is small JSON whose layers are no wider than
    any LeNet-5 layer could be, and the weights member is small; returns the shapes and dtypes
    of the stored layer arrays."""
    names = set(archive.namelist())
    if "config.json" not in names:
        raise InputError(f"{where}: not a Keras .keras archive (no config.json inside)")
    config = _member_bytes(archive, "config.json", MAX_KERAS_CONFIG_BYTES, where)
    try:
        parsed = json.loads(config)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{where}: its config.json is not JSON ({brief(exc)})") from exc
    _check_sizes(parsed, where, variant)
    member = next((n for n in _KERAS_WEIGHT_MEMBERS if n in names), None)
    if member is None:
        raise InputError(
            f"{where}: holds no weights (no {' or '.join(_KERAS_WEIGHT_MEMBERS)} inside)"
        )
    stored = io.BytesIO(_member_bytes(archive, member, MAX_KERAS_WEIGHTS_BYTES, where))
    if member.endswith(".h5"):
        return _h5_layer_arrays(stored, where)
    inner = f"{where} ({member})"
    try:
        with zipfile.ZipFile(stored) as weights:
            members = npz_headers(weights, inner)
    except InputError:
        raise
    except READ_ERRORS as exc:
        raise InputError(f"{inner}: not a readable .npz archive ({brief(exc)})") from exc
    return [(m.shape, m.dtype) for m in members.values() if m.key.startswith("layers/")]


def _member_bytes(archive: zipfile.ZipFile, name: str, limit: int, where: str) -> bytes:
    """A member's content, if the zip directory says it is at most ``limit`` bytes."""
    size = archive.getinfo(name).file_size
    if size > limit:
        raise InputError(
            f"{where}: its {name} declares {size_text(size)}, more than the "
            f"{size_text(limit)} a LeNet-5 archive needs"
        )
    with archive.open(name) as member:
        data = member.read(limit + 1)
    if len(data) > limit:  # pragma: no cover - zipfile stops at the declared size
        raise InputError(f"{where}: its {name} holds more than it declares")
    return data


def _check_sizes(config: object, where: str, variant: str) -> None:
    """Refuse, from the config alone, a layer wider than _MAX_LAYER_WIDTH units or filters, or
    an input dimension larger: Keras would allocate it while loading, before any check."""
    pending = [config]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                too_wide = (
                    key in ("units", "filters")
                    and isinstance(value, int)
                    and not 0 < value <= _MAX_LAYER_WIDTH
                )
                limit = _MAX_KERNEL if key in ("kernel_size", "pool_size") else _MAX_LAYER_WIDTH
                dims = value if isinstance(value, list) else [value]
                big_shape = key in _SHAPE_KEYS and any(
                    isinstance(d, int) and not isinstance(d, bool) and d > limit for d in dims
                )
                if too_wide or big_shape:
                    raise InputError(
                        f"{where}: not a LeNet-5 {variant} model: its config.json declares "
                        f"{key}={_plain(value)!r}"
                    )
                pending.append(value)


# -- helpers ----------------------------------------------------------------------------------
def _import_reference(path: Path) -> Any:
    """The reference package (and with it Keras), or InputError when Keras is not installed."""
    try:
        import reference
    except ImportError as exc:
        raise InputError(
            f"weights file {_shown(path)}: reading or writing {_suffix(path)} files needs Keras "
            f"({_brief(exc)}); use .npz, or install lenet-parity[tensorflow]"
        ) from exc
    return reference


@contextlib.contextmanager
def _quiet_keras() -> Iterator[None]:
    """Silence one harmless NumPy 2 DeprecationWarning around Keras calls that turn variables
    into arrays (saving, loading, ``reference.get_weights``): the ``__array__`` of Keras 3.15's
    and TensorFlow 2.21's variables lacks the ``copy`` argument, so NumPy warns and falls back
    to an exact copy."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        yield


def _shown(path: Path) -> str:
    """``path`` for a one-line message (see :func:`compare.inputs.npz.shown`)."""
    return shown(path)


def _plain(value: object) -> object:
    """A config value with tuples as lists (a loaded config's tuples may come back as lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _names(items: Iterable[Any]) -> str:
    """Items for a message: comma-separated, at most _MAX_NAMES of them, or "none"."""
    shown = [str(item) for item in items]
    if not shown:
        return "none"
    more = len(shown) - _MAX_NAMES
    text = ", ".join(shown[:_MAX_NAMES])
    return f"{text}, ... ({more} more)" if more > 0 else text


def _brief(exc: BaseException) -> str:
    """A third-party error message on one line, cut to a readable length."""
    return brief(exc)
