"""The cross-backend matrix: the parity check on every Keras backend, and the backends against
each other, in one report.

Keras fixes its backend at import, so every backend runs in a child process of its own
(``python -m compare.tools.matrix``, with :func:`compare.sides.backends.child_env`). Each child runs
:func:`compare.parity.check_parity` for every requested variant and dtype and saves the
verdict (JSON) and the compared arrays (an ``.npz``, read back without pickle). The parent then
has, per variant and dtype:

- scratch vs each backend: that backend's verdict, judged against its own calibrated
  tolerances (the scratch loss path follows the backend: logits on TensorFlow, clipped
  probabilities on JAX and torch);
- each backend vs each other: the Keras side of one verdict against the Keras side of the
  other, check by check (forward, gradient, training; the finite differences are scratch's own),
  judged against the sum of the two backends' tolerances
  (:func:`compare.judge.tolerances.between_references`).

:func:`write_matrix` writes ``matrix.json``, ``matrix.csv``, ``report.md``, ``index.html`` and
``heatmap.png`` (the largest absolute error of every check in every comparison) atomically.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from compare.errors import ImplementationError, InputError
from compare.inputs.atomic import write_folder
from compare.judge import tolerances as tolerance_table
from compare.judge.checks import Check, Pair
from compare.output import matrix_report
from compare.output.text import summary
from compare.parity.run import check_parity, judge
from compare.sides import backends as keras_backends
from compare.tools.progress import Progress

SCRATCH: Final = "scratch"
KINDS_SHOWN: Final = ("forward", "gradient", "training")  # the kinds two backends share
_ARRAYS: Final = "pairs.npz"
_PAIRS: Final = "pairs.json"
_VERDICT: Final = "verdict.json"


@dataclasses.dataclass(frozen=True)
class MatrixConfig:
    """What the matrix runs: every backend × variant × dtype, each check with these settings."""

    backends: tuple[str, ...]
    variants: tuple[str, ...] = ("keras-docs",)
    dtypes: tuple[str, ...] = ("float32", "float64")
    seed: int = 0
    batch_size: int = 256
    data: str = "bundled"
    epochs: int = 1
    implementation: str | None = None  # MODULE:FACTORY; None: scratch

    @property
    def label(self) -> str:
        return self.implementation or SCRATCH

    def __post_init__(self) -> None:
        if not self.backends:
            raise InputError("the matrix needs at least one backend")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One comparison of the matrix: ``left`` (scratch or a backend) against ``right`` (a
    backend) for one variant and dtype."""

    left: str
    right: str
    variant: str
    dtype: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        """No check fails ("n/a" and "skipped" checks compared nothing)."""
        return not any(c.failed for c in self.checks)

    @property
    def label(self) -> str:
        return f"{self.left} vs {self.right}"

    def largest(self, kind: str) -> float | None:
        """The largest absolute error among the checks of ``kind`` (None: no such check)."""
        errors = [
            c.max_abs_err for c in self.checks if c.kind == kind and c.max_abs_err is not None
        ]
        return max(errors) if errors else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "right": self.right,
            "variant": self.variant,
            "dtype": self.dtype,
            "passed": self.passed,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclasses.dataclass(frozen=True)
class Matrix:
    config: MatrixConfig
    environments: dict[str, dict[str, Any]]  # backend -> its verdicts' environment
    loss_paths: dict[str, str]  # backend -> the scratch loss path its comparison used
    cells: list[Cell]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cells)

    def summary(self) -> str:
        return matrix_report.summary(self)

    def frame(self) -> pd.DataFrame:
        """One row per comparison: the largest absolute error per kind, and the result."""
        rows = []
        for c in self.cells:
            row: dict[str, Any] = {
                "comparison": c.label,
                "variant": c.variant,
                "dtype": c.dtype,
            }
            for kind in KINDS_SHOWN:
                value = c.largest(kind)
                row[f"{kind} max abs"] = "-" if value is None else f"{value:.2e}"
            failed = [ch for ch in c.checks if ch.failed]
            row["checks passed"] = f"{sum(ch.passed for ch in c.checks)}/{len(c.checks)}"
            row["result"] = "pass" if not failed else f"FAIL ({failed[0].kind} {failed[0].name})"
            rows.append(row)
        return pd.DataFrame(rows)

    def checks_frame(self) -> pd.DataFrame:
        """One row per check of every comparison (the CSV)."""
        return pd.DataFrame(
            [
                {"left": c.left, "right": c.right, "variant": c.variant, "dtype": c.dtype}
                | check.as_dict()
                for c in self.cells
                for check in c.checks
            ]
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "passed": self.passed,
            "config": dataclasses.asdict(self.config),
            "loss_paths": self.loss_paths,
            "environments": self.environments,
            "cells": [c.as_dict() for c in self.cells],
        }


