"""Solving modes for the tutor, over any generator (transformers or llama.cpp):

- ``cot``: step-by-step reasoning ending in "The answer is X." (the tutor's own prompt);
- ``program``: the model explains its approach in a sentence or two and writes a short Python program that
  prints the answer; the program runs in the sandbox (mathtune/sandbox.py) and its printed result is the answer;
- ``code``: the program alone, each step explained in a comment above it (the answer begins with the program's
  opening, which the model continues): about half a program answer's tokens, and always a program;
- ``vote``: k samples of a base mode (cot, program, code, or mixed: cot and program) at temperature > 0, the final answer
  chosen by majority over math-verify-equivalent answers, with the agreement rate as a confidence. On a parallel
  generator (llama.cpp) the k samples decode together as one batch that shares the prompt; on a sequential one
  sampling stops as soon as the samples still to come could not change the majority (early-stopping
  self-consistency: the same answer as all k, for less).

In cot mode a Python block the model writes mid-answer is run (tool-integrated reasoning): generation stops where
the model would write the block's output itself, the sandbox's real output is put there, and the model goes on.

Every solution says how its final answer was obtained (``method``), and for programs whether the program ran.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import get_args

from ..config import SolveConfig
from ..metrics.answers import answers_match, is_refusal
from ..sandbox import ProgramResult, current_boundary, require_programs, run_program
from ..tasks.tutor import WorkedExamples
from .generation import Generation

log = logging.getLogger(__name__)
MODES = get_args(SolveConfig.model_fields["mode"].annotation)              # cot, program, code, vote
VOTE_OVER = get_args(SolveConfig.model_fields["vote_over"].annotation)    # cot, program, code, mixed
TIEBREAKS = get_args(SolveConfig.model_fields["tiebreak"].annotation)     # program, code, cot, none
# A vote in which no two samples agree says little (on the benchmark's GSM8K problems 4 of 35 such votes were right):
# then a greedy program decides, if it runs. First chosen on the benchmark's first 51 problems (a program decided
# even when the model answered in prose), checked on the next 84: no gain (2 right answers won, 2 lost; both lost
# ones were prose). The rule that a program must run, fixed then, changed nothing on the next 51 (README). It stays
# because a program that ran can be read and rerun, unlike the first of five disagreeing answers.
VOTE_TIEBREAK = SolveConfig.model_fields["tiebreak"].default             # program
PROGRAM_SYSTEM = (
    "You are a careful math tutor who solves problems with Python. First explain the approach in one or two "
    "short sentences. Then write one short Python program in a ```python code block that computes the answer "
    "and prints only the final answer (a number or an expression, no units or words). Use only the math, "
    "fractions and sympy modules. If the message is not a mathematics question, do not write a program; reply "
    "only: \"I can only help with math questions.\""
)
CODE_SYSTEM = (
    "You are a careful math tutor who solves problems with Python. Write one short Python program in a ```python "
    "code block that computes the answer: a comment above each step says in words what it works out and why, and "
    "the program prints only the final answer (a number or an expression, no units or words). Use only the math, "
    "fractions and sympy modules. If the message is not a mathematics question, the program prints only: "
    "I can only help with math questions."
)
# A code answer is begun for the model with its program's opening, so it explains in comments and writes no prose
# first (16 problems outside the benchmark's sample: 114 tokens a code answer against 241 a program one, 9 right
# against 10; docs/findings.md).
CODE_PREFIX = "```python\n"
# The modes whose answer is a program run in the sandbox, and each mode's (system prompt, start of the answer);
# cot uses the tutor's own prompt.
PROGRAM_MODES = ("program", "code")
PROMPTS = {"cot": (None, None), "program": (PROGRAM_SYSTEM, None), "code": (CODE_SYSTEM, CODE_PREFIX)}
# The model's own ```output block is where it would make up a result: generation stops there and the sandbox runs
# the program instead (this also saves the tokens of an invented output and conclusion).
PROGRAM_STOPS = ("```output",)
# The modes whose answers stream token by token (stream_cot, stream_program); a vote is shown when it is done.
STREAMED_MODES = ("cot", "program", "code")
# (The request for a program is the system prompt's alone. Said again in the user's turn, Qwen2.5-Coder-1.5B wrote
# programs for 93% of GSM8K problems instead of about half, but solved fewer: 0.56 against 0.70 on the benchmark's
# first 43, 0.58 against 0.63 on 24 others. Where it chooses prose, its prose is the better answer.)

# When a program fails, the model sees the error and gets one more try (a turn of the same conversation): most
# failures are slips a programmer fixes at a glance (a misspelt name, a missing import).
REPAIR_REQUEST = ("The program failed: {error}\nWrite the corrected program in one ```python code block; it must print "
                  "only the final answer.")
_CODE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


class Method(str, Enum):
    """How an answer was made: one greedy answer in a mode (program for code answers too: a program that ran made
    it), or the server's scope refusal. A vote's label is
    ``vote(<over>)`` with ``+<decider>`` when a tie-break decided (``Solution.voted_over``, ``decided_by``)."""

    COT = "cot"
    PROGRAM = "program"
    SCOPE = "scope"

    def __str__(self) -> str:
        return self.value


def vote_label(over: str, decided_by: str | None = None, then_over: str | None = None) -> str:
    return f"vote({over}{f',{then_over}' if then_over else ''})" + (f"+{decided_by}" if decided_by else "")


@dataclass
class Solution:
    answer: str                      # the text shown to the user
    final_answer: str | None
    method: str                      # a Method, or a vote's label (vote_label)
    refused: bool = False
    program: str | None = None
    program_output: str | None = None
    program_ok: bool | None = None
    program_error: str | None = None
    confidence: float | None = None  # vote: the share of samples that agree with the chosen answer
    samples: int = 1                 # vote: samples drawn (fewer than k when the rest could not change the majority)
    first_round_ended: bool = False  # vote with agree_first: the first round agreed, so nothing more was drawn
    out_of_time: bool = False        # vote with a time budget: it ran out, so the samples still drawing were cut
    k: int = 1                       # vote: samples asked for
    attempts: int = 1                # programs written: 2 when a failed one was corrected
    new_tokens: int = 0
    seconds: float = 0.0
    votes: dict = field(default_factory=dict)
    voted_over: str | None = None    # vote: the samples' mode (cot, program, mixed)
    decided_by: Method | None = None  # vote: the tie-break's mode, when no two samples agreed and it decided

    @property
    def agreeing(self) -> int:
        """vote: how many samples gave the chosen answer (before any tie-break)."""
        return round((self.confidence or 0) * self.samples)

    @property
    def steps(self) -> list[str]:
        return [line.strip() for line in self.answer.splitlines() if line.strip()]


def _program_block(text: str) -> tuple[str, str] | None:
    """(the text before the program, the program): the last python block, or an unclosed one cut at the limit."""
    blocks = list(_CODE.finditer(text))
    if blocks:
        return text[: blocks[-1].start()], blocks[-1].group(1).strip()
    start = text.find("```")
    return (text[:start], text[start + 3:].removeprefix("python").strip()) if start >= 0 else None


def extract_program(text: str) -> str | None:
    block = _program_block(text)
    return block[1] if block else None


_OUTPUT_BLOCK = re.compile(r"```output\s*\n.*?```", re.S)


# What sympy prints and LaTeX reads differently ("pi/4" is p times i over 4 in LaTeX, "x**2" is no power)
_SYMPY_SYNTAX = re.compile(r"\*|\bpi\b|\boo\b|\b(?:sqrt|log|exp|sin|cos|tan|asin|acos|atan|Abs|Rational|Interval|"
                           r"FiniteSet|Union|Matrix|binomial|factorial)\(")


def _as_latex(text: str) -> str:
    """A result printed in sympy's syntax (pi/4, sqrt(2)/2, x**2 + 1, (3, pi/2)) as LaTeX, as MATH's answers and
    the Tutor page's math rendering are written; anything else as printed. sympify evaluates what it reads, so it
    runs in the sandbox, on what the sandboxed program printed."""
    if len(text) > 300 or "\\" in text or not _SYMPY_SYNTAX.search(text):
        return text
    converted = run_program(f"import sympy\nprint(sympy.latex(sympy.sympify({text!r})))", cpu_seconds=5,
                            wall_seconds=20)
    return converted.output.strip() if converted.ok and converted.output.strip() else text


def _program_answer(output: str) -> str | None:
    """The last printed line; a float reads as people write it: 72.0 as 72, 816.9999999999999 (binary rounding)
    as 817, 0.30000000000000004 as 0.3; a sympy result as LaTeX (pi/4 as \\frac{\\pi}{4})."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = float(lines[-1])
    except ValueError:
        last = lines[-1]
        if last.startswith("[") and last.endswith("]") and last.count("[") == 1:  # sympy.solve's list of solutions
            last = last[1:-1].strip() or last  # is written as MATH writes several answers: -2, 2
        return _as_latex(last)
    if not math.isfinite(value) or abs(value) >= 1e15 or "e" in lines[-1].lower():  # 1e-20 stays as printed
        return lines[-1]
    if abs(value - round(value)) <= 1e-9 * max(1.0, abs(value)):
        return str(int(round(value)))
    return f"{value:.12g}"


