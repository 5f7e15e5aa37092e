"""Every ```python block of README.md and docs/**/*.md runs as written, in order, one namespace per page.

A page runs in an empty temporary folder. A block whose fence line carries ``file=PATH`` (any
language) is written to ``PATH`` there first, so later blocks can import or read it; a ```python block
with ``notest`` on its fence line is skipped and must say why (``notest: needs torchrun``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
MIN_RUNNABLE = 12  # the number of blocks that ran when this test was written; never fewer


def blocks(page: Path) -> list[tuple[str, list[str], str, int]]:
    """``(language, fence words, code, line)`` of every fenced block of ``page``."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2).split(), m.group(3), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def _file_of(words: list[str]) -> str | None:
    return next((w.split("=", 1)[1] for w in words if w.startswith("file=")), None)


def _runnable(language: str, words: list[str]) -> bool:
    return language == "python" and not any(w.startswith("notest") for w in words) and _file_of(words) is None


def test_the_fence_parser_reads_blocks_in_order(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\na = 1\n```\n\n```bash\nls\n```\n```python notest: needs a GPU\nx\n```\n"
                    "```python file=pkg/m.py\nb = 2\n```\n", encoding="utf-8")
    found = blocks(page)
    assert [(lang, code, line) for lang, _, code, line in found] == [
        ("python", "a = 1\n", 2), ("bash", "ls\n", 6), ("python", "x\n", 9), ("python", "b = 2\n", 12)]
    assert [_runnable(lang, words) for lang, words, _, _ in found] == [True, False, False, False]
    assert _file_of(found[3][1]) == "pkg/m.py"


def test_every_skipped_block_says_why():
    for page in PAGES:
        for language, words, _, line in blocks(page):
            if language == "python" and any(w.startswith("notest") for w in words):
                reason = " ".join(words).split("notest", 1)[1].lstrip(":").strip()
                assert reason, f"{page.relative_to(ROOT)}:{line}: `notest` without a reason"


def test_enough_blocks_run():
    runnable = sum(_runnable(lang, words) for page in PAGES for lang, words, _, _ in blocks(page))
    assert runnable >= MIN_RUNNABLE


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_runs_as_written(page, tmp_path, monkeypatch, registries):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = set(sys.modules)
    # what a page registers stays with the page: `registries` restores every registry in place afterwards
    namespace: dict = {"__name__": "__main__"}
    try:
        for language, words, code, line in blocks(page):
            target = _file_of(words)
            if target is not None:
                (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / target).write_text(code, encoding="utf-8")
            if not _runnable(language, words):
                continue
            try:
                exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)  # noqa: S102
            except Exception as err:
                pytest.fail(f"{page.relative_to(ROOT)}:{line}: the block raised {type(err).__name__}: {err}")
    finally:
        for name in set(sys.modules) - before:  # modules the page wrote and imported
            if str(tmp_path) in str(getattr(sys.modules[name], "__file__", "") or ""):
                del sys.modules[name]


def test_blocks_written_as_files_show_their_file_name():
    """A ``file=PATH`` fence is invisible once rendered: the line above the block names the file in bold."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for _, words, _, line in blocks(page):
            name = _file_of(words)
            if name is not None:
                assert lines[line - 2] == f"**`{name}`**", f"{page.name}:{line}: no caption naming {name}"