# -- running -----------------------------------------------------------------------------------
def run_matrix(config: MatrixConfig, progress: Callable[[str], None] | None = None) -> Matrix:
    """Run every backend in its own process, then build the matrix. ``progress`` gets a
    counter line per finished check (or, on a terminal, the line above a bar: see
    :mod:`compare.tools.progress`)."""
    results: dict[str, dict[tuple[str, str], _Run]] = {}
    jobs = len(config.backends) * len(config.variants) * len(config.dtypes)
    with (
        tempfile.TemporaryDirectory(prefix="lenet-parity-matrix-") as tmp,
        Progress(jobs, "matrix", progress, results=True) as shown,
    ):
        for backend in config.backends:
            folder = Path(tmp) / backend
            _run_child(backend, config, folder, shown)
            results[backend] = {
                (variant, dtype): _Run.load(folder / f"{variant}-{dtype}")
                for variant in config.variants
                for dtype in config.dtypes
            }
    return build(config, results)


def _run_child(
    backend: str,
    config: MatrixConfig,
    folder: Path,
    progress: Progress,
) -> None:
    """``python -m compare.tools.matrix`` on ``backend``; each verdict line it prints is a
    finished job of ``progress`` (``3/12 [31 s] jax PASS: ...``), any other line a note."""
    folder.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "compare.tools.matrix",
        backend,
        json.dumps(dataclasses.asdict(config)),
        str(folder),
    ]
    errors = folder / "stderr.txt"
    with (
        errors.open("w+", encoding="utf-8") as stderr,
        subprocess.Popen(
            command,
            env=keras_backends.child_env(backend),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as child,
    ):
        try:
            assert child.stdout is not None
            for line in child.stdout:
                text = line.rstrip()
                if text.startswith(("PASS", "FAIL")):
                    progress.finished(f"{backend} {text}")
                else:
                    progress.note(f"{backend}: {text}")
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: the child goes too
                child.kill()
                child.wait()
        if code != 0:
            stderr.seek(0)
            lines = [line.strip() for line in stderr if line.strip()]
            last = lines[-1] if lines else "no error message"
            raise InputError(f"the {backend} run failed (exit {code}): {last}")


@dataclasses.dataclass(frozen=True)
class _Run:
    """One child's result for one variant and dtype: the verdict's JSON and its pairs."""

    verdict: dict[str, Any]
    pairs: list[Pair]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / _VERDICT).write_text(json.dumps(self.verdict), encoding="utf-8")
        meta = [
            {"kind": p.kind, "name": p.name, "tolerance": p.tolerance, "atol_floor": p.atol_floor}
            for p in self.pairs
        ]
        (folder / _PAIRS).write_text(json.dumps(meta), encoding="utf-8")
        arrays = {}
        for i, p in enumerate(self.pairs):
            arrays[f"actual{i}"] = np.asarray(p.actual)
            arrays[f"expected{i}"] = np.asarray(p.expected)
            if p.at is not None:
                arrays[f"at{i}"] = np.asarray(p.at)
        np.savez(folder / _ARRAYS, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, folder: Path) -> _Run:
        verdict = json.loads((folder / _VERDICT).read_text("utf-8"))
        meta = json.loads((folder / _PAIRS).read_text("utf-8"))
        with np.load(folder / _ARRAYS, allow_pickle=False) as arrays:
            pairs = [
                Pair(
                    m["kind"],
                    m["name"],
                    arrays[f"actual{i}"],
                    arrays[f"expected{i}"],
                    at=arrays.get(f"at{i}"),
                    tolerance=m["tolerance"],
                    atol_floor=m["atol_floor"],
                )
                for i, m in enumerate(meta)
            ]
        return cls(verdict, pairs)