# What a program prints when its computation went wrong: never an answer (sympy's complex infinity, NaN, None)
NOT_VALUES = frozenset({"zoo", "-zoo", "nan", "-nan", "none", "undefined"})


def _printed_no_value(output: str) -> bool:
    """Whether the last line a program printed is not a value at all (``zoo`` from dividing by zero, ``nan``)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return bool(lines) and lines[-1].lower() in NOT_VALUES


def solution_from_text(text: str, mode: str, tutor_prompt, new_tokens: int, seconds: float) -> Solution:
    """Read one generation as a solution of ``mode`` (runs the program for ``program`` and ``code``; a code answer's
    text begins with CODE_PREFIX)."""
    block = _program_block(text) if mode in PROGRAM_MODES else None
    refused = is_refusal(text if block is None else block[0])  # one a program prints is read from its output
    if mode not in PROGRAM_MODES or refused:
        return Solution(text, None if refused else tutor_prompt.final_answer(text),
                        Method.PROGRAM if mode in PROGRAM_MODES else Method.COT, refused, new_tokens=new_tokens,
                        seconds=seconds)
    if not block or not block[1]:  # reasoned in prose: the answer is the prose's, and says so
        return Solution(text, tutor_prompt.final_answer(text), Method.COT, False, None, None, False,
                        "the model wrote no program", new_tokens=new_tokens, seconds=seconds)
    before, program = block
    result = run_program(program)
    if result.ok and is_refusal(result.output):  # a code answer declines in the one way it can: by printing so
        return Solution(result.output.strip(), None, Method.PROGRAM, True, program, result.output, True,
                        new_tokens=new_tokens, seconds=seconds + result.seconds)
    # The explanation is what the model wrote before its program: anything after it (a result or conclusion) was
    # written without running it; an output block the model made up is never shown.
    explanation = _OUTPUT_BLOCK.sub("", _CODE.sub("", before)).strip()
    read = time.perf_counter()
    final = _program_answer(result.output) if result.ok else None
    read = time.perf_counter() - read  # a sympy result is converted to LaTeX in the sandbox
    ok, error = result.ok, result.error
    if ok and final is None:  # ran without printing an answer (e.g. a program cut off at the token limit)
        ok, error = False, "the program printed nothing; it must print the final answer"
    elif ok and _printed_no_value(result.output):  # sympy's zoo (a division by zero), nan, a function's None
        ok, error, final = False, (f"the program printed {result.output.strip().splitlines()[-1].strip()}, which is "
                                   "not a value (a division by zero, an undefined result, or a function that "
                                   "returned nothing); it must print the final answer"), None
    shown = "\n".join(part for part in (explanation, f"```python\n{program}\n```",
                                        f"Output: {result.output.strip()}" if ok else f"The program failed: {error}",
                                        (f"The answer is \\({final}\\)." if "\\" in final else f"The answer is {final}.")
                                        if final else "") if part)
    return Solution(shown, final, Method.PROGRAM, False, program, result.output, ok, error,
                    new_tokens=new_tokens, seconds=seconds + result.seconds + read)


def _program_kinds(mode: str, over: str | None = None, then_over: str | None = None) -> set[str]:
    used = {mode} | ({over, then_over} if mode == "vote" else set())
    return used & {"program", "code", "mixed"}


def program_kinds(settings: SolveConfig) -> set[str]:
    """The modes of ``settings`` whose answers are programs (a vote's samples in either round; a tie-break that
    cannot run its program just decides nothing)."""
    return _program_kinds(settings.mode, settings.vote_over, settings.then_over)


def require_runnable(mode: str, over: str | None = None, then_over: str | None = None) -> None:
    """ProgramsRefused (sandbox/run.py) when the mode needs programs and this host runs none: the one check every
    door (solve, a stream, the API before it answers) makes."""
    kinds = _program_kinds(mode, over, then_over)
    if kinds:
        require_programs(f"mode {mode}" + (f" over {', '.join(sorted(kinds))}" if mode == "vote" else ""))


def runnable(settings: SolveConfig, what: str) -> SolveConfig:
    """``settings``, or step by step (cot) where they need programs and this host runs none (said in the log)."""
    if program_kinds(settings) and not current_boundary().runs_programs:
        log.error("%s solves with programs (%s), which this host cannot run: it answers step by step (cot) instead",
                  what, ", ".join(sorted(program_kinds(settings))))
        return SolveConfig(mode="cot")
    return settings


def solve(generator, questions: list[str], mode: str = "cot", contexts=None, max_new_tokens: int = 512,
          k: int = 5, base: str = "cot", temperature: float = 0.7, seed: int = 0, repairs: int = 1,
          early_stop: bool = True, tiebreak: str | None = VOTE_TIEBREAK, agree_first: int = 0,
          then_over: str | None = None, first_round: int = 0, time_budget: float | None = None,
          stop: threading.Event | None = None) -> list[Solution]:
    """Solutions of ``questions`` in ``mode`` (greedy for cot/program; k sampled ones voted for vote, in two rounds
    with ``agree_first``, within ``time_budget`` seconds each when given); a program that fails is shown its error
    and corrected up to ``repairs`` times. Setting ``stop`` (a client gone) ends generation at the next token (a
    vote's sampling; a greedy answer comes back as far as it got)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    require_runnable(mode, base, then_over)
    contexts = list(contexts) if contexts is not None else [None] * len(questions)
    if mode == "vote":
        return [vote(generator, q, c, max_new_tokens, k, base, temperature, seed, repairs, early_stop, tiebreak,
                     agree_first, then_over, first_round, time_budget, stop) for q, c in zip(questions, contexts)]
    start = time.perf_counter()
    generations = _generate(generator, questions, mode, max_new_tokens, contexts, cancel=stop)
    per = (time.perf_counter() - start) / max(len(questions), 1)
    solutions = [solution_from_text(g.text, mode, generator.tutor_prompt, g.new_tokens, per) for g in generations]
    return [repaired(generator, q, c, g.text, s, max_new_tokens, repairs, mode, cancel=stop)
            for q, c, g, s in zip(questions, contexts, generations, solutions)]


def solve_as(generator, questions: list[str], settings: SolveConfig, contexts=None,
             max_new_tokens: int = 512, stop: threading.Event | None = None, seed: int = 0) -> list[Solution]:
    """``solve`` with a recipe's (or a saved tutor's) solving settings; ``seed``: a vote's first sample's seed
    (another seed, another set of samples: "try again")."""
    return solve(generator, questions, settings.mode, contexts, max_new_tokens, k=settings.samples,
                 base=settings.vote_over, temperature=settings.temperature, tiebreak=settings.tiebreak,
                 agree_first=settings.agree_first, then_over=settings.then_over, first_round=settings.first_round,
                 time_budget=settings.time_budget, stop=stop, seed=seed)


def overridden(settings: SolveConfig, **overrides) -> SolveConfig:
    """``settings`` with the ``overrides`` that are not None on top (a request's or a command line's), validated."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return SolveConfig.checked({**settings.model_dump(), **given}, "solving settings: {problems}")


def repaired(generator, question: str, context, text: str, solution: Solution, max_new_tokens: int, repairs: int,
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
        [g] = _generate(generator, [request], mode, max_new_tokens,
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


def _begun(prefix: str | None, generation: Generation) -> Generation:
    """A generation continued from ``prefix``, with the prefix put back in front."""
    if not prefix:
        return generation
    return Generation(prefix + generation.text, generation.new_tokens, generation.seconds, generation.truncated)


def _generate(generator, questions: list[str], mode: str, max_new_tokens: int, contexts, cancel=None, **sampling):
    """Greedy (or ``sampling``) answers in ``mode``; once ``cancel`` is set they stop at the next token, and a cot
    answer's Python block is no longer run."""
    system, prefix = PROMPTS[mode]
    prefixed = {"prefix": prefix} if prefix else {}
    cancelled = {"cancel": cancel} if cancel is not None else {}  # a generator that predates cancel: without one
    generations = generator.generate(questions, max_new_tokens, contexts, system=system, stops=PROGRAM_STOPS,
                                     **prefixed, **cancelled, **sampling)
    if mode in PROGRAM_MODES:
        return [_begun(prefix, g) for g in generations]
    if cancel is not None and cancel.is_set():
        return generations
    return [with_tools(generator, q, c, g, max_new_tokens, **sampling)
            for q, c, g in zip(questions, contexts, generations)]


def _sample(generator, question: str, base: str, k: int, max_new_tokens: int, context, temperature: float,
            seed: int, cancel=None, on_finish=None):
    """k sampled generations of ``base`` for one problem, decoded as one batch (see Generator.sample for
    ``cancel`` and ``on_finish``); cot answers that stopped at a Python block go on after it runs."""
    system, prefix = PROMPTS[base]
    prefixed = {"prefix": prefix} if prefix else {}
    finished = on_finish if on_finish is None or not prefix else (lambda i, g: on_finish(i, _begun(prefix, g)))
    generations = generator.sample(question, k, max_new_tokens, context, system=system, stops=PROGRAM_STOPS,
                                   temperature=temperature, seed=seed, cancel=cancel, on_finish=finished, **prefixed)
    if base in PROGRAM_MODES:
        return [_begun(prefix, g) for g in generations]
    if cancel is not None and cancel.is_set():  # decided, or out of time: a block left to run is not run
        return generations
    return [with_tools(generator, question, context, g, max_new_tokens, temperature=temperature, seed=seed + i)
            for i, g in enumerate(generations)]


# Tool-integrated reasoning: at most this many code blocks run in one answer
TOOL_CALLS = 3
_TOOL_OUTPUT = "```output\n{output}\n```\n"


def _ends_with_program(text: str) -> str | None:
    """The program of a Python block that ends ``text`` (where the model stopped to write its output), if any."""
    body = text.rstrip()
    start = max(body.rfind("```python"), body.rfind("```py\n"))
    if not body.endswith("```") or start < 0 or "\n" not in body[start:]:
        return None
    code = body[start:].split("\n", 1)[1][:-3]
    return code if code.strip() and "```" not in code else None


def _tool_run(program: str):
    """A block written mid-answer, run where this host runs programs; else a result that says it was not run."""
    if not current_boundary().runs_programs:
        return ProgramResult(False, "", "not run: this server runs no programs", 0.0)
    return run_program(program)


def _shown(result: ProgramResult) -> str:
    return ((result.output.strip() or "(no output)") if result.ok else f"Error: {result.error}")[:2000]


def _tool_output(program: str) -> str:
    return _shown(_tool_run(program))


def stream_cot(generator, question: str, max_new_tokens: int, context=None, cancel=None, temperature: float = 0.0,
               seed: int | None = None, info: dict | None = None) -> Iterator[str]:
    """A cot answer piece by piece, with tool-integrated reasoning as in ``with_tools``: where the model stops after
    a Python block, the sandbox's output is sent as the next piece and the model goes on from it. ``info`` gets
    ``new_tokens``, ``truncated`` and ``tool_calls`` at the end."""
    text, tokens, calls, prefix, part = "", 0, 0, None, {}
    while True:
        part = {}
        for piece in generator.stream(question, max_new_tokens - tokens, context, cancel, temperature, seed, part,
                                      prefix=prefix, stops=PROGRAM_STOPS):
            text += piece
            yield piece
        tokens += part.get("new_tokens", 0)
        program = _ends_with_program(text)
        if program is None or calls >= TOOL_CALLS or tokens >= max_new_tokens or part.get("truncated") or \
                (cancel is not None and cancel.is_set()):
            break
        block = f"\n{_TOOL_OUTPUT.format(output=_tool_output(program))}"
        text, prefix, calls = text.rstrip() + block, text.rstrip() + block, calls + 1
        yield block
    if info is not None:
        info.update(new_tokens=tokens, truncated=bool(part.get("truncated")) or tokens >= max_new_tokens,
                    tool_calls=calls)


def stream_program(generator, question: str, max_new_tokens: int, context=None, cancel=None,
                   temperature: float = 0.0, seed: int | None = None, info: dict | None = None,
                   repairs: int = 1, mode: str = "program") -> Iterator[str]:
    """A program (or ``code``) answer as the model writes it (its explanation and program, piece by piece, up to
    where it would make up an output); then the program runs in the sandbox (with ``repairs`` corrections of a failed one, not
    streamed) and ``info["solution"]`` is the Solution ``solve(..., "program")`` would give, whose ``answer`` replaces
    the streamed text. ``info`` also gets ``new_tokens`` and ``truncated``."""
    require_runnable(mode)
    system, prefix = PROMPTS[mode]
    text, part = prefix or "", {}
    if prefix:
        yield prefix
    for piece in generator.stream(question, max_new_tokens, context, cancel, temperature, seed, part,
                                  prefix=prefix, stops=PROGRAM_STOPS, system=system):
        text += piece
        yield piece
    tokens = part.get("new_tokens", 0)
    solution = solution_from_text(text, mode, generator.tutor_prompt, tokens, 0.0)
    if cancel is None or not cancel.is_set():
        sampling = {"temperature": temperature, "seed": seed} if temperature > 0 else {}
        solution = repaired(generator, question, context, text, solution, max_new_tokens, repairs, mode,
                            **sampling)
    if info is not None:
        info.update(new_tokens=solution.new_tokens, truncated=bool(part.get("truncated")) and solution.program is None,
                    solution=solution)


def with_tools(generator, question: str, context, generation: Generation, max_new_tokens: int,
               **sampling) -> Generation:
    """A cot answer whose text ends with a Python block (the model stopped where it would have written the block's
    output, PROGRAM_STOPS): the block runs in the sandbox, its real output goes there, and the model goes on from
    it, up to TOOL_CALLS times within the token budget. Other answers are returned as they are."""
    text, tokens, seconds, calls = generation.text, generation.new_tokens, generation.seconds, 0
    while calls < TOOL_CALLS and tokens < max_new_tokens and not generation.truncated:
        program = _ends_with_program(text)
        if program is None:
            break
        result = _tool_run(program)
        text = f"{text.rstrip()}\n{_TOOL_OUTPUT.format(output=_shown(result))}"
        generation = generator.continue_answer(question, text, max_new_tokens - tokens, context, stops=PROGRAM_STOPS,
                                               **sampling)
        text, calls = f"{text}{generation.text}", calls + 1
        tokens, seconds = tokens + generation.new_tokens, seconds + generation.seconds + result.seconds
    if calls == 0:
        return generation
    return Generation(text, tokens, seconds, generation.truncated or tokens >= max_new_tokens)


def stopped_because(solution: Solution) -> str:
    """Why a vote drew fewer samples than asked: an adaptive first round that agreed, or a decided majority."""
    if solution.out_of_time:
        return "the time budget ran out"
    if solution.agreeing == solution.samples:
        return "they all agreed"
    if solution.first_round_ended:
        return f"{solution.agreeing} of the first {solution.samples} agreed"
    return "the rest could not change the answer"


def _answer_groups(samples: list[Solution]) -> list[list[Solution]]:
    """Samples grouped by math-verify-equivalent final answers, in the order the answers first appeared."""
    groups: list[list[Solution]] = []
    for sample in samples:
        if sample.final_answer is None:
            continue
        for group in groups:
            if answers_match(sample.final_answer, group[0].final_answer):
                group.append(sample)
                break
        else:
            groups.append([sample])
    return groups


def decided(groups: list[list[Solution]], remaining: int) -> bool:
    """Whether the samples still to come can no longer change the majority: the leading answer has more votes than
    the runner-up could reach with all of them."""
    sizes = sorted((len(g) for g in groups), reverse=True) + [0, 0]
    return sizes[0] > sizes[1] + remaining


def decides(decider: Solution, tiebreak: str) -> bool:
    """Whether a tie-break answer settles a split vote: it has an answer, and in program mode its program ran."""
    return decider.final_answer is not None and not decider.refused and (tiebreak == "cot" or bool(decider.program_ok))


def sample_modes(base: str, k: int) -> list[str]:
    """The mode of each of k samples: all ``base``, or for mixed cot and program in turn (cot first)."""
    return [("cot", "program")[i % 2] if base == "mixed" else base for i in range(k)]


class _Either:
    """Set when either event is (what a batch checks at each token: the vote decided, or the client gone)."""

    def __init__(self, *events):
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class _Both:
    """Set when all the events are (past the deadline, and an answer in)."""

    def __init__(self, *events):
        self.events = events

    def is_set(self) -> bool:
        return all(e.is_set() for e in self.events)


@contextmanager
def _expiring(deadline: float | None):
    """An event set at ``deadline`` (a ``time.perf_counter()`` reading; never without one)."""
    event = threading.Event()
    timer = threading.Timer(max(deadline - time.perf_counter(), 0.0), event.set) if deadline is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield event
    finally:
        if timer is not None:
            timer.cancel()


def _ending(*events) -> _Either | None:
    """Set once any of ``events`` (None: left out) is; None when there are none."""
    given = [e for e in events if e is not None]
    return _Either(*given) if given else None


class _EarlyVote:
    """Decides a vote whose samples decode together as they finish: once the answers in can no longer be outvoted
    by the samples still decoding, ``cancel`` is set and those stop at their next token. A sample's answer here
    is its first reading (a cot answer that stopped at a Python block has none yet; a program that fails, none
    until it is corrected), kept so the program is not run twice."""

    def __init__(self, k: int, tutor_prompt, prior: list[Solution] = (), early_stop: bool = True):
        self.k, self.tutor_prompt = k + len(prior), tutor_prompt  # prior: an earlier round's answers, counted too
        self.early_stop = early_stop
        self.read: dict[tuple[str, str], Solution] = {}
        self.answers: list[Solution] = list(prior)
        self.cancel = threading.Event()
        self.out_of_time = False  # the time budget ran out: the next answer in (or one already in) ends the vote
        self._lock = threading.Lock()

    def time_is_up(self) -> None:
        """The vote's time budget is spent: the samples still decoding stop once there is an answer to give."""
        with self._lock:
            self.out_of_time = True
            if self.answers:
                self.cancel.set()

    def first_reading(self, mode: str, text: str, new_tokens: int) -> Solution:
        with self._lock:
            key = (mode, text)
            if key not in self.read:
                self.read[key] = solution_from_text(text, mode, self.tutor_prompt, new_tokens, 0.0)
            return self.read[key]

    def finished(self, mode: str, generation: Generation) -> None:
        reading = self.first_reading(mode, generation.text, generation.new_tokens)
        waiting = mode == "cot" and _ends_with_program(generation.text)  # its block runs, then it goes on
        counted = reading if reading.program_ok is not False and not waiting else \
            Solution(generation.text, None, reading.method)
        with self._lock:
            self.answers.append(counted)
            if self.out_of_time or \
                    self.early_stop and decided(_answer_groups(self.answers), self.k - len(self.answers)):
                self.cancel.set()


def _drawn_together(generator, question: str, context, max_new_tokens: int, k: int, base: str, temperature: float,
                    seed: int, repairs: int, early_stop: bool = True, prior: list[Solution] = (),
                    modes: list[str] | None = None, deadline: float | None = None,
                    stop: threading.Event | None = None,
                    expired: threading.Event | None = None) -> tuple[list[Solution], bool]:
    """The k samples at once: each mode's samples are one batch sharing its prompt, the modes' batches and the
    repairs of failed programs decode side by side; with ``early_stop`` the vote ends as soon as the finished
    samples (with the ``prior`` answers of an earlier round) decide it (the same answer all would give) and the
    others are cut off. At ``deadline`` (a ``time.perf_counter()`` reading) the samples still decoding are cut off
    too, once one answer is in (with the ``prior`` ones), and failed programs are no longer corrected (a correction
    under way stops once ``expired``, the vote's deadline event, is set); so are they all once ``stop`` is set (the
    client is gone). Returns the samples and whether the deadline cut any off."""
    from concurrent.futures import ThreadPoolExecutor

    modes = modes or sample_modes(base, k)
    wanted = {mode: modes.count(mode) for mode in dict.fromkeys(modes)}
    early = _EarlyVote(k, generator.tutor_prompt, prior, early_stop)
    watched = early_stop or deadline is not None or stop is not None
    cancel = _Either(early.cancel, stop) if stop is not None else early.cancel
    timer = threading.Timer(max(deadline - time.perf_counter(), 0.0), early.time_is_up) if deadline else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        with ThreadPoolExecutor(max_workers=k) as pool:
            batches = {mode: pool.submit(_sample, generator, question, mode, n, max_new_tokens, context, temperature,
                                         seed + 100 * j, cancel if watched else None,
                                         (lambda _i, g, mode=mode: early.finished(mode, g)) if watched else None)
                       for j, (mode, n) in enumerate(wanted.items())}
            drawn = [(mode, g) for mode, batch in batches.items() for g in batch.result()]
            late = early.out_of_time
            gone = stop is not None and stop.is_set()
            samples = [pool.submit(_one_sample, generator, question, context, mode, g, max_new_tokens,
                                   0 if late or gone else repairs, temperature, seed + i, early.read.get((mode, g.text)),
                                   _ending(expired, stop))
                       for i, (mode, g) in enumerate(drawn)]
            return [sample.result() for sample in samples], late and len(drawn) < k
    finally:
        if timer is not None:
            timer.cancel()


def _one_sample(generator, question, context, mode, generation, max_new_tokens, repairs, temperature, seed,
                read: Solution | None = None, cancel=None):
    sample = read if read is not None and read.new_tokens == generation.new_tokens else \
        solution_from_text(generation.text, mode, generator.tutor_prompt, generation.new_tokens, 0.0)
    return repaired(generator, question, context, generation.text, sample, max_new_tokens, repairs,
                    mode if mode in PROGRAM_MODES else "program", temperature=temperature, seed=seed, cancel=cancel)


def _drawn_in_turn(generator, question: str, context, max_new_tokens: int, k: int, base: str, temperature: float,
                   seed: int, repairs: int, early_stop: bool, prior: list[Solution] = (),
                   modes: list[str] | None = None, deadline: float | None = None,
                   stop: threading.Event | None = None,
                   expired: threading.Event | None = None) -> tuple[list[Solution], bool]:
    """Samples one after another (a generator that decodes one sequence at a time), stopping once decided (with
    the ``prior`` answers of an earlier round), or at ``deadline`` once there is an answer; the samples, and
    whether the deadline stopped them."""
    samples: list[Solution] = []
    for i, mode in enumerate(modes or sample_modes(base, k)):
        if deadline is not None and time.perf_counter() >= deadline and (prior or samples):
            return samples, True
        if stop is not None and stop.is_set():
            break
        g = _generate(generator, [question], mode, max_new_tokens, [context], temperature=temperature, seed=seed + i)[0]
        late = deadline is not None and time.perf_counter() >= deadline
        samples.append(_one_sample(generator, question, context, mode, g, max_new_tokens, 0 if late else repairs,
                                   temperature, seed + i, cancel=_ending(expired, stop)))
        if early_stop and decided(_answer_groups([*prior, *samples]), k - len(samples)):
            break
    return samples, False


def _drawn(generator, *args, **kwargs) -> tuple[list[Solution], bool]:
    """Samples drawn together on a parallel generator, in turn on a sequential one (same arguments), and whether a
    deadline cut them short."""
    return (_drawn_together if generator.parallel else _drawn_in_turn)(generator, *args, **kwargs)


def _first_round(generator, question: str, context, max_new_tokens: int, n: int, base: str, temperature: float,
                 seed: int, repairs: int, stop: threading.Event | None = None,
                 deadline: float | None = None,
                 expired: threading.Event | None = None) -> tuple[list[Solution], bool]:
    """The greedy answer (in the base's first mode) and n - 1 samples of the next modes, drawn together on a
    parallel generator; the greedy answer comes first. ``stop`` ends the samples (not the greedy answer, which is
    bounded by the token budget). At ``deadline`` the samples still decoding stop as soon as one answer of the
    round is in (the greedy one always completes, but a correction of its program stops once ``expired``, the
    vote's deadline event, is set); returns the answers and whether the deadline cut any off."""
    from concurrent.futures import ThreadPoolExecutor

    modes = sample_modes(base, n)
    greedy_done = threading.Event()
    # the samples stop when the client is gone, or past the deadline once the greedy answer is in (once one of them
    # is in, _drawn's own deadline stops the others)
    ending = _ending(stop, _Both(expired, greedy_done) if expired is not None else None)

    def greedy() -> Solution:
        try:
            start = time.perf_counter()
            [g] = _generate(generator, [question], modes[0], max_new_tokens, [context])
            answer = solution_from_text(g.text, modes[0], generator.tutor_prompt, g.new_tokens,
                                        time.perf_counter() - start)
            return repaired(generator, question, context, g.text, answer, max_new_tokens, repairs, modes[0],
                            cancel=_ending(expired, stop))
        finally:
            greedy_done.set()

    def sampled() -> list[Solution]:
        return _drawn(generator, question, context, max_new_tokens, n - 1, base, temperature, seed, repairs, False,
                      modes=modes[1:], stop=ending, deadline=deadline)[0]

    if not generator.parallel:  # one sequence at a time
        answers = [greedy(), *sampled()]
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(greedy)
            rest = sampled()
            answers = [first.result(), *rest]
    late = deadline is not None and time.perf_counter() >= deadline
    return answers, len(answers) < n and late and not (stop is not None and stop.is_set())


def _agreeing(samples: list[Solution]) -> int:
    """How many samples give the most common answer."""
    return max((len(g) for g in _answer_groups(samples)), default=0)


def _tiebreak_answer(generator, question: str, context, max_new_tokens: int, tiebreak: str, repairs: int,
                     halt) -> tuple[Solution | None, int]:
    """The greedy answer in ``tiebreak``'s mode that decides a vote in which no two samples agree, and its tokens;
    None when ``halt`` (the vote's deadline, or its client gone) is set before or while it is made."""
    if halt is not None and halt.is_set():
        return None, 0  # out of time (or nobody waiting): the first answer drawn stands
    [decider] = solve(generator, [question], tiebreak, [context], max_new_tokens, repairs=repairs, stop=halt)
    return (None if halt is not None and halt.is_set() else decider), decider.new_tokens


def vote(generator, question: str, context: str | None, max_new_tokens: int, k: int, base: str,
         temperature: float, seed: int, repairs: int = 1, early_stop: bool = True,
         tiebreak: str | None = None, agree_first: int = 0, then_over: str | None = None,
         first_round: int = 0, time_budget: float | None = None, stop: threading.Event | None = None) -> Solution:
    """k samples of ``base`` (cot, program, code, or a mix); the answer most samples agree on (math-verify equivalence),
    and the agreement among the samples drawn. A parallel generator draws all k together; a sequential one draws
    them in turn and, with ``early_stop``, stops once the rest could not change the majority (the chosen answer is
    the one all k would give, since sample i always has seed + i); ``samples`` says how many were drawn.
    With ``tiebreak`` ("cot" or "program"), when no two samples agree, one greedy answer in that mode decides (a
    program only when it ran; ``method`` says so: ``vote(cot)+program``); the confidence stays the vote's.
    With ``agree_first`` (2 to k - 1), adaptive consistency: the greedy answer and agree_first - 1 samples are drawn
    first, and when they all agree that is the answer; otherwise the other samples are drawn and all vote, a tie
    going to the greedy answer (which is also the tie-break when it is in the tie-break's mode). With ``first_round``
    (more than agree_first), the first round draws that many answers (the greedy one and first_round - 1 samples)
    and ends the vote when agree_first of them agree (2 of 3, say). ``then_over``: the
    mode of the samples drawn after a first round that disagrees (a cheap first round, a richer second; default
    ``base``); ``method`` says both when the second round was drawn: ``vote(code,program)``.
    With ``time_budget`` (seconds), once the vote has taken that long the samples still being drawn stop and the
    answer is voted from those finished (at least one: with agree_first, the first round's greedy answer always
    completes, and its samples still decoding stop once an answer of the round is in);
    failed programs are no longer corrected, nor a tie-break asked, and ``out_of_time`` says so. Setting ``stop``
    (the client is gone) ends the sampling at the next token, begins no further round and asks no tie-break."""
    for over in (base, then_over or base):
        if over not in VOTE_OVER:
            raise ValueError(f"vote over {over!r}: choose {', '.join(VOTE_OVER)}")
    first = max(first_round, agree_first)  # the first round's answers
    adaptive = 2 <= agree_first and first < k
    then_over = then_over if then_over not in (None, base) and adaptive else None
    if tiebreak not in (None, *TIEBREAKS):
        raise ValueError(f"vote tiebreak {tiebreak!r}: choose {', '.join(TIEBREAKS)}")
    tiebreak = None if tiebreak == "none" else tiebreak
    start = time.perf_counter()
    deadline = start + time_budget if time_budget else None
    with _expiring(deadline) as expired:  # set at the deadline: a correction or tie-break under way stops
        greedy, ended, late = None, False, False
        if adaptive:
            samples, late = _first_round(generator, question, context, max_new_tokens, first, base, temperature, seed,
                                         repairs, stop, deadline, expired)
            greedy = samples[0]
            if _agreeing(samples) >= agree_first:
                then_over, ended = None, True  # no second round: its mode is not named
            elif stop is not None and stop.is_set():
                then_over = None  # nobody is waiting for a second round
            elif deadline is not None and time.perf_counter() >= deadline:
                then_over, late = None, True  # the first round took the whole budget: no second round is begun
            else:
                second = then_over or base
                more, late = _drawn(generator, question, context, max_new_tokens, k - first, second, temperature,
                                    seed + first, repairs, early_stop, prior=samples,
                                    modes=sample_modes(second, k)[first:], deadline=deadline, stop=stop, expired=expired)
                samples += more
        else:
            samples, late = _drawn(generator, question, context, max_new_tokens, k, base, temperature, seed, repairs,
                                   early_stop, deadline=deadline, stop=stop, expired=expired)
            if not samples:  # stopped before any sample finished: there is no answer, and nobody to give it to
                return Solution("", None, vote_label(base), voted_over=base, samples=0, k=k,
                                seconds=time.perf_counter() - start)
        groups = _answer_groups(samples)
        top = max((len(g) for g in groups), default=0)
        chosen = max(groups, key=len)[0] if groups else samples[0]
        decided_by, tokens = None, sum(s.new_tokens for s in samples)
        if tiebreak and top <= 1 and len(samples) > 1:
            if greedy is not None and sample_modes(base, 1)[0] == tiebreak:
                decider = greedy  # the first round's greedy answer is the tie-break's answer: not asked again
            else:
                decider, spent = _tiebreak_answer(generator, question, context, max_new_tokens, tiebreak, repairs,
                                                  _ending(expired, stop))
                tokens += spent
            if decider is not None and decides(decider, tiebreak):
                chosen, decided_by = decider, Method.PROGRAM if tiebreak in PROGRAM_MODES else Method(tiebreak)
        late = late or expired.is_set() and not ended  # the deadline came while it still drew or corrected answers
        chosen.method, chosen.voted_over, chosen.decided_by = vote_label(base, decided_by, then_over), base, decided_by
        chosen.samples, chosen.k, chosen.first_round_ended, chosen.out_of_time = len(samples), k, ended, late
        chosen.new_tokens, chosen.seconds = tokens, time.perf_counter() - start
        chosen.confidence = top / len(samples)
        chosen.votes = {group[0].final_answer: len(group) for group in groups}
        return chosen
