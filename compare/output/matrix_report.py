"""The cross-backend matrix as documents: the heatmap in margin units, ``report.md`` and a
self-contained ``index.html`` (the heatmap inline).

A cell of the heatmap is one check of one comparison, coloured by its **margin** (error ÷
allowance, :mod:`compare.judge.checks`): the colour scale is centred on 1, where a check fails —
green well below, yellow close to it, red at or above it — and every cell is annotated with
its value, a failing one boxed; a comparison that was not made (refused) is a column of "n/a".
One panel per model and dtype; the panels of one model share a row (and its labels) when they
fit in :data:`MAX_WIDTH_IN` inches, else every panel has a row of its own, so that the page is
legible at 1280 px (text of at least 10 pt at :data:`DPI` dots per inch, shown at its own size).
A model is shown by its name: a zoo name as it is, a file by its file name
(:func:`model_labels`).

These functions take the :class:`compare.tools.matrix.Matrix` (its ``config``, ``cells``,
``environments`` and ``loss_paths``: the :class:`Matrix` protocol) and nothing else of it.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from compare.judge.checks import MARGIN_CAP
from compare.output.report import PASS_RULE, STYLE, blas_text, margin_bar
from compare.output.text import NO_COMPARISON, margin_text
from compare.parity.config import DEFAULT_MAX_STEPS

if TYPE_CHECKING:
    from compare.judge.checks import Check


class MatrixConfig(Protocol):
    """What this module reads of :class:`compare.tools.matrix.MatrixConfig`."""

    @property
    def backends(self) -> tuple[str, ...]: ...
    @property
    def dtypes(self) -> tuple[str, ...]: ...
    @property
    def epochs(self) -> int | None: ...


class Cell(Protocol):
    """What this module reads of :class:`compare.tools.matrix.Cell` (``variant``: the model
    source; and, where a cell has one, ``refused``: :func:`refusal`)."""

    @property
    def left(self) -> str: ...
    @property
    def right(self) -> str: ...
    @property
    def variant(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def checks(self) -> Sequence[Check]: ...
    @property
    def label(self) -> str: ...


class Matrix(Protocol):
    """What this module reads of :class:`compare.tools.matrix.Matrix` (``tools`` is further
    down the data flow than ``output``, so it is described here, not imported)."""

    @property
    def config(self) -> MatrixConfig: ...
    @property
    def environments(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def loss_paths(self) -> Mapping[str, str]: ...
    @property
    def cells(self) -> Sequence[Cell]: ...


HEATMAP_KINDS: Final = ("forward", "gradient", "training")  # the kinds two backends share
# log10 of the margins the colour scale spans: 1e-4 (and below) to 1e2 (and above).
LOG_LOW: Final = -4.0
LOG_HIGH: Final = 2.0
DPI: Final = 100
FONT_PT: Final = 10  # 13.9 px at DPI 100
CELL_IN: Final = 1.05  # a column of the heatmap, wide enough for "1.23e-04" and "tensorflow"
ROW_IN: Final = 0.27
LABELS_IN: Final = 2.7  # the row labels ("gradient conv2/kernel", "training heldout loss")
MAX_WIDTH_IN: Final = 12.0  # wider and the page scales it below 10 px text at 1280 px
MATRIX_NOTE: Final = (
    "scratch vs a backend: that backend's calibrated tolerances (compare/judge/tolerances.json). "
    "Backend vs backend: the Keras sides of both checks, judged against the sum of the two "
    "backends' tolerances (|A - B| <= |A - scratch| + |scratch - B|). The scratch loss path "
    "follows the backend: logits on TensorFlow, clipped probabilities on JAX and torch."
)
# Green far below 1, yellow just under it, red at and above it (a step at 1): centred on 1.
COLORMAP: Final = mcolors.LinearSegmentedColormap.from_list(
    "margin",
    [(0.0, "#1a9850"), (0.3, "#a6d96a"), (0.499, "#fee08b"), (0.5, "#f46d43"), (1.0, "#a50026")],
)
NORM: Final = mcolors.TwoSlopeNorm(vmin=LOG_LOW, vcenter=0.0, vmax=LOG_HIGH)


# -- models and refusals -----------------------------------------------------------------------
def model_label(source: str) -> str:
    """How a model is named in the matrix: a zoo name or ``MODULE:BUILDER`` as it is, a
    ``FILE.keras`` by its file name, ``path/to/file.py:BUILDER`` as ``file.py:BUILDER``."""
    if source.endswith(".keras"):
        return os.path.basename(source)
    where, colon, name = source.rpartition(":")
    if colon and where and (where.endswith(".py") or os.sep in where):
        return f"{os.path.basename(where)}:{name}"
    return source


def model_labels(sources: Iterable[str]) -> dict[str, str]:
    """Each source's :func:`model_label`; two sources of one label are shown in full."""
    sources = list(dict.fromkeys(sources))
    labels = [model_label(s) for s in sources]
    return {
        s: (s if labels.count(label) > 1 else label)
        for s, label in zip(sources, labels, strict=True)
    }


