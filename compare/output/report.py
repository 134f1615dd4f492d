"""The comparison report: one directory (default ``reports/latest/``) holding everything a
parity :class:`~compare.parity.Verdict` says, for people and for tools.

    verdict.json   the verdict, in the schema of ``lenet-parity check --json``
    checks.csv     one row per check, every field of its record
    curves.csv     both sides' training loss and accuracy per step (only when training ran)
    loss.png       both training losses per step; beneath, |scratch − Keras| against the envelope
    forward.png    each layer's largest absolute forward error against its atol
    gradient.png   each gradient's largest absolute error against its atol
    report.md      PASS/FAIL, the first divergence, the environment, the tables, the plots
    index.html     the same as one self-contained page (the PNGs are relative links)

:func:`write_report` builds the directory beside the target and moves it into place only when
complete; the report it replaces becomes ``previous/``. Tables are pandas' own renderings and
plots are drawn on :class:`matplotlib.figure.Figure` (Agg, no pyplot state).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from compare.errors import InputError

if TYPE_CHECKING:
    from compare.checks import Check
    from compare.parity import Verdict

CHECK_COLUMNS: Final = (
    "kind",
    "name",
    "passed",
    "max_abs_err",
    "max_rel_err",
    "atol",
    "rtol",
    "n_bad",
    "size",
    "worst_index",
    "first_bad_index",
    "step",
    "problem",
)
NO_TRAINING: Final = "No training run (--epochs 0): no training curves, no held-out evaluation."
# The environment keys shown under their own labels; every key but these and _NOT_VERSIONS is
# a version of the backend's packages (tensorflow; jax and jaxlib; torch).
_NAMED_VERSIONS: Final = {"python": "Python", "numpy": "NumPy", "keras": "Keras"}
_NOT_VERSIONS: Final = {"lenet_parity", "backend", "loss_path", "dtype", "flags", "machine"}


# -- the directory ---------------------------------------------------------------------------
def write_report(verdict: Verdict, out: Path) -> Path:
    """Write the report for ``verdict`` to ``out`` (atomically, see :func:`write_folder`) and
    return ``out``."""
    return write_folder(out, lambda folder: _build(verdict, folder))


def write_folder(
    out: Path, build_into: Callable[[Path], None], previous_name: str = "previous"
) -> Path:
    """Fill a report folder ``out`` with ``build_into(folder)`` and return ``out``.

    Everything is built in a hidden temporary directory beside ``out``; only a complete report
    is moved in. An existing ``out`` becomes ``out.parent / previous_name`` (replacing an older
    one). An exception or interrupt while building leaves ``out`` and the previous one as they
    were and removes the temporary directory."""
    out = Path(out)
    previous = out.parent / previous_name
    if out.name == previous.name:
        raise InputError(f"a report cannot be written to {out}: that name keeps the last one")
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    discard = build.with_name(build.name + "-discard")  # the older previous, until deleted
    try:
        os.chmod(build, 0o755)  # mkdtemp makes it private (0700); a report is for reading
        build_into(build)
        if out.exists():
            if previous.exists():
                previous.rename(discard)
            out.rename(previous)
        build.rename(out)
    finally:
        for leftover in (build, discard):
            shutil.rmtree(leftover, ignore_errors=True)
    return out


def _build(verdict: Verdict, folder: Path) -> None:
    curves, heldout = verdict.curve_frame(), verdict.heldout_frame()
    (folder / "verdict.json").write_text(
        json.dumps(verdict.as_dict(), indent=2) + "\n", encoding="utf-8"
    )
    checks_frame(verdict.checks).to_csv(folder / "checks.csv", index=False)
    if curves is not None:
        curves.to_csv(folder / "curves.csv", index=False)
        plot_loss(curves, verdict.first_failure, folder / "loss.png")
    for kind in ("forward", "gradient"):
        plot_errors([c for c in verdict.checks if c.kind == kind], kind, folder / f"{kind}.png")
    (folder / "report.md").write_text(markdown(verdict, curves, heldout), encoding="utf-8")
    (folder / "index.html").write_text(html_page(verdict, curves, heldout), encoding="utf-8")


# -- tables --------------------------------------------------------------------------------------
def checks_frame(checks: Sequence[Check]) -> pd.DataFrame:
    """One row per check, the columns of :data:`CHECK_COLUMNS` (indices as lists)."""
    frame = pd.DataFrame([c.as_dict() for c in checks], columns=list(CHECK_COLUMNS))
    return frame.astype({"n_bad": "Int64", "size": "Int64", "step": "Int64"})


def environment_frames(verdict: Verdict) -> dict[str, pd.DataFrame]:
    """The environment header as three two-column tables (name, value): the versions (Python,
    NumPy, Keras, the backend's packages); the backend and the check's configuration (variant,
    dtype, seed, epochs, ...); the flags that change numerics."""
    env = verdict.environment
    versions = {label: env.get(key) for key, label in _NAMED_VERSIONS.items()}
    versions |= {k: v for k, v in env.items() if k not in {*_NAMED_VERSIONS, *_NOT_VERSIONS}}
    versions |= {"lenet-parity": env.get("lenet_parity"), "machine": env.get("machine")}
    config = {
        "backend": env.get("backend"),
        "scratch loss path": env.get("loss_path"),
        **dataclasses.asdict(verdict.config),
    }
    groups = {"Versions": versions, "Configuration": config, "Numeric flags": env.get("flags", {})}
    return {
        title: pd.DataFrame(
            {"name": list(rows), "value": ["-" if v is None else str(v) for v in rows.values()]}
        )
        for title, rows in groups.items()
    }


def first_divergence(verdict: Verdict) -> str:
    first = verdict.first_failure
    if first is None:
        return "none: every check passes"
    step = "" if first.step is None else f" at step {first.step}"
    return f"{first.kind} {first.name!r}{step}: {first.problem}"


# -- plots ---------------------------------------------------------------------------------------
def _floor(*arrays: Any) -> float:
    """Where zeros go on a log axis: a tenth of the smallest positive finite value."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    positive = values[np.isfinite(values) & (values > 0)]
    return float(positive.min()) / 10 if positive.size else 1e-12


def _mark_zeros_and_missing(ax: Axes, x: np.ndarray, y: np.ndarray, floor: float) -> None:
    """Exact zeros as hollow markers at ``floor``; NaN/Inf/absent values as red crosses along
    the top edge (they have no place on a log axis)."""
    zero, missing = y == 0, ~np.isfinite(y)
    if zero.any():
        ax.scatter(
            x[zero],
            np.full(zero.sum(), floor),
            marker="o",
            facecolors="none",
            edgecolors="tab:gray",
            zorder=3,
            label="exactly 0 (drawn at the floor)",
        )
    if missing.any():
        ax.scatter(
            x[missing],
            np.full(missing.sum(), 0.95),
            marker="x",
            color="tab:red",
            transform=ax.get_xaxis_transform(),  # x in data, y in axes fractions
            zorder=3,
            label="no number (see problem)",
        )


def plot_loss(curves: pd.DataFrame, first_failure: Check | None, path: Path) -> None:
    """Top: scratch's and Keras's training loss per step. Beneath (shared steps, log scale):
    their absolute difference and the envelope (``atol``) it must stay under."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    step = curves["step"].to_numpy(dtype=np.float64)
    marker = "." if len(curves) <= 60 else None
    top.plot(step, curves["scratch_loss"], marker=marker, label="scratch (NumPy)")
    top.plot(step, curves["reference_loss"], linestyle="--", label="Keras reference")
    top.set(ylabel="training loss", title="Training loss per step")
    diff = curves["abs_diff"].to_numpy(dtype=np.float64)
    atol = curves["atol"].to_numpy(dtype=np.float64)
    floor = _floor(diff, atol)
    # Dots, not a line: a line would dive to the floor at every exact zero.
    shown = np.where(diff > 0, diff, np.nan)
    bottom.plot(step, shown, linestyle="none", marker=".", label="|scratch − Keras|")
    bottom.plot(
        step, np.maximum(atol, floor), color="black", linestyle=":", label="envelope (atol)"
    )
    _mark_zeros_and_missing(bottom, step, diff, floor)
    bottom.set(yscale="log", xlabel="step", ylabel="absolute difference")
    if (
        first_failure is not None
        and first_failure.kind == "training"
        and first_failure.step is not None
    ):
        for ax in (top, bottom):
            ax.axvline(first_failure.step, color="tab:red", linewidth=1, label="first divergence")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(path, dpi=100)


def plot_errors(checks: Sequence[Check], kind: str, path: Path) -> None:
    """One column per check: its largest absolute error (green: passed, red: failed) on a log
    scale, and its atol as a black bar."""
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(checks), dtype=np.float64)
    errors = np.array([np.nan if c.max_abs_err is None else c.max_abs_err for c in checks])
    atols = np.array([c.atol for c in checks], dtype=np.float64)
    floor = _floor(errors, atols)
    shown = np.maximum(errors, floor)
    colors = ["tab:green" if c.passed else "tab:red" for c in checks]
    ax.vlines(x, floor, shown, colors=colors, linewidth=2)
    ax.scatter(x, shown, c=colors, zorder=3, label="max abs error")
    ax.scatter(x, np.maximum(atols, floor), marker="_", s=600, color="black", label="atol")
    _mark_zeros_and_missing(ax, x, errors, floor)
    ax.set_xticks(x, [c.name for c in checks], rotation=30, ha="right")
    title = f"{kind.capitalize()} checks: largest absolute error (green: pass, red: fail) vs atol"
    ax.set(yscale="log", ylabel="max abs error", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(path, dpi=100)


# -- documents -----------------------------------------------------------------------------------
def _plots(curves: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(file, alt text) of the report's images, in reading order."""
    errors = [
        ("forward.png", "Largest absolute forward error per layer against its atol"),
        ("gradient.png", "Largest absolute gradient error per tensor against its atol"),
    ]
    if curves is None:
        return errors
    return [("loss.png", "Training loss of scratch and Keras per step; their difference"), *errors]


def _files(curves: pd.DataFrame | None) -> list[tuple[str, str]]:
    files = [("verdict.json", "the verdict"), ("checks.csv", "every check")]
    return files if curves is None else [*files, ("curves.csv", "the training curves per step")]


def markdown(verdict: Verdict, curves: pd.DataFrame | None, heldout: pd.DataFrame | None) -> str:
    # disable_numparse: tabulate would reformat strings that look like numbers ("3.10" -> 3.1).
    result = "PASS" if verdict.passed else "FAIL"
    parts = [
        f"# {result}",
        f"`{verdict.summary()}`",
        f"**First divergence:** `{first_divergence(verdict)}`",
        "## Environment",
        *(
            f"**{group}**\n\n{frame.to_markdown(index=False, disable_numparse=True)}"
            for group, frame in environment_frames(verdict).items()
        ),
        "## Checks",
        verdict.frame().to_markdown(index=False, disable_numparse=True),
        "## Plots",
        *([] if curves is not None else [NO_TRAINING]),
        *(f"![{alt}]({name})" for name, alt in _plots(curves)),
        "## Held-out evaluation per epoch",
        NO_TRAINING if heldout is None else heldout.to_markdown(index=False, floatfmt=".6g"),
        "## Files",
        "\n".join(f"- [{name}]({name}): {what}" for name, what in _files(curves)),
    ]
    return "\n\n".join(parts) + "\n"


STYLE: Final = """
body { font-family: system-ui, sans-serif; color: #222; }
body { margin: 2em auto; max-width: 1100px; padding: 0 1em; }
h1 { font-size: 4em; margin: 0; }
h1.pass { color: #1a7f37; } h1.fail { color: #cf222e; }
.summary { font-size: 1.2em; font-family: monospace; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.1em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.environment { display: flex; flex-wrap: wrap; gap: 0 3em; align-items: flex-start; }
h3 { margin: 0.3em 0; font-size: 1em; }
img { display: block; max-width: 100%; margin: 1em 0; }
"""


def html_page(verdict: Verdict, curves: pd.DataFrame | None, heldout: pd.DataFrame | None) -> str:
    result = "PASS" if verdict.passed else "FAIL"
    c, esc = verdict.config, html.escape
    title = f"{result}: lenet-parity {c.variant} {c.dtype} {verdict.environment.get('backend')}"
    no_training = f"<p>{esc(NO_TRAINING)}</p>"
    images = "\n".join(f'<img src="{esc(name)}" alt="{esc(alt)}">' for name, alt in _plots(curves))
    heldout_html = (
        no_training
        if heldout is None
        else heldout.to_html(index=False, float_format="{:.6g}".format)
    )
    environment = "\n".join(
        f"<section><h3>{esc(group)}</h3>\n{frame.to_html(index=False)}</section>"
        for group, frame in environment_frames(verdict).items()
    )
    files = "".join(
        f'<li><a href="{esc(name)}">{esc(name)}</a>: {esc(what)}</li>'
        for name, what in _files(curves)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1 class="{result.lower()}">{result}</h1>
<p class="summary">{esc(verdict.summary())}</p>
<p><strong>First divergence:</strong> {esc(first_divergence(verdict))}</p>
<h2>Environment</h2>
<div class="environment">{environment}</div>
<h2>Checks</h2>
{verdict.frame().to_html(index=False)}
<h2>Plots</h2>
{"" if curves is not None else no_training}
{images}
<h2>Held-out evaluation per epoch</h2>
{heldout_html}
<h2>Files</h2>
<ul>{files}</ul>
</body>
</html>
"""
