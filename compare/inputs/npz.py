"""The one reader of ``.npz`` archives (data files and weight files), safe against lying headers.

An ``.npz`` is a zip archive of ``.npy`` members. :func:`read_npz` checks everything it can
before it allocates anything:

- the file: an existing, non-empty regular file that starts like a zip archive;
- the zip directory: no encrypted members, no two members of one name;
- every member's ``.npy`` header (read with :func:`numpy.lib.format.read_magic` and
  ``read_array_header_1_0`` / ``_2_0``, at most :data:`MAX_HEADER_BYTES` of it): a member must
  be a ``.npy`` array (not raw bytes under a ``.npy`` name), of a dtype that needs no pickle
  (no object arrays: they would be unpickled), of a shape whose byte size is at most
  :data:`MAX_ARRAY_BYTES` and exactly what the zip directory says the member holds after its
  header;
- the arrays it is asked for: at most :data:`MAX_ARCHIVE_BYTES` in all.

Only then are the chosen arrays read (``allow_pickle=False``), each to its end so that zip's
CRC check runs. Fortran order and either byte order are fine (NumPy reads them). Anything
wrong raises :class:`compare.errors.InputError` with one line naming the file and the member.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from compare.errors import InputError

# The largest array read from any .npz: 2 GiB. Keras's MNIST (60,000 uint8 images) is 47 MB;
# even its float64 copy is 376 MB, and the largest weight set here (classic LeNet-5 in float64)
# is 0.5 MB. A header declaring more is refused before anything is allocated.
MAX_ARRAY_BYTES: Final = 2 * 1024**3
# The most read from one archive, all chosen arrays together: 4 GiB.
MAX_ARCHIVE_BYTES: Final = 4 * 1024**3
# The longest .npy header read (NumPy's own default limit for untrusted files).
MAX_HEADER_BYTES: Final = 10_000
NPY_SUFFIX: Final = ".npy"

# RuntimeError covers zipfile's "encrypted" and NotImplementedError ("compression method").
READ_ERRORS: Final = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError)
_NPY_MAGIC: Final = b"\x93NUMPY"
_ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_MESSAGE: Final = 300  # characters kept of a third-party error message


@dataclasses.dataclass(frozen=True)
class Member:
    """One ``.npy`` member of an archive, as its header and the zip directory describe it."""

    key: str  # the array's name: the member's name less ".npy"
    name: str  # the member's name in the zip
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool
    nbytes: int  # what the header declares: prod(shape) * itemsize


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def brief(exc: BaseException) -> str:
    """:func:`one_line`, cut to a readable length (for third-party messages)."""
    text = one_line(exc)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def shown(path: object) -> str:
    """``path`` for a one-line message: control characters escaped, and bytes that are not
    UTF-8 (kept by Python as surrogates) shown as ``\\udcXX`` rather than failing to print."""
    text = str(path)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def size_text(nbytes: int) -> str:
    """A byte count for people: 8.0 TB, 2.0 GiB, 512 bytes."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    for unit, power in (("KiB", 1), ("MiB", 2), ("GiB", 3), ("TiB", 4), ("PiB", 5)):
        if nbytes < 1024 ** (power + 1) or unit == "PiB":
            return f"{nbytes / 1024**power:.1f} {unit}"
    return f"{nbytes} bytes"  # pragma: no cover - unreachable


def check_file(path: Path, where: str) -> None:
    """Fail with one line unless ``path`` is an existing, non-empty regular file."""
    try:
        if not path.exists():
            raise InputError(f"{where}: no such file")
        if not path.is_file():
            raise InputError(f"{where}: not a regular file")
        if path.stat().st_size == 0:
            raise InputError(f"{where}: file is empty")
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({one_line(exc)})") from exc
    except ValueError as exc:  # a NUL byte in the name
        raise InputError(f"{where}: not a usable file name ({one_line(exc)})") from exc


def check_zip_header(handle: IO[bytes], where: str, kind: str = "an .npz archive") -> None:
    """Fail with one line unless the file starts like a zip archive (rewinds the handle)."""
    try:
        magic = handle.read(6)
        handle.seek(0)
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({one_line(exc)})") from exc
    if magic == _NPY_MAGIC:
        raise InputError(f"{where}: is a single .npy array, not {kind}")
    if magic[:4] not in _ZIP_MAGICS:
        raise InputError(f"{where}: not {kind} (no zip header)")


Select = Callable[[list[str]], Sequence[str]]
Check = Callable[[Mapping[str, Member]], None]


