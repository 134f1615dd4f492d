"""The comparison report: every file, written atomically, and a page a browser renders whole."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from compare.inputs.atomic import REPORT_MARKER
from compare.judge.checks import MARGIN_CAP
from compare.output import report
from compare.output.text import summary
from compare.parity.run import check_parity
from compare.parity.verdict import Verdict

FILES = {
    "verdict.json",
    "checks.csv",
    "curves.csv",
    "loss.png",
    "forward.png",
    "gradient.png",
    "report.md",
    "index.html",
    REPORT_MARKER,  # says lenet-parity wrote the folder: only such folders are ever replaced
}
PASS_GREEN = np.array([0x1A, 0x7F, 0x37])  # h1.pass in report._STYLE


@pytest.fixture(scope="module")
def verdict() -> Verdict:
    return check_parity("keras-docs", "float32", epochs=1)


@pytest.fixture(scope="module")
def written(verdict: Verdict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.write_report(verdict, tmp_path_factory.mktemp("reports") / "latest")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → contents); directories as empty entries."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b""
        for p in sorted(folder.rglob("*"))
    }


def failing(verdict: Verdict) -> Verdict:
    """``verdict`` with conv2's forward error exactly 0 and output/kernel's gradient failing
    without numbers (a shape mismatch): the cases a log axis cannot show."""
    checks = list(verdict.checks)
    for i, c in enumerate(checks):
        if (c.kind, c.name) == ("forward", "conv2"):
            checks[i] = dataclasses.replace(c, max_abs_err=0.0)
        if (c.kind, c.name) == ("gradient", "output/kernel"):
            checks[i] = dataclasses.replace(
                c,
                passed=False,
                status="fail",
                margin=MARGIN_CAP,  # a shape mismatch's margin
                max_abs_err=None,
                max_rel_err=None,
                problem="shape (3,) != (4,)",
            )
    return dataclasses.replace(verdict, passed=False, checks=checks)


# -- the files -----------------------------------------------------------------------------------
def test_every_file_is_written_and_not_empty(written: Path) -> None:
    assert {p.name for p in written.iterdir()} == FILES
    assert all(p.stat().st_size > 0 for p in written.iterdir())
    assert written.stat().st_mode & 0o777 == 0o755


def test_verdict_json_is_the_verdict(written: Path, verdict: Verdict) -> None:
    text = (written / "verdict.json").read_text(encoding="utf-8")
    assert text == json.dumps(verdict.as_dict(), indent=2) + "\n"


def test_checks_csv_has_one_row_per_check(written: Path, verdict: Verdict) -> None:
    frame = pd.read_csv(written / "checks.csv")
    assert list(frame.columns) == list(report.CHECK_COLUMNS)
    assert list(zip(frame["kind"], frame["name"], strict=True)) == [
        (c.kind, c.name) for c in verdict.checks
    ]
    assert frame["passed"].tolist() == [c.passed for c in verdict.checks]


def test_curves_csv_is_the_curve_frame(written: Path, verdict: Verdict) -> None:
    curves = verdict.curve_frame()
    assert curves is not None
    frame = pd.read_csv(written / "curves.csv")
    assert list(frame.columns) == list(curves.columns)
    np.testing.assert_allclose(frame["abs_diff"], curves["abs_diff"], rtol=1e-15)


def test_documents_open_with_the_result_and_name_the_environment(
    written: Path, verdict: Verdict
) -> None:
    md = (written / "report.md").read_text(encoding="utf-8")
    page = (written / "index.html").read_text(encoding="utf-8")
    result = "PASS" if verdict.passed else "FAIL"
    assert md.startswith(f"# {result}\n")
    assert re.search(rf"<title>{result}\b", page)
    heading = re.search(r"<body>\s*<h1[^>]*>(\w+)</h1>", page)  # the first thing shown
    assert heading is not None
    assert heading[1] == result
    env = verdict.environment
    backend = env["backend"]  # its version's key is its name (tensorflow, jax, torch)
    # the versions, and the cross-entropy path scratch followed on this backend
    shown = (env["python"], env["numpy"], env["keras"], backend, env[backend], env["loss_path"])
    for value in shown:
        assert value in md
        assert html.escape(value) in page
    for text in (md, page):
        assert html.escape(summary(verdict)) in text or summary(verdict) in text
        assert "First divergence" in text
        assert "Held-out evaluation per epoch" in text


def test_documents_show_every_image(written: Path) -> None:
    """report.md links the PNG files; index.html holds them inline (data URIs), so that the
    page alone is the report."""
    md = (written / "report.md").read_text(encoding="utf-8")
    page = (written / "index.html").read_text(encoding="utf-8")
    md_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    inline = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*title="([^"]+)"', page)
    assert md_images == [name for _, name in inline] == ["loss.png", "forward.png", "gradient.png"]
    for data, name in inline:
        assert base64.b64decode(data) == (written / name).read_bytes()
    assert page.count("<img ") == len(inline)  # no other image, none linked


def test_a_failing_verdict_names_its_first_divergence(verdict: Verdict, tmp_path: Path) -> None:
    out = report.write_report(failing(verdict), tmp_path / "latest")
    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "index.html").read_text(encoding="utf-8")
    assert md.startswith("# FAIL\n")
    assert '<h1 class="fail">FAIL</h1>' in page
    for text in (md, page):
        assert "gradient 'output/kernel': shape (3,) != (4,)" in html.unescape(text)
    assert {p.name for p in out.iterdir()} == FILES


def test_without_training_there_are_no_curves(verdict: Verdict, tmp_path: Path) -> None:
    untrained = dataclasses.replace(verdict, curves=None)  # as with epochs=0
    assert untrained.curve_frame() is None
    assert untrained.heldout_frame() is None
    out = report.write_report(untrained, tmp_path / "latest")
    assert {p.name for p in out.iterdir()} == FILES - {"curves.csv", "loss.png"}
    for doc in ("report.md", "index.html"):
        text = (out / doc).read_text(encoding="utf-8")
        assert "no training run (--epochs 0)" in text.lower()
        assert "loss.png" not in text


# -- atomic replacement --------------------------------------------------------------------------
def test_writing_again_keeps_the_last_report_as_previous(verdict: Verdict, tmp_path: Path) -> None:
    out = tmp_path / "latest"
    report.write_report(failing(verdict), out)
    first = snapshot(out)
    report.write_report(verdict, out)
    assert snapshot(tmp_path / "previous") == first
    second = snapshot(out)
    report.write_report(failing(verdict), out)  # replaces the older previous
    assert snapshot(tmp_path / "previous") == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "previous"]


@pytest.mark.parametrize("error", [RuntimeError("plot failed"), KeyboardInterrupt()])
def test_an_error_mid_build_changes_nothing(
    verdict: Verdict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    out = tmp_path / "latest"
    report.write_report(failing(verdict), out)
    report.write_report(verdict, out)
    before = snapshot(tmp_path)

    def broken(*args: object) -> None:
        raise error

    monkeypatch.setattr(report, "plot_errors", broken)
    with pytest.raises(type(error)):
        report.write_report(failing(verdict), out)
    assert snapshot(tmp_path) == before  # no temporary directory left either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "previous"]


# -- a browser renders the page ------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "no chromium on PATH (Debian: apt-get install chromium): the page is unrendered"
        )
    return found


def run_chromium(tmp_path: Path, *args: str) -> str:
    """Headless Chromium (no sandbox: the tests may run as root) with its own profile; its
    stdout. Its stderr is start-up noise (D-Bus, GPU) and is ignored."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout


