"""Every check's margin (error ÷ allowance, >= 1 exactly when it fails), the report and the
matrix documents that show it, the environment's CPU and BLAS, and the framework chatter filter.

Everything here runs on hand-made checks, verdicts and matrices (no Keras) except the one test
that imports TensorFlow inside the filter."""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib.util
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread
from matplotlib.text import Text

from compare.judge.checks import (
    MARGIN_CAP,
    Check,
    PerElement,
    Tolerance,
    compare_arrays,
    element_margins,
)
from compare.output import matrix_report, report
from compare.parity import environment
from compare.parity.config import CheckConfig
from compare.sides import quiet

BELOW_ONE = float(np.nextafter(1.0, 0.0))


# -- margin ------------------------------------------------------------------------------------
def assert_consistent(check: Check) -> None:
    assert math.isfinite(check.margin)
    assert 0 <= check.margin <= MARGIN_CAP
    assert (check.margin >= 1) == check.failed == (check.status == "fail")
    assert json.loads(json.dumps(check.as_dict(), allow_nan=False))["margin"] == check.margin


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Tolerance]:
    size = int(rng.integers(0, 40))
    dtype = rng.choice([np.float32, np.float64])
    b = (rng.normal(size=size) * 10.0 ** rng.integers(-6, 6)).astype(dtype)
    kind = rng.integers(0, 4)
    if kind == 0:  # equal
        a = b.copy()
    elif kind == 1:  # small noise
        a = (b + rng.normal(size=size) * 10.0 ** rng.integers(-12, -2)).astype(dtype)
    elif kind == 2:  # a few large errors
        a = b.copy()
        a[rng.random(size) < 0.1] += 1.0
    else:  # exact zeros and equal magnitudes mixed in
        a = np.where(rng.random(size) < 0.5, 0.0, b).astype(dtype)
    atol = float(rng.choice([0.0, 1e-300, 10.0 ** rng.uniform(-12, 0)]))
    rtol = float(rng.choice([0.0, 10.0 ** rng.uniform(-12, 0), 1.0]))
    return a, b, Tolerance(atol, rtol)


def test_margin_is_at_least_1_exactly_when_the_check_fails_over_random_arrays() -> None:
    rng = np.random.default_rng(18)
    statuses = set()
    for _ in range(2000):
        a, b, tol = random_case(rng)
        check = compare_arrays("forward", "x", a, b, tol)
        assert_consistent(check)
        statuses.add(check.status)
    assert statuses == {"pass", "fail"}


def test_per_element_tolerances_give_the_worst_elements_margin() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):
        b = rng.normal(size=30)
        a = b + rng.normal(size=30) * 1e-6
        atol = 10.0 ** rng.uniform(-8, -5, size=30)
        rtol = 10.0 ** rng.uniform(-8, -5, size=30)
        check = compare_arrays("training", "step loss", a, b, PerElement(atol, rtol))
        assert_consistent(check)
        abs_err = np.abs(a - b)
        rel = abs_err / (np.abs(a) + np.abs(b))
        bad = (abs_err > atol) & (rel > rtol)
        expected = np.minimum(abs_err / atol, rel / rtol)
        expected = np.where(bad, np.maximum(expected, 1), np.minimum(expected, BELOW_ONE))
        assert check.margin == pytest.approx(expected.max(), rel=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "atol", "rtol", "failed"),
    [
        # abs_err == atol exactly: not beyond atol, so it passes (and min(1.0, ...) is 1.0)
        (0.5, 0.0, 0.5, 0.1, False),
        # rel_err == rtol exactly (1 / (1 + 1) = 0.5): not beyond rtol
        (1.0, -0.0, 1e-3, 1.0, False),
        (2.0, 0.0, 1e-3, 1.0, False),  # rel = 1 <= rtol 1
        # the next float above atol, and relatively far: fails
        (float(np.nextafter(0.5, 1.0)), 0.0, 0.5, 0.1, True),
        # allowances of 0: any error fails with the cap, no error passes with 0
        (1.0, 2.0, 0.0, 0.0, True),
        (1.0, 1.0, 0.0, 0.0, False),
        # a tiny allowance: the ratio overflows, capped
        (1.0, 2.0, 1e-320, 1e-320, True),
        # atol 0 but rel within rtol: passes, its ratio is rel/rtol
        (1.0, 1.001, 0.0, 0.01, False),
    ],
)
def test_margin_at_the_equality_edges(
    a: float, b: float, atol: float, rtol: float, failed: bool
) -> None:
    check = compare_arrays("forward", "x", np.array([a]), np.array([b]), Tolerance(atol, rtol))
    assert check.failed is failed
    assert_consistent(check)


