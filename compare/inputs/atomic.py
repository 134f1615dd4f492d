"""Output files and folders: checked before the long work, written atomically, nothing lost.

Files:

- :func:`check_output_file`: the pre-flight check of a ``--json`` / ``--plot`` / weights target,
  run before any long work (see its docstring for what is refused).
- :func:`atomic_output`: a temporary path to write one file to, moved over the target on
  success; :func:`write_text_atomic`: one text file through it.

Folders (report folders):

- :func:`check_output_folder`: the pre-flight check of a report folder ``--out``.
- :func:`write_folder`: a whole folder built beside its target and moved in complete; the one
  it replaces becomes its *previous* (see :func:`previous_path`).

What is guaranteed (docs/guarantees.md says it for users):

- A reader sees the old file or folder, or the new one, never half of one. An error, an
  interrupt (Ctrl-C, SIGTERM) or a full disk leaves the target as it was and removes our
  temporaries; every ``OSError`` (ENOSPC, EACCES, ENAMETOOLONG, EROFS, ...) becomes a one-line
  :class:`~compare.errors.InputError`.
- A FIFO, socket or device (or a symbolic link to one) is never replaced by a regular file,
  a folder never by a file, and a read-only file is not replaced. A symbolic link to a regular
  file is followed: the file it points to is replaced, the link stays.
- Nothing of the user's is deleted: a report folder is moved or deleted only if it holds our
  marker file :data:`REPORT_MARKER`, or is a report written before the marker existed (only
  report files: :data:`LEGACY_REPORT_FILES`), or is empty; anything else in the way is refused.
- Temporaries are hidden siblings of the target named ``.lp-<pid>-<8 chars>.<kind>`` (kind
  ``tmp``: a file's folder; ``build``: a report being built; ``old``: the previous report being
  deleted), short so that a target name of any legal length works. Each is locked (``flock``)
  by the process using it. One left by a killed process (SIGKILL, power loss) is removed by the
  next write into the same folder when nobody holds its lock and its process is gone, or it is
  older than :data:`STALE_AFTER_SECONDS`.
- Writers of one report folder are serialised by a lock file beside it (``.lp-<hash>.lock``,
  ``fcntl.flock``, non-blocking, removed after use): a second writer gets a one-line error.
  (Where the file system has no ``flock``, writers are not serialised.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from compare.errors import InputError
from compare.inputs.npz import one_line, shown

TEMP_PREFIX: Final = ".lp-"
REPORT_MARKER: Final = ".lenet-parity-report"
# A folder of only these files, with report.md and verdict.json or matrix.json among them, is a
# report (or matrix report) lenet-parity wrote before report folders had the marker.
LEGACY_REPORT_FILES: Final = frozenset(
    {
        "verdict.json",
        "checks.csv",
        "curves.csv",
        "loss.png",
        "forward.png",
        "gradient.png",
        "report.md",
        "index.html",
        "matrix.json",
        "matrix.csv",
        "heatmap.png",
    }
)
STALE_AFTER_SECONDS: Final = 600
DEFAULT_NAME_MAX: Final = 255  # when os.pathconf cannot tell

_TEMP_NAME: Final = re.compile(r"\.lp-(\d{1,10})-[a-z0-9_]{8}\.(tmp|build|old)")
_LOCK_NAME: Final = re.compile(r"\.lp-[0-9a-f]{16}\.lock")
_MARKER_TEXT: Final = (
    "This folder was written by lenet-parity. The next report written into its place moves\n"
    "it aside as the previous report (deleting the previous one before it). Folders without\n"
    "this file are never moved or deleted.\n"
)


# -- messages ---------------------------------------------------------------------------------
def _what(path: Path, flag: str | None) -> str:
    return f"{flag} {shown(path)}" if flag else f"cannot write {shown(path)}"


def _reason(exc: OSError) -> str:
    """An OSError on one line, without the path (the message names it already)."""
    if exc.errno is not None and exc.strerror:
        return exc.strerror + (" (the disk is full)" if exc.errno == errno.ENOSPC else "")
    return one_line(exc)


def _kind(mode: int) -> str | None:
    """What a special file is, or None for a regular file or a folder."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        return "a special file"
    return None


def _encodable(path: Path, what: str) -> None:
    """Refuse a path the operating system cannot take (a NUL byte, an unpaired surrogate that
    is not an undecodable byte). Names that are not UTF-8 are fine: they are shown escaped."""
    try:
        encoded = os.fsencode(path)
    except (UnicodeEncodeError, ValueError) as exc:
        raise InputError(f"{what}: the path cannot be encoded ({one_line(exc)})") from None
    if b"\0" in encoded:
        raise InputError(f"{what}: the path contains a NUL byte")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def _check_name(path: Path, what: str) -> None:
    length, limit = len(os.fsencode(path.name)), _name_max(path.parent)
    if length > limit:
        raise InputError(f"{what}: its name is {length} bytes long; the file system allows {limit}")