def build(config: MatrixConfig, results: dict[str, dict[tuple[str, str], _Run]]) -> Matrix:
    """The matrix from every backend's runs: scratch vs each backend (its verdict), then each
    pair of backends (their Keras sides, against the sum of their tolerances)."""
    cells = []
    for variant, dtype in itertools.product(config.variants, config.dtypes):
        for backend in config.backends:
            verdict = results[backend][variant, dtype].verdict
            checks = [_check(c) for c in verdict["checks"]]
            cells.append(Cell(config.label, backend, variant, dtype, checks))
        for left, right in itertools.combinations(config.backends, 2):
            ours, theirs = results[left][variant, dtype], results[right][variant, dtype]
            tolerances = tolerance_table.between_references(
                tolerance_table.defaults(left, dtype), tolerance_table.defaults(right, dtype)
            )
            pairs = _between(ours.pairs, theirs.pairs)
            cells.append(Cell(left, right, variant, dtype, judge(pairs, tolerances)))
    environments, loss_paths = {}, {}
    for backend in config.backends:
        first = next(iter(results[backend].values())).verdict
        environments[backend] = {k: v for k, v in first["environment"].items() if k != "dtype"}
        loss_paths[backend] = first["environment"]["loss_path"]
    return Matrix(config, environments, loss_paths, cells)


def _between(left: Sequence[Pair], right: Sequence[Pair]) -> list[Pair]:
    """The Keras side of ``left``'s pairs against the Keras side of ``right``'s, for the kinds
    that come from Keras (not the finite differences, which are scratch's)."""
    theirs = {(p.kind, p.name): p for p in right}
    return [
        dataclasses.replace(p, actual=p.expected, expected=theirs[p.kind, p.name].expected)
        for p in left
        if p.kind in KINDS_SHOWN and (p.kind, p.name) in theirs
    ]


def _check(record: dict[str, Any]) -> Check:
    """A :class:`Check` from its JSON record."""
    fields = dict(record)
    for key in ("worst_index", "first_bad_index"):
        if fields[key] is not None:
            fields[key] = tuple(fields[key])
    return Check(**fields)


def child_main(argv: Sequence[str]) -> int:
    """The child process: ``python -m compare.tools.matrix BACKEND CONFIG_JSON FOLDER``."""
    backend, config_json, folder = argv
    fields: dict[str, Any] = json.loads(config_json)
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    config = MatrixConfig(**fields)
    try:
        keras_backends.choose(backend)
        for variant, dtype in itertools.product(config.variants, config.dtypes):
            verdict = check_parity(
                variant,
                dtype,
                seed=config.seed,
                batch_size=config.batch_size,
                data=config.data,
                epochs=config.epochs,
                implementation=config.implementation,
            )
            _Run(verdict.as_dict(), verdict.pairs).save(Path(folder) / f"{variant}-{dtype}")
            print(summary(verdict), flush=True)
    except InputError as exc:
        print(f"lenet-parity: error: {exc}", file=sys.stderr)
        return 2
    except ImplementationError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"lenet-parity: error: {exc}", file=sys.stderr)
        return 3
    return 0


# -- writing -----------------------------------------------------------------------------------
def write_matrix(matrix: Matrix, out: Path) -> Path:
    """Write the matrix report into ``out`` atomically (the one there moves to
    ``<out>-previous`` beside it)."""

    def build_into(folder: Path) -> None:
        (folder / "matrix.json").write_text(
            json.dumps(matrix.as_dict(), indent=2) + "\n", encoding="utf-8"
        )
        matrix.checks_frame().to_csv(folder / "matrix.csv", index=False)
        matrix_report.write_documents(matrix, folder)

    return write_folder(out, build_into, previous_name=f"{out.name}-previous")


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
