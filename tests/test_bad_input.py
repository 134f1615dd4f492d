"""`lenet-parity check` on bad input: exit code 2, one line on stderr, no traceback, and an
output file from an earlier run left as it was."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from compare.cli import main
from compare.inputs.weights import initial_weights, save_weights

VARIANT, DTYPE = "keras-docs", "float32"


def _good_npz(path: Path) -> dict[str, np.ndarray]:
    weights = initial_weights(VARIANT, DTYPE, 0)
    save_weights(path, weights, VARIANT, DTYPE)
    return weights


def _npz(path: Path, **arrays: object) -> None:
    np.savez(path, **arrays)  # type: ignore[arg-type]


def empty_npz(p: Path) -> None:
    p.write_bytes(b"")


def truncated_npz(p: Path) -> None:
    _good_npz(p)
    p.write_bytes(p.read_bytes()[:500])


def object_npz(p: Path) -> None:
    weights: dict[str, object] = dict(initial_weights(VARIANT, DTYPE, 0))
    weights["conv1/kernel"] = np.array([{"a": 1}], dtype=object)
    np.savez(p, allow_pickle=True, **weights)  # type: ignore[arg-type]


def wrong_keys_npz(p: Path) -> None:
    weights = initial_weights(VARIANT, DTYPE, 0)
    weights["fc3/kernel"] = weights.pop("fc2/kernel")
    _npz(p, **weights)


def wrong_shape_npz(p: Path) -> None:
    weights = initial_weights(VARIANT, DTYPE, 0)
    weights["fc1/kernel"] = weights["fc1/kernel"][:100]
    _npz(p, **weights)


def nonfinite_npz(p: Path) -> None:
    weights = initial_weights(VARIANT, DTYPE, 0)
    weights["conv2/bias"][3] = np.nan
    _npz(p, **weights)


def other_architecture_h5(p: Path) -> None:
    save_weights(p, initial_weights("classic", DTYPE, 0), "classic", DTYPE)


def not_a_zip(p: Path) -> None:
    p.write_bytes(b"\x00garbage" * 10)


def wrong_shape_data(p: Path) -> None:
    _npz(p, x=np.zeros((10, 32, 32), np.uint8), y=np.zeros(10, np.int64))


def zip_without_arrays(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")


CASES: list[tuple[str, str, Callable[[Path], None] | None, list[str], str]] = [
    # (id, file name, maker, extra args (FILE = the file), expected substring of the message)
    ("unknown-variant", "", None, ["--variant", "lenet"], "invalid choice: 'lenet'"),
    ("unknown-dtype", "", None, ["--dtype", "float16"], "invalid choice: 'float16'"),
    ("bad-batch-size", "", None, ["--batch-size", "0"], "expected an integer >= 1"),
    ("bad-tolerance", "", None, ["--atol", "forward=-1"], "--atol: expected a finite number >= 0"),
    ("bad-tolerance-kind", "", None, ["--rtol", "backward=1"], "unknown check kind"),
    ("missing-weights", "nope.npz", None, ["--weights", "FILE"], "nope.npz"),
    ("empty-npz", "w.npz", empty_npz, ["--weights", "FILE"], "empty"),
    ("truncated-npz", "w.npz", truncated_npz, ["--weights", "FILE"], "w.npz"),
    ("object-array-npz", "w.npz", object_npz, ["--weights", "FILE"], "object array"),
    ("wrong-keys", "w.npz", wrong_keys_npz, ["--weights", "FILE"], "fc3/kernel"),
    ("wrong-shape", "w.npz", wrong_shape_npz, ["--weights", "FILE"], "fc1/kernel"),
    ("non-finite", "w.npz", nonfinite_npz, ["--weights", "FILE"], "non-finite"),
    (
        "other-architecture-h5",
        "w.weights.h5",
        other_architecture_h5,
        ["--weights", "FILE"],
        "(400, 120)",
    ),
    ("weights-not-a-zip", "w.keras", not_a_zip, ["--weights", "FILE"], "w.keras"),
    ("unsupported-suffix", "w.pt", not_a_zip, ["--weights", "FILE"], "unsupported file type"),
    ("missing-data", "digits.npz", None, ["--data", "FILE"], "digits.npz"),
    ("wrong-shape-data", "digits.npz", wrong_shape_data, ["--data", "FILE"], "28"),
    ("data-without-arrays", "digits.npz", zip_without_arrays, ["--data", "FILE"], "digits.npz"),
    ("json-folder-missing", "", None, ["--json", "no/such/folder/v.json"], "does not exist"),
    ("nesterov-without-momentum", "", None, ["--nesterov"], "nesterov needs a momentum"),
    (
        "momentum-out-of-range",
        "",
        None,
        ["--momentum", "1.5"],
        "expected a finite number >= 0 and < 1",
    ),
    ("negative-epochs", "", None, ["--epochs", "-1"], "--epochs"),
    ("beyond-the-envelope", "", None, ["--epochs", "6"], "calibrated up to step 160"),
    (
        "training-mutant-no-training",
        "",
        None,
        ["--epochs", "0", "--mutant", "shuffle-differs"],
        "only in training",
    ),
]


@pytest.mark.parametrize(
    ("name", "maker", "args", "needle"),
    [pytest.param(f, m, a, n, id=i) for i, f, m, a, n in CASES],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    maker: Callable[[Path], None] | None,
    args: list[str],
    needle: str,
) -> None:
    target = tmp_path / (name or "unused")
    if maker is not None:
        maker(target)
    earlier = tmp_path / "verdict.json"
    earlier.write_text("an earlier verdict\n")
    argv = ["check", *(str(target) if a == "FILE" else a for a in args)]
    if "--json" not in argv:
        argv += ["--json", str(earlier)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lenet-parity"), err
    assert ": error: " in err, err
    assert needle in err, err
    assert "Traceback" not in err
    assert earlier.read_text() == "an earlier verdict\n"  # nothing already written is lost


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    object_npz(path)
    run = subprocess.run(
        [sys.executable, "-m", "compare.cli", "check", "--weights", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("lenet-parity")]
    assert lines == [run.stderr.strip().splitlines()[-1]] and "object array" in lines[0]
    assert "Traceback" not in run.stderr


def test_a_report_into_a_missing_folder_exits_2_and_keeps_the_old_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--out", str(tmp_path / "no" / "such" / "latest")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err, err