def _check_folder(folder: Path, what: str, probe: bool) -> None:
    """``folder`` exists, is a folder and we can create files in it (by making and removing a
    temporary folder there when ``probe``)."""
    if not folder.exists():
        raise InputError(f"{what}: folder {shown(folder)} does not exist")
    if not folder.is_dir():
        raise InputError(f"{what}: {shown(folder)} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what}: folder {shown(folder)} is not writable")
    if probe:
        try:
            os.rmdir(tempfile.mkdtemp(dir=folder, prefix=_temp_prefix(), suffix=".tmp"))
        except OSError as exc:
            raise InputError(
                f"{what}: cannot create files in folder {shown(folder)} ({_reason(exc)})"
            ) from exc


def _temp_prefix() -> str:
    return f"{TEMP_PREFIX}{os.getpid()}-"


# -- files ------------------------------------------------------------------------------------
def _file_target(path: Path, what: str) -> Path:
    """The file that writing ``path`` replaces (a symbolic link followed), refused when it is a
    folder, a special file or read-only; its folder must exist and be writable."""
    _encodable(path, what)
    _check_name(path, what)
    link = path.is_symlink()
    target = Path(os.path.realpath(path)) if link else path
    try:
        info = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        info = None  # the folder checks below say what is missing
    if info is not None:
        via = f" (the link points to {shown(target)})" if link else ""
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{what}: it is a folder{via}")
        kind = _kind(info.st_mode)
        if kind is not None:
            raise InputError(
                f"{what}: it is {kind}{via}; only regular files are written, and a special "
                "file is never replaced by one"
            )
        if not os.access(target, os.W_OK):
            raise InputError(f"{what}: it is read-only{via}; it is not replaced")
    _check_folder(target.parent, what, probe=False)
    return target


def check_output_file(path: Path, flag: str | None = None) -> Path:
    """Check, before any long work, that ``path`` can be written (atomically) and return the
    file that will be replaced (``path``, or where its symbolic link points).

    Refused with one line (``flag``, e.g. ``"--json"``, starts it; else ``"cannot write
    PATH"``): a folder; a FIFO, socket or device, or a link to one; a read-only file; a path
    with a NUL byte; a name longer than the file system allows; a folder that does not exist,
    is not writable, or where a file cannot be created (tried: a temporary folder is made and
    removed).
    """
    path = Path(path)
    what = _what(path, flag)
    try:
        target = _file_target(path, what)
        _check_folder(target.parent, what, probe=True)
    except OSError as exc:
        raise InputError(f"{what}: {_reason(exc)}") from exc
    return target


