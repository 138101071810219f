"""The shipped recipes, for `mathtune recipes`: each recipe's purpose from its header comment, and its expected
time from the benchmark that ran it (bench/results/*.json), so no time is copied by hand."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import RecipeError

_REPO_ROOT = Path(__file__).resolve().parents[2]
# Benchmarks that train shipped recipes and record each run's wall time (bench/topic.py, misconception.py, ...)
TIMED = ("demos", "topic", "misconception", "products")


def recipes_dir() -> Path:
    """``MATHTUNE_RECIPES`` when set, else the checkout's recipes/ folder."""
    return Path(os.environ.get("MATHTUNE_RECIPES") or _REPO_ROOT / "recipes")


@dataclass
class RecipeEntry:
    name: str
    path: Path
    command: str
    purpose: str
    time: str


def _header(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def _purpose(header: list[str], limit: int = 110) -> str:
    """The header's first sentence after the command line, on one line (cut at a word, with an ellipsis)."""
    words = " ".join(header[1:]).strip()
    match = re.match(r"(.+?[.!?])(\s|$)", words)
    sentence = match.group(1) if match else words
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + " …"


TIMES_FILE = Path(__file__).with_name("recipe_times.json")  # package data, written by `make docs` (bench/report.py)


def measured_minutes(results: Path | None = None) -> dict[str, float]:
    """Wall minutes of each recipe as its benchmark last ran it (the first run recorded): read from the benchmark
    results in ``results``, else from the times shipped with the package (an installed mathtune has no bench/)."""
    if results is None:
        return json.loads(TIMES_FILE.read_text(encoding="utf-8")) if TIMES_FILE.is_file() else {}
    out: dict[str, float] = {}

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("recipe"), str) and isinstance(node.get("wall_seconds"), (int, float)):
                out.setdefault(node["recipe"], node["wall_seconds"] / 60)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in TIMED:
        path = results / f"{name}.json"
        if path.is_file():
            walk(json.loads(path.read_text(encoding="utf-8")))
    return out


def _time(minutes: float | None) -> str:
    if minutes is None:
        return "not measured here"
    return f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:.0f} min"


def shipped(folder: Path | None = None) -> list[RecipeEntry]:
    folder = folder or recipes_dir()
    if not folder.is_dir():
        raise RecipeError(f"{folder}: no recipes folder; run from a mathtune checkout or set MATHTUNE_RECIPES")
    minutes = measured_minutes()  # the package's copy
    entries = []
    for path in sorted(folder.glob("*.yaml")):
        header = _header(path.read_text(encoding="utf-8"))
        command = header[0] if header and header[0].startswith("mathtune ") else f"mathtune train {path}"
        entries.append(RecipeEntry(path.stem, path, command, _purpose(header), _time(minutes.get(path.stem))))
    return entries


def recipe_entry(name: str, folder: Path | None = None) -> RecipeEntry:
    entries = {e.name: e for e in shipped(folder)}
    key = name.removesuffix(".yaml")
    if key not in entries:
        import difflib

        guess = difflib.get_close_matches(key, entries, n=1)
        raise RecipeError(f"recipe {name!r}: not a shipped recipe" + (f" (did you mean {guess[0]!r}?)" if guess else "")
                          + "; `mathtune recipes` lists them")
    return entries[key]
