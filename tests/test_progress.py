"""The progress of the long commands (compare/tools/progress.py): a counter line per finished
job when stderr is not a terminal, a bar when it is; and matrix, mutants, calibrate and bench
each reporting every job through it. The tools run on fakes here (no Keras, no training)."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from compare.tools import bench, calibrate, matrix, mutants
from compare.tools.progress import Progress, is_terminal

COUNTER = re.compile(r"^(\d+)/(\d+) \[(\d+) s\] (.+)$")


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, and keeps what the bar wrote."""

    def isatty(self) -> bool:
        return True


def _counters(lines: list[str]) -> list[tuple[int, int, str]]:
    """(done, total, job) of every counter line; fails on any other line."""
    parsed = []
    for line in lines:
        match = COUNTER.match(line)
        assert match, f"not a counter line: {line!r}"
        parsed.append((int(match[1]), int(match[2]), match[4]))
    return parsed


# -- the helper --------------------------------------------------------------------------------
def test_a_piped_run_prints_a_counter_line_per_finished_job() -> None:
    lines: list[str] = []
    with Progress(3, "tool", lines.append, stream=io.StringIO()) as progress:
        assert not progress.bar
        for job in ("a", "b b", "c"):
            progress.finished(job)
        progress.note("not a job")
    assert lines[3] == "not a job"
    assert _counters(lines[:3]) == [(1, 3, "a"), (2, 3, "b b"), (3, 3, "c")]
    assert progress.done == 3


def test_on_a_terminal_a_bar_shows_and_pure_progress_lines_do_not() -> None:
    lines: list[str] = []
    terminal = FakeTerminal()
    with Progress(4, "calibrate", lines.append, stream=terminal) as progress:
        assert progress.bar
        progress.finished("float32 keras-docs seed 0")
        progress.finished("float32 keras-docs seed 1")
        shown = terminal.getvalue()
        progress.note("a child's other line")
    assert "calibrate" in shown and "2/4" in shown
    assert "float32 keras-docs seed 1" in shown  # the last finished job, beside the bar
    assert lines == ["a child's other line"]  # no counter lines: the bar says how far
    assert not progress.bar  # taken down on the way out


def test_on_a_terminal_result_lines_print_above_the_bar() -> None:
    lines: list[str] = []
    terminal = FakeTerminal()
    with Progress(2, "mutants", lines.append, results=True, stream=terminal) as progress:
        progress.finished("flatten-nchw keras-docs float64 caught=yes")
        assert progress.bar and "1/2" in terminal.getvalue()
    assert _counters(lines) == [(1, 2, "flatten-nchw keras-docs float64 caught=yes")]


def test_without_a_line_callback_nothing_shows_even_on_a_terminal() -> None:
    terminal = FakeTerminal()
    with Progress(2, "tool", None, stream=terminal) as progress:
        progress.finished("a")
        progress.note("b")
        assert not progress.bar
    assert terminal.getvalue() == ""


def test_the_bar_goes_to_stderr_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with Progress(1, "bench", print) as progress:
        assert progress.bar
        progress.finished("scratch warm-up")
    assert "bench" in terminal.getvalue()


def test_is_terminal_is_false_for_pipes_files_and_closed_streams() -> None:
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(io.StringIO())
    assert not is_terminal(closed)
    assert is_terminal(FakeTerminal())


# -- the tools report every job through it -----------------------------------------------------
def _fake_verdict(*args: Any, **kwargs: Any) -> Any:
    """A caught mutant, first failing at the forward check of flatten."""
    first = SimpleNamespace(kind="forward", name="flatten", step=None)
    return SimpleNamespace(first_failure=first, passed=False)


def test_mutants_prints_a_counter_line_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutants, "check_parity", _fake_verdict)
    lines: list[str] = []
    results = mutants.run_catalogue(
        variants=["keras-docs"],
        dtypes=["float32", "float64"],
        names=["flatten-nchw"],
        progress=lines.append,
    )
    assert len(results) == 2
    parsed = _counters(lines)
    assert [(done, total) for done, total, _ in parsed] == [(1, 2), (2, 2)]
    assert parsed[1][2].split()[:4] == ["flatten-nchw", "keras-docs", "float64", "caught=yes"]
    assert "first=forward flatten" in parsed[1][2]


