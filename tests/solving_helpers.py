"""Solving as the tests ask for it: ``solve_in`` takes a mode and its vote's settings by name (the library's
``solve`` takes a SolveConfig), and the streams' events read as text with the end's figures in a dict."""

from __future__ import annotations

from mathtune.config import SolveConfig
from mathtune.models.solving.settings import VOTE_TIEBREAK
from mathtune.models.solving.solve import solve
from mathtune.models.solving.streams import stream
from mathtune.models.solving.values import Finished, Piece


def settings_of(mode: str = "cot", k: int = 5, base: str = "cot", temperature: float = 0.7,
                tiebreak: str | None = VOTE_TIEBREAK, agree_first: int = 0, then_over: str | None = None,
                first_round: int = 0, time_budget: float | None = None) -> SolveConfig:
    return SolveConfig(mode=mode, samples=k, vote_over=base, temperature=temperature,
                       tiebreak="none" if tiebreak is None else tiebreak, agree_first=agree_first,
                       then_over=then_over, first_round=first_round, time_budget=time_budget)


def solve_in(generator, questions, mode: str = "cot", contexts=None, max_new_tokens: int = 512, k: int = 5,
             base: str = "cot", temperature: float = 0.7, seed: int = 0, repairs: int = 1, early_stop: bool = True,
             tiebreak: str | None = VOTE_TIEBREAK, agree_first: int = 0, then_over: str | None = None,
             first_round: int = 0, time_budget: float | None = None, stop=None):
    settings = settings_of(mode, k, base, temperature, tiebreak, agree_first, then_over, first_round, time_budget)
    return solve(generator, questions, settings, contexts, max_new_tokens, stop=stop, seed=seed, repairs=repairs,
                 early_stop=early_stop)


def streamed_text(generator, question, max_new_tokens, context=None, cancel=None, temperature=0.0, seed=None,
                  info: dict | None = None, mode: str = "cot"):
    """The pieces of a stream as text; ``info`` gets the end: its solution, new_tokens and truncated."""
    for event in stream(generator, question, mode, max_new_tokens, context, cancel, temperature, seed):
        if isinstance(event, Piece):
            yield event.text
        elif isinstance(event, Finished) and info is not None:
            info.update(solution=event.solution, new_tokens=event.solution.new_tokens,
                        truncated=event.solution.truncated)
