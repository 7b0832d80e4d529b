"""The repository stands alone: nothing it tracks cites a file outside it.

docs/protocol.md is the normative specification; a reader of the repository (or of a wheel
built from it) cannot open design notes that lived beside it while it was written. So no
tracked file (code, docs, tests, stubs' comments, deploy files, the Makefile) names them, and
every relative link of a Markdown page resolves to a tracked file inside the repository.

The forbidden names are assembled from pieces below, so this module does not match itself.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = tuple(
    "".join(parts)
    for parts in (
        ("PROTOCOL", ".md"),
        ("NOTES", "-crypto"),
        ("NOTES", "-ops"),
        ("..", "/shared"),
        ("/work", "/shared"),
        ("/work", "/issues"),
    )
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", flags=re.MULTILINE)
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", flags=re.IGNORECASE)


@cache
def tracked() -> tuple[str, ...]:
    """Every file git tracks, as repository-relative POSIX paths."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing to list")
    return tuple(sorted(p for p in out.decode("utf-8").split("\0") if p))


def _text(path: str) -> str | None:
    try:
        return (ROOT / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None  # binary, or deleted in the working tree (git still lists it)


def forbidden_references(text: str) -> list[str]:
    """The names of files outside the repository that ``text`` mentions (case matters:
    ``docs/protocol.md`` is the repository's own page)."""
    return [name for name in FORBIDDEN if name in text]


def markdown_links(text: str) -> list[str]:
    """The link targets of a Markdown page, outside code blocks and code spans."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)


def link_problem(page: str, target: str, files: frozenset[str]) -> str | None:
    """Why a relative link on ``page`` is broken (outside the repository or missing)."""
    if _EXTERNAL.match(target):
        return None  # a URL, a mail address or an anchor on the same page
    path = target.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return None
    parts: list[str] = []
    for part in (PurePosixPath(page).parent / path).parts:
        if part == "..":
            if not parts:
                return f"{target} points outside the repository"
            parts.pop()
        elif part != ".":
            parts.append(part)
    resolved = "/".join(parts)
    if resolved in files or any(f.startswith(resolved + "/") for f in files):
        return None
    return f"{target} points to {resolved}, which the repository does not track"


def test_the_checks_catch_what_they_are_for() -> None:
    """The helpers find what they must (so a clean run below means something)."""
    sample = "see " + FORBIDDEN[0] + " §3 and the " + FORBIDDEN[1] + " file"
    assert forbidden_references(sample) == [FORBIDDEN[0], FORBIDDEN[1]]
    assert forbidden_references("see docs/protocol.md §3") == []
    files = frozenset({"docs/protocol.md", "proto/kdf.py", "README.md"})
    page = "[a](protocol.md) [b](../proto/kdf.py#L3) [c](../../x.md) [d](gone.md) `[e](f.md)`"
    problems = [link_problem("docs/x.md", t, files) for t in markdown_links(page)]
    assert problems[:2] == [None, None]
    assert problems[2] is not None and "outside" in problems[2]
    assert problems[3] is not None and "does not track" in problems[3]
    assert len(problems) == 4  # the link inside a code span is not a link
    assert link_problem("README.md", "https://example.org/x", files) is None
    assert link_problem("README.md", "docs/", files) is None


def test_no_tracked_file_cites_a_file_outside_the_repository() -> None:
    found = []
    for path in tracked():
        text = _text(path)
        if text is not None:
            found += [f"{path}: {name}" for name in forbidden_references(text)]
    assert not found, "files outside the repository are cited:\n" + "\n".join(found)


def test_markdown_links_stay_inside_the_repository() -> None:
    files = frozenset(tracked())
    pages = [p for p in files if p.endswith(".md")]
    assert "README.md" in pages and "docs/protocol.md" in pages
    broken = []
    for page in pages:
        text = _text(page)
        if text is None:
            continue
        for target in markdown_links(text):
            problem = link_problem(page, target, files)
            if problem is not None:
                broken.append(f"{page}: {problem}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_section_citations_resolve() -> None:
    """Every "docs/protocol.md §N" (or "protocol.md §4a") in a tracked file names a section
    the specification has, so the code's pointers into it stay true."""
    spec = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\. ", spec, flags=re.MULTILINE))
    sections |= set(re.findall(r"^### §(\d+[a-z])\b", spec, flags=re.MULTILINE))
    assert {"1", "4", "8", "4a", "4b"} <= sections
    cited = re.compile(r"protocol\.md,? (?:§\d+[a-z]?(?:[-/, ]+§?\d+[a-z]?)*)")
    missing = []
    count = 0
    for path in tracked():
        text = _text(path)
        if text is None:
            continue
        for citation in cited.findall(text):
            count += 1
            for number in re.findall(r"\d+[a-z]?", citation.split(" ", 1)[1]):
                if number not in sections:
                    missing.append(f"{path}: {citation!r} (no §{number})")
    assert count >= 20, "the citation pattern no longer finds the code's citations"
    assert not missing, "citations of sections docs/protocol.md does not have:\n" + "\n".join(
        missing
    )