def test_mutants_shows_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutants, "check_parity", _fake_verdict)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    lines: list[str] = []
    mutants.run_catalogue(
        variants=["keras-docs"], dtypes=["float64"], names=["flatten-nchw"], progress=lines.append
    )
    assert "mutants" in terminal.getvalue() and "1/1" in terminal.getvalue()
    assert len(_counters(lines)) == 1  # the results still print, above the bar


def test_calibrate_prints_a_counter_line_per_dtype_variant_and_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = SimpleNamespace(configure_determinism=lambda seed: None)
    monkeypatch.setattr(calibrate, "backend_module", lambda: backend)
    monkeypatch.setattr(calibrate, "check_backend_dtype", lambda backend, dtype: None)
    monkeypatch.setattr(calibrate, "spec_for", lambda config, backend: None)
    monkeypatch.setattr(calibrate, "collect", lambda *args: ([], None))
    lines: list[str] = []
    calibrate.measure(
        [0, 1], ["float32", "float64"], ["keras-docs"], batch_size=32, progress=lines.append
    )
    assert [job for _, _, job in _counters(lines)] == [
        "float32 keras-docs seed 0",
        "float32 keras-docs seed 1",
        "float64 keras-docs seed 0",
        "float64 keras-docs seed 1",
    ]
    assert {total for _, total, _ in _counters(lines)} == {4}


class _FakeWorker:
    def receive(self) -> dict[str, Any]:
        return {"environment": {}, "rss_start_mb": 1.0}

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if op == "train":
            return {"seconds": [0.5] * len(fields["epochs"]), "losses": [2.0]}
        if op == "predict":
            return {"seconds": 0.25}
        return {"max_rss_mb": 2.0}


def test_bench_prints_a_counter_line_per_timing_job() -> None:
    config = SimpleNamespace(implementations=("scratch", "jax"), repeats=2, epochs=1)
    lines: list[str] = []
    with Progress(2 * (1 + 2 * 2), "bench", lines.append) as progress:
        bench._measure(
            config, {n: _FakeWorker() for n in config.implementations}, progress.finished
        )  # type: ignore[arg-type]
    parsed = _counters(lines)
    assert [done for done, _, _ in parsed] == list(range(1, 11))
    jobs = [job for _, _, job in parsed]
    assert jobs[:2] == ["scratch warm-up: epoch 0.50 s", "keras/jax warm-up: epoch 0.50 s"]
    assert jobs[2:4] == ["scratch repeat 1: 0.500 s/epoch", "keras/jax repeat 1: 0.500 s/epoch"]
    assert jobs[4] == "scratch repeat 1: predict 0.250 s"
    assert jobs[6] == "keras/jax repeat 2: 0.500 s/epoch"  # the order rotates per repeat


class _FakeChild:
    """subprocess.Popen of a matrix child that prints two verdicts and one other line."""

    def __init__(self, command: list[str], **kwargs: Any) -> None:
        self.stdout: Iterator[str] = iter(
            ["PASS: scratch matches (keras-docs, float32)\n", "a warning\n", "FAIL: no\n"]
        )

    def __enter__(self) -> _FakeChild:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait(self) -> int:
        return 0

    def poll(self) -> int:
        return 0


def test_matrix_prints_a_counter_line_per_finished_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(matrix.subprocess, "Popen", _FakeChild)
    config = matrix.MatrixConfig(backends=("jax",), dtypes=("float32", "float64"))
    lines: list[str] = []
    with Progress(2, "matrix", lines.append, results=True) as progress:
        matrix._run_child("jax", config, tmp_path / "jax", progress)
    assert lines[1] == "jax: a warning"
    assert _counters([lines[0], lines[2]]) == [
        (1, 2, "jax PASS: scratch matches (keras-docs, float32)"),
        (2, 2, "jax FAIL: no"),
    ]


# -- --help: what each command does, how long it takes, the mutants ---------------------------
def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    from compare.cli import main

    assert main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone


def test_every_command_help_says_how_long_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    from compare.cli import TAKES, build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert set(TAKES) == set(commands)
    top = _help(capsys)
    for command, (short, _) in TAKES.items():
        assert f"{command} {short}" in top
        assert f"Time on this project's 2-core machine: {short} " in _help(capsys, command)


def test_mutants_and_check_help_list_every_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    from compare.sides.mutants import CATALOGUE

    mutants, check = _help(capsys, "mutants"), _help(capsys, "check")
    assert "scratch/" in check and "written from scratch in NumPy" in check
    for name, mutant in CATALOGUE.items():
        assert f" {name} " in check and f" {name} " in mutants
        assert " ".join(mutant.description.split()) in mutants
