"""A clone is self-contained: every document that the code, the tests and the docs cite is in it.

Design notes kept outside the repository (beside it, on a shared drive) are not shipped; a
contract a test or a docstring relies on is stated in README.md and cited from there.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: A project document by name, upper case as at the root (the README, the benchmark report).
DOCUMENT = re.compile(r"(?<![\w/.-])([A-Z][A-Z0-9_-]*\.md)\b")
#: A relative Markdown link or image: [text](path) / ![alt](path).
LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s#]+)")


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg"}
    return [REPO / n for n in names if (Path(n).suffix in suffixes or Path(n).name in {"Makefile", "run"})
            and not n.startswith("tests/data/")]


def cited_documents(text: str) -> set[str]:
    return set(DOCUMENT.findall(text))


def test_every_cited_document_is_in_the_repository():
    missing = {}
    for path in tracked_text_files():
        for name in cited_documents(path.read_text(encoding="utf-8", errors="replace")):
            if not (REPO / name).is_file() and not (path.parent / name).is_file():
                missing.setdefault(name, []).append(str(path.relative_to(REPO)))
    assert not missing, f"cited but not in the repository (state the contract in README.md and cite that): {missing}"


def test_every_relative_link_in_the_docs_resolves():
    broken = [(str(md.relative_to(REPO)), target) for md in REPO.glob("*.md")
              for target in LINK.findall(md.read_text(encoding="utf-8")) if not (md.parent / target).exists()]
    assert not broken


def test_the_scan_finds_a_missing_document():
    # Not vacuous: a citation of a document that is not here is found, code and output names are not.
    absent = "NOTES" + ".md"  # spelled apart, so this file does not cite it
    assert cited_documents(f'"""As {absent} says."""') == {absent}
    assert cited_documents('dg.MetadataValue.md(text); home / "report.md"; .routing-demo/report.md') == set()
    assert not (REPO / absent).exists()
