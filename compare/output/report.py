"""The comparison report: one directory (default ``reports/latest/``) holding everything a
parity :class:`~compare.parity.verdict.Verdict` says, for people and for tools.

    verdict.json   the verdict, in the schema of ``lenet-parity check --json``
    checks.csv     one row per check, every field of its record (its margin and status too)
    curves.csv     both sides' training loss and accuracy per step (only when training ran)
    loss.png       both training losses per step; beneath, |implementation − Keras| against
                   the envelope and the margin per step, the steps outside it marked
    forward.png    each layer's margin (its error ÷ its allowance; it fails at >= 1)
    gradient.png   each gradient's margin
    report.md      PASS/FAIL, the first divergence, the environment, the tables, the plots
    index.html     the same as one self-contained page: the plots are inline (data URIs), so
                   the page alone is the report

Every check's **margin** is its error ÷ what it was allowed (:mod:`compare.judge.checks`): an
element fails only when it is beyond both atol and rtol, and a check fails at margin >= 1. The
tables show it as a number and a bar, and say so beside them (:data:`PASS_RULE`).

:func:`write_report` builds the directory beside the target and moves it into place only when
complete; the report it replaces becomes ``previous/``. Plots are drawn on
:class:`matplotlib.figure.Figure` (Agg, no pyplot state). Every number in the tables has one
format, two significant digits in e-notation (:func:`sci`).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from compare.inputs.atomic import write_folder
from compare.judge.checks import MARGIN_CAP, TINY, element_margins
from compare.output.text import (
    NO_COMPARISON,
    checks_table,
    closest_to_failing,
    margin_text,
    sci,
    verdict_line,
)

if TYPE_CHECKING:
    from compare.judge.checks import Check
    from compare.parity.config import CheckConfig
    from compare.parity.verdict import Verdict

CHECK_COLUMNS: Final = (
    "kind",
    "name",
    "status",
    "passed",
    "margin",
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
PASS_RULE: Final = (
    "An element fails only when it is beyond both atol and rtol "
    "(|a − b| > atol and |a − b| / (|a| + |b|) > rtol). "
    "margin = error ÷ allowance (per element the smaller of |a − b| / atol and "
    "relative error / rtol; the check's margin is its worst element's): "
    "a check fails at margin ≥ 1. "
    '"cap": a failure with no finite ratio (an allowance of 0, or a shape, dtype or NaN/Inf '
    'mismatch). "not provided", "skipped" and "n/a" compared nothing.'
)
# The margin bar: its length is min(margin, BAR_RANGE), scaled to BAR_WIDTH pixels.
BAR_RANGE: Final = 1.5
BAR_WIDTH: Final = 120
GREEN, RED, GREY = "#1a7f37", "#cf222e", "#8c959f"
# The environment keys shown under their own labels; every key but these and _NOT_VERSIONS is
# a version of the backend's packages (tensorflow; jax and jaxlib; torch).
_NAMED_VERSIONS: Final = {"python": "Python", "numpy": "NumPy", "keras": "Keras"}
_NOT_VERSIONS: Final = {
    "lenet_parity",
    "backend",
    "loss_path",
    "dtype",
    "flags",
    "machine",
    "cpu",
    "blas",
}


# -- the directory ---------------------------------------------------------------------------
def write_report(verdict: Verdict, out: Path) -> Path:
    """Write the report for ``verdict`` to ``out`` (atomically, see :func:`write_folder`) and
    return ``out``."""
    return write_folder(out, lambda folder: _build(verdict, folder))


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
    images = {name: (folder / name).read_bytes() for name, _ in _plots(curves)}
    # a path that is not UTF-8 (kept by Python as surrogates) is written escaped, not an error
    text = {
        "report.md": markdown(verdict, curves, heldout),
        "index.html": html_page(verdict, curves, heldout, images),
    }
    for name, content in text.items():
        (folder / name).write_text(content, encoding="utf-8", errors="backslashreplace")


def first_divergence(first: Check | None) -> str:
    if first is None:
        return "none: every compared check passes"
    step = "" if first.step is None else f" at step {first.step}"
    return f"{first.kind} {first.name!r}{step}: {first.problem} (margin {margin_text(first)})"


# -- tables --------------------------------------------------------------------------------------
def checks_frame(checks: Sequence[Check]) -> pd.DataFrame:
    """One row per check, the columns of :data:`CHECK_COLUMNS` (indices as lists)."""
    frame = pd.DataFrame([c.as_dict() for c in checks], columns=list(CHECK_COLUMNS))
    return frame.astype({"n_bad": "Int64", "size": "Int64", "step": "Int64"})


def blas_text(blas: object) -> str:
    """The environment's ``blas`` record in one line: library version, kernel, threads."""
    if not isinstance(blas, Mapping):
        return "-" if blas is None else str(blas)
    parts = [" ".join(str(blas[k]) for k in ("library", "version") if blas.get(k))]
    if blas.get("architecture"):
        parts.append(f"kernel {blas['architecture']}")
    if blas.get("threads") is not None:
        layer = f" ({blas['threading_layer']})" if blas.get("threading_layer") else ""
        parts.append(f"{blas['threads']} threads{layer}")
    others = [
        f"{o.get('library')} {o.get('version') or ''} ({o.get('threads')} threads)".replace(
            "  ", " "
        )
        for o in blas.get("others") or []
        if isinstance(o, Mapping)
    ]
    if others:
        parts.append("also loaded: " + "; ".join(others))
    return ", ".join(p for p in parts if p) or "-"


