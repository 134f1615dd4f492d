"""Faults and hostile input (issue 17): one line, exit 2 (130 for an interrupt), nothing lost.

One section per class of fault: headers that lie, numbers the libraries cannot take, output
targets, the report folder's life cycle, silent casts of .keras files, signals. Everything but
the .keras case and the signal cases (which run the real console entry point) uses
compare.inputs only, so this file needs no Keras and runs in well under a minute.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compare.cli import arg_type
from compare.errors import InputError
from compare.inputs import atomic, npz, validate
from compare.inputs.atomic import (
    REPORT_MARKER,
    atomic_output,
    check_output_file,
    check_output_folder,
    clean_stale,
    previous_path,
    write_folder,
    write_text_atomic,
)
from compare.inputs.data import load_data
from compare.inputs.weights import initial_weights, load_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
VARIANT, DTYPE = "keras-docs", "float32"
IS_ROOT = os.geteuid() == 0


def one_line(info: pytest.ExceptionInfo[BaseException], *needles: str) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# -- 1. headers that lie ------------------------------------------------------------------------
def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A valid .npy (version 1.0) header declaring ``shape`` of ``descr``."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], claim: dict[str, int] | None = None) -> Path:
    """An archive of ``members``; ``claim`` makes the zip directory lie about their sizes."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        for info in archive.filelist:
            info.file_size = (claim or {}).get(info.filename, info.file_size)
    return path


def data_members(**replace: bytes) -> dict[str, bytes]:
    members = {
        "x.npy": npy_bytes(np.zeros((10, 28, 28), np.uint8)),
        "y.npy": npy_bytes(np.arange(10, dtype=np.int64)),
    }
    return {**members, **replace}


def weight_members(key: str, content: bytes) -> dict[str, bytes]:
    weights = initial_weights(VARIANT, DTYPE, 0)
    members = {f"{k}.npy": npy_bytes(v) for k, v in weights.items()}
    members[f"{key}.npy"] = content
    return members


