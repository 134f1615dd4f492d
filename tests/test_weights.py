"""Tests for compare.inputs.weights: the weight set, its three file formats, bit-exact round
trips between scratch and Keras, and a one-line InputError for every bad file or weight set."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scratch
from compare.errors import InputError
from compare.inputs.weights import (
    SUFFIXES,
    expected_layout,
    initial_weights,
    load_weights,
    save_weights,
    validate,
)

CASES = [(v, d) for v in ("keras-docs", "classic") for d in ("float32", "float64")]
KEYS = [
    f"{layer}/{param}"
    for layer in ("conv1", "conv2", "fc1", "fc2", "output")
    for param in ("kernel", "bias")
]

Weights = dict[str, np.ndarray]
Files = dict[str, Path]
Maker = Callable[[Path, Files], Path]  # makes one bad file in the test's folder


@contextlib.contextmanager
def keras_quiet() -> Iterator[None]:
    """For tests that call Keras directly. The ``__array__`` of Keras 3.15's and TensorFlow
    2.21's variables lacks NumPy 2's ``copy`` argument, so NumPy warns and makes an exact copy:
    harmless (compare.inputs.weights silences the same warning around its own Keras calls)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        yield


def rich_weights(variant: str, dtype: str, seed: int = 0) -> Weights:
    """Both signs, magnitudes from 1e-8 to 1e8 and every mantissa bit in use, so any cast or
    float32 detour on the way changes some value."""
    rng = np.random.default_rng(seed)
    return {
        key: (rng.standard_normal(shape) * np.exp(rng.uniform(-18, 18, shape))).astype(dt)
        for key, (shape, dt) in expected_layout(variant, dtype).items()
    }


def assert_bit_exact(got: Weights, want: Weights) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert got[key].tobytes() == value.tobytes(), key


def scratch_round_trip(weights: Weights, variant: str, dtype: str) -> Weights:
    """Through a scratch model built from another seed, so nothing passes by accident."""
    model = scratch.build_lenet5(variant, dtype, seed=12345)
    model.set_weights(weights)
    return model.get_weights()


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


# --- the weight set --------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_expected_layout(variant: str, dtype: str) -> None:
    layout = expected_layout(variant, dtype)
    assert list(layout) == KEYS
    assert layout["conv1/kernel"] == ((5, 5, 1, 6), np.dtype(dtype))
    assert layout["fc1/kernel"][0] == ((256, 120) if variant == "keras-docs" else (400, 120))
    assert layout["output/bias"] == ((10,), np.dtype(dtype))


def test_initial_weights_are_seeded() -> None:
    first = initial_weights("classic", "float64", 3)
    assert_bit_exact(initial_weights("classic", "float64", 3), first)
    assert not np.array_equal(
        initial_weights("classic", "float64", 4)["fc1/kernel"], first["fc1/kernel"]
    )
    assert_bit_exact(first, scratch.build_lenet5("classic", "float64", seed=3).get_weights())
    assert not first["fc1/bias"].any()  # Keras's zero biases
    assert validate(first, "classic", "float64", source="test") == first


def test_rich_weights_would_expose_a_float32_detour() -> None:
    weights = rich_weights("keras-docs", "float64")
    for value in weights.values():
        assert not np.array_equal(value.astype(np.float32).astype(np.float64), value)


def test_validate_returns_a_plain_dict_in_layer_order() -> None:
    weights = initial_weights("keras-docs", "float32", 0)
    shuffled = {key: weights[key] for key in reversed(KEYS)}
    checked = validate(shuffled, "keras-docs", "float32", source="test")
    assert type(checked) is dict
    assert list(checked) == KEYS
    assert all(checked[key] is weights[key] for key in KEYS)


def _with(key: str, value: object) -> Weights:
    weights: dict[str, Any] = initial_weights("keras-docs", "float32", 0)
    weights[key] = value
    return weights