def environment_frames(
    environment: Mapping[str, Any], config: CheckConfig
) -> dict[str, pd.DataFrame]:
    """The environment header as four two-column tables (name, value): the versions (Python,
    NumPy, Keras, the backend's packages); the machine (architecture, CPU model, BLAS); the
    backend and the check's configuration (model, dtype, seed, epochs, ...); the flags that
    change numerics."""
    env = environment
    versions = {label: env.get(key) for key, label in _NAMED_VERSIONS.items()}
    versions |= {k: v for k, v in env.items() if k not in {*_NAMED_VERSIONS, *_NOT_VERSIONS}}
    versions |= {"lenet-parity": env.get("lenet_parity")}
    machine = {
        "machine": env.get("machine"),
        "cpu": env.get("cpu"),
        "blas": blas_text(env.get("blas")),
    }
    settings = {
        "backend": env.get("backend"),
        "loss path": env.get("loss_path"),
        **dataclasses.asdict(config),
    }
    groups = {
        "Versions": versions,
        "Machine": machine,
        "Configuration": settings,
        "Numeric flags": env.get("flags", {}),
    }
    return {
        title: pd.DataFrame(
            {"name": list(rows), "value": ["-" if v is None else str(v) for v in rows.values()]}
        )
        for title, rows in groups.items()
    }