def _models(matrix: Matrix) -> list[str]:
    """The matrix's models, in its order."""
    return list(dict.fromkeys(c.variant for c in matrix.cells))


def refusal(cell: Cell) -> str | None:
    """Why the comparison ``cell`` was not made (``refused``), or None: it was."""
    reason = getattr(cell, "refused", None)
    return None if reason is None else str(reason)


# -- the heatmap ---------------------------------------------------------------------------------
def _row(check: Check) -> str:
    return f"{check.kind} {check.name}"


def _panels(matrix: Matrix) -> dict[tuple[str, str], list[Cell]]:
    return {
        (model, dtype): [c for c in matrix.cells if (c.variant, c.dtype) == (model, dtype)]
        for model, dtype in itertools.product(_models(matrix), matrix.config.dtypes)
    }


def margin_frames(matrix: Matrix) -> dict[tuple[str, str], pd.DataFrame]:
    """Per model and dtype: the margin of every check (rows, "kind name", in data-flow order)
    in every comparison (columns, "left vs right"); NaN where a comparison has no such check,
    the check compared nothing or the comparison was not made."""
    frames = {}
    for key, cells in _panels(matrix).items():
        rows: dict[str, None] = {}
        for cell in cells:
            rows |= {_row(ch): None for ch in cell.checks if ch.kind in HEATMAP_KINDS}
        columns = {
            cell.label: {
                _row(ch): np.nan if ch.status in NO_COMPARISON else ch.margin
                for ch in cell.checks
                if ch.kind in HEATMAP_KINDS
            }
            for cell in cells
        }
        frames[key] = pd.DataFrame(columns, index=list(rows), dtype=np.float64)
    return frames


def _statuses(cells: Sequence[Cell], rows: Iterable[str]) -> dict[tuple[str, str], str]:
    """(row, column) → the check's status; "n/a" in every row of a comparison not made."""
    statuses = {(_row(ch), cell.label): ch.status for cell in cells for ch in cell.checks}
    rows = list(rows)
    for cell in cells:
        if refusal(cell) is not None:
            statuses |= {(row, cell.label): "n/a" for row in rows}
    return statuses


def cell_text(margin: float, status: str | None) -> str:
    """A heatmap cell's annotation: the margin, "0", "cap", the status without comparison, or
    nothing when the comparison has no such check."""
    if status is None:
        return ""
    if status in NO_COMPARISON:
        return status
    if margin >= MARGIN_CAP:
        return "cap"
    return "0" if margin == 0 else f"{margin:.2e}"


def _layout(matrix: Matrix, frames: dict[tuple[str, str], pd.DataFrame]) -> list[list[Any]]:
    """The panels' grid: one row per model with its dtypes side by side when that fits in
    :data:`MAX_WIDTH_IN`, else one panel per row."""
    by_model = [
        [(model, dtype) for dtype in matrix.config.dtypes if (model, dtype) in frames]
        for model in _models(matrix)
    ]
    widest = max((sum(len(frames[k].columns) for k in row) for row in by_model), default=0)
    per_row = max((len(row) for row in by_model), default=1)
    if LABELS_IN + widest * CELL_IN + 0.4 * per_row + 1.3 <= MAX_WIDTH_IN:
        return [row for row in by_model if row]
    return [[key] for row in by_model for key in row]