def read_npz(
    path: Path, where: str, select: Select, check: Check | None = None
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` that ``select`` picks, after every check above.

    ``select`` gets the array names (members less ``.npy``, in archive order) and returns the
    ones to read, or raises :class:`InputError` for a file of the wrong layout; then every
    member's header is checked; then ``check`` (if given) gets every header (key →
    :class:`Member`) to refuse, before anything is read, what it can tell from them (shapes,
    dtypes). ``where`` starts every message (``"data file PATH"``).
    """
    check_file(path, where)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({one_line(exc)})") from exc
    with handle:
        check_zip_header(handle, where)
        return read_npz_handle(handle, where, select, check)


def read_npz_handle(
    handle: IO[bytes], where: str, select: Select, check: Check | None = None
) -> dict[str, np.ndarray]:
    """:func:`read_npz` on an open, seekable binary file (or a member of another zip)."""
    try:
        archive = zipfile.ZipFile(handle)
    except READ_ERRORS as exc:
        raise InputError(f"{where}: not a readable .npz archive ({brief(exc)})") from exc
    with archive:
        infos = _infos(archive, where)
        keys = list(select([_key(info.filename) for info in infos]))
        members = {m.key: m for m in (_header(archive, info, where) for info in infos)}
        if check is not None:
            check(members)
        total = sum(members[key].nbytes for key in keys)
        if total > MAX_ARCHIVE_BYTES:
            raise InputError(
                f"{where}: its arrays declare {size_text(total)} in all, more than the "
                f"{size_text(MAX_ARCHIVE_BYTES)} this program reads from one archive"
            )
        return {key: _read_member(archive, members[key], where) for key in keys}


def _infos(archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
    """The archive's file members; two of one name (or one array name) are refused."""
    infos: list[zipfile.ZipInfo] = []
    names: set[str] = set()
    keys: set[str] = set()
    for info in archive.infolist():
        if info.is_dir():
            continue
        if info.filename in names:
            raise InputError(f"{where}: holds two members named {shown(info.filename)!r}")
        if _key(info.filename) in keys:
            raise InputError(f"{where}: holds two arrays named {shown(_key(info.filename))!r}")
        names.add(info.filename)
        keys.add(_key(info.filename))
        infos.append(info)
    return infos


def headers(archive: zipfile.ZipFile, where: str) -> dict[str, Member]:
    """Every member of ``archive`` checked from its header and the zip directory (see the
    module docstring); nothing is allocated in proportion to what a header declares."""
    return {m.key: m for m in (_header(archive, info, where) for info in _infos(archive, where))}


def _key(name: str) -> str:
    return name[: -len(NPY_SUFFIX)] if name.endswith(NPY_SUFFIX) else name


def _refuse(where: str, key: str, problem: str) -> InputError:
    return InputError(f"{where}: not a readable .npz archive (at {shown(key)!r}): {problem}")


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> Member:
    key = _key(info.filename)
    if info.flag_bits & 0x1:
        raise _refuse(where, key, "the member is encrypted")
    fmt = np.lib.format
    try:
        with archive.open(info) as member:
            try:
                version = fmt.read_magic(member)
            except ValueError as exc:
                raise _refuse(
                    where,
                    key,
                    f"member {shown(info.filename)!r} is not a .npy array ({brief(exc)})",
                ) from None
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(
                    member, max_header_size=MAX_HEADER_BYTES
                )
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(
                    member, max_header_size=MAX_HEADER_BYTES
                )
            else:
                raise _refuse(
                    where, key, f"unsupported .npy format version {version[0]}.{version[1]}"
                )
            offset = member.tell()
    except InputError:
        raise
    except READ_ERRORS as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):  # pragma: no cover
            raise _refuse(where, key, _pickled(key)) from None
        raise _refuse(where, key, f"bad .npy header ({brief(exc)})") from exc
    if dtype.hasobject:
        raise _refuse(where, key, _pickled(key))
    if any(d < 0 for d in shape):
        raise _refuse(where, key, f"its header declares the negative shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    declared = f"its header declares shape {shape} of {dtype} ({size_text(nbytes)})"
    if nbytes > MAX_ARRAY_BYTES:
        raise _refuse(
            where,
            key,
            f"{declared}, more than the {size_text(MAX_ARRAY_BYTES)} this program reads "
            "as one array",
        )
    held = info.file_size - offset
    if held < nbytes:
        raise _refuse(where, key, f"{declared} but the member holds {max(held, 0)} bytes of data")
    if held > nbytes:
        raise _refuse(where, key, f"{declared} but the member holds {held} bytes of data")
    return Member(key, info.filename, tuple(shape), dtype, bool(fortran), nbytes)


def _pickled(key: str) -> str:
    return f"{shown(key)!r} is an object array; reading it would unpickle it, which is refused"


def _read_member(archive: zipfile.ZipFile, member: Member, where: str) -> np.ndarray:
    """The array, read to the member's end (so that zip checks its CRC)."""
    try:
        with archive.open(member.name) as stream:
            array = np.lib.format.read_array(
                stream, allow_pickle=False, max_header_size=MAX_HEADER_BYTES
            )
            if stream.read(1):
                raise _refuse(where, member.key, "data after the array")
    except InputError:
        raise
    except MemoryError:
        raise _refuse(
            where, member.key, f"not enough memory for its {size_text(member.nbytes)}"
        ) from None
    except READ_ERRORS as exc:
        raise _refuse(where, member.key, brief(exc)) from exc
    if array.shape != member.shape or array.dtype != member.dtype:  # pragma: no cover
        raise _refuse(where, member.key, "the array is not what its header declared")
    return array
