"""Atomic writes: a killed process never leaves a half-written file or model folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; model files must be readable like any other
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def remove_orphans(folder: str | os.PathLike, prefix: str) -> None:
    """Remove the folders ``PREFIX<pid>-...`` in ``folder`` whose process is gone (one killed with SIGKILL cannot
    clean up after itself); a live process's, and anything else, are left alone."""
    for path in Path(folder).glob(prefix + "*"):
        pid = path.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def replace_dir(new: Path, target: Path) -> None:
    """Move a finished folder ``new`` to ``target``, replacing what was there only after the move succeeds."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# A cell a spreadsheet would read as a formula (CSV injection): =, @, a tab or carriage return first, or a plus or
# minus that does not begin a number
_FORMULA_START = ("=", "@", "\t", "\r")


def spreadsheet_safe(value):
    """``value`` as a spreadsheet shows it and never runs it: a text that would start a formula gets a leading
    apostrophe (what spreadsheets themselves use to mean "text"); other values are returned as they are."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(_FORMULA_START) or value.startswith(("+", "-")) and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def spreadsheet_safe_frame(frame):
    """A copy of a DataFrame with every text cell made ``spreadsheet_safe``: for CSV written for people."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("str", "string"):
            out[column] = out[column].map(spreadsheet_safe)
    return out