def _tick_label(log: float) -> str:
    """The colour bar's label at log10(margin) = ``log``."""
    if log == 0:
        return "1: fails"
    bound = "≤" if log == LOG_LOW else "≥" if log == LOG_HIGH else ""
    return f"{bound}1e{log:+03.0f}"


def heatmap_png(matrix: Matrix) -> bytes:
    """:func:`heatmap_figure` as PNG bytes."""
    buffer = io.BytesIO()
    heatmap_figure(matrix).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def heatmap_figure(matrix: Matrix) -> Figure:
    """The heatmap (see the module docstring)."""
    frames = margin_frames(matrix)
    panels = _panels(matrix)
    grid = _layout(matrix, frames)
    n_columns = max(len(row) for row in grid)
    widths = [
        max(len(frames[row[i]].columns) for row in grid if i < len(row)) for i in range(n_columns)
    ]
    heights = [max(1, *(len(frames[k].index) for k in row)) for row in grid]
    fig = Figure(
        figsize=(
            LABELS_IN + sum(widths) * CELL_IN + 0.4 * n_columns + 1.3,
            1.3 + sum(h * ROW_IN + 0.9 for h in heights),
        ),
        layout="constrained",
        dpi=DPI,
    )
    axes = fig.subplots(
        len(grid),
        n_columns,
        squeeze=False,
        width_ratios=widths,
        height_ratios=heights,
    )
    image = None
    names = model_labels(_models(matrix))
    for r, row in enumerate(grid):
        for i in range(n_columns):
            ax = axes[r][i]
            if i >= len(row):
                ax.set_axis_off()
                continue
            model, dtype = row[i]
            title = f"{names[model]}, {dtype}"
            frame = frames[row[i]].reindex(
                frames[row[0]].index.union(frames[row[i]].index, sort=False)
            )
            if frame.empty:  # no comparison of this panel was made
                ax.set_axis_off()
                ax.set_title(title, fontsize=FONT_PT + 2, fontweight="bold")
                ax.text(0.5, 0.5, "n/a: no comparison made", ha="center", fontsize=FONT_PT)
                continue
            statuses = _statuses(panels[row[i]], frame.index)
            values = frame.to_numpy(dtype=np.float64)
            with np.errstate(divide="ignore"):  # log10(0) = -inf: the bottom of the scale
                logs = np.clip(np.log10(values), LOG_LOW, LOG_HIGH)
            image = ax.imshow(np.ma.masked_invalid(logs), aspect="auto", cmap=COLORMAP, norm=NORM)
            ax.set_facecolor("#f3f3f3")  # no such check, or it compared nothing
            labels = [c.replace(" vs ", "\nvs ") for c in frame.columns]
            ax.set_xticks(range(len(frame.columns)), labels, fontsize=FONT_PT)
            ax.xaxis.tick_top()
            ax.tick_params(length=0)
            ax.set_yticks(range(len(frame.index)), frame.index if i == 0 else [], fontsize=FONT_PT)
            ax.set_title(title, fontsize=FONT_PT + 2, fontweight="bold")
            for (y, name), (x, column) in itertools.product(
                enumerate(frame.index), enumerate(frame.columns)
            ):
                status = statuses.get((name, column))
                text = cell_text(float(values[y, x]), status)
                if not text:
                    continue
                dark = np.isfinite(logs[y, x]) and (logs[y, x] < -3 or logs[y, x] > 0.8)
                ax.text(
                    x,
                    y,
                    text,
                    ha="center",
                    va="center",
                    fontsize=FONT_PT - 1,
                    color="white" if dark else "#222",
                    fontweight="bold" if status == "fail" else "normal",
                )
                if status == "fail":
                    ax.add_patch(
                        Rectangle(
                            (x - 0.48, y - 0.48), 0.96, 0.96, fill=False, edgecolor="black", lw=2
                        )
                    )
    if image is not None:
        # about 5.5 inches long, however tall the panels are
        shrink = min(0.6, 5.5 / fig.get_figheight())
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=shrink, aspect=25 * shrink)
        ticks = [float(t) for t in range(int(LOG_LOW), int(LOG_HIGH) + 1)]
        bar.set_ticks(ticks, labels=[_tick_label(t) for t in ticks], fontsize=FONT_PT)
        bar.set_label("margin = error ÷ allowance (fails at ≥ 1)", fontsize=FONT_PT)
    return fig


