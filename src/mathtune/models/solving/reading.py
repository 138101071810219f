"""Reading an answer: the program in it, what the program printed (as people write numbers, sympy's results as
LaTeX), and one generation as a ``Solution`` (a program answer's program runs in the sandbox here)."""

from __future__ import annotations

import math
import re
import time

from ...metrics.answers import is_refusal
from ...sandbox import run_program
from .values import PROGRAM_MODES, Method, Solution

_CODE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


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
