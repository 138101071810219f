"""``solve``: the answers to questions as a tutor's solving settings say (SolveConfig), the one entry every door
uses (the tutor service of the API and the app, ``mathtune ask`` and ``evaluate``, the benchmarks)."""

from __future__ import annotations

import threading

from ...config import SolveConfig
from ..generation import Generator
from .greedy import greedy
from .settings import require_runnable
from .values import Solution
from .vote import vote


def solve(generator: Generator, questions: list[str], settings: SolveConfig, contexts=None,
          max_new_tokens: int = 512, stop: threading.Event | None = None, seed: int = 0, repairs: int = 1,
          early_stop: bool = True, progress=None) -> list[Solution]:
    """Solutions of ``questions``: greedy ones decoded together for cot, program and code; a vote each for vote
    (``seed``: its first sample's; another seed draws other samples, a new answer). A program that fails is shown
    its error and corrected up to ``repairs`` times. Setting ``stop`` (a client gone) ends generation at the next
    token (a vote's sampling; a greedy answer comes back as far as it got). ``progress`` sees a vote's Progress as
    each of its answers comes in."""
    require_runnable(settings)
    contexts = list(contexts) if contexts is not None else [None] * len(questions)
    if settings.mode == "vote":
        return [vote(generator, q, c, settings, max_new_tokens, seed, stop, repairs, early_stop, progress)
                for q, c in zip(questions, contexts, strict=True)]
    return greedy(generator, questions, str(settings.mode), contexts, max_new_tokens, repairs, stop)
