"""serve/shared.py: one answer for requests that ask the same thing, made once, kept unless it was cut short."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from mathtune.config import SolveConfig
from mathtune.serve.shared import SharedAnswers, answer_key


def _maker(made: list, seconds: float = 0.2, result=None, error: Exception | None = None):
    async def make(stop: threading.Event):
        made.append(stop)
        waited = 0.0
        while waited < seconds and not stop.is_set():
            await asyncio.sleep(0.01)
            waited += 0.01
        if error is not None:
            raise error
        return result if result is not None else SimpleNamespace(answer=f"answer {len(made)}", out_of_time=False,
                                                                 stopped=stop.is_set())
    return make


def test_the_same_key_is_made_once_and_kept():
    shared, made = SharedAnswers(4), []

    async def scenario():
        first = await asyncio.gather(*[shared.answer("k", _maker(made)) for _ in range(3)])
        again = await shared.answer("k", _maker(made))
        return first, again

    first, again = asyncio.run(scenario())
    assert len(made) == 1
    assert [how for _, how in first] == ["none", "joined", "joined"]
    assert len({id(answer) for answer, _ in first}) == 1
    assert again == (first[0][0], "cache")


def test_the_oldest_answer_goes_first_and_size_0_keeps_none():
    shared, made = SharedAnswers(2), []

    async def ask(key):
        return (await shared.answer(key, _maker(made, 0)))[1]

    async def scenario():
        return [await ask(k) for k in ("a", "b", "a", "c", "b", "a")]

    # a, b made; a from the cache (now the newest); c made and b dropped; b made again and a dropped; so a again
    assert asyncio.run(scenario()) == ["none", "none", "cache", "none", "none", "none"]
    assert len(shared) == 2
    off, made_off = SharedAnswers(0), []

    async def twice():
        return await asyncio.gather(off.answer("k", _maker(made_off)), off.answer("k", _maker(made_off)))

    assert [how for _, how in asyncio.run(twice())] == ["none", "none"] and len(made_off) == 2


def test_an_answer_stops_only_when_everyone_waiting_for_it_has_gone():
    shared, made = SharedAnswers(4), []
    gone_a, gone_b = threading.Event(), threading.Event()

    async def scenario():
        a = asyncio.ensure_future(shared.answer("k", _maker(made, 5.0), gone_a))
        await asyncio.sleep(0.05)
        b = asyncio.ensure_future(shared.answer("k", _maker(made, 5.0), gone_b))
        await asyncio.sleep(0.1)
        gone_a.set()
        await asyncio.sleep(0.2)
        still_making = not made[0].is_set()
        gone_b.set()
        answers = await asyncio.wait_for(asyncio.gather(a, b), 2)
        return still_making, answers

    still_making, answers = asyncio.run(scenario())
    assert still_making  # one teacher leaving did not stop the other's answer
    assert made[0].is_set() and answers[0][0].stopped  # the last leaving did, at once
    assert len(shared) == 0  # a stopped answer is not kept


def test_a_cancelled_waiter_counts_as_gone():
    shared, made = SharedAnswers(4), []

    async def scenario():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(shared.answer("k", _maker(made, 5.0)), 0.1)
        await asyncio.sleep(0.1)
        return made[0].is_set()

    assert asyncio.run(scenario())


def test_cut_answers_and_errors_are_not_kept():
    shared, made = SharedAnswers(4), []
    cut = SimpleNamespace(answer="cut", out_of_time=True)

    async def scenario():
        first = await shared.answer("cut", _maker(made, 0, result=cut))
        again = await shared.answer("cut", _maker(made, 0, result=cut))
        failing = [shared.answer("bad", _maker(made, 0.1, error=RuntimeError("engine died"))) for _ in range(2)]
        errors = await asyncio.gather(*failing, return_exceptions=True)
        after = await shared.answer("bad", _maker(made, 0))
        return first, again, errors, after

    first, again, errors, after = asyncio.run(scenario())
    assert (first[1], again[1]) == ("none", "none")
    assert [str(e) for e in errors] == ["engine died", "engine died"]
    assert after[1] == "none" and len(made) == 4  # cut twice, failed once (shared by both), then made


def test_the_key_covers_everything_that_changes_an_answer():
    solving = SolveConfig(mode="vote", samples=5)
    base = answer_key("What is 2 + 2?", None, solving, 384)
    assert base == answer_key("What is 2 + 2?", None, SolveConfig(mode="vote", samples=5), 384)
    others = [answer_key("What is 2 + 3?", None, solving, 384),
              answer_key("What is 2 + 2?", "Example: 1 + 1 = 2", solving, 384),
              answer_key("What is 2 + 2?", None, SolveConfig(mode="vote", samples=7), 384),
              answer_key("What is 2 + 2?", None, solving.model_copy(update={"time_budget": 30.0}), 384),
              answer_key("What is 2 + 2?", None, solving, 200)]
    assert base not in others and len(set(others)) == len(others)
