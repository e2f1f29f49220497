"""The documentation stays true to the tree: the README is a guide of at most 700 lines, every
relative link and anchor in the Markdown resolves, and the README's Layout table names every
test and benchmark folder."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 700
#: The folders whose subfolders (those holding Python files) the Layout table must name.
LISTED_PARENTS = ("tests", "benchmarks")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def documents() -> list[Path]:
    """README.md, CONTRIBUTING.md and every Markdown file under docs/."""
    found = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [path for path in found if path.is_file()]


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor the headings of a Markdown text make (repeats get -1, -2, … as on GitHub)."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for line in _prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def length_problem(text: str) -> str | None:
    """Why a README text is too long to be a guide, or None."""
    count = len(text.splitlines())
    return (
        f"README.md has {count} lines (at most {MAX_README_LINES})"
        if count > MAX_README_LINES
        else None
    )


def broken_links(path: Path) -> list[str]:
    """The relative links and anchors of one Markdown file that lead nowhere."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for line in _prose_lines(text):
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, …
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                problems.append(f"{path.name}: {target} (no such file)")
                continue
            headings = anchors(dest.read_text(encoding="utf-8")) if dest.suffix == ".md" else None
            if anchor and headings is not None and anchor not in headings:
                problems.append(f"{path.name}: {target} (no such heading)")
    return problems


def layout_table(readme: str) -> str:
    """The first column of the README's Layout table, as one text."""
    section = re.search(r"^## Layout\n(.*?)(?=^## )", readme, re.M | re.S)
    if section is None:
        return ""
    rows = [line for line in section.group(1).splitlines() if line.startswith("|")]
    return "\n".join(row.split("|")[1] for row in rows)


def unlisted_folders(root: Path, readme: str) -> list[str]:
    """Folders directly under tests/ and benchmarks/ holding Python files that the Layout
    table does not name (as `parent/name/`)."""
    listed = layout_table(readme)
    missing = []
    for parent in LISTED_PARENTS:
        base = root / parent
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            if not any(folder.rglob("*.py")):
                continue
            if f"`{parent}/{folder.name}/`" not in listed:
                missing.append(f"{parent}/{folder.name}/")
    return missing


# ------------------------------------------------------------------ the repository's docs


def test_readme_is_a_guide_of_at_most_700_lines() -> None:
    # Given the README
    text = README.read_text(encoding="utf-8")

    # Then it is a guide, not a reference: long sections live in docs/
    assert length_problem(text) is None


def test_every_relative_link_and_anchor_resolves() -> None:
    # Given README.md, CONTRIBUTING.md and docs/**/*.md
    problems = [problem for path in documents() for problem in broken_links(path)]

    # Then every relative link names a file that exists, and every anchor a heading in it
    assert problems == []


def test_the_layout_table_names_every_test_and_benchmark_folder() -> None:
    # Given the folders under tests/ and benchmarks/ that hold Python files
    missing = unlisted_folders(ROOT, README.read_text(encoding="utf-8"))

    # Then each is a row of the README's Layout table
    assert missing == []


# ------------------------------------------------------------------ the checks can fail


def test_a_readme_over_the_limit_is_caught() -> None:
    assert length_problem("line\n" * MAX_README_LINES) is None
    assert (
        length_problem("line\n" * (MAX_README_LINES + 1)) == "README.md has 701 lines (at most 700)"
    )


def test_a_missing_file_and_a_missing_anchor_are_reported(tmp_path: Path) -> None:
    # Given a document linking to a missing file, a missing heading and two good targets
    (tmp_path / "other.md").write_text("# Other\n\n## Long jobs (segments)\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n## In the worker (`worker/sessions.py`)\n\n"
        "[a](missing.md) [b](other.md#nowhere) [c](other.md#long-jobs-segments)\n"
        "[d](#in-the-worker-workersessionspy) [e](https://example.com/x#y)\n"
        "```\n[f](inside-a-code-block.md)\n```\n",
        encoding="utf-8",
    )

    # When its links are checked
    problems = broken_links(doc)

    # Then exactly the two bad ones are reported
    assert problems == [
        "doc.md: missing.md (no such file)",
        "doc.md: other.md#nowhere (no such heading)",
    ]


def test_a_repeated_heading_gets_a_numbered_anchor() -> None:
    assert anchors("# Tests\n\n## Tests\n\n## Tests\n") == {"tests", "tests-1", "tests-2"}


@pytest.mark.parametrize("name", ["support", "contract"])
def test_a_test_folder_missing_from_the_layout_table_is_reported(tmp_path: Path, name: str) -> None:
    # Given a tree with tests/<name>/ holding a Python file, and a folder with none
    (tmp_path / "tests" / name).mkdir(parents=True)
    (tmp_path / "tests" / name / "helpers.py").write_text("", encoding="utf-8")
    (tmp_path / "tests" / "__pycache__").mkdir()
    readme = (
        "## Layout\n\n| folder | holds |\n| --- | --- |\n| `tests/unit/` | tests |\n\n## Next\n"
    )

    # Then the folder is missing from the table, and listing it fixes that
    assert unlisted_folders(tmp_path, readme) == [f"tests/{name}/"]
    listed = readme.replace("`tests/unit/`", f"`tests/unit/`, `tests/{name}/`")
    assert unlisted_folders(tmp_path, listed) == []
