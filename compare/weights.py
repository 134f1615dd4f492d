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
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np

import scratch
from compare.data import (
    _READ_ERRORS,
    _check_int,
    _float_dtype,
    _one_line,
    check_file,
    check_zip_header,
)
from compare.errors import InputError

SUFFIXES: Final = (".npz", ".weights.h5", ".keras")

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]

# Layer settings that make a .keras model another architecture even when its weights fit.
_ARCHITECTURE_KEYS: Final = (
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
)
_MAX_MESSAGE: Final = 300  # characters kept of a third-party error message
_MAX_NAMES: Final = 12  # names listed in one message


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
    seed = _check_int("seed", seed, 0)
    return _lenet(variant, dtype, seed).get_weights()


def validate(
    weights: Mapping[str, np.ndarray], variant: str, dtype: str, *, source: str
) -> dict[str, np.ndarray]:
    """The weights as a plain dict in layer order (the same arrays, not copies) if they have
    exactly the variant's keys and shapes, exactly ``dtype`` (nothing is cast) and only finite
    values; else InputError naming ``source``."""
    layout = expected_layout(variant, dtype)
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
        if value.shape != shape:
            raise InputError(
                f"{source}: '{key}' has shape {value.shape}; LeNet-5 {variant} needs {shape}"
            )
        if value.dtype != want:
            raise InputError(
                f"{source}: '{key}' has dtype {value.dtype}; expected {dtype} "
                "(weights are never cast)"
            )
        checked[key] = np.asarray(value)
    for key, value in checked.items():
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        if bad:
            raise InputError(
                f"{source}: '{key}' has {bad} non-finite value(s) (NaN or infinity) of {value.size}"
            )
    return checked


def _check_keys(keys: Collection[object], layout: Layout, source: str, variant: str) -> None:
    given = set(keys)
    missing = [k for k in layout if k not in given]
    unexpected = sorted((str(k) for k in given if k not in layout), key=str)
    if missing or unexpected:
        raise InputError(
            f"{source}: not the LeNet-5 {variant} weight keys: "
            f"missing {_names(missing)}; unexpected {_names(unexpected)}"
        )


# -- files ------------------------------------------------------------------------------------
def save_weights(path: Path, weights: Mapping[str, np.ndarray], variant: str, dtype: str) -> None:
    """Validate ``weights`` and write them to ``path`` (.npz, .weights.h5 or .keras by suffix;
    the last two through the reference Keras model), atomically: a reader sees the old file or
    the new one, never half of one."""
    path = Path(path)
    suffix = _suffix(path)
    shown = _shown(path)
    arrays = validate(weights, variant, dtype, source=f"weights to save to {shown}")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {shown}: folder {_shown(path.parent)} does not exist")
    if path.is_dir():
        raise InputError(f"cannot write {shown}: it is a folder")
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
        raise InputError(f"cannot write {shown}: {_brief(exc)}") from exc


def load_weights(path: Path, variant: str, dtype: str) -> dict[str, np.ndarray]:
    """Read the weights in ``path`` (.npz, .weights.h5 or .keras by suffix) and validate them
    for the variant and ``dtype``; any problem with the file is an InputError."""
    path = Path(path)
    suffix = _suffix(path)
    layout = expected_layout(variant, dtype)
    where = f"weights file {_shown(path)}"
    check_file(path, where)
    if suffix == ".npz":
        arrays = _read_npz(path, where, layout, variant)
    elif suffix == ".weights.h5":
        arrays = _read_weights_h5(path, where, layout, variant, dtype)
    else:
        arrays = _read_keras(path, where, variant, dtype)
    return validate(arrays, variant, dtype, source=where)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s name, in a new folder beside it, to write; if the
    block succeeds it atomically replaces ``path``. The temporary folder is always removed.

    Any writer works (the file is made by whoever writes it, with the usual new-file mode), and
    writers that check the name (Keras wants ``.keras`` / ``.weights.h5``) see the real one.
    """
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tmp = folder / path.name
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    key = ""
    try:
        # np.load gets an open file, not the path: given a path, it leaks the file handle when
        # the zip is corrupt (a ResourceWarning later).
        with (
            _open_zip(path, where, "an .npz archive") as handle,
            np.load(handle, allow_pickle=False) as loaded,
        ):
            _check_keys(loaded.files, layout, where, variant)
            arrays = {}
            for key in layout:
                arrays[key] = loaded[key]
            return arrays
    except InputError:
        raise
    except _READ_ERRORS as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise InputError(
                f"{where}: '{key}' is an object array; reading it would unpickle it, "
                "which is refused"
            ) from None
        at = f" (at '{key}')" if key else ""
        raise InputError(f"{where}: not a readable .npz archive{at}: {_brief(exc)}") from exc


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
    import h5py

    found: list[tuple[tuple[int, ...], np.dtype]] = []

    def collect(_: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            found.append((tuple(item.shape), item.dtype))

    try:
        with h5py.File(path, "r") as file:
            group = file.get("layers")
            if isinstance(group, h5py.Group):
                group.visititems(collect)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{where}: not a readable HDF5 file ({_brief(exc)})") from exc
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
    others = sorted({str(d) for _, d in found if d != np.dtype(dtype)})
    if others:
        raise InputError(
            f"{where}: holds {', '.join(others)} arrays; expected {dtype} "
            "(Keras would cast them silently, so they are refused)"
        )


def _read_keras(path: Path, where: str, variant: str, dtype: str) -> dict[str, np.ndarray]:
    reference = _import_reference(path)
    import keras

    with _open_zip(path, where, "a .keras archive") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                names = set(archive.namelist())
        except _READ_ERRORS as exc:
            raise InputError(f"{where}: not a readable .keras archive ({_brief(exc)})") from exc
    if "config.json" not in names:
        raise InputError(f"{where}: not a Keras .keras archive (no config.json inside)")
    try:
        with _quiet_keras():
            model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    # Deserialising an arbitrary archive can raise almost anything (ValueError, TypeError,
    # KeyError, AttributeError, OSError, ...); each is this file's fault.
    except Exception as exc:
        raise InputError(f"{where}: Keras cannot load it ({_brief(exc)})") from exc
    expected = reference.build_lenet5(variant, dtype)
    _check_architecture(model, expected, where, variant, keras)
    with _quiet_keras():
        arrays = reference.get_weights(model)
    count = sum(len(layer.weights) for layer in model.layers)
    if len(arrays) != count:
        raise InputError(f"{where}: its layers hold {count} weights under {len(arrays)} names")
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
        for key in _ARCHITECTURE_KEYS:
            have, need = got_config.get(key), ref_config.get(key)
            if _plain(have) != _plain(need):
                raise InputError(
                    f"{prefix}: layer '{got.name}' has {key}={have!r}; expected {need!r}"
                )


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
    """``path`` for a one-line message (a file name may hold a newline)."""
    return str(path).replace("\n", "\\n").replace("\r", "\\r")


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
    text = _one_line(exc)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."