def plot_heatmap(matrix: Matrix, path: Path) -> bytes:
    """Write the heatmap to ``path`` and return its PNG bytes."""
    png = heatmap_png(matrix)
    path.write_bytes(png)
    return png


# -- tables and text ---------------------------------------------------------------------------
def _largest(checks: Sequence[Check]) -> Check | None:
    compared = [c for c in checks if c.status not in NO_COMPARISON]
    return max(compared, key=lambda c: c.margin, default=None)


def comparisons_frame(matrix: Matrix) -> pd.DataFrame:
    """One row per comparison: the model (:func:`model_labels`), the largest margin per kind,
    its worst check, how many checks pass, and the result (n/a with why for a comparison not
    made)."""
    rows = []
    labels = model_labels(_models(matrix))
    for c in matrix.cells:
        row: dict[str, Any] = {"comparison": c.label, "model": labels[c.variant], "dtype": c.dtype}
        for kind in HEATMAP_KINDS:
            worst = _largest([ch for ch in c.checks if ch.kind == kind])
            row[f"{kind} margin"] = "-" if worst is None else margin_text(worst)
        worst = _largest(c.checks)
        row["largest margin at"] = "-" if worst is None else _row(worst)
        failed = [ch for ch in c.checks if ch.status == "fail"]
        compared = [ch for ch in c.checks if ch.status not in NO_COMPARISON]
        row["checks passed"] = f"{len(compared) - len(failed)}/{len(compared)}"
        refused = refusal(c)
        row["result"] = (
            f"n/a: {refused}"
            if refused is not None
            else "pass"
            if not failed
            else f"FAIL ({_row(failed[0])})"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def summary(matrix: Matrix) -> str:
    """The matrix in one line: PASS, or FAIL with the comparisons that disagree; and the
    comparisons not made (n/a), if any."""
    config = matrix.config
    labels = model_labels(_models(matrix))
    failed = [c for c in matrix.cells if any(ch.status == "fail" for ch in c.checks)]
    refused = [c for c in matrix.cells if refusal(c) is not None]
    training = (
        f"one epoch or {DEFAULT_MAX_STEPS} steps of training, whichever is shorter"
        if config.epochs is None
        else f"{config.epochs} epoch{'s' * (config.epochs != 1)} of training"
    )
    what = (
        f"{len(matrix.cells)} comparisons over {', '.join(config.backends)} "
        f"({', '.join(labels.values())}; {', '.join(config.dtypes)}; {training})"
    )
    na = ""
    if refused:
        names = "; ".join(f"{c.label} {labels[c.variant]} {c.dtype}" for c in refused)
        na = f"; {len(refused)} not made (n/a): {names}"
    if not failed:
        return (
            f"PASS: all {what} agree"
            if not refused
            else f"PASS: the {len(matrix.cells) - len(refused)} made of {what} agree{na}"
        )
    names = "; ".join(f"{c.label} {labels[c.variant]} {c.dtype}" for c in failed)
    return f"FAIL: {len(failed)} of {what} disagree: {names}{na}"


def environment_frame(matrix: Matrix) -> pd.DataFrame:
    """One row per backend: its versions, CPU, BLAS, the scratch loss path and its flags."""
    rows = []
    skip = {"backend", "loss_path", "flags", "machine", "lenet_parity", "cpu", "blas", "dtype"}
    for backend, env in matrix.environments.items():
        rows.append(
            {
                "backend": backend,
                "versions": ", ".join(f"{k} {v}" for k, v in env.items() if k not in skip),
                "cpu": f"{env.get('cpu', '-')} ({env.get('machine', '-')})",
                "blas": blas_text(env.get("blas")),
                "scratch loss path": matrix.loss_paths.get(backend, "-"),
                "flags": ", ".join(f"{k}={v}" for k, v in env.get("flags", {}).items()),
            }
        )
    return pd.DataFrame(rows)


def markdown(matrix: Matrix) -> str:
    passed = all(ch.status != "fail" for c in matrix.cells for ch in c.checks)
    return "\n".join(
        [
            f"# lenet-parity cross-backend matrix: {'PASS' if passed else 'FAIL'}",
            "",
            summary(matrix),
            "",
            MATRIX_NOTE,
            "",
            f"*{PASS_RULE}*",
            "",
            "## Backends",
            "",
            environment_frame(matrix).to_markdown(index=False, disable_numparse=True),
            "",
            "## Comparisons",
            "",
            comparisons_frame(matrix).to_markdown(index=False, disable_numparse=True),
            "",
            "## Margin of every check",
            "",
            "![heatmap of every check's margin in every comparison](heatmap.png)",
            "",
        ]
    )


def _comparisons_html(matrix: Matrix) -> str:
    frame = comparisons_frame(matrix)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns) + "<th>largest margin</th>"
    rows = []
    for cell, (_, row) in zip(matrix.cells, frame.iterrows(), strict=True):
        result = str(row["result"])
        css = (
            "fail" if result.startswith("FAIL") else "none" if result.startswith("n/a") else "pass"
        )
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in row.to_numpy())
        worst = _largest(cell.checks)
        bar = "" if worst is None else margin_bar(worst)
        rows.append(f'<tr class="{css}">{cells}<td class="bar">{bar}</td></tr>')
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + ("\n</tbody>\n</table>")
    )


