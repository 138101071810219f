"""Final answers: extract them from a worked solution, and compare them symbolically with ``math-verify``.

A solution states its answer as ``#### 72`` (GSM8K), ``\\boxed{72}`` (MATH; the last box wins) or
"The answer is 72" (our tutor's format). ``1/2``, ``0.5`` and ``\\frac{1}{2}`` are the same answer.
"""

from __future__ import annotations

import re
import threading

_HASHES = re.compile(r"####\s*([^\n]+)")
THE_ANSWER_PATTERN = r"[Tt]he (?:final )?answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s*)?$"
_THE_ANSWER = re.compile(THE_ANSWER_PATTERN, re.M)
_REFUSALS = re.compile(
    r"(only help with math|only (?:answer|help with) (?:math|mathematics)|not (?:a )?(?:math|mathematics)(?:ematical)? "
    r"question|can(?:'|no)t help with that|unable to help with that|outside (?:of )?(?:my|the) (?:scope|domain))",
    re.I,
)


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1: i].strip()
    return None


def extract_final_answer(text: str, pattern: str | None = None) -> str | None:
    """The final answer of a solution; ``pattern`` (a saved tutor prompt's answer pattern) replaces the default
    "The answer is X." rule."""
    if not text:
        return None
    match = _HASHES.search(text)
    if match:
        return match.group(1).strip().replace(",", "")
    boxed = last_boxed(text)
    if boxed:
        return boxed
    found = (re.compile(pattern, re.M) if pattern else _THE_ANSWER).findall(text)
    if found:
        answer = found[-1].strip().rstrip(".")
        inner = last_boxed(answer)
        return _unwrapped(inner or answer)
    return None


_DELIMITERS = re.compile(r"^(?:\\\[|\\\(|\$\$?)\s*(.*?)\s*(?:\\\]|\\\)|\$\$?)?$", re.S)


def _unwrapped(answer: str) -> str | None:
    """``answer`` without the math delimiters around it (``\\[ 72 \\]`` is 72); None when nothing is left that
    could be an answer (a solution cut off after "The answer is: \\[") or when a brace it opens is never closed
    (cut off inside it: "The answer is \\(\\boxed{3" of 364)."""
    match = _DELIMITERS.match(answer.strip())
    answer = (match.group(1) if match else answer).strip().rstrip(".").strip()
    if re.fullmatch(r"<[^<>]+>", answer):  # "The answer is <10>." (a template's placeholder brackets kept)
        answer = answer[1:-1].strip()
    if answer.count("{") > answer.count("}"):
        return None
    return answer if re.search(r"[A-Za-z0-9]", answer) else None


def _numeric(text: str) -> float | None:
    cleaned = re.sub(r"[,$\s]|\\!|\\\$|\\%|%", "", text)
    try:
        return float(cleaned)
    except ValueError:
        return None


# math-verify reads the i of "7 i" (sympy's LaTeX of 7*I) as a real symbol and the i of "7i" as another one
_SPACED_I = re.compile(r"(?<=[\d}]) +(?=i\b)")


def answers_match(predicted: str | None, reference: str | None) -> bool:
    """Symbolic equivalence with math-verify; plain numeric comparison first (fast, and safe in any thread)."""
    if predicted is None or reference is None:
        return False
    predicted, reference = _SPACED_I.sub("", predicted), _SPACED_I.sub("", reference)
    a, b = _numeric(predicted), _numeric(reference)
    if a is not None and b is not None:
        return abs(a - b) <= 1e-6 * max(1.0, abs(b))
    from math_verify import parse, verify

    main = threading.current_thread() is threading.main_thread()  # math-verify's timeouts use signals
    timeout = 5 if main else None
    try:
        gold = parse(f"${reference}$", parsing_timeout=timeout)
        pred = parse(f"${predicted}$", parsing_timeout=timeout)
        if not gold or not pred:
            return predicted.strip() == reference.strip()
        return bool(verify(gold, pred, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a parser failure is a mismatch, never a crash of the evaluation
        return predicted.strip() == reference.strip()


def is_refusal(text: str) -> bool:
    return bool(_REFUSALS.search(text or ""))
