"""The README and docs/ stay true: the README's two commands, its size, its links to every docs/
page, every relative link in docs/ (and its anchor), the Python examples as written, and the
command-line page against the parser."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 150
MAX_OWN_IMPLEMENTATION_LINES = 15
# [text](target): the target up to the closing parenthesis (no spaces, as every link here has)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code blocks and code spans."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _broken_links(path: Path) -> list[str]:
    """Relative links of ``path`` whose file (or heading anchor, in a Markdown file) does not
    exist."""
    broken = []
    for target in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        missing_anchor = bool(anchor) and resolved.suffix == ".md"
        if not resolved.exists() or (missing_anchor and anchor not in _anchors(resolved)):
            broken.append(target)
    return broken


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.read_text(encoding="utf-8").split("```")[1]
    assert "python -m pip install tox && tox -e report" in first_block
    assert re.search(r"python -m pip install tox && tox\s+#", first_block)


def test_readme_is_for_a_newcomer_at_most_150_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_checking_your_own_implementation_takes_at_most_15_lines() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Check your own implementation\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "README has no 'Check your own implementation' section"
    body = match.group(1).strip("\n").splitlines()
    assert len(body) <= MAX_OWN_IMPLEMENTATION_LINES, f"{len(body)} lines"
    assert "--implementation" in match.group(1)
    assert "docs/protocol.md" in match.group(1)


def test_every_docs_link_in_the_readme_exists_and_every_page_is_linked() -> None:
    linked = [t.partition("#")[0] for t in _links(README) if t.startswith("docs/")]
    assert linked, "README links no docs/ page"
    missing = [t for t in linked if not (ROOT / t).is_file()]
    assert not missing, f"README links pages that do not exist: {missing}"
    unlinked = [p.name for p in _pages() if f"docs/{p.name}" not in linked]
    assert not unlinked, f"README does not link these docs/ pages: {unlinked}"
    broken = _broken_links(README)
    assert not broken, f"README.md: broken links {broken}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_every_relative_link_in_docs_resolves(page: Path) -> None:
    broken = _broken_links(page)
    assert not broken, f"{page.name}: broken links {broken}"


def _run_python_examples(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    assert blocks, f"{path.name} has no python example"
    for block in blocks:
        exec(compile(block, str(path), "exec"), {"__name__": "readme_example"})
    return capsys.readouterr().out


@pytest.mark.keras  # check_parity against the Keras reference, on whichever backend runs
def test_readme_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _run_python_examples(README, capsys)
    assert printed.startswith("[]")  # no check fails


def test_the_scratch_page_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    printed = _run_python_examples(DOCS / "scratch.md", capsys)
    assert printed.startswith("[")  # the held-out accuracy per epoch


def _commands() -> dict[str, argparse.ArgumentParser]:
    from compare.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("lenet-parity has no subcommands")


def test_the_cli_page_has_every_command_and_option() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `lenet-parity (\S+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    for name, parser in _commands().items():
        assert name in sections, f"docs/cli.md has no section for `lenet-parity {name}`"
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        missing = [o for o in options if o not in sections[name]]
        assert not missing, f"docs/cli.md, `lenet-parity {name}` lacks {missing}: regenerate it"