# -- plots ---------------------------------------------------------------------------------------
def _floor(*arrays: Any) -> float:
    """Where zeros go on a log axis: a tenth of the smallest positive finite value."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    positive = values[np.isfinite(values) & (values > 0)]
    return float(positive.min()) / 10 if positive.size else 1e-12


def _legend(ax: Axes, handles: Sequence[Any] | None = None) -> None:
    """The legend outside the axes, on the right."""
    options: dict[str, Any] = {
        "fontsize": "small",
        "loc": "upper left",
        "bbox_to_anchor": (1.01, 1),
    }
    if handles is None:
        ax.legend(**options)
    else:
        ax.legend(handles=handles, **options)


def _loss_columns(curves: pd.DataFrame) -> tuple[str, str]:
    """The implementation's and the reference's loss columns of the curve frame."""
    ours = "implementation_loss" if "implementation_loss" in curves else "scratch_loss"
    return ours, "reference_loss"


def step_margins(curves: pd.DataFrame) -> np.ndarray | None:
    """The step loss's margin at every step (>= 1: outside the envelope), by the rule of
    :func:`compare.judge.checks.compare_arrays`; None when the frame has no envelope."""
    if "atol" not in curves or "rtol" not in curves:
        return None
    ours, theirs = (curves[c].to_numpy(dtype=np.float64) for c in _loss_columns(curves))
    finite = np.isfinite(ours) & np.isfinite(theirs)
    diff = np.where(finite, np.abs(ours - theirs), 0.0)
    rel = diff / np.maximum(TINY, np.where(finite, np.abs(ours) + np.abs(theirs), 0.0))
    margins = element_margins(
        diff,
        rel,
        curves["atol"].to_numpy(dtype=np.float64),
        curves["rtol"].to_numpy(dtype=np.float64),
    )
    # NaN or Inf on one side only: outside (compare_arrays fails the check on it)
    return np.where(finite | (np.isnan(ours) & np.isnan(theirs)), margins, MARGIN_CAP)


def plot_loss(curves: pd.DataFrame, first_failure: Check | None, path: Path) -> None:
    """:func:`loss_figure` saved as a PNG at ``path``."""
    loss_figure(curves, first_failure).savefig(path, dpi=100)


def loss_figure(curves: pd.DataFrame, first_failure: Check | None) -> Figure:
    """Top: the implementation's and Keras's training loss per step. Middle (log scale):
    their absolute difference and the envelope's atol. Bottom: the step loss's margin per
    step (outside the envelope at >= 1). The steps outside are marked in red in every panel,
    the first of them with a vertical line; so is a training check's first divergence when it
    comes at another step."""
    fig = Figure(figsize=(10, 8.5), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, sharex=True, height_ratios=[3, 2, 2])
    step = curves["step"].to_numpy(dtype=np.float64)
    ours_column, theirs_column = _loss_columns(curves)
    ours = curves[ours_column].to_numpy(dtype=np.float64)
    marker = "." if len(curves) <= 60 else None
    top.plot(step, ours, marker=marker, label="implementation (NumPy)")
    top.plot(step, curves[theirs_column], linestyle="--", label="Keras reference")
    top.set(ylabel="training loss", title="Training loss per step")
    diff = curves["abs_diff"].to_numpy(dtype=np.float64)
    atol = (
        curves["atol"].to_numpy(dtype=np.float64)
        if "atol" in curves
        else np.full_like(diff, np.nan)
    )
    floor = _floor(diff, atol)
    # Dots, not a line: a line would dive to the floor at every exact zero.
    middle.plot(
        step,
        np.where(diff > 0, diff, np.nan),
        linestyle="none",
        marker=".",
        label="|implementation − Keras|",
    )
    middle.plot(step, np.maximum(atol, floor), color="black", linestyle=":", label="atol")
    _mark_zeros_and_missing(middle, step, diff, floor)
    middle.set(yscale="log", ylabel="absolute difference")
    margins = step_margins(curves)
    first_bad: float | None = None
    if margins is not None:
        shown = np.where(margins >= MARGIN_CAP, np.nan, margins)
        m_floor = _floor(shown, [1.0])
        positive = np.where(shown > 0, shown, np.nan)
        bottom.plot(step, positive, linestyle="none", marker=".", label="margin")
        _mark_zeros_and_missing(bottom, step, shown, m_floor)
        bottom.axhline(1.0, color=RED, linestyle="--", linewidth=1, label="fails at 1")
        bottom.set(yscale="log", ylabel="margin (error ÷ allowance)")
        outside = margins >= 1
        if outside.any():
            for ax, values in ((top, ours), (middle, np.maximum(diff, floor))):
                ax.scatter(
                    step[outside],
                    values[outside],
                    marker="x",
                    color=RED,
                    zorder=4,
                    label=f"outside the envelope ({int(outside.sum())} steps)",
                )
            bottom.scatter(
                step[outside],
                np.clip(margins[outside], 1.0, max(2.0, float(np.nanmax(shown, initial=2.0)))),
                marker="x",
                color=RED,
                zorder=4,
                label="outside the envelope",
            )
            first_bad = float(step[int(np.argmax(outside))])
            for ax in (top, middle, bottom):
                ax.axvline(
                    first_bad, color=RED, linewidth=1.2, label=f"first bad step ({first_bad:g})"
                )
    bottom.set(xlabel="step")
    if (
        first_failure is not None
        and first_failure.kind == "training"
        and first_failure.step is not None
        and first_failure.step != first_bad
    ):
        for ax in (top, middle, bottom):
            ax.axvline(
                first_failure.step,
                color="tab:purple",
                linestyle="-.",
                linewidth=1,
                label=f"first divergence ({first_failure.name}, step {first_failure.step})",
            )
    for ax in (top, middle, bottom):
        ax.grid(alpha=0.3)
        _legend(ax)
    return fig


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
            color=RED,
            transform=ax.get_xaxis_transform(),  # x in data, y in axes fractions
            zorder=3,
            label="no number",
        )


def plot_errors(checks: Sequence[Check], kind: str, path: Path) -> None:
    """:func:`errors_figure` saved as a PNG at ``path``."""
    errors_figure(checks, kind).savefig(path, dpi=100)


def errors_figure(checks: Sequence[Check], kind: str) -> Figure:
    """One stem per check: its margin on a log scale (green: pass, red: fail), the line where
    checks fail (margin 1), exact zeros at the floor, failures without a finite ratio at the
    top edge and checks that compared nothing in grey at the bottom edge. The legend shows
    every kind of marker, drawn or not."""
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(checks), dtype=np.float64)
    compared = np.array([c.status not in NO_COMPARISON for c in checks], dtype=bool)
    failed = np.array([c.status == "fail" for c in checks], dtype=bool)
    margins = np.array([c.margin for c in checks], dtype=np.float64)
    capped = compared & (margins >= MARGIN_CAP)
    finite = compared & ~capped
    floor = _floor(np.where(finite, margins, np.nan), [1.0])
    top = max(2.0, float(np.max(np.where(finite, margins, 0.0), initial=0.0)) * 2)
    shown = np.clip(margins, floor, top)
    colors = [RED if f else GREEN for f, ok in zip(failed, finite, strict=True) if ok]
    ax.vlines(x[finite], floor, shown[finite], colors=colors, linewidth=2)
    for which, colour, label in ((finite & ~failed, GREEN, "pass"), (finite & failed, RED, "FAIL")):
        ax.scatter(x[which], shown[which], color=colour, zorder=3, label=label)
    exact = finite & (margins == 0)
    ax.scatter(
        x[exact], np.full(exact.sum(), floor), marker="o", facecolors="white", edgecolors=GREEN
    )
    axis_y = ax.get_xaxis_transform()  # x in data, y in axes fractions
    ax.scatter(x[capped], np.full(capped.sum(), 0.96), marker="^", color=RED, transform=axis_y)
    ax.scatter(
        x[~compared], np.full((~compared).sum(), 0.04), marker="s", color=GREY, transform=axis_y
    )
    ax.axhline(1.0, color=RED, linestyle="--", linewidth=1)
    ax.set_xticks(x, [c.name for c in checks], rotation=30, ha="right")
    ax.set_ylim(floor / 2, top * 1.5)
    title = f"{kind.capitalize()} checks: margin = error ÷ allowance (a check fails at ≥ 1)"
    ax.set(yscale="log", ylabel="margin", title=title)
    ax.grid(axis="y", alpha=0.3)
    handles = [
        Line2D([], [], marker="o", linestyle="none", color=GREEN, label="pass (margin < 1)"),
        Line2D([], [], marker="o", linestyle="none", color=RED, label="FAIL (margin ≥ 1)"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="none",
            markerfacecolor="white",
            markeredgecolor=GREEN,
            label="margin exactly 0 (at the floor)",
        ),
        Line2D([], [], marker="^", linestyle="none", color=RED, label="FAIL, no finite ratio"),
        Line2D(
            [],
            [],
            marker="s",
            linestyle="none",
            color=GREY,
            label="not compared (not provided,\nskipped, n/a)",
        ),
        Line2D([], [], color=RED, linestyle="--", label="margin 1: fails at or above"),
    ]
    _legend(ax, handles)
    return fig


# -- documents -----------------------------------------------------------------------------------
def _plots(curves: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(file, alt text) of the report's images, in reading order."""
    errors = [
        ("forward.png", "Margin (error ÷ allowance) of each layer's forward check"),
        ("gradient.png", "Margin (error ÷ allowance) of each gradient check"),
    ]
    if curves is None:
        return errors
    loss = ("loss.png", "Training loss of both sides per step, their difference and margin")
    return [loss, *errors]