@contextlib.contextmanager
def atomic_output(path: Path, flag: str | None = None) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s name, in a new hidden folder beside it, to write;
    if the block succeeds it atomically replaces ``path`` (the file's data is synced first, so
    a full disk is reported here; an existing file's permission bits are kept). The temporary
    folder is always removed; an ``OSError`` in the block or here becomes an InputError and
    leaves ``path`` as it was.

    Any writer works (the file is made by whoever writes it, with the usual new-file mode), and
    writers that check the name (Keras wants ``.keras`` / ``.weights.h5``) see the real one.
    """
    path = Path(path)
    what = _what(path, flag)
    folder: Path | None = None
    hold: int | None = None
    try:
        target = _file_target(path, what)
        clean_stale(target.parent)
        folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temp_prefix(), suffix=".tmp"))
        hold = _hold(folder)
        tmp = folder / target.name
        yield tmp
        _replace_file(tmp, target, path, what)
    except OSError as exc:
        raise InputError(f"{what}: {_reason(exc)}") from exc
    finally:
        _release(hold)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _replace_file(tmp: Path, target: Path, path: Path, what: str) -> None:
    if not tmp.is_file():
        raise InputError(f"{what}: nothing was written")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    try:
        info = target.stat()
    except FileNotFoundError:
        info = None
    if info is not None:  # it may have changed during the long work
        if stat.S_ISDIR(info.st_mode) or _kind(info.st_mode) is not None:
            _file_target(path, what)  # raises the one-line refusal
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
    os.replace(tmp, target)
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system can)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, flag: str | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one,
    never half of one (see :func:`atomic_output`). Characters UTF-8 cannot encode (the
    surrogates that stand for undecodable bytes of a file name) are written as ``\\udcXX``."""
    with (
        atomic_output(path, flag) as tmp,
        tmp.open("x", encoding="utf-8", errors="backslashreplace") as f,
    ):
        f.write(text)


# -- report folders ---------------------------------------------------------------------------
def previous_path(out: Path, previous_name: str | None = None) -> Path:
    """Where the report folder ``out`` keeps its previous one: ``previous_name`` beside it if
    given, else ``previous`` beside it for a folder named ``latest`` (``reports/latest`` →
    ``reports/previous``) and ``<name>-previous`` for any other name (``a`` → ``a-previous``),
    so that report folders side by side each keep their own. A name too long for the file
    system is shortened (its start, a hash, ``-previous``)."""
    out = Path(out)
    if previous_name is None:
        previous_name = "previous" if out.name == "latest" else f"{out.name}-previous"
    encoded = os.fsencode(previous_name)
    if len(encoded) > _name_max(out.parent):
        digest = hashlib.sha256(encoded).hexdigest()[:8]
        previous_name = os.fsdecode(encoded[:200]) + f"-{digest}-previous"
    return out.parent / previous_name


def _folder_target(path: Path, what: str) -> Path:
    _encodable(path, what)
    out = Path(os.path.realpath(path))
    if not out.name or out == out.parent:
        raise InputError(f"{what}: a report folder cannot be the root folder")
    return out


def _ours(folder: Path) -> str | None:
    """``"report"`` for a folder lenet-parity wrote (it holds the marker file, or it is a report
    written before the marker existed: see :data:`LEGACY_REPORT_FILES`), ``"empty"`` for an
    empty folder, None for anything else."""
    try:
        marker = os.lstat(folder / REPORT_MARKER)
    except FileNotFoundError:
        pass
    else:
        return "report" if stat.S_ISREG(marker.st_mode) else None
    entries = list(os.scandir(folder))
    if not entries:
        return "empty"
    names = {e.name for e in entries}
    legacy = (
        all(e.is_file(follow_symlinks=False) for e in entries)
        and names <= LEGACY_REPORT_FILES
        and "report.md" in names
        and bool(names & {"verdict.json", "matrix.json"})
    )
    return "report" if legacy else None


def _check_replaceable(folder: Path, what: str, role: str) -> None:
    """``folder`` (the report folder or its previous) may be replaced: it does not exist, or it
    is a folder lenet-parity wrote, or an empty one."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return
    where = f"{shown(folder)}{role}"
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"{what}: {where} is a symbolic link; it is never replaced")
    if stat.S_ISREG(info.st_mode):
        raise InputError(f"{what}: {where} is a file, not a report folder; it is never replaced")
    kind = _kind(info.st_mode)
    if kind is not None:
        raise InputError(f"{what}: {where} is {kind}; it is never replaced")
    if _ours(folder) is None:
        raise InputError(
            f"{what}: {where} is a folder lenet-parity did not write (no {REPORT_MARKER} in "
            "it), so nothing in it is moved or deleted: choose another folder, or move it away"
        )


def _checked_folder(path: Path, what: str, previous_name: str | None) -> tuple[Path, Path]:
    out = _folder_target(path, what)
    previous = previous_path(out, previous_name)
    if previous == out:
        raise InputError(
            f"{what}: a report cannot be written to {shown(out)}: that name keeps the last one"
        )
    _check_name(out, what)
    _check_folder(out.parent, what, probe=True)
    _check_replaceable(out, what, "")
    _check_replaceable(previous, what, " (where the report there would be kept)")
    return out, previous


def check_output_folder(
    path: Path, flag: str | None = None, previous_name: str | None = None
) -> Path:
    """Check, before any long work, that a report folder can be written to ``path`` (see
    :func:`write_folder`) and return the folder that will be written (symbolic links resolved).

    Refused with one line: the root folder; an existing file, special file or symbolic link
    where the folder or its previous would go; a folder lenet-parity did not write (no
    :data:`REPORT_MARKER` in it, and not empty) there; a parent folder that does not exist or
    is not writable; a name too long; a report folder another run is writing now.
    """
    path = Path(path)
    what = _what(path, flag)
    try:
        out, _ = _checked_folder(path, what, previous_name)
        with _target_lock(out, what):
            pass
    except OSError as exc:
        raise InputError(f"{what}: {_reason(exc)}") from exc
    return out


def write_folder(
    out: Path,
    build_into: Callable[[Path], None],
    previous_name: str | None = None,
    flag: str | None = None,
) -> Path:
    """Fill a report folder ``out`` with ``build_into(folder)`` and return ``out``.

    Everything is built in a hidden temporary folder beside ``out`` (``.lp-<pid>-….build``),
    with the marker file :data:`REPORT_MARKER` added; only a complete report is moved in. An
    existing ``out`` becomes its previous (:func:`previous_path`: ``reports/latest`` →
    ``reports/previous``, ``x`` → ``x-previous``), and the previous one there is deleted — but
    only folders holding the marker (or empty) are ever moved or deleted: anything else at
    either place is refused first (see :func:`check_output_folder`). Writers of one folder are
    serialised by a lock beside it; the loser gets a one-line InputError. An exception or
    interrupt while building leaves ``out`` and its previous as they were and removes the
    temporary folder; an ``OSError`` becomes an InputError. Stale temporaries of killed runs
    beside ``out`` are removed first (see the module docstring).
    """
    out = Path(out)
    what = _what(out, flag)
    build: Path | None = None
    discard: Path | None = None
    hold: int | None = None
    try:
        real, previous = _checked_folder(out, what, previous_name)
        with _target_lock(real, what):
            clean_stale(real.parent)
            real, previous = _checked_folder(out, what, previous_name)  # under the lock
            try:
                build = Path(
                    tempfile.mkdtemp(dir=real.parent, prefix=_temp_prefix(), suffix=".build")
                )
                hold = _hold(build)
                os.chmod(build, 0o755)  # mkdtemp makes it private (0700); a report is for reading
                build_into(build)
                (build / REPORT_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
                discard = _commit(build, real, previous, what)
            finally:
                _release(hold)
                for leftover in (build, discard):
                    if leftover is not None and os.path.lexists(leftover):
                        shutil.rmtree(leftover, ignore_errors=True)
    except OSError as exc:
        raise InputError(f"{what}: {_reason(exc)}") from exc
    return out


def _commit(build: Path, out: Path, previous: Path, what: str) -> Path | None:
    """Move ``out`` to ``previous`` (the older previous to a temporary name, returned for
    deletion) and ``build`` to ``out``; on failure, put back what was moved."""
    discard: Path | None = None
    moved_out = False
    try:
        if os.path.lexists(previous):
            if _ours(previous) == "report":
                discard = previous.parent / (_temp_prefix() + secrets.token_hex(4) + ".old")
                os.rename(previous, discard)
            else:
                os.rmdir(previous)  # empty (checked): fails if something appeared in it
        if os.path.lexists(out):
            if _ours(out) == "report":
                os.rename(out, previous)
                moved_out = True
            else:
                os.rmdir(out)
        os.rename(build, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            if moved_out and not os.path.lexists(out):
                os.rename(previous, out)
            if discard is not None and not os.path.lexists(previous):
                os.rename(discard, previous)
                discard = None
        raise InputError(f"{what}: cannot move the report into place ({_reason(exc)})") from exc
    return discard


# -- locks and stale temporaries --------------------------------------------------------------
def _hold(folder: Path) -> int | None:
    """Lock our temporary ``folder`` (``flock`` on it) while we use it, so that no cleaner
    takes it for a stale one; None where the file system cannot lock folders."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing releases the flock


def _lock_path(out: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(out.name)).hexdigest()[:16]
    return out.parent / f"{TEMP_PREFIX}{digest}.lock"


@contextlib.contextmanager
def _target_lock(out: Path, what: str) -> Iterator[None]:
    """Hold the lock of report folder ``out``: ``flock`` on a lock file beside it, taken
    without waiting (a second writer gets a one-line InputError) and removed on release. The
    file is unlinked while still locked, so a writer that opened it before checks, once it has
    the lock, that the path still names the file it locked, and else tries again."""
    lock = _lock_path(out)
    fd: int | None = None
    for _ in range(20):
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"{what}: another lenet-parity run is writing this report folder now "
                f"(it holds {shown(lock)}); try again when it has finished"
            ) from None
        except OSError:  # no flock on this file system: writers are not serialised
            os.close(fd)
            fd = None
            break
        if _same_file(fd, lock):
            break
        os.close(fd)
        fd = None
    else:
        raise InputError(f"{what}: cannot take the lock {shown(lock)} (it keeps changing)")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        _release(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _locked(path: str, directory: bool) -> bool | None:
    """Whether someone holds the flock of ``path`` (None: cannot tell here)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove our stale temporaries in ``folder`` and return them: folders named
    ``.lp-<pid>-<8 chars>.(tmp|build|old)``, owned by this user, whose lock nobody holds and
    whose process is gone (or which are older than :data:`STALE_AFTER_SECONDS`), and lock files
    ``.lp-<hash>.lock`` nobody holds. Nothing else is ever touched; errors are ignored."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        path = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_uid != os.geteuid():
                continue
            match = _TEMP_NAME.fullmatch(entry.name)
            if match is not None and stat.S_ISDIR(info.st_mode):
                if _locked(entry.path, directory=True):
                    continue
                old = now - info.st_mtime > STALE_AFTER_SECONDS
                if old or not _pid_alive(int(match[1])):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            elif (
                _LOCK_NAME.fullmatch(entry.name)
                and stat.S_ISREG(info.st_mode)
                and _remove_free_lock(path)
            ):
                removed.append(path)
        except OSError:
            continue
    return removed


def _remove_free_lock(lock: Path) -> bool:
    """Unlink a lock file nobody holds (while holding it ourselves: see _target_lock)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(fd, lock):
            return False
        os.unlink(lock)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
