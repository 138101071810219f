"""Running the code an answer writes: the one place a Python block the model wrote mid-answer (tool-integrated
reasoning in cot) is found, run in the sandbox and its output put where the model stopped. Both ways of going on
from it use it: ``with_tools`` (a finished generation continued) and the streams (streams.py)."""

from __future__ import annotations

import threading

from ...sandbox import ProgramResult, current_boundary, run_program
from ..generation import Generation, Generator
from .prompts import PROGRAM_STOPS

# Tool-integrated reasoning: at most this many code blocks run in one answer
TOOL_CALLS = 3
_TOOL_OUTPUT = "```output\n{output}\n```\n"


def ends_with_program(text: str) -> str | None:
    """The program of a Python block that ends ``text`` (where the model stopped to write its output), if any."""
    body = text.rstrip()
    start = max(body.rfind("```python"), body.rfind("```py\n"))
    if not body.endswith("```") or start < 0 or "\n" not in body[start:]:
        return None
    code = body[start:].split("\n", 1)[1][:-3]
    return code if code.strip() and "```" not in code else None


def tool_run(program: str) -> ProgramResult:
    """A block written mid-answer, run where this host runs programs; else a result that says it was not run."""
    if not current_boundary().runs_programs:
        return ProgramResult(False, "", "not run: this server runs no programs", 0.0)
    return run_program(program)


def _shown(result: ProgramResult) -> str:
    return ((result.output.strip() or "(no output)") if result.ok else f"Error: {result.error}")[:2000]


def tool_turn(text: str, calls: int, tokens: int, max_new_tokens: int, truncated: bool,
              cancel: threading.Event | None = None) -> tuple[str, float] | None:
    """The output block to put after ``text`` and the seconds its program took, when ``text`` ends with a Python
    block that may still run (fewer than TOOL_CALLS run, tokens left, not cut, not cancelled); else None."""
    if calls >= TOOL_CALLS or tokens >= max_new_tokens or truncated or (cancel is not None and cancel.is_set()):
        return None
    program = ends_with_program(text)
    if program is None:
        return None
    result = tool_run(program)
    return f"\n{_TOOL_OUTPUT.format(output=_shown(result))}", result.seconds


def with_tools(generator: Generator, question: str, context, generation: Generation, max_new_tokens: int,
               **sampling) -> Generation:
    """A cot answer whose text ends with a Python block (the model stopped where it would have written the block's
    output, PROGRAM_STOPS): the block runs in the sandbox, its real output goes there, and the model goes on from
    it, up to TOOL_CALLS times within the token budget. Other answers are returned as they are."""
    text, tokens, seconds, calls = generation.text, generation.new_tokens, generation.seconds, 0
    while (turn := tool_turn(text, calls, tokens, max_new_tokens, generation.truncated)) is not None:
        block, ran = turn
        text = text.rstrip() + block
        generation = generator.continue_answer(question, text, max_new_tokens - tokens, context, stops=PROGRAM_STOPS,
                                               **sampling)
        text, calls = f"{text}{generation.text}", calls + 1
        tokens, seconds = tokens + generation.new_tokens, seconds + generation.seconds + ran
    if calls == 0:
        return generation
    return Generation(text, tokens, seconds, generation.truncated or tokens >= max_new_tokens)