def test_chromium_renders_the_page(written: Path, tmp_path: Path) -> None:
    shot = tmp_path / "screenshot.png"
    page = (written / "index.html").as_uri()
    run_chromium(
        tmp_path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", page
    )
    assert shot.is_file(), "chromium wrote no screenshot"
    rgb = (imread(shot)[..., :3] * 255).round().astype(np.uint8)  # (2400, 1280, 3)
    assert rgb.shape[:2] == (2400, 1280)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 200  # text, tables, plots
    assert np.mean(np.any(rgb < 240, axis=-1)) > 0.03  # not a white page
    heading = np.all(np.abs(rgb[:200].astype(int) - PASS_GREEN) < 8, axis=-1)
    assert heading.sum() > 500, "no big green PASS at the top"


PROBE = """<script>
window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "image-probe";
  probe.textContent = JSON.stringify(
    Array.from(document.images, (img) => [img.getAttribute("src"),
                                          img.complete && img.naturalWidth > 0]));
  document.body.appendChild(probe);
});
</script>
</body>"""


def test_chromium_loads_every_image(written: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(written, tmp_path / "report")
    probe = folder / "image-probe.html"  # beside index.html, for its relative links
    page = (folder / "index.html").read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", PROBE), encoding="utf-8")
    dom = run_chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="image-probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, f"no probe in chromium's DOM:\n{dom[:2000]}"
    images = json.loads(html.unescape(found[1]))
    assert len(images) >= 3
    assert all(loaded for _, loaded in images), images


def test_a_path_that_is_not_utf8_is_written_escaped(verdict: Verdict, tmp_path: Path) -> None:
    """A weights file whose name is not UTF-8 (Python keeps its bytes as surrogates) ends up in
    the report's configuration: written escaped, never a UnicodeEncodeError."""
    name = (tmp_path / "w").as_posix() + b"\xff.npz".decode("utf-8", "surrogateescape")
    odd = dataclasses.replace(verdict, config=dataclasses.replace(verdict.config, weights=name))
    out = report.write_report(odd, tmp_path / "latest")
    assert "w\\udcff.npz" in (out / "report.md").read_text("utf-8")
    assert json.loads((out / "verdict.json").read_text("utf-8"))["config"]["weights"] == name
