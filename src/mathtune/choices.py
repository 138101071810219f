"""The tutor's named choices, as enums: how an answer is made (``Mode``), a vote's samples (``VoteOver``), its
tie-break (``Tiebreak``) and how a served answer was had (``Reuse``). Recipes, requests and the command line name
them by value ("vote", "code"); config.py and models/solving read them here.
"""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    """How one answer is made (SolveConfig.mode): steps, a program with a sentence or two, a commented program, or a
    vote of sampled answers."""

    COT = "cot"
    PROGRAM = "program"
    CODE = "code"
    VOTE = "vote"

    def __str__(self) -> str:
        return self.value


class VoteOver(str, Enum):
    """The mode of a vote's samples (SolveConfig.vote_over and then_over); mixed: cot and program in turn."""

    COT = "cot"
    PROGRAM = "program"
    CODE = "code"
    MIXED = "mixed"

    def __str__(self) -> str:
        return self.value


class Tiebreak(str, Enum):
    """The greedy answer that decides a vote in which no two samples agree (SolveConfig.tiebreak)."""

    PROGRAM = "program"
    CODE = "code"
    COT = "cot"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


class Reuse(str, Enum):
    """How a served answer was had: made for this request, kept from an earlier one, or shared with one asked at the
    same moment (serve/shared.py)."""

    NONE = "none"
    CACHE = "cache"
    JOINED = "joined"

    def __str__(self) -> str:
        return self.value