def test_element_margins_divide_by_zero_as_documented() -> None:
    abs_err = np.array([0.0, 1.0, 1.0, 0.0, 2.0])
    rel = np.array([0.0, 1.0, 0.5, 0.0, 0.5])
    atol = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    rtol = np.array([0.0, 0.0, 1.0, 0.0, 0.25])
    margins = element_margins(abs_err, rel, atol, rtol)
    # 0/0 = 0; x/0 = inf (capped); min(inf, 0.5) = 0.5; 0/1 = 0; min(2, 2) = 2
    np.testing.assert_array_equal(margins, [0.0, MARGIN_CAP, 0.5, 0.0, 2.0])


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        (np.zeros(3), np.zeros(4)),  # shape
        (np.zeros(3, np.float32), np.zeros(3)),  # dtype
        (np.array([np.nan, 1.0]), np.array([1.0, 1.0])),  # NaN places
        (np.array([np.inf]), np.array([-np.inf])),  # Inf signs
    ],
)
def test_a_mismatch_has_the_cap_as_margin(actual: np.ndarray, expected: np.ndarray) -> None:
    check = compare_arrays("gradient", "x", actual, expected, Tolerance(1.0, 1.0))
    assert check.failed
    assert check.margin == MARGIN_CAP
    assert_consistent(check)


def test_nonfinite_at_the_same_places_is_exact() -> None:
    a = np.array([np.nan, np.inf, 1.0])
    check = compare_arrays("forward", "x", a, a.copy(), Tolerance(0.0, 0.0))
    assert (check.status, check.margin) == ("pass", 0.0)


def test_a_check_without_comparison_has_margin_0() -> None:
    for status in ("not provided", "skipped", "n/a"):
        check = Check.without_comparison("gradient", "x", status, "why")
        assert check.margin == 0.0
        assert check.as_dict()["margin"] == 0.0


def test_a_check_refuses_a_margin_that_contradicts_its_status() -> None:
    base = compare_arrays("forward", "x", np.ones(2), np.ones(2), Tolerance(0.1, 0.1))
    assert base.margin == 0.0
    with pytest.raises(ValueError, match="margin"):
        dataclasses.replace(base, margin=1.0)
    with pytest.raises(ValueError, match="margin"):
        dataclasses.replace(base, passed=False, status="fail", margin=0.5)
    with pytest.raises(ValueError, match="margin"):
        dataclasses.replace(base, margin=math.inf)
    # left out, a failure's margin is the cap
    failed = dataclasses.replace(base, passed=False, status="fail", margin=math.nan)
    assert failed.margin == MARGIN_CAP


def test_a_check_round_trips_through_its_json_record() -> None:
    check = compare_arrays(
        "forward", "x", np.array([1.0, 2.0]), np.array([1.0, 2.1]), Tolerance(0.05, 0.01)
    )
    record = json.loads(json.dumps(check.as_dict(), allow_nan=False))
    for key in ("worst_index", "first_bad_index"):
        record[key] = tuple(record[key])
    assert Check(**record) == check
    assert check.margin == pytest.approx(2.0)  # min(0.1 / 0.05, 0.0244 / 0.01)


# -- hand-made verdicts and matrices ---------------------------------------------------------
FORWARD = ("conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output")
PARAMS = ("output/kernel", "output/bias", "fc1/kernel", "fc1/bias", "conv1/kernel", "conv1/bias")


def made(kind: str, name: str, margin: float) -> Check:
    """A real comparison whose worst element's margin is ``margin`` (atol 1e-6 rules)."""
    b = np.linspace(1e-3, 1.0, 20)
    a = b.copy()
    a[0] += margin * 1e-6
    return compare_arrays(kind, name, a, b, Tolerance(1e-6, 1e-9))