def _without(key: str) -> Weights:
    weights = initial_weights("keras-docs", "float32", 0)
    del weights[key]
    return weights


def _non_finite(key: str, count: int, value: float) -> Weights:
    weights = initial_weights("keras-docs", "float32", 0)
    weights[key].flat[:count] = value
    return weights


BAD_WEIGHT_SETS = [
    pytest.param(_without("conv1/bias"), ["missing conv1/bias", "unexpected none"], id="missing"),
    pytest.param(
        _with("fc3/kernel", np.zeros(3, np.float32)),
        ["missing none", "unexpected fc3/kernel"],
        id="unexpected",
    ),
    pytest.param(
        _with("fc1/kernel", np.zeros((400, 120), np.float32)),
        ["'fc1/kernel' has shape (400, 120)", "needs (256, 120)"],
        id="shape",
    ),
    pytest.param(
        _with("fc2/bias", np.zeros(84, np.float64)),
        ["'fc2/bias' has dtype float64", "expected float32", "never cast"],
        id="dtype",
    ),
    pytest.param(_with("fc2/bias", np.zeros(84, np.int32)), ["dtype int32"], id="int-dtype"),
    pytest.param(
        _with("fc2/bias", [0.0] * 84), ["'fc2/bias' is a list, not a NumPy array"], id="list"
    ),
    pytest.param(_non_finite("fc2/bias", 1, np.nan), ["'fc2/bias' has 1 non-finite"], id="nan"),
    pytest.param(
        _non_finite("output/kernel", 3, -np.inf), ["'output/kernel' has 3 non-finite"], id="inf"
    ),
    pytest.param([1, 2, 3], ["must be a mapping", "list"], id="not-a-mapping"),
]


