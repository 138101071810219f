"""Checks a teacher would make of a finished answer, whatever the mode: a question that asks for a whole number of
things (days, buses, people) answered with a fraction, and a "step-by-step" answer that shows no steps. A check
that fails makes the answer unsure (values.py Solution.unsure) and says why in words."""

from __future__ import annotations

import re

# "how many days / buses / people ..." (a count of things that come whole), but not "how many hours", "how much"
_COUNTED = ("day", "week", "bus", "buse", "car", "van", "boat", "trip", "people", "person", "student", "child",
            "children", "kid", "friend", "box", "bag", "bottle", "jar", "can", "table", "team", "group", "row", "page",
            "ticket", "book", "shelf", "shelve", "pack", "packet", "truck", "tree", "plate", "seat", "chair", "room",
            "worker", "player", "apple", "cookie", "egg", "cake", "pizza", "sandwich", "marble", "coin", "stamp")
_HOW_MANY = re.compile(r"\bhow\s+many\s+(?:more\s+|full\s+|whole\s+|fewer\s+)?([a-z]+)", re.I)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def whole_number_asked(question: str) -> str | None:
    """The thing a question counts when it asks for a whole number of it ("buses"), else None."""
    for match in _HOW_MANY.finditer(question):
        noun = match.group(1).lower()
        if noun.rstrip("s") in _COUNTED or noun in _COUNTED:
            return noun
    return None


def not_whole(question: str, final: str | None) -> str | None:
    """Why ``final`` cannot answer ``question`` as asked (a fraction of buses), else None."""
    counted = whole_number_asked(question)
    value = (final or "").replace(",", "").strip().removeprefix("$")
    if counted is None or not _NUMBER.match(value) or float(value).is_integer():
        return None
    return (f"The question asks how many {counted}, a whole number, but this answer is {final}: decide whether to "
            "round up or down.")


def no_steps(answer: str, final: str | None) -> str | None:
    """Why a step-by-step answer shows no steps (a bare "The answer is 12"), else None."""
    lines = [line for line in answer.splitlines() if line.strip()]
    words = len(answer.split())
    if final is None or len(lines) > 1 or words > 12:
        return None
    return "The tutor gave the answer without its steps, so there is nothing to check it by."
