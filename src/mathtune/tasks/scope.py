"""Is this a math question? The tutor's server-side scope rule: a question that is not about mathematics gets a
short, polite refusal from the server, never an answer left to the model's whim.

A transparent rule rather than a learned classifier: it needs no model, runs in microseconds, and its mistakes can
be read. A text is math when it has mathematical notation (LaTeX, an operator between numbers, a variable raised to
a power, a fraction), a mathematical word (equation, triangle, probability, ...), or a number together with a
quantity question (how many / how much / what is / find / total / each / per ...) or a word that is math next to
a number (sum, area, half, ...). Measured by
bench/experiments/scope.py: false refusals on every GSM8K and MATH problem in the data folder, refusals on non-math prompts.
"""

from __future__ import annotations

import re

REFUSAL = ("I can only help with math questions. Ask me a problem to solve, for example: "
           "\"A train travels 60 km in 45 minutes. What is its speed in km/h?\"")

_NOTATION = re.compile(
    r"\\[a-zA-Z]+|\\[\[(]|\$[^$]+\$|\d\s*[-+*/^=<>×÷·]\s*[\d(a-zA-Z]|[a-zA-Z)]\s*[-+*/^=<>]\s*\d|[a-zA-Z]\^\s*\d|"
    r"\b\d+/\d+\b|\d\s*%|[√π∑∫≤≥≠∞]|\bf\(x\)|\b[a-z]\s*=\s*[-\d(]")
# words that make a text math on their own
_STRONG = re.compile(
    r"\b(?:math\w*|arithmetic|algebra\w*|geometr\w*|calculus|trigonometr\w*|probabilit\w*|equations?|"
    r"inequalit\w*|solve for|simplif\w*|factori[sz]\w*|integers?|prime numbers?|divisib\w*|divisors?|"
    r"remainder|fractions?|decimals?|percent(?:age)?s?|ratios?|quotient|exponent\w*|logarithm\w*|"
    r"derivatives?|integrals?|integrate|differentiate|polynomials?|matri(?:x|ces)|determinant|eigen\w*|"
    r"triangles?|radius|diameter|circumference|perimeter|polygons?|rectangles?|hypotenuse|pythagor\w*|"
    r"parabola|numerators?|denominators?|multiply|multiplied|divided by|subtract\w*|calculate|"
    r"combinations of|permutations?|binomial|modulo|gcd|lcm|theorem|lemma|irrational|real numbers?|"
    r"complex numbers?|coefficients?|variables?|arithmetic|geometric|word problem|number of ways|in how many|"
    r"how likely|expected value|pentagon|hexagon|octagon|quadrilateral|rhombus|trapezoid)\b", re.I)
# words that are math next to a number ("the sum of 4 and 5", not "the sum of my experiences")
_WEAK = re.compile(
    r"\b(?:sum|products?|differences?|mean|median|mode|average|squared?|cubed?|roots?|powers?|area|volume|"
    r"angles?|degrees|circles?|squares|cubes?|spheres?|cylinders?|slope|graph|coordinates?|sequences?|series|"
    r"digits?|numbers?|divide|add(?:ed)?|plus|minus|times|twice|thrice|half|third|quarter|dozen|compute|"
    r"evaluate|estimate|convert|maximum|minimum|odd|even|infinite|expression|constant|formula|rational|"
    r"functions?|limits?|prove|proof|multiples?|factors?|primes?|solve|vectors?)\b", re.I)
_QUANTITY = re.compile(
    r"\b(?:how (?:many|much|long|far|old|fast|tall|often)|what (?:is|was|are|were|will)|find|total|each|per|"
    r"every|left|remain\w*|more than|less than|fewer|cost\w*|price|pay|paid|earn\w*|spend|spent|save[sd]?|"
    r"hours?|minutes?|days?|weeks?|months?|years? old|km|miles?|meters?|feet|inches|kg|pounds?|grams?|liters?|"
    r"\$\s?\d|dollars?|cents?|rate|speed|times as)\b", re.I)
_DIGIT = re.compile(r"\d")
_MULTIPLE = re.compile(r"\b(?:twice|thrice|half|times as)\b", re.I)
_NUMBER_WORD = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                          r"forty|fifty|hundred|thousand|million)\b", re.I)


def is_math_question(text: str) -> bool:
    """True when ``text`` reads as a mathematics question or problem (see the module's docstring)."""
    if _NOTATION.search(text) or _STRONG.search(text):
        return True
    has_number = bool(_DIGIT.search(text) or _NUMBER_WORD.search(text))
    if has_number and (_QUANTITY.search(text) or _WEAK.search(text)):
        return True
    return bool(_MULTIPLE.search(text) and _QUANTITY.search(text))  # "twice as many ... how many?"


_FOLLOW_UP = re.compile(r"\b(?:why|how come|explain|steps?|that|this|it|again|wrong|mistake|mean|instead|what about|"
                        r"and if|check|sure|previous|answer|same|last|first|next|understand|simpler|another)\b", re.I)


def in_scope(question: str, history_questions: list[str] | None = None) -> bool:
    """The scope rule for a chat: math, or a short follow-up ("why?", "explain step 2") in a math conversation.
    A new non-math request ("write a poem") is out of scope even after math turns."""
    if is_math_question(question):
        return True
    return bool(history_questions) and len(question) <= 200 and bool(_FOLLOW_UP.search(question))


def with_history(question: str, history: list[tuple[str, str]], budget_chars: int = 1500) -> tuple[str, int]:
    """A follow-up with its conversation, as one self-contained problem: the last earlier turns (question and
    answer) that fit in ``budget_chars``, newest kept first, and how many older turns had to be left out. The
    model is asked to keep every fact of the earlier problem the follow-up does not change (a follow-up "what if
    she buys 4 pens instead?" dropped the notebooks of the problem it followed)."""
    turns: list[str] = []
    used = 0
    for asked, answered in reversed(history):
        turn = f"Student: {asked.strip()}\nTutor: {answered.strip()}"
        if used + len(turn) > budget_chars:
            break
        turns.insert(0, turn)
        used += len(turn)
    if not turns:
        return question, len(history)
    return ("Earlier in this conversation:\n" + "\n\n".join(turns) + f"\n\nThe student now asks: {question}\n"
            "Treat this as the earlier problem with only what the student changes: keep every other quantity and "
            "condition of the earlier problem, and solve it completely."), len(history) - len(turns)

