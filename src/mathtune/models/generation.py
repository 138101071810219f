"""What every generation backend returns and promises (transformers in generate.py, llama.cpp in llama_engine.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..config import SolveConfig
from ..tasks.tutor import TutorPrompt


@dataclass
class Generation:
    text: str
    new_tokens: int
    seconds: float
    truncated: bool = False  # the answer reached max_new_tokens


class Generator(Protocol):
    backend: str
    tutor_prompt: TutorPrompt  # the tutor's prompt: its layout, stops and how a final answer is read
    solving: SolveConfig  # how this tutor solves when a caller does not say: a trained tutor's recipe, else defaults
    parallel: bool        # concurrent calls decode together (llama.cpp); False: one at a time (transformers)

    def generate(self, questions: Sequence[str], max_new_tokens: int = 256,
                 contexts: Sequence[str | None] | None = None, ignore_eos: bool = False, system: str | None = None,
                 temperature: float = 0.0, seed: int | None = None, stops: Sequence[str] = (),
                 prefix: str | None = None, cancel: threading.Event | None = None) -> list[Generation]:
        """Answers to ``questions``; ``system`` replaces the system prompt; ``stops`` are stop sequences added to
        the tutor's own for this call; ``prefix``: every answer begins with it (the model continues it; the text
        returned is only what follows); once ``cancel`` is set, generation stops at the next token (the answers
        come back as far as they got)."""

    def sample(self, question: str, k: int, max_new_tokens: int = 256, context=None, system: str | None = None,
               temperature: float = 0.7, seed: int | None = None, stops: Sequence[str] = (),
               cancel: threading.Event | None = None, on_finish=None, prefix: str | None = None) -> list[Generation]:
        """k sampled answers of one prompt, decoded as one batch; ``on_finish(index, generation)`` sees each as it
        ends, and once ``cancel`` is set the unfinished ones stop (only finished answers are returned); ``prefix``
        as in ``generate``."""

    def continue_answer(self, question: str, prefix: str, max_new_tokens: int = 256, context=None,
                        system: str | None = None, stops: Sequence[str] = (), temperature: float = 0.0,
                        seed: int | None = None) -> Generation:
        """The rest of an answer whose first part is ``prefix`` (the text returned is only the rest)."""

    def stream(self, question: str, max_new_tokens: int = 256, context: str | None = None,
               cancel: threading.Event | None = None, temperature: float = 0.0, seed: int | None = None,
               info: dict | None = None, prefix: str | None = None, stops: Sequence[str] = (),
               system: str | None = None) -> Iterator[str]:
        """Pieces of the answer as they are made; setting ``cancel`` stops generation at the next token.
        ``temperature`` > 0 samples (seeded); ``info`` receives ``new_tokens`` and ``truncated`` (the answer
        reached max_new_tokens) once the stream ends; ``prefix``: the answer so far, continued; ``stops`` are added
        to the tutor's own; ``system`` replaces the tutor's system prompt (a program answer's)."""

    def close(self) -> None:
        """Free the model's memory and threads."""


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for stop in stops:
        at = text.find(stop)
        if at >= 0:
            cut = min(cut, at)
    return text[:cut].strip()
