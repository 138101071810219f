"""What the model is told in each mode, how a code answer begins, where generation stops for a program's output, and
what a failed program's correction asks (cot uses the tutor's own prompt)."""

from __future__ import annotations

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
# first (docs/findings.md has the comparison with program answers).
CODE_PREFIX = "```python\n"
# Each mode's (system prompt, start of the answer); cot uses the tutor's own prompt. The request for a program is
# the system prompt's alone: said again in the user's turn, the bundled coder wrote programs where its prose was the
# better answer (docs/findings.md).
PROMPTS: dict[str, tuple[str | None, str | None]] = {
    "cot": (None, None), "program": (PROGRAM_SYSTEM, None), "code": (CODE_SYSTEM, CODE_PREFIX)}
# The model's own ```output block is where it would make up a result: generation stops there and the sandbox runs
# the program instead (this also saves the tokens of an invented output and conclusion).
PROGRAM_STOPS = ("```output",)
# When a program fails, the model sees the error and gets one more try (a turn of the same conversation): most
# failures are slips a programmer fixes at a glance (a misspelt name, a missing import).
REPAIR_REQUEST = ("The program failed: {error}\nWrite the corrected program in one ```python code block; it must print "
                  "only the final answer.")