def _message(info: pytest.ExceptionInfo[InputError], *needles: str) -> str:
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize(("weights", "needles"), BAD_WEIGHT_SETS)
def test_validate_rejects(weights: Any, needles: list[str]) -> None:
    with pytest.raises(InputError) as info:
        validate(weights, "keras-docs", "float32", source="my weights")
    assert _message(info, *needles).startswith("my weights: ")


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: expected_layout("lenet-4", "float32"), "unknown LeNet-5 variant 'lenet-4'"),
        (lambda: expected_layout("classic", "float16"), "dtype must be 'float32' or 'float64'"),
        (lambda: initial_weights("classic", "float32", -1), "seed must be an integer >= 0"),
        (lambda: load_weights(Path("w.npz"), "classic", "int8"), "dtype must be"),
    ],
)
def test_bad_arguments(call: Callable[[], object], needle: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    _message(info, needle)


# --- .npz files (no Keras) -------------------------------------------------------------------


def test_npz_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    target = tmp_path / "w.npz"
    for seed in (1, 2):  # the second save replaces the first
        weights = rich_weights("classic", "float64", seed)
        save_weights(target, weights, "classic", "float64")
    assert_bit_exact(load_weights(target, "classic", "float64"), weights)
    with np.load(target, allow_pickle=False) as stored:  # plain "<layer>/<param>" members
        assert stored.files == KEYS
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "w.npz"
    target.write_bytes(b"old weights")

    def disk_full(file: io.BufferedWriter, **arrays: np.ndarray) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(InputError) as info:
        save_weights(target, initial_weights("classic", "float32", 0), "classic", "float32")
    _message(info, f"cannot write {target}", "No space left on device")
    assert target.read_bytes() == b"old weights"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_validates_before_writing(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"w{suffix}"
    with pytest.raises(InputError) as info:
        save_weights(target, _non_finite("fc1/kernel", 2, np.nan), "keras-docs", "float32")
    _message(info, str(target), "'fc1/kernel' has 2 non-finite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("w.h5", ["unsupported file type", ".npz, .weights.h5, .keras"]),
        ("w.pt", ["unsupported file type"]),
        ("missing/w.npz", ["folder", "does not exist"]),
        ("folder.npz", ["it is a folder"]),
    ],
)
def test_save_bad_target(tmp_path: Path, name: str, needles: list[str]) -> None:
    (tmp_path / "folder.npz").mkdir()
    weights = initial_weights("classic", "float32", 0)
    with pytest.raises(InputError) as info:
        save_weights(tmp_path / name, weights, "classic", "float32")
    _message(info, str(tmp_path / name), *needles)
    assert [p.name for p in tmp_path.iterdir()] == ["folder.npz"]


class _Tripwire:
    """Unpickling this makes the folder ``path``: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


@pytest.mark.parametrize(
    ("key", "needle"),
    [("conv1/kernel", "'conv1/kernel' is an object array"), ("extra", "unexpected extra")],
)
def test_object_array_npz_is_never_unpickled(tmp_path: Path, key: str, needle: str) -> None:
    path, marker = tmp_path / "w.npz", tmp_path / "unpickled"
    weights: dict[str, Any] = initial_weights("keras-docs", "float32", 0)
    weights[key] = np.array([_Tripwire(marker)], dtype=object)
    np.savez(path, **weights)
    with pytest.raises(InputError) as info:
        load_weights(path, "keras-docs", "float32")
    _message(info, str(path), needle)
    assert not marker.exists()
    # The tripwire works: unpickling that array (which load_weights never does) sets it off.
    with np.load(path, allow_pickle=True) as stored:
        stored[key]
    assert marker.is_dir()


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("npz")
    files = {name: folder / f"{name}.npz" for name in ("k32", "k64", "c32")}
    save_weights(files["k32"], initial_weights("keras-docs", "float32", 0), "keras-docs", "float32")
    save_weights(files["k64"], initial_weights("keras-docs", "float64", 0), "keras-docs", "float64")
    save_weights(files["c32"], initial_weights("classic", "float32", 0), "classic", "float32")
    return files


def _copy(name: str, new_name: str, damage: Callable[[bytes], bytes] = lambda b: b) -> Maker:
    """A maker: the fixture file ``name``, damaged, as ``new_name`` in the test's folder."""

    def make(folder: Path, files: Files) -> Path:
        path = folder / new_name
        path.write_bytes(damage(files[name].read_bytes()))
        return path

    return make


def _raw(new_name: str, content: bytes | None) -> Maker:
    """A maker: ``new_name`` holding ``content`` (None: no such file)."""

    def make(folder: Path, files: Files) -> Path:
        path = folder / new_name
        if content is not None:
            path.write_bytes(content)
        return path

    return make


def _folder(new_name: str) -> Maker:
    """A maker: ``new_name`` is a folder."""

    def make(folder: Path, files: Files) -> Path:
        (folder / new_name).mkdir()
        return folder / new_name

    return make


def _npz(new_name: str, **changes: Any) -> Maker:
    """A maker: keras-docs float32 weights with ``changes`` (``fc2__bias`` for ``fc2/bias``;
    None deletes the key), saved by NumPy."""

    def make(folder: Path, files: Files) -> Path:
        weights: dict[str, Any] = initial_weights("keras-docs", "float32", 0)
        weights.update({k.replace("__", "/"): v for k, v in changes.items()})
        path = folder / new_name
        np.savez(path, **{k: v for k, v in weights.items() if v is not None})
        return path

    return make


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def _flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _nan_npz() -> Maker:
    nan_bias = np.zeros(84, np.float32)
    nan_bias[5] = np.nan
    return _npz("w.npz", fc2__bias=nan_bias)


BAD_NPZ = [
    pytest.param(_raw("w.npz", None), "keras-docs", "float32", ["no such file"], id="missing"),
    pytest.param(_folder("w.npz"), "keras-docs", "float32", ["not a regular file"], id="folder"),
    pytest.param(_raw("w.npz", b""), "keras-docs", "float32", ["file is empty"], id="empty"),
    pytest.param(
        _raw("w.npz", b"conv1 weights"),
        "keras-docs",
        "float32",
        ["not an .npz archive (no zip header)"],
        id="not-zip",
    ),
    pytest.param(
        _raw("w.npz", _npy_bytes()), "keras-docs", "float32", ["single .npy array"], id="npy"
    ),
    pytest.param(
        _copy("k32", "w.npz", lambda b: b[: len(b) // 2]),
        "keras-docs",
        "float32",
        ["not a readable .npz archive"],
        id="truncated",
    ),
    pytest.param(
        _copy("k32", "w.npz", _flip_middle_byte),
        "keras-docs",
        "float32",
        ["not a readable .npz archive (at '", "CRC"],
        id="corrupt",
    ),
    pytest.param(
        _npz("w.npz", conv2__bias=None),
        "keras-docs",
        "float32",
        ["missing conv2/bias; unexpected none"],
        id="missing-key",
    ),
    pytest.param(
        _npz("w.npz", fc3__bias=np.zeros(3, np.float32)),
        "keras-docs",
        "float32",
        ["missing none; unexpected fc3/bias"],
        id="unexpected-key",
    ),
    pytest.param(
        _copy("c32", "w.npz"),
        "keras-docs",
        "float32",
        ["'fc1/kernel' has shape (400, 120)", "LeNet-5 keras-docs needs (256, 120)"],
        id="other-variant",
    ),
    pytest.param(
        _copy("k32", "w.npz"),
        "keras-docs",
        "float64",
        ["'conv1/kernel' has dtype float32; expected float64"],
        id="float32-as-64",
    ),
    pytest.param(
        _copy("k64", "w.npz"),
        "keras-docs",
        "float32",
        ["'conv1/kernel' has dtype float64; expected float32"],
        id="float64-as-32",
    ),
    pytest.param(_nan_npz(), "keras-docs", "float32", ["'fc2/bias' has 1 non-finite"], id="nan"),
    pytest.param(
        _raw("w.npy", _npy_bytes()),
        "keras-docs",
        "float32",
        ["unsupported file type", ".npz, .weights.h5, .keras"],
        id="suffix",
    ),
]


@pytest.mark.parametrize(("make", "variant", "dtype", "needles"), BAD_NPZ)
def test_bad_npz(
    tmp_path: Path, npz_files: Files, make: Maker, variant: str, dtype: str, needles: list[str]
) -> None:
    path = make(tmp_path, npz_files)
    with pytest.raises(InputError) as info:
        load_weights(path, variant, dtype)
    _message(info, f"weights file {path}: ", *needles)


def test_npz_needs_no_keras(tmp_path: Path) -> None:
    """The .npz path imports neither Keras nor the reference; .keras then says it needs Keras."""
    script = textwrap.dedent(
        """
        import sys
        for name in ("keras", "tensorflow", "h5py", "reference"):
            sys.modules[name] = None  # any import of them now fails
        from pathlib import Path
        from compare.errors import InputError
        from compare.inputs.weights import initial_weights, load_weights, save_weights
        path = Path(sys.argv[1])
        weights = initial_weights("classic", "float64", 7)
        save_weights(path, weights, "classic", "float64")
        back = load_weights(path, "classic", "float64")
        assert all(back[k].tobytes() == weights[k].tobytes() for k in weights)
        for name in ("w.keras", "w.weights.h5"):
            other = path.with_name(name)
            other.write_bytes(path.read_bytes())
            try:
                load_weights(other, "classic", "float64")
            except InputError as exc:
                print(exc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, str(tmp_path / "w.npz")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert all("needs Keras" in line for line in lines), lines


# --- Keras: round trips ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras() -> Any:
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def reference(keras: Any) -> Any:
    import reference

    return reference


@pytest.fixture(scope="module")
def keras_model(reference: Any) -> Callable[[str, str], Any]:
    """One Keras LeNet-5 per variant and dtype for the module; every use assigns all weights."""
    models: dict[tuple[str, str], Any] = {}

    def get(variant: str, dtype: str) -> Any:
        if (variant, dtype) not in models:
            models[variant, dtype] = reference.build_lenet5(variant, dtype)
        return models[variant, dtype]

    return get


@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_keras_agrees_on_the_layout(
    reference: Any, keras_model: Callable[[str, str], Any], variant: str, dtype: str
) -> None:
    with keras_quiet():
        theirs = reference.get_weights(keras_model(variant, dtype))
    assert {k: (v.shape, v.dtype) for k, v in theirs.items()} == expected_layout(variant, dtype)
    assert list(theirs) == KEYS


@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_round_trip_in_memory(
    reference: Any, keras_model: Callable[[str, str], Any], variant: str, dtype: str
) -> None:
    weights = rich_weights(variant, dtype)
    model = keras_model(variant, dtype)
    with keras_quiet():
        reference.set_weights(model, scratch_round_trip(weights, variant, dtype))
        back = reference.get_weights(model)
    assert_bit_exact(scratch_round_trip(back, variant, dtype), weights)


@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_round_trip_npz_keras_h5(
    tmp_path: Path,
    reference: Any,
    keras_model: Callable[[str, str], Any],
    variant: str,
    dtype: str,
) -> None:
    """scratch -> .npz -> Keras -> .weights.h5 (Keras's own writer) -> scratch."""
    weights = rich_weights(variant, dtype, 1)
    save_weights(tmp_path / "a.npz", scratch_round_trip(weights, variant, dtype), variant, dtype)
    model = keras_model(variant, dtype)
    with keras_quiet():
        reference.set_weights(model, load_weights(tmp_path / "a.npz", variant, dtype))
        model.save_weights(str(tmp_path / "b.weights.h5"))
    back = load_weights(tmp_path / "b.weights.h5", variant, dtype)
    assert_bit_exact(scratch_round_trip(back, variant, dtype), weights)


@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_round_trip_h5_keras_npz(
    tmp_path: Path,
    reference: Any,
    keras_model: Callable[[str, str], Any],
    variant: str,
    dtype: str,
) -> None:
    """scratch -> .weights.h5 -> Keras (its own reader) -> .npz -> scratch."""
    weights = rich_weights(variant, dtype, 2)
    save_weights(
        tmp_path / "a.weights.h5", scratch_round_trip(weights, variant, dtype), variant, dtype
    )
    model = keras_model(variant, dtype)
    with keras_quiet():
        model.load_weights(str(tmp_path / "a.weights.h5"))
        save_weights(tmp_path / "b.npz", reference.get_weights(model), variant, dtype)
    back = load_weights(tmp_path / "b.npz", variant, dtype)
    assert_bit_exact(scratch_round_trip(back, variant, dtype), weights)
    assert no_temporary_files(tmp_path)


@pytest.mark.parametrize(("variant", "dtype"), CASES)
def test_round_trip_keras_archive(
    tmp_path: Path, keras: Any, reference: Any, variant: str, dtype: str
) -> None:
    """scratch -> .keras -> Keras (load_model) -> .keras (Keras's own writer) -> scratch."""
    weights = rich_weights(variant, dtype, 3)
    save_weights(tmp_path / "a.keras", scratch_round_trip(weights, variant, dtype), variant, dtype)
    with keras_quiet():
        model = keras.saving.load_model(str(tmp_path / "a.keras"), compile=False)
        assert_bit_exact(reference.get_weights(model), weights)
        model.save(str(tmp_path / "b.keras"))
    back = load_weights(tmp_path / "b.keras", variant, dtype)
    assert_bit_exact(scratch_round_trip(back, variant, dtype), weights)
    assert no_temporary_files(tmp_path)


# --- Keras: bad files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_files(
    tmp_path_factory: pytest.TempPathFactory, keras: Any, reference: Any, npz_files: Files
) -> Files:
    """Good and bad files made once: LeNet-5 weights of both variants and dtypes, other models,
    a Lambda layer, NaN weights (which save_weights refuses, so Keras writes them)."""
    folder = tmp_path_factory.mktemp("keras")
    files = dict(npz_files)
    for name, variant, dtype in [
        ("k32", "keras-docs", "float32"),
        ("k64", "keras-docs", "float64"),
        ("c32", "classic", "float32"),
    ]:
        weights = initial_weights(variant, dtype, 0)
        for suffix in (".weights.h5", ".keras"):
            files[name + suffix] = folder / f"{name}{suffix}"
            save_weights(files[name + suffix], weights, variant, dtype)

    layers = keras.layers
    others = {
        "dense": keras.Sequential([keras.Input((4,)), layers.Dense(3, name="fc1")]),
        "lambda": keras.Sequential([keras.Input((4,)), layers.Lambda(lambda x: 2 * x)]),
        "tanh": reference.build_lenet5("keras-docs", "float32"),
        "nan": reference.build_lenet5("keras-docs", "float32"),
    }
    others["tanh"].get_layer("conv1").activation = keras.activations.tanh
    nan_weights = _non_finite("fc2/bias", 2, np.nan)
    with keras_quiet():
        reference.set_weights(others["tanh"], initial_weights("keras-docs", "float32", 0))
        reference.set_weights(others["nan"], nan_weights)
        for name, model in others.items():
            files[name + ".keras"] = folder / f"{name}.keras"
            model.save(str(files[name + ".keras"]))
            if name != "lambda":
                files[name + ".weights.h5"] = folder / f"{name}.weights.h5"
                model.save_weights(str(files[name + ".weights.h5"]))

    import h5py

    files["swapped.weights.h5"] = folder / "swapped.weights.h5"
    shutil.copy(files["k32.weights.h5"], files["swapped.weights.h5"])
    with h5py.File(files["swapped.weights.h5"], "r+") as h5:  # same shapes, wrong places
        a, b = "layers/conv2d/vars/0", "layers/dense/vars/0"
        first, second = h5[a][()], h5[b][()]
        del h5[a], h5[b]
        h5[a], h5[b] = second, first
    files["plain.weights.h5"] = folder / "plain.weights.h5"
    with h5py.File(files["plain.weights.h5"], "w") as h5:
        h5["x"] = np.zeros(3)
    return files


BAD_KERAS_FILES = [
    # .weights.h5
    pytest.param(
        _raw("w.weights.h5", None), "keras-docs", "float32", ["no such file"], id="h5-missing"
    ),
    pytest.param(
        _folder("w.weights.h5"), "keras-docs", "float32", ["not a regular file"], id="h5-folder"
    ),
    pytest.param(
        _raw("w.weights.h5", b""), "keras-docs", "float32", ["file is empty"], id="h5-empty"
    ),
    pytest.param(
        _copy("k32.weights.h5", "w.weights.h5", lambda b: b[: len(b) // 2]),
        "keras-docs",
        "float32",
        ["not a readable HDF5 file", "truncated"],
        id="h5-truncated",
    ),
    pytest.param(
        _copy("k32", "w.weights.h5"),
        "keras-docs",
        "float32",
        ["not a readable HDF5 file", "signature"],
        id="h5-is-npz",
    ),
    pytest.param(
        _copy("plain.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float32",
        ["holds no layer weights"],
        id="h5-not-keras",
    ),
    pytest.param(
        _copy("c32.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float32",
        [
            "not LeNet-5 keras-docs weights",
            "needs shape (256, 120) (fc1/kernel)",
            "the file has (400, 120)",
        ],
        id="h5-classic-as-keras-docs",
    ),
    pytest.param(
        _copy("k32.weights.h5", "w.weights.h5"),
        "classic",
        "float32",
        ["needs shape (400, 120) (fc1/kernel)", "the file has (256, 120)"],
        id="h5-keras-docs-as-classic",
    ),
    pytest.param(
        _copy("dense.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float32",
        ["holds 2 arrays of shapes (4, 3), (3,); the model has 10"],
        id="h5-other-model",
    ),
    pytest.param(
        _copy("k32.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float64",
        ["holds float32 arrays; expected float64", "cast"],
        id="h5-float32-as-64",
    ),
    pytest.param(
        _copy("k64.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float32",
        ["holds float64 arrays; expected float32"],
        id="h5-float64-as-32",
    ),
    pytest.param(
        _copy("swapped.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float32",
        ["Keras cannot load it into LeNet-5 keras-docs", "could not be loaded"],
        id="h5-arrays-swapped",
    ),
    pytest.param(
        _copy("nan.weights.h5", "w.weights.h5"),
        "keras-docs",
        "float32",
        ["'fc2/bias' has 2 non-finite"],
        id="h5-nan",
    ),
    # .keras
    pytest.param(
        _raw("w.keras", None), "keras-docs", "float32", ["no such file"], id="keras-missing"
    ),
    pytest.param(
        _folder("w.keras"), "keras-docs", "float32", ["not a regular file"], id="keras-folder"
    ),
    pytest.param(
        _raw("w.keras", b""), "keras-docs", "float32", ["file is empty"], id="keras-empty"
    ),
    pytest.param(
        _copy("k32.keras", "w.keras", lambda b: b[: len(b) // 2]),
        "keras-docs",
        "float32",
        ["not a readable .keras archive"],
        id="keras-truncated",
    ),
    pytest.param(
        _copy("k32.weights.h5", "w.keras"),
        "keras-docs",
        "float32",
        ["not a .keras archive (no zip header)"],
        id="keras-is-h5",
    ),
    pytest.param(
        _copy("k32", "w.keras"),
        "keras-docs",
        "float32",
        ["no config.json inside"],
        id="keras-is-npz",
    ),
    pytest.param(
        _copy("c32.keras", "w.keras"),
        "keras-docs",
        "float32",
        ["not a LeNet-5 keras-docs model: layer 'conv1' has padding='same'; expected 'valid'"],
        id="keras-classic-as-keras-docs",
    ),
    pytest.param(
        _copy("tanh.keras", "w.keras"),
        "keras-docs",
        "float32",
        ["layer 'conv1' has activation='tanh'; expected 'relu'"],
        id="keras-other-activation",
    ),
    pytest.param(
        _copy("dense.keras", "w.keras"),
        "keras-docs",
        "float32",
        ["its layers are fc1; expected conv1, pool1, conv2"],
        id="keras-other-model",
    ),
    pytest.param(
        _copy("lambda.keras", "w.keras"),
        "keras-docs",
        "float32",
        ["Keras cannot load it", "Lambda", "safe_mode"],
        id="keras-lambda",
    ),
    pytest.param(
        _copy("k32.keras", "w.keras"),
        "keras-docs",
        "float64",
        ["'conv1/kernel' has dtype float32; expected float64"],
        id="keras-float32-as-64",
    ),
    pytest.param(
        _copy("nan.keras", "w.keras"),
        "keras-docs",
        "float32",
        ["'fc2/bias' has 2 non-finite"],
        id="keras-nan",
    ),
]


@pytest.mark.parametrize(("make", "variant", "dtype", "needles"), BAD_KERAS_FILES)
def test_bad_keras_file(
    tmp_path: Path, keras_files: Files, make: Maker, variant: str, dtype: str, needles: list[str]
) -> None:
    path = make(tmp_path, keras_files)
    with pytest.raises(InputError) as info:
        load_weights(path, variant, dtype)
    _message(info, f"weights file {path}: ", *needles)


@pytest.mark.parametrize("name", ["k32.weights.h5", "k32.keras"])
def test_good_keras_files_load(keras_files: Files, name: str) -> None:
    """The fixture's good files are good: the bad ones fail for the reason named, not another."""
    assert_bit_exact(
        load_weights(keras_files[name], "keras-docs", "float32"),
        initial_weights("keras-docs", "float32", 0),
    )
