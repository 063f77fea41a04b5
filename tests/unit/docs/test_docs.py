"""The README and docs/: every relative link resolves, and the reference tables cover the code.

Links are checked as GitHub renders them: a path relative to the file, and
an optional ``#anchor`` that must be one of the target's headings, slugged as
GitHub slugs them. The configuration table must list every variable that
``service/settings.py`` reads, with its default; the metrics table every
metric that ``service/metrics.py`` declares.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.launcher import REPO
from service import metrics
from service.settings import VARIABLES

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path) -> None:
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: {target}: no such heading"


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](page.md#title) [gone](missing.md) [far](https://example.com)\n")
    assert links(page) == ["page.md#title", "missing.md"]
    assert "title" in anchors(page)


def test_the_configuration_page_lists_every_variable_with_its_default() -> None:
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name, (default, _) in VARIABLES.items():
        shown = f"`{re.escape(default)}`" if default else "unset"
        assert re.search(rf"\| `{name}` \| {shown} \|", page), name


def test_the_operations_page_lists_every_metric() -> None:
    page = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    declared = [metric._name for metric in vars(metrics).values() if hasattr(metric, "_name")]
    assert declared
    for name in declared:
        assert f"`{name}" in page, name


def test_the_readme_stays_short() -> None:
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
