"""The cross-backend matrix: the parity check on every Keras backend, and the backends against
each other, in one report.

Keras fixes its backend at import, so every backend runs in a child process of its own
(``python -m compare.tools.matrix``, with :func:`compare.sides.backends.child_env`), in the
caller's folder and with the folder the caller imports each ``MODULE:BUILDER`` (and
``MODULE:FACTORY``) from on its ``PYTHONPATH``; a ``FILE.keras`` or ``path/to/file.py:BUILDER``
reaches it as an absolute path (:class:`MatrixConfig`). Each child runs
:func:`compare.parity.check_parity` for every requested model and dtype and saves the
verdict (JSON) and the compared arrays (an ``.npz``, read back without pickle). The parent then
has, per model and dtype:

- scratch vs each backend: that backend's verdict, judged as ``check`` judges it — a LeNet-5
  against that backend's calibrated tolerances, any other model by the float64 judge (the
  scratch loss path follows the backend: logits on TensorFlow, clipped probabilities on JAX
  and torch); a check the backend refuses (the float64 judge's refusal of a float32 run it
  cannot judge there) is a comparison not made, shown as n/a with the refusal;
- each backend vs each other: the Keras side of one verdict against the Keras side of the
  other, check by check (forward, gradient, training; the finite differences are scratch's own),
  judged against the sum of the two backends' tolerances
  (:func:`compare.judge.tolerances.between_references`). Only the calibrated table has such
  tolerances, so for a model the float64 judge judges this comparison is n/a.

:func:`write_matrix` writes ``matrix.json``, ``matrix.csv``, ``report.md``, ``index.html`` and
``heatmap.png`` (the largest absolute error of every check in every comparison) atomically.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from compare.errors import ImplementationError, InputError, JudgeUnavailable
from compare.inputs.atomic import write_folder
from compare.judge import tolerances as tolerance_table
from compare.judge.checks import Check, Pair
from compare.output import matrix_report
from compare.output.text import summary
from compare.parity.environment import describe
from compare.parity.run import check_parity, judge
from compare.sides import backends as keras_backends
from compare.sides import keras_side
from compare.tools.progress import Progress

SCRATCH: Final = "scratch"
KINDS_SHOWN: Final = ("forward", "gradient", "training")  # the kinds two backends share
_ARRAYS: Final = "pairs.npz"
_PAIRS: Final = "pairs.json"
_VERDICT: Final = "verdict.json"


@dataclasses.dataclass(frozen=True)
class MatrixConfig:
    """What the matrix runs: every backend × model × dtype, each check with these settings.

    ``models``: model sources (zoo names, ``FILE.keras``, ``MODULE:BUILDER`` or
    ``path/to/file.py:BUILDER``), each once, in order; a file's path is made absolute here, so
    that it names the same file in a child process. ``epochs=None``: the check's default
    training, one epoch or :data:`~compare.parity.config.DEFAULT_MAX_STEPS` steps, whichever
    is shorter."""

    backends: tuple[str, ...]
    models: tuple[str, ...] = ("keras-docs",)
    dtypes: tuple[str, ...] = ("float32", "float64")
    seed: int = 0
    batch_size: int = 256
    data: str = "bundled"
    epochs: int | None = None
    implementation: str | None = None  # MODULE:FACTORY; None: scratch

    @property
    def label(self) -> str:
        return self.implementation or SCRATCH

    def __post_init__(self) -> None:
        if not self.backends:
            raise InputError("the matrix needs at least one backend")
        if not self.models:
            raise InputError("the matrix needs at least one model")
        models = tuple(dict.fromkeys(absolute_source(m) for m in self.models))
        object.__setattr__(self, "models", models)  # frozen: normalised once, here


def absolute_source(source: str) -> str:
    """A model source with its file's path made absolute (``FILE.keras``,
    ``path/to/file.py:BUILDER``); a zoo name or ``MODULE:BUILDER`` as it is."""
    if not isinstance(source, str) or not source:
        raise InputError(
            f"a model is a zoo name, FILE.keras or MODULE:BUILDER. Received: {source!r}"
        )
    if source.endswith(".keras"):
        return os.path.abspath(source)
    where, colon, name = source.rpartition(":")
    if colon and where and (where.endswith(".py") or os.sep in where):  # as load_factory reads it
        return f"{os.path.abspath(where)}:{name}"
    return source


@dataclasses.dataclass(frozen=True)
class Cell:
    """One comparison of the matrix: ``left`` (scratch or a backend) against ``right`` (a
    backend) for one model and dtype. ``judge``: who judged it, the calibrated tolerance
    ``"table"`` or the ``"float64"`` judge (None: not judged); ``refused``: why the comparison
    was not made (it has no checks; its result is n/a)."""

    left: str
    right: str
    model: str
    dtype: str
    checks: list[Check]
    judge: str | None = None
    refused: str | None = None

    @property
    def variant(self) -> str:
        """The model (what :mod:`compare.output.matrix_report` reads; the LeNet-5s' older
        name for it)."""
        return self.model

    @property
    def passed(self) -> bool:
        """No check fails ("n/a" and "skipped" checks compared nothing, nor did a refused
        comparison)."""
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
            "model": self.model,
            "dtype": self.dtype,
            "passed": self.passed,
            "judge": self.judge,
            "refused": self.refused,
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
        labels = matrix_report.model_labels(self.config.models)
        for c in self.cells:
            row: dict[str, Any] = {
                "comparison": c.label,
                "model": labels[c.model],
                "dtype": c.dtype,
            }
            for kind in KINDS_SHOWN:
                value = c.largest(kind)
                row[f"{kind} max abs"] = "-" if value is None else f"{value:.2e}"
            failed = [ch for ch in c.checks if ch.failed]
            row["checks passed"] = f"{sum(ch.passed for ch in c.checks)}/{len(c.checks)}"
            row["result"] = (
                f"n/a: {c.refused}"
                if c.refused is not None
                else "pass"
                if not failed
                else f"FAIL ({failed[0].kind} {failed[0].name})"
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def checks_frame(self) -> pd.DataFrame:
        """One row per check of every comparison (the CSV); a refused comparison is one row,
        status "n/a", its reason the problem."""
        rows = []
        for c in self.cells:
            where = {"left": c.left, "right": c.right, "model": c.model, "dtype": c.dtype}
            if c.refused is not None:
                rows.append(where | {"status": "n/a", "problem": c.refused})
            rows += [where | check.as_dict() for check in c.checks]
        return pd.DataFrame(rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 2,  # 2: models (and a cell's model) for variants; refused cells
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
    jobs = len(config.backends) * len(config.models) * len(config.dtypes)
    with (
        tempfile.TemporaryDirectory(prefix="lenet-parity-matrix-") as tmp,
        Progress(jobs, "matrix", progress, results=True) as shown,
    ):
        for backend in config.backends:
            folder = Path(tmp) / backend
            _run_child(backend, config, folder, shown)
            results[backend] = {
                (model, dtype): _Run.load(folder / _job_folder(config, model, dtype))
                for model in config.models
                for dtype in config.dtypes
            }
    return build(config, results)


def _job_folder(config: MatrixConfig, model: str, dtype: str) -> str:
    """The folder of one job's result in a child's folder (a model source may be a path)."""
    return f"model{config.models.index(model)}-{dtype}"


def import_roots(config: MatrixConfig) -> list[str]:
    """The folders the caller imports the top-level package of each ``MODULE:BUILDER`` model
    and of a ``MODULE:FACTORY`` implementation from, when that is not the interpreter's own
    (site-packages, the standard library): what a child needs on its ``PYTHONPATH`` to import
    them as the caller would. Finding a top-level package's folder runs none of its code; a
    module not found here is looked for in the current folder, the child's too."""
    sources = [m for m in config.models if not m.endswith(".keras")]
    sources += [] if config.implementation is None else [config.implementation]
    own = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots: dict[str, None] = {}
    for source in sources:
        where, colon, _ = source.rpartition(":")
        if not colon or not where or where.endswith(".py") or os.sep in where:
            continue  # a zoo name, or a file (absolute already)
        try:
            spec = importlib.util.find_spec(where.partition(".")[0])
        except (ImportError, ValueError):
            continue  # the child says why it cannot import it
        if spec is None or (not spec.has_location and not spec.submodule_search_locations):
            continue
        places = list(spec.submodule_search_locations or [spec.origin or ""])
        for place in places:
            root = os.path.dirname(os.path.abspath(place))
            if place and not any(root == p or root.startswith(p + os.sep) for p in own):
                roots[root] = None
    return list(roots)


