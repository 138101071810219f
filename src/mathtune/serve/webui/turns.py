"""A question and its answer as the Tutor tab keeps them: one ``Turn`` each, the conversation a list of them. The
list lives in the browser (``gr.BrowserState``, so a reload keeps the chat): it comes back from there as JSON a
page could have changed, so ``turns_from`` reads it through the model (a malformed turn is left out, not trusted)
and ``stored`` writes it back."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

# A page stores at most what a server answers in a long chat; a longer list is cut to its newest turns.
MAX_TURNS = 200


class Turn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # the field names of the first release ("q", "a") still read, so a chat kept in a browser survives the upgrade
    question: str = Field(validation_alias=AliasChoices("question", "q"))
    answer: str | None = Field(None, validation_alias=AliasChoices("answer", "a"))  # None: not answered yet
    final: str | None = None               # the final answer, as the solution states it
    note: str | None = None                # how it was checked, in a teacher's words
    truncated: bool = False                # cut at the length limit (or stopped with some written): Continue goes on
    stopped: bool = False                  # Stop ended it
    streaming: bool = False                # still being written
    unsure: bool = False                   # the tutor is not sure of its final answer (Solution.unsure)
    found: list[tuple[str, int]] = []      # a vote's answers and how many tries gave each, the most given first
    tries: int | None = None               # how many answers a vote drew
    doubts: list[str] = []                 # why the final answer is in doubt (Solution.doubts)
    progress: str | None = None            # a vote under way, in words

    def as_stopped(self) -> Turn:
        """This turn as it stands if the answer ends now: stopped, with Continue for what was written."""
        return self.model_copy(update={"streaming": False, "stopped": True, "truncated": bool(self.answer)})


def turns_from(raw: Any) -> list[Turn]:
    """The conversation the browser sent (a list of turns as JSON), each turn checked; what is not a turn is left
    out."""
    turns = []
    for item in raw[-MAX_TURNS:] if isinstance(raw, list) else []:
        try:
            turns.append(item if isinstance(item, Turn) else Turn.model_validate(item))
        except ValidationError:
            continue
    return turns


def stored(turns: list[Turn]) -> list[dict]:
    """The conversation as the browser keeps it."""
    return [turn.model_dump(mode="json", exclude_defaults=True) for turn in turns]
