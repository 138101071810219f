"""Built-in demo data from the ``champ-dataset`` package (270 competition problems, 5 categories).

Used when a recipe names ``demo:champ``, so a new user can train without downloading anything.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from ..errors import DataError

DEMO_SOURCES = ("champ",)


def champ_json() -> dict:
    spec = importlib.util.find_spec("champ_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("demo:champ needs the champ-dataset package: pip install champ-dataset")
    path = Path(spec.submodule_search_locations[0]) / "dataset_files" / "v0.json"
    return json.loads(path.read_text(encoding="utf-8"))


def champ_problems() -> pd.DataFrame:
    """One row per problem: id, Question, label (category), solution, answer."""
    problems = champ_json()["problems"]
    rows = []
    for pid, p in problems.items():
        steps = [s["_text"] for s in p["solution"]["steps"]]
        rows.append({
            "id": pid,
            "Question": p["_text"],
            "label": p["category"],
            "solution": "\n".join(steps),
            "answer": p["_answer"],
        })
    return pd.DataFrame(rows)


def load_demo(name: str) -> pd.DataFrame:
    source = name.split(":", 1)[1]
    if source == "champ":
        return champ_problems()
    raise DataError(f"{name}: unknown demo data; available: " + ", ".join(f"demo:{s}" for s in DEMO_SOURCES))
