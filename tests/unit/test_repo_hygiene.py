"""The repository stands on its own: no tracked text file cites a document outside it or names a
tracker item instead of a concern, and every ``docs/*.md`` page cited from code exists.

Facts the code rests on live in ``docs/`` (in our words, with Microsoft's sources); a comment
says why, naming the concern, and points there. A reader of the repository alone must be able
to follow every citation.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: names of reference documents kept outside the repository
OUTSIDE_DOCUMENT = re.compile(
    r"defender-api\.md|user-pains(\.md)?|local-cloud-notes(\.md)?|(?<![\w/-])design\.md|"
    r"(?<![\w/-])style\.md|"
    # a bare section number (the outside reference's numbering); an RFC's sections are fine
    r"(?<!RFC [0-9]{4} )(?<!, )§[0-9]"
)
#: a tracker item named instead of a concern: "issue 10", "issue #12", "Issues 8.2"
TRACKER_ITEM = re.compile(r"\b[Ii]ssues? #?[0-9]+")
#: a docs page cited by its repository path, with an optional section anchor
DOCS_CITATION = re.compile(r"(?<![\w./-])docs/([\w-]+\.md)(#[\w-]+)?")
#: text files worth reading (the rest are binaries, lock files or generated data)
TEXT_SUFFIXES = frozenset(
    {".py", ".md", ".bicep", ".json", ".toml", ".cfg", ".txt", ".sh", ".yaml", ".yml", ".kql"}
)
TEXT_NAMES = frozenset({"Makefile", ".gitignore"})
#: this file names the patterns it looks for
SELF = "tests/unit/test_repo_hygiene.py"


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [
        path
        for path in out.splitlines()
        if (Path(path).suffix in TEXT_SUFFIXES or Path(path).name in TEXT_NAMES)
        and path != "package-lock.json"
        and (ROOT / path).is_file()
    ]


def _hits(pattern: re.Pattern[str], files: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in files:
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.setdefault(path, []).append(f"{number}: {line.strip()[:100]}")
    return found


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    files = _tracked()
    assert len(files) > 100, "git ls-files found too little: is this a git checkout?"
    return files


def _checked(files: list[str]) -> list[str]:
    return [f for f in files if f != SELF]


def test_no_file_cites_a_document_outside_the_repository(tracked: list[str]) -> None:
    """A citation must be followable from the repository: docs/<page>.md#section, not a
    reference document that only some machines have."""
    hits = _hits(OUTSIDE_DOCUMENT, _checked(tracked))
    assert not hits, f"cite docs/ instead of outside documents: {hits}"


def test_no_comment_names_a_tracker_item(tracked: list[str]) -> None:
    """Comments and docs say why (the concern), not which ticket asked for it."""
    hits = _hits(TRACKER_ITEM, _checked(tracked))
    assert not hits, f"name the concern, not the tracker item: {hits}"


def test_every_cited_docs_page_and_section_exists(tracked: list[str]) -> None:
    """``docs/<page>.md`` cited anywhere exists, and a ``#section`` cited exists in it (as the
    anchor GitHub derives from a heading)."""
    anchors: dict[str, set[str]] = {}
    for page in (ROOT / "docs").glob("*.md"):
        headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
        anchors[page.name] = {_anchor(h) for h in headings}
    broken: list[str] = []
    for path in [f for f in tracked if f != SELF]:
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        for match in DOCS_CITATION.finditer(text):
            page, section = match.group(1), match.group(2)
            if page not in anchors:
                broken.append(f"{path}: docs/{page}")
            elif section and section[1:] not in anchors[page]:
                broken.append(f"{path}: docs/{page}{section}")
    assert not broken, f"cited docs pages or sections that do not exist: {broken}"


def test_links_between_docs_pages_resolve() -> None:
    """Relative links inside docs/ (``[x](page.md#section)``) point at pages and headings
    that exist."""
    pages = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")}
    anchors = {
        name: {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
        for name, text in pages.items()
    }
    broken: list[str] = []
    for name, text in pages.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target or target.startswith("../"):
                continue
            page, _, section = target.partition("#")
            page = page or name
            if page not in anchors or (section and section not in anchors[page]):
                broken.append(f"docs/{name}: {target}")
    assert not broken, f"broken links between docs pages: {broken}"


def test_links_of_the_readme_resolve() -> None:
    """The README's relative links (to docs/ pages, their sections and its own sections) point
    at files and headings that exist: the README is mostly a map into docs/."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    broken: list[str] = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if "://" in target:
            continue
        path, _, section = target.partition("#")
        page = ROOT / path if path else ROOT / "README.md"
        if not page.exists():
            broken.append(target)
        elif section and page.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
            if section not in {_anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"broken links in README.md: {broken}"


def _anchor(heading: str) -> str:
    """The anchor GitHub makes of a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_anchor_follows_github() -> None:
    """The anchor rule the checks above use, on headings of the kinds the docs have."""
    assert _anchor("Listing limits") == "listing-limits"
    assert _anchor("1. How Logic Apps calls an HTTP API") == "1-how-logic-apps-calls-an-http-api"
    assert _anchor("The local cloud (`emulator/`)") == "the-local-cloud-emulator"
    assert _anchor("Hosts (`API_PUSH_HOST_SUFFIXES`)") == "hosts-api_push_host_suffixes"
    assert _anchor("`POST /ingest` as a long-running operation") == (
        "post-ingest-as-a-long-running-operation"
    )