class Tripwire:
    """Unpickling this creates the folder ``path``: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def pickled(tmp_path: Path) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([Tripwire(tmp_path / "unpickled")], dtype=object), allow_pickle=True)
    return buffer.getvalue()


LIARS: list[tuple[str, Callable[[Path], bytes], list[str]]] = [
    # (id, member content, needles)
    ("huge-shape", lambda _: npy_header((10**12,)), ["shape (1000000000000,)", "2.0 GiB"]),
    (
        "larger-than-the-member",
        lambda _: npy_header((100_000_000,)) + b"\0" * 64,  # 800 MB declared, 64 bytes held
        ["shape (100000000,)", "holds 64 bytes"],
    ),
    ("garbage", lambda _: b"these are not the bytes of an array" * 3, ["is not a .npy array"]),
    ("truncated", lambda _: npy_header((1000,)) + b"\0" * 80, ["holds 80 bytes"]),
    ("too-long", lambda _: npy_header((4,)) + b"\0" * 40, ["holds 40 bytes"]),
    ("pickled", pickled, ["is an object array", "unpickle"]),
    ("negative-shape", lambda _: npy_header((-5,)), ["negative shape"]),
    ("empty-member", lambda _: b"", ["is not a .npy array"]),
]


@pytest.mark.parametrize(("make", "needles"), [pytest.param(m, n, id=i) for i, m, n in LIARS])
def test_a_lying_data_file_is_refused_from_its_header(
    tmp_path: Path, make: Callable[[Path], bytes], needles: list[str]
) -> None:
    path = write_zip(tmp_path / "digits.npz", data_members(**{"x.npy": make(tmp_path)}))
    with pytest.raises(InputError) as info:
        load_data(str(path))
    one_line(info, f"data file {path}: ", "'x'", *needles)
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize(("make", "needles"), [pytest.param(m, n, id=i) for i, m, n in LIARS])
def test_a_lying_weights_file_is_refused_from_its_header(
    tmp_path: Path, make: Callable[[Path], bytes], needles: list[str]
) -> None:
    path = write_zip(tmp_path / "w.npz", weight_members("fc1/kernel", make(tmp_path)))
    with pytest.raises(InputError) as info:
        load_weights(path, VARIANT, DTYPE)
    one_line(info, f"weights file {path}: ", "'fc1/kernel'", *needles)
    assert not (tmp_path / "unpickled").exists()


def test_lies_are_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    """A header declaring 1.5 GiB (under the 2 GiB limit) in a member holding 64 bytes: refused
    from the zip directory, before NumPy allocates (tracemalloc sees NumPy's allocations)."""
    import tracemalloc

    lie = npy_header((200_000_000,)) + b"\0" * 64
    path = write_zip(tmp_path / "w.npz", weight_members("fc1/kernel", lie))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="holds 64 bytes"):
            load_weights(path, VARIANT, DTYPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024**2


def test_too_many_images_are_refused_from_the_header(tmp_path: Path) -> None:
    """400,000 images are 2.3 GiB as float64 (as uint8, 314 MB: under the per-array limit).
    The zip directory lies too (it claims the 314 MB): the count is refused first."""
    header = npy_header((400_000, 28, 28), "|u1")
    claim = {"x.npy": len(header) + 400_000 * 28 * 28}
    path = write_zip(tmp_path / "big.npz", data_members(**{"x.npy": header}), claim)
    with pytest.raises(InputError) as info:
        load_data(str(path))
    one_line(info, "400,000 images", "at most")


def test_a_lying_zip_directory_is_caught_while_reading(tmp_path: Path) -> None:
    """The directory claims the bytes the header declares; the data are not there."""
    header = npy_header((1000,))
    path = write_zip(tmp_path / "w.npz", weight_members("fc2/bias", header), {})
    members = weight_members("fc2/bias", npy_header((84,)) + b"\0" * 8)
    path = write_zip(tmp_path / "w.npz", members, {"fc2/bias.npy": 128 + 84 * 4})
    with pytest.raises(InputError) as info:
        load_weights(path, VARIANT, DTYPE)
    one_line(info, "'fc2/bias'")


def test_the_bundled_layout_still_loads_through_the_safe_reader(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "d.npz", data_members())
    data = load_data(str(path), n_heldout=2)
    assert data.x_train.shape == (8, 28, 28, 1)
    fortran = np.asfortranarray(np.zeros((10, 28, 28), np.uint8))
    path = write_zip(tmp_path / "f.npz", data_members(**{"x.npy": npy_bytes(fortran)}))
    assert load_data(str(path), n_heldout=2).x_heldout.shape == (2, 28, 28, 1)


def test_duplicate_and_encrypted_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in data_members().items():
            archive.writestr(name, content)
        with pytest.warns(UserWarning, match="Duplicate"):
            archive.writestr("x.npy", npy_bytes(np.ones((10, 28, 28), np.uint8)))
    with pytest.raises(InputError) as info:
        load_data(str(path))
    one_line(info, "two members named 'x.npy'")
    encrypted = bytearray(write_zip(tmp_path / "enc.npz", data_members()).read_bytes())
    for offset in (6, encrypted.rfind(b"PK\x01\x02") + 8):  # local and central flag bits
        encrypted[offset] |= 1
    (tmp_path / "enc.npz").write_bytes(bytes(encrypted))
    with pytest.raises(InputError) as info:
        load_data(str(tmp_path / "enc.npz"))
    one_line(info, "encrypted")


# -- 2. numbers ---------------------------------------------------------------------------------
def test_the_seed_limit_is_numpys() -> None:
    np.random.seed(validate.MAX_SEED)  # noqa: NPY002 - the limit being documented
    with pytest.raises(ValueError, match="2\\*\\*32 - 1"):
        np.random.seed(validate.MAX_SEED + 1)  # noqa: NPY002
    assert validate.seed(validate.MAX_SEED) == 2**32 - 1
    with pytest.raises(InputError) as info:
        validate.seed(2**32)
    one_line(info, "seed must be an integer >= 0 and <= 4294967295", "Received: seed=4294967296")


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: validate.seed(-1), "seed must be"),
        (lambda: validate.seed(True), "Received: seed=True"),
        (lambda: validate.seed(3.0), "Received: seed=3.0"),
        (lambda: validate.seed("7"), "Received: seed='7'"),
        (lambda: validate.epochs(10**6), "<= 100"),
        (lambda: validate.epochs(0, minimum=1), ">= 1"),
        (lambda: validate.batch_size(0), ">= 1 and <= 65536"),
        (lambda: validate.batch_size(10**9), "<= 65536"),
        (lambda: validate.repeats(10**7), "<= 1000"),
        (lambda: validate.seed_count(10**9), "<= 10000"),
        (lambda: validate.seed_range(2**32 - 5, 10), "last seed"),
        (lambda: validate.steps(100, 60_000, 1), "6,000,000 steps"),
        (lambda: validate.momentum(1.0), ">= 0 and < 1"),
        (lambda: validate.momentum(float("nan")), "finite"),
        (lambda: validate.learning_rate(0.0), "> 0"),
        (lambda: validate.learning_rate(float("inf")), "finite"),
        (lambda: validate.tolerance(-1e-9), ">= 0"),
        (lambda: validate.safety_factor(0.5), ">= 1"),
        (lambda: validate.n_synthetic(10**9), "<= 70000"),
    ],
)
def test_numbers_out_of_range_are_one_line(call: Callable[[], object], needle: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    one_line(info, needle)


def test_numbers_in_range_pass() -> None:
    assert validate.epochs(np.int64(3)) == 3 and type(validate.epochs(np.int64(3))) is int
    assert validate.momentum(0) == 0.0 and validate.momentum(0.99) == 0.99
    assert validate.steps(100, 60_000, 6_000) == 1_000
    assert validate.seed_range(2**32 - 10, 10) == range(2**32 - 10, 2**32)


def test_argparse_types_say_the_range_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--seed", type=arg_type(validate.seed))
    parser.add_argument("--epochs", type=arg_type(validate.epochs, minimum=1))
    parser.add_argument("--momentum", type=arg_type(validate.momentum))
    args = parser.parse_args(["--seed", "4294967295", "--epochs", "3", "--momentum", "0.9"])
    assert (args.seed, args.epochs, args.momentum) == (2**32 - 1, 3, 0.9)
    for argv, needle in [
        (["--seed", "4294967296"], "expected an integer >= 0 and <= 4294967295"),
        (["--seed", "1e3"], "got '1e3'"),
        (["--epochs", "1000000"], "argument --epochs: expected an integer >= 1 and <= 100"),
        (["--epochs", "ten"], "got 'ten'"),
        (["--momentum", "inf"], "expected a finite number >= 0 and < 1, got 'inf'"),
        (["--seed", "9" * 5000], "expected an integer"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err


def test_the_apis_check_numbers_before_any_work() -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="seed"):
        load_data("bundled", seed=2**32)
    with pytest.raises(InputError, match="n_synthetic"):
        load_data("synthetic", n_synthetic=10**9)
    with pytest.raises(InputError, match="seed"):
        initial_weights(VARIANT, DTYPE, 2**40)
    assert time.perf_counter() - started < 5


# -- 3. output targets --------------------------------------------------------------------------
def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(atomic.TEMP_PREFIX))


def test_a_folder_is_not_a_file_target(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        check_output_file(tmp_path, "--json")
    one_line(info, f"--json {tmp_path}: it is a folder")
    with pytest.raises(InputError, match="it is a folder"):
        write_text_atomic(tmp_path, "{}")


def test_a_fifo_or_a_link_to_a_device_is_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "v.json"
    os.mkfifo(fifo)
    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    for target, kind in ((fifo, "a FIFO"), (link, "a character device")):
        with pytest.raises(InputError) as info:
            check_output_file(target, "--json")
        one_line(info, kind, "never replaced")
        with pytest.raises(InputError, match=kind):
            write_text_atomic(target, "{}")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []


def test_a_link_to_a_file_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    assert check_output_file(link) == real
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_missing_or_unwritable_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        check_output_file(tmp_path / "no" / "such" / "v.json", "--json")
    one_line(info, "--json", "does not exist")
    (tmp_path / "v.json").write_text("")
    with pytest.raises(InputError, match=r"v\.json is not a folder"):
        check_output_file(tmp_path / "v.json" / "x.json")
    if IS_ROOT:
        return  # root writes anywhere: the remaining cases cannot be made
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            check_output_file(locked / "v.json", "--json")
        with pytest.raises(InputError, match="not writable"):
            check_output_folder(locked / "latest", "--out")
    finally:
        locked.chmod(0o700)


def test_a_name_of_any_legal_length_works(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = tmp_path / ("n" * (limit - 5) + ".json")
    write_text_atomic(longest, "{}\n", "--json")
    assert longest.read_text() == "{}\n"
    report = write_folder(tmp_path / ("r" * limit), build("a"))
    write_folder(report, build("b"))
    assert contents(report) == {"report.md": "b"}
    kept = previous_path(report)
    assert contents(kept) == {"report.md": "a"} and len(os.fsencode(kept.name)) <= limit
    with pytest.raises(InputError) as info:
        check_output_file(tmp_path / ("n" * (limit + 1)), "--json")
    one_line(info, f"its name is {limit + 1} bytes long")
    assert leftovers(tmp_path) == []


def test_a_name_that_is_not_utf8_is_written_and_shown(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff.json")
    target = tmp_path / name
    write_text_atomic(target, f"written to {target}\n")  # the surrogates are escaped
    assert os.fsencode(target.name) in os.listdir(os.fsencode(tmp_path))
    assert "\\udce9" in target.read_text(encoding="utf-8")
    with pytest.raises(InputError) as info:
        check_output_file(tmp_path / os.fsdecode(b"\xe9") / "x.json", "--json")
    message = one_line(info, "\\udce9")
    message.encode("utf-8")  # printable
    with pytest.raises(InputError, match="NUL"):
        check_output_file(tmp_path / "a\0b.json")


@pytest.mark.parametrize("where", ["writer", "sync"])
def test_a_full_disk_is_one_line_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    target = tmp_path / "v.json"
    target.write_text("the earlier verdict\n")
    disk_full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "sync":

        def fsync(fd: int) -> None:
            raise disk_full

        monkeypatch.setattr(os, "fsync", fsync)

    def write() -> None:
        with atomic_output(target, "--json") as tmp:
            tmp.write_text("half of")
            if where == "writer":
                raise disk_full

    with pytest.raises(InputError) as info:
        write()
    one_line(info, f"--json {target}: No space left on device (the disk is full)")
    assert target.read_text() == "the earlier verdict\n"
    assert leftovers(tmp_path) == []


def test_a_real_full_device_is_one_line(tmp_path: Path) -> None:
    """/dev/full: every write fails with ENOSPC, as a full disk does (through a writer that
    writes to a file of its own: the error reaches atomic_output's block)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    target = tmp_path / "v.json"

    def write() -> None:
        with atomic_output(target) as tmp, open("/dev/full", "w") as full:
            tmp.write_text("x")
            full.write("x" * 100_000)

    with pytest.raises(InputError) as info:
        write()
    one_line(info, "No space left on device")
    assert not target.exists() and leftovers(tmp_path) == []


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_text("old")
    target.chmod(0o600)
    write_text_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "new"


@pytest.mark.skipif(IS_ROOT, reason="root ignores file permissions")
def test_a_read_only_file_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "v.json"
    target.write_text("keep")
    target.chmod(0o444)
    with pytest.raises(InputError, match="read-only"):
        write_text_atomic(target, "new")
    assert target.read_text() == "keep"


def test_weights_are_saved_through_the_same_checks(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "w.npz")
    with pytest.raises(InputError) as info:
        save_weights(tmp_path / "w.npz", initial_weights(VARIANT, DTYPE, 0), VARIANT, DTYPE)
    one_line(info, "a FIFO")
    assert stat.S_ISFIFO((tmp_path / "w.npz").lstat().st_mode)


# -- 4. the report folder's life cycle ----------------------------------------------------------
def build(text: str) -> Callable[[Path], None]:
    def into(folder: Path) -> None:
        (folder / "report.md").write_text(text)

    return into


def contents(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() if p.is_file() else "/"
        for p in sorted(folder.rglob("*"))
        if p.name != REPORT_MARKER
    }


def test_out_dot_never_touches_the_users_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "previous").mkdir(parents=True)
    (project / "previous" / "notes.txt").write_text("mine")
    (project / "code.py").write_text("mine too")
    monkeypatch.chdir(project)
    before = contents(tmp_path)
    calls: list[Callable[[], object]] = [
        lambda: check_output_folder(Path("."), "--out"),
        lambda: write_folder(Path("."), build("report")),
        lambda: write_folder(Path("previous"), build("report"), previous_name="x"),
    ]
    for call in calls:
        with pytest.raises(InputError) as info:
            call()
        one_line(info, "did not write", "nothing in it is moved or deleted")
    assert contents(tmp_path) == before


def test_out_file_is_refused_and_kept(tmp_path: Path) -> None:
    mine = tmp_path / "results.txt"
    mine.write_text("the user's file")
    with pytest.raises(InputError) as info:
        write_folder(mine, build("report"))
    one_line(info, "is a file, not a report folder")
    assert mine.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]


def test_a_foreign_previous_is_refused_and_kept(tmp_path: Path) -> None:
    write_folder(tmp_path / "latest", build("one"))
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError) as info:
        check_output_folder(tmp_path / "latest", "--out")
    one_line(info, "previous (where the report there would be kept)", "did not write")
    with pytest.raises(InputError, match="did not write"):
        write_folder(tmp_path / "latest", build("two"))
    assert (tmp_path / "previous" / "thesis.tex").read_text() == "years of work"
    assert contents(tmp_path / "latest") == {"report.md": "one"}


def test_each_report_folder_keeps_its_own_previous(tmp_path: Path) -> None:
    for text in ("a1", "a2", "a3"):
        write_folder(tmp_path / "a", build(text))
    for text in ("b1", "b2"):
        write_folder(tmp_path / "b", build(text))
    for text in ("l1", "l2"):
        write_folder(tmp_path / "latest", build(text))  # the default: reports/previous
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a",
        "a-previous",
        "b",
        "b-previous",
        "latest",
        "previous",
    ]
    assert contents(tmp_path / "a") == {"report.md": "a3"}
    assert contents(tmp_path / "a-previous") == {"report.md": "a2"}
    assert contents(tmp_path / "b-previous") == {"report.md": "b1"}
    assert contents(tmp_path / "previous") == {"report.md": "l1"}
    assert (tmp_path / "a" / REPORT_MARKER).is_file()


def test_a_report_from_before_the_marker_is_still_replaced(tmp_path: Path) -> None:
    """reports/latest and reports/previous written by an earlier version (no marker, only
    report files) move as before; one file of the user's among them and they are refused."""
    for name, text in (("latest", "old latest"), ("previous", "old previous")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.md").write_text(text)
        (tmp_path / name / "verdict.json").write_text("{}")
    write_folder(tmp_path / "latest", build("new"))
    assert contents(tmp_path / "previous")["report.md"] == "old latest"
    (tmp_path / "previous" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write"):
        write_folder(tmp_path / "latest", build("newer"))
    assert (tmp_path / "previous" / "notes.txt").read_text() == "mine"


def test_an_empty_folder_may_be_written_into(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    write_folder(tmp_path / "mine", build("first"))
    assert contents(tmp_path / "mine") == {"report.md": "first"}
    assert not (tmp_path / "mine-previous").exists()


def test_an_error_while_building_changes_nothing(tmp_path: Path) -> None:
    write_folder(tmp_path / "latest", build("one"))
    write_folder(tmp_path / "latest", build("two"))
    before = contents(tmp_path)

    def disk_full(folder: Path) -> None:
        (folder / "report.md").write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(InputError) as info:
        write_folder(tmp_path / "latest", disk_full, flag="--out")
    one_line(info, "--out", "No space left on device")
    assert contents(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "previous"]


def fake_temporary(folder: Path, pid: int, kind: str = "build", age: float = 0.0) -> Path:
    path = folder / f"{atomic.TEMP_PREFIX}{pid}-abcd1234.{kind}"
    path.mkdir()
    (path / "report.md").write_text("half a report")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_ours_are_cleaned_and_nothing_else(tmp_path: Path) -> None:
    dead = fake_temporary(tmp_path, dead_pid())
    old = fake_temporary(tmp_path, os.getpid(), "old", age=atomic.STALE_AFTER_SECONDS + 60)
    live = fake_temporary(tmp_path, os.getpid(), "tmp")  # a live process's, recent
    stray_lock = tmp_path / f"{atomic.TEMP_PREFIX}{'0' * 16}.lock"
    stray_lock.write_text("")
    others = [tmp_path / ".lp-notes", tmp_path / ".lp-123-abcd1234.keep", tmp_path / "x.build"]
    for other in others:
        other.mkdir()
    write_folder(tmp_path / "latest", build("one"))
    assert not dead.exists() and not old.exists() and not stray_lock.exists()
    assert live.exists() and all(o.exists() for o in others)
    assert clean_stale(tmp_path) == []


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from compare.entry import _install
    from compare.inputs.atomic import write_folder

    _install()  # SIGTERM unwinds the stack, as in the console script

    def slow(folder):
        (folder / "report.md").write_text("half")
        print("building", flush=True)
        time.sleep(float(sys.argv[2]))
        (folder / "report.md").write_text("child")

    write_folder(Path(sys.argv[1]), slow)
    print("done", flush=True)
    """
)


def start_writer(out: Path, seconds: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "building\n", child.stderr.read() if child.stderr else ""
    return child


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_build_leaves_the_report_and_its_temporary_is_cleaned(
    tmp_path: Path, how: signal.Signals
) -> None:
    out = tmp_path / "latest"
    write_folder(out, build("one"))
    child = start_writer(out, 60)
    (temporary,) = [p for p in tmp_path.iterdir() if p.name.endswith(".build")]
    assert f"-{child.pid}-" in temporary.name
    child.send_signal(how)
    child.communicate(timeout=30)
    assert contents(out) == {"report.md": "one"}
    if how == signal.SIGTERM:  # the finally blocks ran
        assert leftovers(tmp_path) == []
        return
    assert temporary.exists()  # SIGKILL: nothing ran
    write_folder(out, build("two"))
    assert leftovers(tmp_path) == []
    assert contents(out) == {"report.md": "two"} and contents(tmp_path / "previous") == {
        "report.md": "one"
    }


def test_concurrent_writers_are_serialised_and_the_loser_told(tmp_path: Path) -> None:
    out = tmp_path / "latest"
    child = start_writer(out, 3)
    try:
        calls: list[Callable[[], object]] = [
            lambda: check_output_folder(out, "--out"),
            lambda: write_folder(out, build("parent"), flag="--out"),
        ]
        for call in calls:
            with pytest.raises(InputError) as info:
                call()
            one_line(info, "--out", "another lenet-parity run is writing this report folder")
    finally:
        stdout, stderr = child.communicate(timeout=30)
    assert child.returncode == 0 and stdout == "done\n", stderr
    assert contents(out) == {"report.md": "child"}
    write_folder(out, build("parent"))  # the lock is free again
    assert contents(out) == {"report.md": "parent"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "previous"]


# -- 5. silent casts ------------------------------------------------------------------------------
KERAS_CASES = textwrap.dedent(
    """
    import io, sys, zipfile
    from pathlib import Path
    import h5py
    from compare.errors import InputError
    from compare.inputs.weights import initial_weights, load_weights, save_weights

    folder = Path(sys.argv[1])
    good, mixed = folder / "k32.keras", folder / "mixed.keras"
    save_weights(good, initial_weights("keras-docs", "float32", 0), "keras-docs", "float32")
    # The same float32 model, its stored arrays made float64: load_model would cast them back
    # silently, and the loaded weights would be float32 as asked.
    with zipfile.ZipFile(good) as a, zipfile.ZipFile(mixed, "w") as c:
        for name in a.namelist():
            data = a.read(name)
            if name == "model.weights.h5":
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as h5:
                    paths = []
                    h5.visititems(lambda p, o: paths.append(p) if hasattr(o, "dtype") else None)
                    for path in paths:
                        value = h5[path][()]
                        del h5[path]
                        h5[path] = value.astype("float64")
                data = buffer.getvalue()
            c.writestr(name, data)
    load_weights(good, "keras-docs", "float32")  # the untouched file loads
    for dtype in ("float32", "float64"):
        try:
            load_weights(mixed, "keras-docs", dtype)
            print("LOADED", dtype)
        except InputError as exc:
            print(exc)
    """
)


def test_a_float64_keras_file_is_never_cast_to_float32(tmp_path: Path) -> None:
    """A .keras of a float32 model whose stored arrays are float64 (a whole float64 model is
    refused by dtype already: tests/test_weights.py)."""
    pytest.importorskip("keras")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", KERAS_CASES, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and not any(line.startswith("LOADED") for line in lines), lines
    assert "mixed.keras: holds float64 arrays; expected float32" in lines[0]
    assert "cast them silently" in lines[0]
    assert "mixed.keras: 'conv1/kernel' has dtype float32; expected float64" in lines[1]


# -- 6. signals ----------------------------------------------------------------------------------
# The child announces on stderr that the program's own code starts (the interpreter's start-up
# before that, 30-60 ms, is Python's), then runs the console entry point: the delays fall into
# importing compare.cli (NumPy, pandas: ~0.7 s) and the check's start.
ENTRY = "import sys; sys.stderr.write('ready\\n'); sys.stderr.flush(); " + (
    "from compare.entry import main; main()"
)


def spawn(*argv: str, **environ: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", **environ}
    env = {k: v for k, v in env.items() if v}
    child = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert child.stderr is not None and child.stderr.readline() == "ready\n"
    return child


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5, 1.0])
def test_ctrl_c_at_any_moment_is_a_clean_exit_130(tmp_path: Path, delay: float) -> None:
    child = spawn("check", "--epochs", "0", "--json", str(tmp_path / "v.json"))
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "lenet-parity: interrupted"
    assert not (tmp_path / "v.json").exists() and leftovers(tmp_path) == []


def test_sigterm_is_a_clean_exit_143() -> None:
    child = spawn("check", "--epochs", "0")
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "lenet-parity: terminated"


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_closed_stdout_is_a_quiet_exit(unbuffered: str) -> None:
    """141 when the lost output is noticed (at the final flush); unbuffered, argparse's help
    printer swallows the error itself and the exit is 0. Never a traceback."""
    child = spawn("--help", PYTHONUNBUFFERED=unbuffered)
    assert child.stdout is not None
    child.stdout.close()  # the reader stops before the program writes
    _, err = child.communicate(timeout=60)
    assert child.returncode == (0 if unbuffered else 141), err
    assert err == ""


def test_entry_returns_the_commands_code() -> None:
    child = spawn("--version")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.startswith("lenet-parity "), err
    child = spawn("check", "--batch-size", "0")
    _, err = child.communicate(timeout=60)
    assert child.returncode == 2 and err.count("\n") == 1, err


def test_npz_limits_are_documented() -> None:
    assert npz.MAX_ARRAY_BYTES == 2 * 1024**3
    text = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    for needle in ("130", "143", "141", "2 GiB", str(validate.MAX_SEED), REPORT_MARKER):
        assert needle in text, needle
