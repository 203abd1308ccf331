"""The test tree stays collectable as one suite: no two test modules share a basename.

The test directories are not packages (pytest's default import mode), so two files named
``test_x.py`` in different directories collide when the whole suite is collected together.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def test_test_module_basenames_are_unique() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in Path(__file__).parent.rglob("*.py"):
        if path.name != "conftest.py":
            seen[path.name].append(str(path.parent))
    clashes = {name: dirs for name, dirs in seen.items() if len(dirs) > 1}
    assert not clashes, f"rename these test modules (prefix them with their directory): {clashes}"
