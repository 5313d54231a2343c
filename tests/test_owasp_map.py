"""docs/owasp.md cites tests as evidence that each OWASP agentic risk is answered.

A citation that names a file or a function that does not exist (a test renamed, moved or
deleted) would be a false claim on a security page. This test reads the page, finds every
``tests/<path>.py::<function>`` citation and checks, with ``ast`` (the test modules are
never imported), that the file exists and defines that function at top level. It also
checks that each of ASI01..ASI10 has its own section and cites at least one test.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "owasp.md"
RISKS = tuple(f"ASI{n:02d}" for n in range(1, 11))
CITATION = re.compile(r"\b(tests/[\w./-]+\.py)::(\w+)")
HEADING = re.compile(r"^#{2,3}\s+(ASI\d{2})\b", re.MULTILINE)


@cache
def top_level_functions(path: Path) -> frozenset[str]:
    """Names of the functions (def or async def) a module defines at top level."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def citations(text: str) -> list[tuple[str, str]]:
    return CITATION.findall(text)


def problem(path: str, name: str, root: Path = ROOT) -> str | None:
    """Why the citation ``path::name`` is false, or None when it holds."""
    file = root / path
    if not file.is_file():
        return f"{path}: no such file"
    if name not in top_level_functions(file):
        return f"{path}::{name}: no top-level function of that name"
    return None


def sections(text: str) -> dict[str, list[str]]:
    """Each ASI heading's text, up to the next ASI heading (a risk may appear twice)."""
    found: dict[str, list[str]] = {}
    marks = list(HEADING.finditer(text))
    for mark, nxt in zip(marks, [*marks[1:], None], strict=True):
        end = nxt.start() if nxt is not None else len(text)
        found.setdefault(mark.group(1), []).append(text[mark.start() : end])
    return found


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_cited_test_exists(doc: str) -> None:
    cited = citations(doc)
    assert cited, "docs/owasp.md cites no tests"
    problems = [p for path, name in cited if (p := problem(path, name)) is not None]
    assert not problems, "\n".join(problems)


def test_every_risk_has_one_section_that_cites_a_test(doc: str) -> None:
    found = sections(doc)
    assert set(found) == set(RISKS), f"ASI sections: {sorted(found)}"
    for risk in RISKS:
        assert len(found[risk]) == 1, f"{risk} has {len(found[risk])} sections"
        assert citations(found[risk][0]), f"{risk} cites no test"


def test_a_wrong_citation_is_caught() -> None:
    """The checks above can fail: a misspelt function, a missing file, a method or a
    nested function (not top level) are all reported."""
    this = "tests/test_owasp_map.py"
    assert problem(this, "test_every_cited_test_exists") is None
    assert problem(this, "test_every_cited_test_exist") is not None
    assert problem("tests/no_such_file.py", "test_x") is not None
    escape = "tests/security/test_escape.py"
    assert problem(escape, "run_attack") is None  # async def counts
    assert problem(escape, "saw") is not None  # a method of Servers
    assert problem(escape, "serve") is not None  # nested in run_attack
    text = "## ASI01 A\n`tests/a.py::test_a`\n## ASI02 B\nnothing cited\n"
    assert [bool(citations(s[0])) for s in sections(text).values()] == [True, False]
