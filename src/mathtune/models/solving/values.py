"""What solving is about, as types: modes, how an answer was made, a finished answer (``Solution``), and what a solve
streams (``Piece``, ``Finished``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ...choices import Mode, Reuse, Tiebreak, VoteOver

__all__ = ["Mode", "Reuse", "Tiebreak", "VoteOver", "Method", "Solution", "Piece", "Progress", "Finished", "Event"]


class Method(str, Enum):
    """How an answer was made: one greedy answer in a mode (program for code answers too: a program that ran made
    it), or the server's scope refusal. A vote's label is ``vote(<over>)`` with ``+<decider>`` when a tie-break
    decided (``Solution.voted_over``, ``decided_by``)."""

    COT = "cot"
    PROGRAM = "program"
    SCOPE = "scope"

    def __str__(self) -> str:
        return self.value


# The modes whose answer is a program run in the sandbox, and the modes that stream token by token (a vote is shown
# when it is done)
PROGRAM_MODES = (Mode.PROGRAM.value, Mode.CODE.value)
STREAMED_MODES = (Mode.COT.value, Mode.PROGRAM.value, Mode.CODE.value)


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
    truncated: bool = False          # a single answer that reached its token budget and was cut
    doubts: list[str] = field(default_factory=list)  # checks.py: why a teacher should not take it as it is

    @property
    def agreeing(self) -> int:
        """vote: how many samples gave the chosen answer (before any tie-break)."""
        return round((self.confidence or 0) * self.samples)

    @property
    def steps(self) -> list[str]:
        return [line.strip() for line in self.answer.splitlines() if line.strip()]

    @property
    def unsure(self) -> bool:
        """Whether the answer should not be shown as settled: a check failed (``doubts``), a vote whose samples
        mostly disagree or that its time budget cut, or a program that did not run cleanly."""
        if self.doubts:
            return True
        if self.voted_over is not None:
            return self.out_of_time or self.agreeing * 2 <= self.samples
        return self.program_ok is False


@dataclass(frozen=True)
class Piece:
    """A piece of an answer as it is written (a streamed mode's tokens, or a program block's real output)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The end of an answer: the checked solution (for a streamed program it replaces the pieces), how it was had,
    and whether the token budget cut it."""

    solution: Solution
    reused: Reuse = Reuse.NONE
    seconds: float = 0.0

    @property
    def truncated(self) -> bool:
        return self.solution.truncated


@dataclass(frozen=True)
class Progress:
    """A vote under way: answers in so far (of up to ``k``) and each final answer with how many gave it."""

    drawn: int
    k: int
    answers: tuple[tuple[str, int], ...] = ()


Event = Piece | Progress | Finished
