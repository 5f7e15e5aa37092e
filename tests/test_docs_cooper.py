"""docs/coming-from-cooper.md: its python blocks run as written, in order, in one namespace."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "coming-from-cooper.md"


def test_coming_from_cooper_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 4
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[block {index}]", "exec"), namespace)  # noqa: S102