def _files(curves: pd.DataFrame | None) -> list[tuple[str, str]]:
    files = [("verdict.json", "the verdict"), ("checks.csv", "every check")]
    return files if curves is None else [*files, ("curves.csv", "the training curves per step")]


def _floats(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its float columns in :func:`sci`'s format."""
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = [sci(None if pd.isna(v) else float(v)) for v in shown[column]]
    return shown


def text_bar(check: Check, width: int = 12) -> str:
    """The margin bar in text: min(margin, 1.5) in ``width`` cells, ``|`` at margin 1."""
    if check.status in NO_COMPARISON:
        return ""
    filled = round(min(check.margin, BAR_RANGE) / BAR_RANGE * width)
    cells = ["█" if i < filled else "·" for i in range(width)]
    cells.insert(round(width / BAR_RANGE), "|")
    return "".join(cells)


def markdown(verdict: Verdict, curves: pd.DataFrame | None, heldout: pd.DataFrame | None) -> str:
    # disable_numparse: tabulate would reformat strings that look like numbers ("3.10" -> 3.1).
    result = "PASS" if verdict.passed else "FAIL"
    checks = verdict.checks
    table = checks_table(checks)
    table.insert(3, "bar (| = 1)", [text_bar(c) for c in checks])
    table["result"] = [
        f"**{r}**" if c.failed else r for r, c in zip(table["result"], checks, strict=True)
    ]
    closest = checks_table(closest_to_failing(checks))
    line = verdict_line(checks, verdict.config, verdict.environment, verdict.first_failure)
    parts = [
        f"# {result}",
        f"`{line}`",
        f"**First divergence:** `{first_divergence(verdict.first_failure)}`",
        "## Environment",
        *(
            f"**{group}**\n\n{frame.to_markdown(index=False, disable_numparse=True)}"
            for group, frame in environment_frames(verdict.environment, verdict.config).items()
        ),
        "## Checks",
        f"*{PASS_RULE}*",
        "**Closest to failing** (largest margins)",
        closest.to_markdown(index=False, disable_numparse=True),
        "**Every check**, in data-flow order",
        table.to_markdown(index=False, disable_numparse=True),
        "## Plots",
        *([] if curves is not None else [NO_TRAINING]),
        *(f"![{alt}]({name})" for name, alt in _plots(curves)),
        "## Held-out evaluation per epoch",
        NO_TRAINING
        if heldout is None
        else _floats(heldout).to_markdown(index=False, disable_numparse=True),
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
th, td.num, td.text { white-space: nowrap; }
td.num { font-family: monospace; text-align: right; }
tr.fail td { background: #ffebe9; }
tr.fail td.result { color: #cf222e; font-weight: bold; }
tr.none td { color: #8c959f; }
td.bar { white-space: nowrap; padding: 0.1em 0.3em; }
td.bar svg { vertical-align: middle; }
.rule { background: #f6f8fa; border-left: 4px solid #8c959f; padding: 0.4em 0.8em; }
.environment { display: flex; flex-wrap: wrap; gap: 0 3em; align-items: flex-start; }
h3 { margin: 0.3em 0; font-size: 1em; }
img { display: block; max-width: 100%; margin: 1em 0; }
"""


def margin_bar(check: Check) -> str:
    """The margin as an inline SVG bar: length min(margin, 1.5) of :data:`BAR_WIDTH` pixels,
    green below 1, red at or above; a black tick at margin 1; empty without comparison."""
    one = BAR_WIDTH / BAR_RANGE
    tick = f'<line x1="{one:.1f}" y1="0" x2="{one:.1f}" y2="14" stroke="#222" stroke-width="1"/>'
    if check.status in NO_COMPARISON:
        bar = ""
    else:
        length = min(check.margin, BAR_RANGE) / BAR_RANGE * BAR_WIDTH
        colour = RED if check.margin >= 1 else GREEN
        bar = f'<rect x="0" y="3" width="{length:.1f}" height="8" fill="{colour}"/>'
    label = f"margin {margin_text(check)}"
    return (
        f'<svg width="{BAR_WIDTH + 2}" height="14" role="img" aria-label="{html.escape(label)}">'
        f'<rect x="0" y="3" width="{BAR_WIDTH}" height="8" fill="#eaeef2"/>{bar}{tick}</svg>'
    )


def checks_html(checks: Sequence[Check]) -> str:
    """The checks as an HTML table: a margin bar per row, failing rows highlighted and checks
    that compared nothing in grey."""
    table = checks_table(checks)
    numeric = {"margin", "max abs", "max rel", "atol", "rtol", "step"}
    head = "".join(
        f"<th>{html.escape(c)}</th>" + ("<th>margin bar (| = 1)</th>" if c == "margin" else "")
        for c in table.columns
    )
    rows = []
    for check, (_, row) in zip(checks, table.iterrows(), strict=True):
        css = "fail" if check.failed else "pass" if check.status == "pass" else "none"
        cells = []
        for column, value in row.items():
            kind = "num" if column in numeric else "result" if column == "result" else "text"
            cells.append(f'<td class="{kind}">{html.escape(str(value))}</td>')
            if column == "margin":
                cells.append(f'<td class="bar">{margin_bar(check)}</td>')
        rows.append(f'<tr class="{css}">{"".join(cells)}</tr>')
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + ("\n</tbody>\n</table>")
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_page(
    verdict: Verdict,
    curves: pd.DataFrame | None,
    heldout: pd.DataFrame | None,
    images: Mapping[str, bytes] | None = None,
) -> str:
    """The report as one page. With ``images`` (file name → PNG), the plots are inline data
    URIs and the page needs nothing beside it; without, they are relative links."""
    result = "PASS" if verdict.passed else "FAIL"
    c, esc = verdict.config, html.escape
    title = f"{result}: lenet-parity {c.model} {c.dtype} {verdict.environment.get('backend')}"
    line = verdict_line(verdict.checks, c, verdict.environment, verdict.first_failure)
    no_training = f"<p>{esc(NO_TRAINING)}</p>"
    shown = "\n".join(
        f'<img src="{esc(name if images is None else data_uri(images[name]))}" '
        f'alt="{esc(alt)}" title="{esc(name)}">'
        for name, alt in _plots(curves)
    )
    heldout_html = no_training if heldout is None else _floats(heldout).to_html(index=False)
    environment = "\n".join(
        f"<section><h3>{esc(group)}</h3>\n{frame.to_html(index=False)}</section>"
        for group, frame in environment_frames(verdict.environment, c).items()
    )
    files = "".join(
        f'<li><a href="{esc(name)}">{esc(name)}</a>: {esc(what)}</li>'
        for name, what in [*_files(curves), *((n, "the plot above") for n, _ in _plots(curves))]
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
<p class="summary">{esc(line)}</p>
<p><strong>First divergence:</strong> {esc(first_divergence(verdict.first_failure))}</p>
<h2>Environment</h2>
<div class="environment">{environment}</div>
<h2>Checks</h2>
<p class="rule">{esc(PASS_RULE)}</p>
<h3>Closest to failing (largest margins)</h3>
{checks_html(closest_to_failing(verdict.checks))}
<h3>Every check, in data-flow order</h3>
{checks_html(verdict.checks)}
<h2>Plots</h2>
{"" if curves is not None else no_training}
{shown}
<h2>Held-out evaluation per epoch</h2>
{heldout_html}
<h2>Files</h2>
<ul>{files}</ul>
</body>
</html>
"""
