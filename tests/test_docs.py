"""The knowledge the code points to is in the repository.

Every `docs/....md §N` that src/ (docstrings, comments, configs), tests/ or the README cites
names a file that exists and a section heading that file has; nothing cites a design note that
lives outside the repository; docs/README.md indexes every docs page and the pages' relative links
resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# "§2.1", "§ 2", "§1.2–1.5" (a range: both ends must exist)
_SECTION = r"§\s?\d+(?:\.\d+)*(?:\s?[–-]\s?\d+(?:\.\d+)*)?"
# A docs path and the sections right after it: "docs/methods/distill.md §1 (PLD) and §2.1–2.4"
CITATION = re.compile(
    r"(docs/[\w./-]+?\.md)((?:(?:\s*,|\s+and)?\s*" + _SECTION + r"(?:\s*\([^()\n]*\))?)*)"
)
SECTION_NUMBERS = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s?[–-]\s?(\d+(?:\.\d+)*))?")
# A numbered heading: "## 2. Baselines", "### 2.1 KD"
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
# The design notes kept beside the repository (design/flow.md, "the TTA design notes", a bare
# `tta.md`): a reader of the code never has them.
OUTSIDE_NOTE = re.compile(
    r"design/|design notes?\b|(?<![\w/.-])"
    r"(?:losses|distill|flow|tta|lm|calibrate|claims|anchors|papers|slurm)\.md\b",
    re.IGNORECASE,
)
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A cross-reference between pages: "[run-dir.md §3](run-dir.md)"
SECTION_LINK = re.compile(r"\[[^\]]*?§\s?(\d+(?:\.\d+)*)\]\(([^)#\s]+)\)")


def cited_sources() -> list[Path]:
    """The files whose pointers must hold: everything under src/ and tests/ that is text, and
    README.md; not this file, whose examples cite outside notes on purpose."""
    text_suffixes = {".py", ".yaml", ".yml", ".md", ".txt", ".cfg", ".toml"}
    files = [
        p
        for folder in ("src", "tests")
        for p in sorted((REPO / folder).rglob("*"))
        if p.suffix in text_suffixes and p != Path(__file__).resolve()
    ]
    return [*files, REPO / "README.md"]


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def citations() -> list[tuple[str, str, list[str]]]:
    """(where, docs path, cited section numbers) for every docs citation in the sources."""
    found = []
    for source in cited_sources():
        text = source.read_text(encoding="utf-8")
        for match in CITATION.finditer(text):
            sections = [n for pair in SECTION_NUMBERS.findall(match.group(2)) for n in pair if n]
            where = f"{source.relative_to(REPO)}:{line_of(text, match.start())}"
            found.append((where, match.group(1), sections))
    return found


def headings(page: Path) -> set[str]:
    """The section numbers of a page's numbered headings."""
    return set(HEADING.findall(page.read_text(encoding="utf-8")))


def test_the_pattern_reads_a_citation_with_several_sections():
    text = "Formulas: docs/methods/distill.md §1 (PLD) and §2.1–2.4; see also docs/run-dir.md."
    matches = [(m.group(1), SECTION_NUMBERS.findall(m.group(2))) for m in CITATION.finditer(text)]
    assert matches == [
        ("docs/methods/distill.md", [("1", ""), ("2.1", "2.4")]),
        ("docs/run-dir.md", []),
    ]


def test_every_cited_docs_file_and_section_exists():
    found = citations()
    assert len(found) >= 20, "the docstrings' pointers were not found: is the pattern right?"
    broken = []
    for where, path, sections in found:
        page = REPO / path
        if not page.is_file():
            broken.append(f"{where}: {path} does not exist")
            continue
        missing = sorted(set(sections) - headings(page))
        if missing:
            broken.append(f"{where}: {path} has no section {', '.join('§' + s for s in missing)}")
    assert not broken, "\n".join(broken)


def test_every_method_page_is_cited_from_the_code():
    cited = {path for _, path, _ in citations()}
    for page in ("losses", "distill", "flow", "tta"):
        assert f"docs/methods/{page}.md" in cited


def test_nothing_cites_a_design_note_outside_the_repository():
    outside = []
    for source in cited_sources():
        text = source.read_text(encoding="utf-8")
        for match in OUTSIDE_NOTE.finditer(text):
            where = f"{source.relative_to(REPO)}:{line_of(text, match.start())}"
            outside.append(f"{where}: {match.group(0)!r}")
    assert not outside, "cite docs/... instead:\n" + "\n".join(outside)


@pytest.mark.parametrize(
    "pointer",
    ["see design/flow.md §1.2", "the TTA design notes §1.5", "(losses.md §7)", "`tta.md` §2.5"],
)
def test_the_outside_note_pattern_catches(pointer):
    assert OUTSIDE_NOTE.search(pointer)


@pytest.mark.parametrize(
    "pointer",
    ["docs/methods/flow.md §1.2", "summary.md", "README.md", "benchmark.md", "designed for 32x32"],
)
def test_the_outside_note_pattern_lets_pass(pointer):
    assert not OUTSIDE_NOTE.search(pointer)


def test_the_docs_index_lists_every_page():
    assert (DOCS / "README.md").is_file(), "docs/README.md, the index of docs/, is missing"
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = {(DOCS / target).resolve() for target in MARKDOWN_LINK.findall(index)}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "README.md"}
    assert pages, "docs/ has no pages"
    assert pages <= linked, f"not in docs/README.md: {sorted(str(p) for p in pages - linked)}"


def test_relative_links_in_docs_resolve():
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "\n".join(broken)


def test_section_links_between_docs_pages_exist():
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for section, target in SECTION_LINK.findall(page.read_text(encoding="utf-8")):
            linked = page.parent / target
            if not linked.is_file() or section not in headings(linked):
                broken.append(f"{page.relative_to(REPO)}: {target} §{section}")
    assert not broken, "\n".join(broken)
