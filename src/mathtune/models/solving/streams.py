"""Answers as they are written: a cot answer piece by piece (its Python blocks run where the model stops to write
their output, running.py), or a program answer's explanation and program, then its checked solution. Every stream
ends with ``Finished`` and a ``Solution``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from ...metrics.answers import is_refusal
from ..generation import Generator
from .greedy import repaired
from .prompts import PROGRAM_STOPS, PROMPTS
from .reading import solution_from_text
from .running import tool_turn
from .settings import require_runnable
from .values import PROGRAM_MODES, STREAMED_MODES, Event, Finished, Method, Piece, Solution


def stream(generator: Generator, question: str, mode: str, max_new_tokens: int, context=None,
           cancel: threading.Event | None = None, temperature: float = 0.0, seed: int | None = None,
           repairs: int = 1) -> Iterator[Event]:
    """``Piece`` events as the answer is written, then ``Finished``: for a program (or code) answer, the program ran
    in the sandbox (with ``repairs`` corrections of a failed one, not streamed) and the solution's ``answer``
    replaces what was streamed. Setting ``cancel`` ends generation at the next token."""
    if mode not in STREAMED_MODES:
        raise ValueError(f"mode {mode!r} does not stream: only cot, program and code answers do")
    if mode in PROGRAM_MODES:
        yield from _program(generator, question, mode, max_new_tokens, context, cancel, temperature, seed, repairs)
    else:
        yield from _cot(generator, question, max_new_tokens, context, cancel, temperature, seed)


def _cot(generator: Generator, question: str, max_new_tokens: int, context, cancel, temperature: float,
         seed: int | None) -> Iterator[Event]:
    start = time.perf_counter()
    text, tokens, calls, prefix = "", 0, 0, None
    part: dict = {}
    while True:
        part = {}
        for piece in generator.stream(question, max_new_tokens - tokens, context, cancel, temperature, seed, part,
                                      prefix=prefix, stops=PROGRAM_STOPS):
            text += piece
            yield Piece(piece)
        tokens += part.get("new_tokens", 0)
        turn = tool_turn(text, calls, tokens, max_new_tokens, bool(part.get("truncated")), cancel)
        if turn is None:
            break
        text, calls = text.rstrip() + turn[0], calls + 1
        prefix = text
        yield Piece(turn[0])
    answer = text.strip()
    refused = is_refusal(answer)
    solution = Solution(answer, None if refused else generator.tutor_prompt.final_answer(answer), Method.COT, refused,
                        new_tokens=tokens, seconds=time.perf_counter() - start,
                        truncated=bool(part.get("truncated")) or tokens >= max_new_tokens)
    yield Finished(solution, seconds=solution.seconds)


def _program(generator: Generator, question: str, mode: str, max_new_tokens: int, context, cancel,
             temperature: float, seed: int | None, repairs: int) -> Iterator[Event]:
    from ...config import SolveConfig

    require_runnable(SolveConfig(mode=mode))
    start = time.perf_counter()
    system, prefix = PROMPTS[mode]
    text = prefix or ""
    part: dict = {}
    if prefix:
        yield Piece(prefix)
    for piece in generator.stream(question, max_new_tokens, context, cancel, temperature, seed, part,
                                  prefix=prefix, stops=PROGRAM_STOPS, system=system):
        text += piece
        yield Piece(piece)
    solution = solution_from_text(text, mode, generator.tutor_prompt, part.get("new_tokens", 0), 0.0)
    if cancel is None or not cancel.is_set():
        sampling = {"temperature": temperature, "seed": seed} if temperature > 0 else {}
        solution = repaired(generator, question, context, text, solution, max_new_tokens, repairs, mode, **sampling)
    solution.truncated = bool(part.get("truncated")) and solution.program is None
    solution.seconds = time.perf_counter() - start
    yield Finished(solution, seconds=solution.seconds)