def made_checks(rng: np.random.Generator, bug: str | None = None) -> list[Check]:
    checks = [made("forward", n, 10 ** rng.uniform(-4, -0.5)) for n in FORWARD]
    for name in PARAMS:
        checks.append(made("gradient", name, 40.0 if name == bug else 10 ** rng.uniform(-4, -0.5)))
        checks.append(
            Check.without_comparison("finite-difference", name, "n/a", "every entry on a kink")
            if name == "conv1/bias"
            else made("finite-difference", name, 10 ** rng.uniform(-4, -0.5))
        )
    checks.append(made("training", "step loss", 10 ** rng.uniform(-4, -0.5)))
    checks.append(Check.without_comparison("training", "heldout accuracy", "not provided", "no"))
    checks.append(Check.without_comparison("finite-difference", "input", "skipped", "not asked"))
    return checks


ENV: dict[str, Any] = {
    "lenet_parity": "0.0.test",
    "python": "3.11.0",
    "numpy": "2.3.0",
    "keras": "3.15.0",
    "tensorflow": "2.21.0",
    "backend": "tensorflow",
    "loss_path": "logits",
    "dtype": "float32",
    "flags": {"OPENBLAS_CORETYPE": "unset", "TF_ENABLE_ONEDNN_OPTS": "unset (on)"},
    "machine": "x86_64",
    "cpu": "Test CPU Model 9000",
    "blas": {"library": "openblas", "version": "0.3.99", "architecture": "Zen", "threads": 3},
}


def curve_frame(steps: int = 30, diverge_at: int | None = None) -> pd.DataFrame:
    step = np.arange(1, steps + 1)
    reference = 2.0 * np.exp(-step / 10) + 0.1
    atol = np.full(steps, 1e-5)
    diff = np.full(steps, 1e-7)
    diff[::5] = 0.0
    if diverge_at is not None:
        diff[diverge_at - 1 :] = 1e-3
    ours = reference + diff
    return pd.DataFrame(
        {
            "step": step,
            "epoch": (step - 1) // 10 + 1,
            "implementation_loss": ours,
            "reference_loss": reference,
            "abs_diff": np.abs(ours - reference),
            "atol": atol,
            "rtol": np.full(steps, 1e-7),
        }
    )


@dataclasses.dataclass
class MadeVerdict:
    """What the report reads of a verdict, and nothing more (no summary(), table(), frame())."""

    passed: bool
    config: CheckConfig
    environment: dict[str, Any]
    checks: list[Check]
    curves: pd.DataFrame | None

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.failed), None)

    def curve_frame(self) -> pd.DataFrame | None:
        return self.curves

    def heldout_frame(self) -> pd.DataFrame | None:
        if self.curves is None:
            return None
        return pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "step": [10, 20, 30],
                "implementation_loss": [0.000324, 0.5, 12.25],
                "reference_loss": [0.000324, 0.5, 12.25],
                "abs_diff": [0.0, 1e-9, 3.5e-7],
                "implementation_accuracy": [0.5, 0.75, 0.875],
                "reference_accuracy": [0.5, 0.75, 0.875],
            }
        )

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}


def made_verdict(failing: bool = False, training: bool = True) -> MadeVerdict:
    checks = made_checks(np.random.default_rng(0), bug="conv1/bias" if failing else None)
    curves = curve_frame(diverge_at=12 if failing else None) if training else None
    return MadeVerdict(not failing, CheckConfig(), ENV, checks, curves)


@dataclasses.dataclass(frozen=True)
class MadeMatrixConfig:
    backends: tuple[str, ...]
    variants: tuple[str, ...] = ("keras-docs",)
    dtypes: tuple[str, ...] = ("float32", "float64")
    epochs: int = 1


@dataclasses.dataclass(frozen=True)
class MadeCell:
    left: str
    right: str
    variant: str
    dtype: str
    checks: list[Check]

    @property
    def label(self) -> str:
        return f"{self.left} vs {self.right}"


@dataclasses.dataclass(frozen=True)
class MadeMatrix:
    config: MadeMatrixConfig
    environments: dict[str, dict[str, Any]]
    loss_paths: dict[str, str]
    cells: list[MadeCell]


