"""What the benchmark scripts share: the repository's paths (with src/ importable), and solving by a mode's name
with its vote's settings given by keyword, as the scripts' tables name them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from mathtune.config import SolveConfig  # noqa: E402
from mathtune.models.solving.solve import solve  # noqa: E402


def solve_named(generator, questions, mode: str = "cot", contexts=None, max_new_tokens: int = 512, k: int = 5,
                base: str = "cot", tiebreak: str | None = "program", seed: int = 0, repairs: int = 1,
                early_stop: bool = True, **settings):
    """``solve`` with the settings as keywords (``k``: samples, ``base``: vote_over, ``tiebreak`` None: none)."""
    config = SolveConfig(mode=mode, samples=k, vote_over=base, tiebreak="none" if tiebreak is None else tiebreak,
                         **{key: value for key, value in settings.items() if value is not None})
    return solve(generator, questions, config, contexts, max_new_tokens, seed=seed, repairs=repairs,
                 early_stop=early_stop)


def bank_rows(path: Path) -> list[dict]:
    """The rows a resumable benchmark appended to its JSONL bank, in order (none when it has not run)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
