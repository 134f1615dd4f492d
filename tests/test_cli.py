"""The lenet-parity command: exit codes, one-line errors, atomic JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from compare import __version__
from compare.cli import main
from compare.errors import InputError


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_points_at_main() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "lenet-parity"]
    assert script.value == "compare.entry:main"


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"lenet-parity {__version__}")
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "train" in out
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    assert "--data" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["train", "--epochs", "0"], "--epochs: expected an integer >= 1"),
        (["train", "--variant", "lenet7"], "--variant: invalid choice"),
        (["train", "--dtype", "float16"], "--dtype: invalid choice"),
        (["train", "--learning-rate", "nan"], "--learning-rate: expected a finite number"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["train", "--data", "/no/such/file.npz"], "no such file"),
        (["train", "--data", "bundle"], "unknown data source 'bundle'"),
        (["train", "--momentum", "1.5"], "--momentum: expected a finite number >= 0 and < 1"),
        (["train", "--learning-rate", "-1"], "--learning-rate: expected a finite number > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("lenet-parity")
    assert needle in err
    assert "Traceback" not in err


def test_bad_data_file_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "digits.npz"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    code, _, err = run(capsys, "train", "--data", str(bad))
    assert code == 2
    assert err.count("\n") == 1
    assert str(bad) in err


def test_train_writes_history_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "history.json"
    code, out, err = run(
        capsys, "train", "--data", "synthetic", "--epochs", "2", "--batch-size", "64",
        "--json", str(target),
    )  # fmt: skip
    assert (code, err) == (0, "")
    record = json.loads(target.read_text())
    history = record["history"]
    # synthetic: 512 examples, 410 train / 102 held out -> ceil(410 / 64) = 7 steps per epoch
    assert history["steps_per_epoch"] == 7
    assert len(history["step_loss"]) == 14
    assert len(history["epoch_heldout_accuracy"]) == 2
    assert record["config"]["epochs"] == 2
    assert "final held-out accuracy" in out
    assert list(tmp_path.iterdir()) == [target]  # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_failed_run_keeps_existing_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "history.json"
    target.write_text("previous result\n")
    code, _, _ = run(
        capsys, "train", "--data", str(tmp_path / "missing.npz"), "--json", str(target)
    )
    assert code == 2
    assert target.read_text() == "previous result\n"


def test_json_into_missing_folder_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "train", "--json", str(tmp_path / "nope" / "h.json"))
    assert code == 2
    assert "does not exist" in err


def test_module_entry_point_exit_code(tmp_path: Path) -> None:
    """The real process: exit status 2 and one stderr line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "compare.cli", "train", "--data", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


# -- --model on matrix and mutants (repeatable, merged with --variant) --------------------------
def test_model_and_variant_are_repeatable_and_merged_in_order() -> None:
    from compare.cli import _models, build_parser

    parser = build_parser()
    given = ["seed000-cnn", "classic", "mine:build", "keras-docs", "seed000-cnn", "classic"]
    flags = ["--model", "--variant", "--model", "--variant", "--model", "--variant"]
    for command in ("matrix", "mutants"):
        args = parser.parse_args([command, *(a for p in zip(flags, given, strict=True) for a in p)])
        assert args.models == given
        assert _models(args, ["keras-docs"]) == [
            "seed000-cnn",
            "classic",
            "mine:build",
            "keras-docs",
        ]
        assert _models(parser.parse_args([command, "--variant", "classic"]), []) == ["classic"]
        assert _models(parser.parse_args([command]), ["keras-docs"]) == ["keras-docs"]
        # a model file must exist: checked before any run
        args = parser.parse_args([command, "--model", "x.py:build"])
        with pytest.raises(InputError, match=r"^model x\.py:build: file x\.py does not exist$"):
            _models(args, [])


def test_matrix_and_mutants_get_the_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the commands hand on (the runs themselves replaced): the models in order, each
    once, a file's relative path made absolute for the matrix's child processes."""
    from compare import cli
    from compare.sides import backends

    installed = backends.installed()
    if not installed:
        pytest.skip("no Keras backend is installed")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.keras").write_bytes(b"")  # only its existence is checked here
    seen: dict[str, Any] = {}

    def matrix(config: Any, progress: Any = None) -> Any:
        seen["matrix"] = config
        raise InputError("stop here")

    def catalogue(**options: Any) -> list[dict[str, Any]]:
        seen["mutants"] = options
        return []

    monkeypatch.setattr(cli.backend_matrix, "run_matrix", matrix)
    monkeypatch.setattr(cli, "run_catalogue", catalogue)
    argv = ["--model", "seed000-cnn", "--variant", "classic", "--model", "models/mine.keras"]
    argv += ["--variant", "classic", "--model", "seed000-cnn"]
    assert main(["matrix", "--backends", installed[0], *argv, "--out", "m"]) == 2
    assert capsys.readouterr().err == "lenet-parity: error: stop here\n"
    assert seen["matrix"].models == (
        "seed000-cnn",
        "classic",
        str(tmp_path / "models" / "mine.keras"),
    )
    assert seen["matrix"].epochs is None  # the check's default: one epoch or 200 steps
    assert main(["mutants", *argv, "--dtype", "float64"]) == 0
    assert seen["mutants"]["models"] == ["seed000-cnn", "classic", "models/mine.keras"]
    assert seen["mutants"]["dtypes"] == ["float64"]
    assert main(["mutants"]) == 0
    assert seen["mutants"]["models"] == ["classic", "keras-docs"]  # both LeNet-5s


@pytest.mark.parametrize("command", ["matrix", "mutants"])
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "lenet7"], "unknown model 'lenet7': expected a zoo name (keras-docs,"),
        (["--model", "seed000-cnn", "--model", ""], "unknown model ''"),
        (["--model", "no/such.keras"], "model file no/such.keras: does not exist"),
        (["--model", "no/such.py:build"], "model no/such.py:build: file no/such.py does not"),
        (["--variant", "seed000-cnn"], "--variant: invalid choice: 'seed000-cnn'"),
    ],
)
def test_a_bad_model_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], command: str, argv: list[str], needle: str
) -> None:
    """Refused before anything runs (no Keras, no child process)."""
    code, out, err = run(capsys, command, *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("lenet-parity"), err
    assert needle in err
    assert "Traceback" not in err