def html_page(matrix: Matrix, heatmap: bytes | None = None) -> str:
    """The matrix as one page; with ``heatmap`` (PNG bytes) inline, else linking heatmap.png."""
    passed = all(ch.status != "fail" for c in matrix.cells for ch in c.checks)
    result, esc = ("PASS" if passed else "FAIL"), html.escape
    source = (
        "heatmap.png"
        if heatmap is None
        else "data:image/png;base64," + base64.b64encode(heatmap).decode("ascii")
    )
    # The heatmap at its own size (text of 10 pt at DPI): the page widens for it.
    style = STYLE + "body { max-width: 1240px; }\nimg.heatmap { max-width: none; }\n"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(result)}: lenet-parity cross-backend matrix</title>
<style>{style}</style>
</head>
<body>
<h1 class="{result.lower()}">{result}</h1>
<p class="summary">{esc(summary(matrix))}</p>
<p>{esc(MATRIX_NOTE)}</p>
<p class="rule">{esc(PASS_RULE)}</p>
<h2>Backends</h2>
{environment_frame(matrix).to_html(index=False)}
<h2>Comparisons</h2>
{_comparisons_html(matrix)}
<h2>Margin of every check</h2>
<img class="heatmap" src="{esc(source)}" alt="heatmap of every check's margin in every comparison">
<h2>Files</h2>
<ul><li><a href="matrix.json">matrix.json</a>: every comparison and check</li>
<li><a href="matrix.csv">matrix.csv</a>: one row per check of every comparison</li>
<li><a href="heatmap.png">heatmap.png</a>: the heatmap above</li>
<li><a href="report.md">report.md</a>: this page in Markdown</li></ul>
</body>
</html>
"""


def write_documents(matrix: Matrix, folder: Path) -> None:
    """``heatmap.png``, ``report.md`` and ``index.html`` (the heatmap inline) into ``folder``."""
    png = plot_heatmap(matrix, folder / "heatmap.png")
    # a path that is not UTF-8 (kept by Python as surrogates) is written escaped, not an error
    for name, content in (("report.md", markdown(matrix)), ("index.html", html_page(matrix, png))):
        (folder / name).write_text(content, encoding="utf-8", errors="backslashreplace")
