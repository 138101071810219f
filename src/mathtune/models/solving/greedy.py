"""Greedy answers in a mode (a cot answer's Python blocks run as it goes; a program answer's program runs), and
the correction of a failed program: the model, shown the error in the next turn, writes it again."""

from __future__ import annotations

import time
from typing import Any

from ...tasks.tutor import WorkedExamples
from ..generation import Generation, Generator
from .prompts import PROGRAM_STOPS, PROMPTS, REPAIR_REQUEST
from .reading import solution_from_text
from .running import with_tools
from .values import PROGRAM_MODES, Solution


def greedy(generator: Generator, questions: list[str], mode: str, contexts, max_new_tokens: int, repairs: int = 1,
           stop=None) -> list[Solution]:
    """Greedy solutions of ``questions`` in ``mode`` (cot, program or code), decoded together; a program that fails
    is shown its error and corrected up to ``repairs`` times. Once ``stop`` is set generation ends at the next token
    (the answers come back as far as they got)."""
    start = time.perf_counter()
    generations = generate_in(generator, questions, mode, max_new_tokens, contexts, cancel=stop)
    per = (time.perf_counter() - start) / max(len(questions), 1)
    solutions = []
    for q, c, g in zip(questions, contexts, generations, strict=True):
        s = solution_from_text(g.text, mode, generator.tutor_prompt, g.new_tokens, per)
        s = repaired(generator, q, c, g.text, s, max_new_tokens, repairs, mode, cancel=stop)
        s.truncated = s.attempts == 1 and s.new_tokens >= max_new_tokens
        solutions.append(s)
    return solutions


def repaired(generator: Generator, question: str, context, text: str, solution: Solution, max_new_tokens: int, repairs: int,
             mode: str = "program", **sampling) -> Solution:
    """``solution`` when its program ran (or there is none); otherwise the model, shown the error in the next turn
    of the conversation, writes a corrected program, up to ``repairs`` times. The answer shows every attempt."""
    history = context if isinstance(context, WorkedExamples) else WorkedExamples((), context or None)
    turns, request = list(history.pairs), question
    cancel = sampling.get("cancel")
    while solution.program is not None and not solution.program_ok and solution.attempts <= repairs:
        if cancel is not None and cancel.is_set():  # out of time, or nobody waiting: the failed program stands
            break
        turns.append((request, text))
        request = REPAIR_REQUEST.format(error=solution.program_error)
        [g] = generate_in(generator, [request], mode, max_new_tokens,
                        [WorkedExamples(tuple(turns), history.passages)], **sampling)
        if cancel is not None and cancel.is_set():  # cut off while correcting: the half-written program is not run
            solution.new_tokens, solution.seconds = solution.new_tokens + g.new_tokens, solution.seconds + g.seconds
            break
        fixed = solution_from_text(g.text, mode, generator.tutor_prompt, g.new_tokens, g.seconds)
        text, attempts = g.text, solution.attempts + 1
        if fixed.program is None:  # no corrected program: the failed attempt stands, with what it cost
            solution.attempts, solution.new_tokens, solution.seconds = attempts, solution.new_tokens + g.new_tokens, \
                solution.seconds + fixed.seconds
            break
        fixed.answer = f"{solution.answer}\n\nCorrected:\n{fixed.answer}"
        fixed.attempts, fixed.new_tokens, fixed.seconds = attempts, solution.new_tokens + fixed.new_tokens, \
            solution.seconds + fixed.seconds
        solution = fixed
    return solution


def begun(prefix: str | None, generation: Generation) -> Generation:
    """A generation continued from ``prefix``, with the prefix put back in front."""
    if not prefix:
        return generation
    return Generation(prefix + generation.text, generation.new_tokens, generation.seconds, generation.truncated)


def generate_in(generator: Generator, questions: list[str], mode: str, max_new_tokens: int, contexts, cancel=None, **sampling):
    """Greedy (or ``sampling``) answers in ``mode``; once ``cancel`` is set they stop at the next token, and a cot
    answer's Python block is no longer run."""
    system, prefix = PROMPTS[mode]
    extra: dict[str, Any] = {"prefix": prefix} if prefix else {}
    if cancel is not None:  # a generator that predates cancel: without one
        extra["cancel"] = cancel
    generations = generator.generate(questions, max_new_tokens, contexts, system=system, stops=PROGRAM_STOPS,
                                     **extra, **sampling)
    if mode in PROGRAM_MODES:
        return [begun(prefix, g) for g in generations]
    if cancel is not None and cancel.is_set():
        return generations
    return [with_tools(generator, q, c, g, max_new_tokens, **sampling)
            for q, c, g in zip(questions, contexts, generations)]


def sample_in(generator: Generator, question: str, base: str, k: int, max_new_tokens: int, context, temperature: float,
            seed: int, cancel=None, on_finish=None):
    """k sampled generations of ``base`` for one problem, decoded as one batch (see Generator.sample for
    ``cancel`` and ``on_finish``); cot answers that stopped at a Python block go on after it runs."""
    system, prefix = PROMPTS[base]
    prefixed = {"prefix": prefix} if prefix else {}
    finished = on_finish if on_finish is None or not prefix else (lambda i, g: on_finish(i, begun(prefix, g)))
    generations = generator.sample(question, k, max_new_tokens, context, system=system, stops=PROGRAM_STOPS,
                                   temperature=temperature, seed=seed, cancel=cancel, on_finish=finished, **prefixed)
    if base in PROGRAM_MODES:
        return [begun(prefix, g) for g in generations]
    if cancel is not None and cancel.is_set():  # decided, or out of time: a block left to run is not run
        return generations
    return [with_tools(generator, question, context, g, max_new_tokens, temperature=temperature, seed=seed + i)
            for i, g in enumerate(generations)]
