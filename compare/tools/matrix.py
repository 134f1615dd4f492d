"""The cross-backend matrix: the parity check on every Keras backend, and the backends against
each other, in one report.

Keras fixes its backend at import, so every backend runs in a child process of its own
(``python -m compare.matrix``, with :func:`compare.keras_backends.child_env`). Each child runs
:func:`compare.parity.check_parity` for every requested variant and dtype and saves the
verdict (JSON) and the compared arrays (an ``.npz``, read back without pickle). The parent then
has, per variant and dtype:

- scratch vs each backend: that backend's verdict, judged against its own calibrated
  tolerances (the scratch loss path follows the backend: logits on TensorFlow, clipped
  probabilities on JAX and torch);
- each backend vs each other: the Keras side of one verdict against the Keras side of the
  other, check by check (forward, gradient, training; the finite differences are scratch's own),
  judged against the sum of the two backends' tolerances
  (:func:`compare.tolerances.between_references`).

:func:`write_matrix` writes ``matrix.json``, ``matrix.csv``, ``report.md``, ``index.html`` and
``heatmap.png`` (the largest absolute error of every check in every comparison) atomically.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from compare import keras_backends
from compare import tolerances as tolerance_table
from compare.checks import Check, Pair
from compare.errors import InputError

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
        return all(c.passed for c in self.checks)

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
        failed = [c for c in self.cells if not c.passed]
        what = (
            f"{len(self.cells)} comparisons over {', '.join(self.config.backends)} "
            f"({', '.join(self.config.variants)}; {', '.join(self.config.dtypes)}; "
            f"{self.config.epochs} epoch{'s' * (self.config.epochs != 1)} of training)"
        )
        if not failed:
            return f"PASS: all {what} agree"
        names = "; ".join(f"{c.label} {c.variant} {c.dtype}" for c in failed)
        return f"FAIL: {len(failed)} of {what} disagree: {names}"

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
            failed = [ch for ch in c.checks if not ch.passed]
            row["checks passed"] = f"{len(c.checks) - len(failed)}/{len(c.checks)}"
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
    """Run every backend in its own process, then build the matrix."""
    results: dict[str, dict[tuple[str, str], _Run]] = {}
    with tempfile.TemporaryDirectory(prefix="lenet-parity-matrix-") as tmp:
        for backend in config.backends:
            folder = Path(tmp) / backend
            _run_child(backend, config, folder, progress)
            results[backend] = {
                (variant, dtype): _Run.load(folder / f"{variant}-{dtype}")
                for variant in config.variants
                for dtype in config.dtypes
            }
    return build(config, results)


def _run_child(
    backend: str, config: MatrixConfig, folder: Path, progress: Callable[[str], None] | None
) -> None:
    """``python -m compare.matrix`` on ``backend``; its output lines go to ``progress``."""
    folder.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "compare.matrix",
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
                if progress is not None:
                    progress(f"{backend}: {line.rstrip()}")
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
    from compare.parity import judge

    cells = []
    for variant, dtype in itertools.product(config.variants, config.dtypes):
        for backend in config.backends:
            verdict = results[backend][variant, dtype].verdict
            checks = [_check(c) for c in verdict["checks"]]
            cells.append(Cell(SCRATCH, backend, variant, dtype, checks))
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
    """The child process: ``python -m compare.matrix BACKEND CONFIG_JSON FOLDER``."""
    from compare.parity import check_parity

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
            )
            _Run(verdict.as_dict(), verdict.pairs).save(Path(folder) / f"{variant}-{dtype}")
            print(verdict.summary(), flush=True)
    except InputError as exc:
        print(f"lenet-parity: error: {exc}", file=sys.stderr)
        return 2
    return 0


# -- writing -----------------------------------------------------------------------------------
def write_matrix(matrix: Matrix, out: Path) -> Path:
    """Write the matrix report into ``out`` atomically (the one there moves to
    ``<out>-previous`` beside it)."""
    from compare.report import write_folder

    def build_into(folder: Path) -> None:
        (folder / "matrix.json").write_text(
            json.dumps(matrix.as_dict(), indent=2) + "\n", encoding="utf-8"
        )
        matrix.checks_frame().to_csv(folder / "matrix.csv", index=False)
        plot_heatmap(matrix, folder / "heatmap.png")
        (folder / "report.md").write_text(markdown(matrix), encoding="utf-8")
        (folder / "index.html").write_text(html_page(matrix), encoding="utf-8")

    return write_folder(out, build_into, previous_name=f"{out.name}-previous")


def heatmap_frames(matrix: Matrix) -> dict[tuple[str, str], pd.DataFrame]:
    """Per variant and dtype: the largest absolute error of every check (rows) in every
    comparison (columns); NaN where a comparison has no such check."""
    frames = {}
    for variant, dtype in itertools.product(matrix.config.variants, matrix.config.dtypes):
        cells = [c for c in matrix.cells if (c.variant, c.dtype) == (variant, dtype)]
        columns = {
            c.label: {
                f"{ch.kind} {ch.name}": np.nan if ch.max_abs_err is None else ch.max_abs_err
                for ch in c.checks
                if ch.kind in KINDS_SHOWN
            }
            for c in cells
        }
        frames[variant, dtype] = pd.DataFrame(columns)
    return frames


def plot_heatmap(matrix: Matrix, path: Path) -> None:
    """One panel per variant and dtype: log10 of the largest absolute error of each check in
    each comparison; a failing check is marked with a red ✗."""
    frames = heatmap_frames(matrix)
    n_rows = max(len(f) for f in frames.values())
    n_columns = sum(len(f.columns) for f in frames.values())
    figure = Figure(figsize=(3.5 + 0.55 * n_columns + 2.2 * len(frames), 1.8 + 0.22 * n_rows))
    axes = figure.subplots(1, len(frames), squeeze=False)[0]
    failed = {
        (c.variant, c.dtype, c.label, f"{ch.kind} {ch.name}")
        for c in matrix.cells
        for ch in c.checks
        if not ch.passed
    }
    image = None
    for ax, ((variant, dtype), frame) in zip(axes, frames.items(), strict=True):
        values = np.log10(np.maximum(frame.to_numpy(dtype=float), 1e-20))
        image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=-20, vmax=0)
        ax.set_xticks(range(len(frame.columns)), frame.columns, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(frame.index)), frame.index, fontsize=7)
        ax.set_title(f"{variant}, {dtype}", fontsize=9)
        for (i, row), (j, column) in itertools.product(
            enumerate(frame.index), enumerate(frame.columns)
        ):
            if (variant, dtype, column, row) in failed:
                ax.text(j, i, "✗", ha="center", va="center", color="red", fontsize=9)
    if image is not None:
        bar = figure.colorbar(image, ax=list(axes), shrink=0.6)
        bar.set_label("log10 largest |error| (exact zeros at -20)")
    figure.savefig(path, dpi=110, bbox_inches="tight")


def environment_frame(matrix: Matrix) -> pd.DataFrame:
    """One row per backend: its versions, the scratch loss path and its numeric flags."""
    rows = []
    for backend, env in matrix.environments.items():
        rows.append(
            {
                "backend": backend,
                "versions": ", ".join(
                    f"{k} {v}"
                    for k, v in env.items()
                    if k not in ("backend", "loss_path", "flags", "machine", "lenet_parity")
                ),
                "scratch loss path": matrix.loss_paths[backend],
                "flags": ", ".join(f"{k}={v}" for k, v in env.get("flags", {}).items()),
            }
        )
    return pd.DataFrame(rows)


TOLERANCE_NOTE: Final = (
    "scratch vs a backend: that backend's calibrated tolerances (compare/tolerances.json). "
    "Backend vs backend: the Keras sides of both checks, judged against the sum of the two "
    "backends' tolerances (|A - B| <= |A - scratch| + |scratch - B|). The scratch loss path "
    "follows the backend: logits on TensorFlow, clipped probabilities on JAX and torch."
)


def markdown(matrix: Matrix) -> str:
    return "\n".join(
        [
            f"# lenet-parity cross-backend matrix: {'PASS' if matrix.passed else 'FAIL'}",
            "",
            matrix.summary(),
            "",
            TOLERANCE_NOTE,
            "",
            "## Backends",
            "",
            environment_frame(matrix).to_markdown(index=False),
            "",
            "## Comparisons",
            "",
            matrix.frame().to_markdown(index=False),
            "",
            "## Largest error per check",
            "",
            "![heatmap](heatmap.png)",
            "",
        ]
    )


def html_page(matrix: Matrix) -> str:
    from compare.report import STYLE

    result, esc = ("PASS" if matrix.passed else "FAIL"), html.escape
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(result)}: lenet-parity cross-backend matrix</title>
<style>{STYLE}</style>
</head>
<body>
<h1 class="{result.lower()}">{result}</h1>
<p class="summary">{esc(matrix.summary())}</p>
<p>{esc(TOLERANCE_NOTE)}</p>
<h2>Backends</h2>
{environment_frame(matrix).to_html(index=False)}
<h2>Comparisons</h2>
{matrix.frame().to_html(index=False)}
<h2>Largest error per check</h2>
<img src="heatmap.png" alt="heatmap of the largest absolute error per check and comparison">
<h2>Files</h2>
<ul><li><a href="matrix.json">matrix.json</a>: every comparison and check</li>
<li><a href="matrix.csv">matrix.csv</a>: one row per check of every comparison</li>
<li><a href="report.md">report.md</a>: this page in Markdown</li></ul>
</body>
</html>
"""


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