def made_matrix(
    backends: tuple[str, ...] = ("tensorflow", "torch"),
    variants: tuple[str, ...] = ("keras-docs",),
    failing: bool = False,
) -> Any:
    rng = np.random.default_rng(1)
    config = MadeMatrixConfig(backends, variants)
    cells = []
    for variant in variants:
        for dtype in config.dtypes:
            for b in backends:
                bug = "fc1/kernel" if failing and b == backends[-1] and dtype == "float32" else None
                cells.append(MadeCell("scratch", b, variant, dtype, made_checks(rng, bug)))
            for i, left in enumerate(backends):
                for right in backends[i + 1 :]:
                    checks = [c for c in made_checks(rng) if c.kind != "finite-difference"]
                    cells.append(MadeCell(left, right, variant, dtype, checks))
    envs = {b: {**ENV, "backend": b} for b in backends}
    return MadeMatrix(config, envs, {b: "logits" for b in backends}, cells)


# -- the report --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def failing_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "latest"
    return report.write_report(made_verdict(failing=True), out)  # type: ignore[arg-type]


def test_every_format_carries_the_margin(failing_report: Path) -> None:
    verdict = made_verdict(failing=True)
    frame = pd.read_csv(failing_report / "checks.csv", keep_default_na=False)
    assert list(frame.columns) == list(report.CHECK_COLUMNS)
    np.testing.assert_array_equal(frame["margin"], [c.margin for c in verdict.checks])
    assert frame["status"].tolist() == [c.status for c in verdict.checks]
    md = (failing_report / "report.md").read_text(encoding="utf-8")
    page = (failing_report / "index.html").read_text(encoding="utf-8")
    for check in verdict.checks:
        if check.status in ("pass", "fail"):
            assert report.sci(check.margin) in md
            assert report.sci(check.margin) in page
    for text in (md, html.unescape(page)):
        assert "an element fails only when it is beyond both atol and rtol" in text.lower()
        assert "a check fails at margin ≥ 1" in text


def test_the_margin_bar_is_green_below_1_and_red_from_1() -> None:
    passing = made("forward", "x", 0.0)
    failing = dataclasses.replace(passing, passed=False, status="fail", margin=1.0)
    for check, colour, length in (
        (passing, report.GREEN, 0.0),
        (dataclasses.replace(passing, margin=0.75), report.GREEN, 60.0),
        (dataclasses.replace(passing, margin=BELOW_ONE), report.GREEN, 80.0),
        (failing, report.RED, 80.0),
        (dataclasses.replace(failing, margin=3.0), report.RED, 120.0),  # min(margin, 1.5)
        (dataclasses.replace(failing, margin=MARGIN_CAP), report.RED, 120.0),
    ):
        assert f'width="{length:.1f}" height="8" fill="{colour}"' in report.margin_bar(check)
    skipped = report.margin_bar(Check.without_comparison("forward", "x", "skipped", "why"))
    assert report.GREEN not in skipped and report.RED not in skipped


def test_failing_rows_are_highlighted_and_comparisons_without_result_are_grey(
    failing_report: Path,
) -> None:
    verdict = made_verdict(failing=True)
    page = (failing_report / "index.html").read_text(encoding="utf-8")
    n_failed = sum(c.failed for c in verdict.checks)
    n_none = sum(c.status in report.NO_COMPARISON for c in verdict.checks)
    # the full table, and the closest-to-failing table (which lists the failures first)
    assert page.count('<tr class="fail">') == 2 * n_failed
    assert page.count('<tr class="none">') == n_none
    for status in ("not provided", "skipped", "n/a"):
        assert re.search(rf'<tr class="none">.*?{re.escape(status)} \(', page)
    closest = report.closest_to_failing(verdict.checks)
    assert [c.failed for c in closest[:n_failed]] == [True] * n_failed
    assert [c.margin for c in closest] == sorted((c.margin for c in closest), reverse=True)


