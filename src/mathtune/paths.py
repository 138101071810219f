"""Where data lives: one rule, used by recipes, benchmarks and tests.

Recipes name data files relative to a data directory so the same recipe runs on any machine:
1. ``MATHTUNE_DATA_DIR`` when set;
2. otherwise ``../shared/data`` next to the working folder (or next to this checkout) when it exists;
3. otherwise the working folder.
A path that is absolute, or exists relative to the working folder, is used as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

DEMO_PREFIX = "demo:"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    env = os.environ.get("MATHTUNE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd()


def resolve_data_path(name: str | os.PathLike) -> Path:
    """Turn a recipe's data reference into a file path (``demo:`` sources are handled elsewhere)."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists():
        return path
    resolved = data_dir() / path
    if not resolved.exists():
        raise DataError(
            f"{name}: file not found (looked in the working folder and in the data directory "
            f"{data_dir()}). Set MATHTUNE_DATA_DIR to the folder that holds it, or give a full path."
        )
    return resolved


def is_demo(name: str | os.PathLike) -> bool:
    return str(name).startswith(DEMO_PREFIX)