def _child_env(backend: str, config: MatrixConfig) -> dict[str, str]:
    """The child's environment: the backend's (:func:`compare.sides.backends.child_env`),
    with :func:`import_roots` ahead of any ``PYTHONPATH`` already set."""
    env = keras_backends.child_env(backend)
    path = [*import_roots(config), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return env


def _run_child(
    backend: str,
    config: MatrixConfig,
    folder: Path,
    progress: Progress,
) -> None:
    """``python -m compare.tools.matrix`` on ``backend``, in the current folder; each verdict
    (or refusal) line it prints is a finished job of ``progress`` (``3/12 [31 s] jax PASS:
    ...``), any other line a note."""
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
            cwd=os.getcwd(),
            env=_child_env(backend, config),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as child,
    ):
        try:
            assert child.stdout is not None
            for line in child.stdout:
                text = line.rstrip()
                if text.startswith(("PASS", "FAIL", "REFUSED")):
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
    """One child's result for one model and dtype: the verdict's JSON and its pairs; or, for a
    check the backend refused, ``{"refused": why, "environment": ...}`` and no pairs."""

    verdict: dict[str, Any]
    pairs: list[Pair]

    @property
    def refused(self) -> str | None:
        reason = self.verdict.get("refused")
        return None if reason is None else str(reason)

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
    pair of backends (their Keras sides, against the sum of their tolerances); a comparison
    that cannot be made is a refused cell, with why."""
    cells = []
    for model, dtype in itertools.product(config.models, config.dtypes):
        runs = {backend: results[backend][model, dtype] for backend in config.backends}
        for backend, run in runs.items():
            if run.refused is not None:
                cells.append(Cell(config.label, backend, model, dtype, [], refused=run.refused))
                continue
            checks = [_check(c) for c in run.verdict["checks"]]
            who = run.verdict["config"]["judge"]
            cells.append(Cell(config.label, backend, model, dtype, checks, judge=who))
        for left, right in itertools.combinations(config.backends, 2):
            ours, theirs = runs[left], runs[right]
            refused = _not_between({left: ours, right: theirs})
            if refused is not None:
                cells.append(Cell(left, right, model, dtype, [], refused=refused))
                continue
            tolerances = tolerance_table.between_references(
                tolerance_table.defaults(left, dtype), tolerance_table.defaults(right, dtype)
            )
            pairs = _between(ours.pairs, theirs.pairs)
            checks = judge(pairs, tolerances)
            cells.append(Cell(left, right, model, dtype, checks, judge="table"))
    environments, loss_paths = {}, {}
    for backend in config.backends:
        first = next(iter(results[backend].values())).verdict
        environments[backend] = {k: v for k, v in first["environment"].items() if k != "dtype"}
        loss_paths[backend] = first["environment"]["loss_path"]
    return Matrix(config, environments, loss_paths, cells)


def _not_between(runs: dict[str, _Run]) -> str | None:
    """Why two backends' runs cannot be compared with each other (None: they can): a check
    one of them refused, or a model the calibrated table does not judge (two backends are
    judged against the sum of their calibrated tolerances, which only the LeNet-5s have)."""
    for backend, run in runs.items():
        if run.refused is not None:
            return f"the {backend} check was refused"
    if any(run.verdict["config"]["judge"] != "table" for run in runs.values()):
        return "no tolerance between two backends: the calibrated table knows only the LeNet-5s"
    return None


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
    try:
        config = MatrixConfig(**fields)
        keras_backends.choose(backend)
        for model, dtype in itertools.product(config.models, config.dtypes):
            where = Path(folder) / _job_folder(config, model, dtype)
            try:
                verdict = check_parity(
                    model,
                    dtype,
                    seed=config.seed,
                    batch_size=config.batch_size,
                    data=config.data,
                    epochs=config.epochs,
                    implementation=config.implementation,
                )
            except JudgeUnavailable as exc:
                # no judge can run here for this cell (compare.sides.remote.judge_backend): it
                # is n/a and the matrix goes on; any other error stops it (one line, exit 2)
                environment = describe(keras_side.backend_module(), dtype)
                _Run({"refused": str(exc), "environment": environment}, []).save(where)
                print(f"REFUSED: {exc}", flush=True)
                continue
            _Run(verdict.as_dict(), verdict.pairs).save(where)
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