def test_index_html_is_self_contained(failing_report: Path) -> None:
    page = (failing_report / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"[^>]*title="([^"]+)"', page)
    assert [name for _, name in sources] == ["loss.png", "forward.png", "gradient.png"]
    for source, name in sources:
        assert source.startswith("data:image/png;base64,")
        png = base64.b64decode(source.split(",", 1)[1])
        assert png == (failing_report / name).read_bytes()  # the PNG files are kept too
    assert not re.search(r'src="(?!data:)', page)
    assert "<link" not in page and "url(" not in page


def test_report_md_has_one_number_format(failing_report: Path) -> None:
    md = (failing_report / "report.md").read_text(encoding="utf-8")
    measured = md.split("## Checks", 1)[1]  # the checks, their plots and the held-out table
    cells = [
        c.strip() for line in measured.splitlines() if line.startswith("|") for c in line.split("|")
    ]
    numbers = [c for c in cells if re.fullmatch(r"-?[\d.]+(e[+-]\d+)?", c)]
    assert numbers, "no numbers in the tables"
    for number in numbers:
        assert re.fullmatch(r"-?\d\.\d\de[+-]\d\d|\d+", number), number
    assert "3.24e-04" in measured and "0.000324" not in measured


def test_the_report_needs_no_presentation_methods_of_the_verdict() -> None:
    verdict = made_verdict(failing=True)
    for method in ("summary", "table", "frame"):
        assert not hasattr(verdict, method)
    line = report.verdict_line(
        verdict.checks, verdict.config, verdict.environment, verdict.first_failure
    )
    assert line.startswith("FAIL: scratch's first divergence at gradient 'conv1/bias'")
    assert "margin 4.00e+01: max abs 4.00e-05" in line
    assert "1 of 23 checks fail" in line
    passing = made_verdict()
    line = report.verdict_line(passing.checks, passing.config, passing.environment, None)
    assert line.startswith("PASS: scratch matches Keras on all 20 compared checks")
    assert "(1 not provided, 1 skipped, 1 n/a)" in line
    table = report.checks_table(verdict.checks)
    assert list(table.columns) == [
        "check",
        "kind",
        "margin",
        "max abs",
        "max rel",
        "atol",
        "rtol",
        "step",
        "result",
    ]
    row = table[table["check"] == "heldout accuracy"].iloc[0]
    assert (row["margin"], row["atol"], row["result"]) == ("-", "-", "not provided (no)")


def test_the_environment_shows_the_cpu_and_the_blas(failing_report: Path) -> None:
    md = (failing_report / "report.md").read_text(encoding="utf-8")
    page = (failing_report / "index.html").read_text(encoding="utf-8")
    for text in (md, page):
        assert "Test CPU Model 9000" in text
        assert "openblas 0.3.99, kernel Zen, 3 threads" in text


def test_the_loss_plot_marks_the_steps_outside_and_the_first_bad_step() -> None:
    curves = curve_frame(diverge_at=12)
    margins = report.step_margins(curves)
    assert margins is not None
    assert np.flatnonzero(margins >= 1).tolist() == list(range(11, 30))  # steps 12..30
    figure = report.loss_figure(curves, None)
    labels = {t.get_text() for ax in figure.axes for t in ax.get_legend().get_texts()}
    assert {"outside the envelope (19 steps)", "first bad step (12)", "fails at 1"} <= labels
    calm = report.loss_figure(curve_frame(), None)
    labels = {t.get_text() for ax in calm.axes for t in ax.get_legend().get_texts()}
    assert not any("outside" in label or "first bad" in label for label in labels)


def test_the_stem_plots_legend_shows_every_marker_kind() -> None:
    checks = [c for c in made_verdict().checks if c.kind == "forward"]  # every one passes
    figure = report.errors_figure(checks, "forward")
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert len(labels) == 6
    for word in ("pass", "FAIL", "exactly 0", "no finite ratio", "not compared", "margin 1"):
        assert any(word in label for label in labels), (word, labels)


def test_without_training_the_report_has_no_loss_plot(tmp_path: Path) -> None:
    out = report.write_report(made_verdict(training=False), tmp_path / "latest")  # type: ignore[arg-type]
    assert not (out / "loss.png").exists()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 2
    assert report.NO_TRAINING in page


# -- the matrix --------------------------------------------------------------------------------
def test_the_heatmap_cells_are_the_margins() -> None:
    matrix = made_matrix(failing=True)
    frames = matrix_report.margin_frames(matrix)
    assert set(frames) == {("keras-docs", "float32"), ("keras-docs", "float64")}
    frame = frames["keras-docs", "float32"]
    cell = matrix.cells[1]  # scratch vs torch, float32: fc1/kernel fails
    assert frame.loc["gradient fc1/kernel", cell.label] == pytest.approx(40.0)
    for check in cell.checks:
        if check.kind in matrix_report.HEATMAP_KINDS and check.status in ("pass", "fail"):
            assert frame.loc[f"{check.kind} {check.name}", cell.label] == check.margin
    assert math.isnan(frame.loc["training heldout accuracy", cell.label])  # not provided
    assert matrix_report.cell_text(MARGIN_CAP, "fail") == "cap"
    assert matrix_report.cell_text(0.0, "pass") == "0"
    assert matrix_report.cell_text(math.nan, "skipped") == "skipped"


@pytest.mark.parametrize(
    ("backends", "variants"),
    [
        (("tensorflow", "torch"), ("keras-docs",)),
        (("tensorflow", "jax", "torch"), ("classic", "keras-docs")),
    ],
)
def test_the_heatmap_is_legible_at_1280_px(
    backends: tuple[str, ...], variants: tuple[str, ...]
) -> None:
    figure = matrix_report.heatmap_figure(made_matrix(backends, variants, failing=True))
    width_px = figure.get_figwidth() * matrix_report.DPI
    assert width_px <= 1240  # the page's width: shown at its own size, not scaled down
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # the constrained layout, as when saved
    renderer = canvas.get_renderer()
    texts = [t for t in figure.findobj(Text) if t.get_text() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) * matrix_report.DPI / 72 >= 10
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>" and ax.axison]
    assert len(panels) == 2 * len(variants)
    for ax in panels:
        for label in ax.get_yticklabels() + ax.get_xticklabels():
            if not label.get_text():
                continue
            box = label.get_window_extent(renderer)
            for other in panels:
                if other is not ax:
                    assert not box.overlaps(other.get_window_extent(renderer)), label.get_text()
    png = io.BytesIO()
    canvas.print_png(png)  # as heatmap_png saves it
    png.seek(0)
    assert imread(png).shape[1] == round(width_px)


def test_the_matrix_page_is_self_contained_and_in_margins(tmp_path: Path) -> None:
    matrix = made_matrix(failing=True)
    matrix_report.write_documents(matrix, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"heatmap.png", "report.md", "index.html"}
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 1
    assert base64.b64decode(sources[0].split(",", 1)[1]) == (tmp_path / "heatmap.png").read_bytes()
    assert page.count('<tr class="fail">') == 1
    assert "FAIL: 1 of 6 comparisons" in page
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    frame = matrix_report.comparisons_frame(matrix)
    assert frame.loc[1, "gradient margin"] == "4.00e+01"
    assert frame.loc[1, "result"] == "FAIL (gradient fc1/kernel)"
    assert "4.00e+01" in md
    env = matrix_report.environment_frame(matrix)
    assert env.loc[0, "cpu"] == "Test CPU Model 9000 (x86_64)"
    assert "kernel Zen" in env.loc[0, "blas"]


# -- the environment ---------------------------------------------------------------------------
def test_the_cpu_model_comes_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n")
    assert environment.cpu_model(cpuinfo) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert environment.cpu_model(tmp_path / "absent")  # platform.processor(), or "unknown"


def test_the_blas_names_its_library_kernel_and_threads() -> None:
    blas = environment.blas()
    assert blas["library"]
    assert "threads" in blas and "architecture" in blas
    json.dumps(blas)
    if "openblas" in str(blas["library"]) and sys.platform == "linux":
        assert blas["architecture"]  # the kernel OpenBLAS picked for this CPU
        assert isinstance(blas["threads"], int) and blas["threads"] >= 1


def test_the_flags_list_every_blas_and_onednn_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    flags = environment.env_flags()
    assert list(flags) == list(environment.ENV_FLAGS)
    assert flags["OPENBLAS_NUM_THREADS"] == "1"
    assert flags["OPENBLAS_CORETYPE"] == "unset"


# -- framework chatter -------------------------------------------------------------------------
CHATTER_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796156574.989076    4848 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796156575.034052    4848 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "W0000 00:00:1796156587.065199    4848 util.cc:163] Not handling type DT_DOUBLE",
    "E0000 00:00:1731000000.000000  123 cuda_dnn.cc:8310] Unable to register cuDNN factory: "
    "Attempting to register factory for plugin cuDNN when one has already been registered",
    "W0000 00:00:1731000000.000000  123 computation_placer.cc:177] computation placer already "
    "registered. Please check linkage and avoid linking the same target more than once.",
]


def run_python(code: str, **env: str) -> str:
    """Run ``code`` in a new interpreter; its stderr, carriage returns kept."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        timeout=300,
        check=True,
        env={**os.environ, **env},
    )
    return done.stderr.decode("utf-8")


def test_known_chatter_is_recognised_and_nothing_else() -> None:
    for line in CHATTER_LINES:
        assert quiet.is_chatter(line), line
    for line in (
        "lenet-parity: warning: the weights file has no dtype",
        "W0000 00:00:1796156587.065199    4848 util.cc:163] Not handling type DT_FLOAT16 please",
        "E0000 00:00:1796156587.065199    4848 op_kernel.cc:1] OOM when allocating tensor",
        "Traceback (most recent call last):",
        "oneDNN custom operations are on.",  # without absl's prefix it is not TensorFlow's line
    ):
        assert not quiet.is_chatter(line), line


def test_chatter_written_to_fd_2_is_dropped_and_real_lines_come_through() -> None:
    chatter = json.dumps([line + "\n" for line in CHATTER_LINES])
    stderr = run_python(
        f"""
        import json, os, sys, warnings
        from compare.sides import quiet
        print("before", file=sys.stderr)
        with quiet.framework_import():
            for line in json.loads({chatter!r}):
                os.write(2, line.encode())
            os.write(2, b"a real C-level error\\n")
            print("our python line", file=sys.stderr)
            warnings.warn("our own warning")
            os.write(2, b"progress 1/2\\rprogress 2/2\\r")
            with quiet.filtered_stderr():  # nested
                os.write(2, b"W0000 00:00:1.0  1 util.cc:163] Not handling type DT_DOUBLE\\n")
                os.write(2, b"nested real line\\n")
            os.write(2, b"last line without its end")
        print("after", file=sys.stderr)
        """
    )
    lines = stderr.rstrip("\n").split("\n")  # not splitlines(): it splits at "\\r" too
    assert lines[0] == "before"
    assert "a real C-level error" in lines
    assert "our python line" in lines
    assert any("UserWarning: our own warning" in line for line in lines)
    assert "progress 1/2\rprogress 2/2\rnested real line" in lines
    assert lines[-1] == "last line without its endafter"
    assert not any(quiet.is_chatter(line) or "DT_DOUBLE" in line for line in lines)
    assert "absl" not in stderr and "oneDNN" not in stderr


def test_the_retracing_warning_is_filtered_by_logger_and_message() -> None:
    logger = logging.getLogger("tensorflow")
    before = list(logger.filters)
    for f in before:  # an earlier check in this process may have installed it already
        logger.removeFilter(f)
    try:
        quiet.silence_python_chatter()
        quiet.silence_python_chatter()  # idempotent
        assert len(logger.filters) == 1
        retracing = logging.LogRecord(
            "tensorflow", logging.WARNING, __file__, 1,
            "5 out of the last 5 calls to <function f> triggered tf.function retracing. "
            "Tracing is expensive", None, None,
        )  # fmt: skip
        real = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, "real", None, None)
        assert not logger.filter(retracing)
        assert logger.filter(real)
    finally:
        for f in list(logger.filters):
            logger.removeFilter(f)
        for f in before:
            logger.addFilter(f)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow installed"
)
def test_tensorflow_imported_inside_prints_no_chatter() -> None:
    # oneDNN on, as it is by default on many x86 CPUs, so that its notice and the DT_DOUBLE
    # warnings appear on every machine; outside the filter they do (the control).
    stderr = run_python(
        """
        import sys
        from compare.sides import quiet
        with quiet.framework_import():
            import tensorflow as tf
            tf.constant(1.0) + 1.0  # the first op prints the notice again
        print("imported", file=sys.stderr)

        def dense(a, w, b):  # oneDNN's graph rewrite warns for every float64 fusion it skips
            return tf.nn.relu(tf.nn.bias_add(tf.matmul(a, w), b))

        args = tf.ones((4, 3), tf.float64), tf.ones((3, 2), tf.float64), tf.ones(2, tf.float64)
        with quiet.filtered_stderr():
            tf.function(dense)(*args)
            print("inside", file=sys.stderr)
        print("control", file=sys.stderr)
        tf.function(dense)(*args)
        """,
        TF_ENABLE_ONEDNN_OPTS="1",
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="0",  # tox sets 2, which hides the DT_DOUBLE control lines
    )
    inside, _, control = stderr.partition("control\n")
    assert inside.splitlines() == ["imported", "inside"], inside
    assert "DT_DOUBLE" in control  # the chatter exists: the filter is what removed it
