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


def test_the_oldest_answer_goes_first_and_size_0_keeps_none_but_joins():
    shared, made = SharedAnswers(2), []

    async def ask(key):
        return (await shared.answer(key, _maker(made, 0)))[1]

    async def scenario():
        return [await ask(k) for k in ("a", "b", "a", "c", "b", "a")]

    # a, b made; a from the cache (now the newest); c made and b dropped; b made again and a dropped; so a again
    assert asyncio.run(scenario()) == ["none", "none", "cache", "none", "none", "none"]
    assert len(shared) == 2
    off, made_off = SharedAnswers(0, join=False), []

    async def twice(shared):
        return await asyncio.gather(shared.answer("k", _maker(made_off)), shared.answer("k", _maker(made_off)))

    assert [how for _, how in asyncio.run(twice(off))] == ["none", "none"] and len(made_off) == 2
    joining = SharedAnswers(0)  # the server's default: requests at the same time join, nothing is kept
    assert [how for _, how in asyncio.run(twice(joining))] == ["none", "joined"] and len(made_off) == 3
    assert len(joining) == 0 and asyncio.run(joining.answer("k", _maker(made_off)))[1] == "none"


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
              answer_key("What is 2 + 2?", None, solving, 200),
              answer_key("What is 2 + 2?", None, solving, 384, seed=7)]
    assert base not in others and len(set(others)) == len(others)


def _writer(calls: list, n: int = 20, delay: float = 0.01, fail_at: int | None = None):
    def write(cancel: threading.Event, info: dict):
        calls.append(cancel)

        async def pieces():
            for i in range(n):
                if cancel.is_set():
                    return
                if fail_at == i:
                    raise RuntimeError("engine died")
                await asyncio.sleep(delay)
                yield f"{i} "
            info["truncated"] = False
        return pieces()
    return write


async def _read(shared, key, write, cancel=None, leave_after=None):
    info, got = {}, []
    reader = shared.stream(key, write, info, cancel)
    async for piece in reader:
        got.append(piece)
        if leave_after is not None and len(got) >= leave_after:
            await reader.aclose()  # the client went away
            break
    return "".join(got), info


def test_a_stream_is_written_once_for_everyone_who_reads_it():
    shared, calls = SharedAnswers(4), []

    async def scenario():
        first = asyncio.ensure_future(_read(shared, "s", _writer(calls)))
        await asyncio.sleep(0.08)  # the second joins when some pieces are already written
        second = asyncio.ensure_future(_read(shared, "s", _writer(calls)))
        together = await asyncio.gather(first, second)
        return together, await _read(shared, "s", _writer(calls))

    (first, second), again = asyncio.run(scenario())
    whole = "".join(f"{i} " for i in range(20))
    assert len(calls) == 1
    assert first[0] == second[0] == again[0] == whole  # the late reader got the pieces written before it came
    assert (first[1]["reused"], second[1]["reused"], again[1]["reused"]) == ("none", "joined", "cache")
    assert again[1]["truncated"] is False  # what the writer said travels with the kept stream


def test_a_stream_stops_when_its_last_reader_goes():
    shared, calls = SharedAnswers(4), []
    own_cancel = threading.Event()

    async def scenario():
        staying = asyncio.ensure_future(_read(shared, "s", _writer(calls, 60), cancel=own_cancel))
        await asyncio.sleep(0.02)
        leaving = await _read(shared, "s", _writer(calls, 60), leave_after=3)
        await asyncio.sleep(0.05)
        writing_after_one_left = not calls[0].is_set()
        own_cancel.set()  # the other reader stops too (Stop pressed)
        stayed = await asyncio.wait_for(staying, 2)
        await asyncio.sleep(0.05)
        return leaving, writing_after_one_left, stayed

    leaving, writing_after_one_left, stayed = asyncio.run(scenario())
    assert leaving[0] == "0 1 2 " and writing_after_one_left
    assert calls[0].is_set() and len(stayed[0].split()) < 60
    assert len(shared) == 0  # a stream cut short is not kept


def test_a_failed_stream_fails_every_reader_and_is_not_kept():
    shared, calls = SharedAnswers(4), []

    async def scenario():
        results = await asyncio.gather(*[_read(shared, "s", _writer(calls, fail_at=5)) for _ in range(2)],
                                       return_exceptions=True)
        return results, await _read(shared, "s", _writer(calls))

    results, after = asyncio.run(scenario())
    assert [str(r) for r in results] == ["engine died", "engine died"] and len(calls) == 2
    assert after[1]["reused"] == "none"


def test_another_seed_is_another_vote_and_the_seed_reaches_the_solver(monkeypatch):
    """The Tutor tab's "Try again" on a vote passes a new seed: a new vote, not the kept one."""
    from mathtune.serve import tutor_service
    from mathtune.serve.admission import TutorGate
    from mathtune.serve.settings import ServeSettings

    seeds = []

    def fake_solve(generator, questions, settings, contexts, budget, stop, seed):
        seeds.append(seed)
        return [SimpleNamespace(answer=f"vote with seed {seed}", out_of_time=False)]

    monkeypatch.setattr(tutor_service, "solve", fake_solve)

    async def run(fn, *args):
        return fn(*args)

    model = SimpleNamespace(gate=TutorGate(1, 0), shared=SharedAnswers(8), run=run,
                            generator=SimpleNamespace(solving=SolveConfig(mode="vote")))
    tutor = tutor_service.TutorService(model, ServeSettings())
    solving = SolveConfig(mode="vote")

    async def ask(seed):
        answering = tutor_service.Answering(tutor, tutor_service.TutorAsk("What is 6 times 7?", seed=seed),
                                            "What is 6 times 7?", None, [], 0, solving, 64)
        return await tutor.answer(answering, threading.Event())

    async def scenario():
        return [await ask(s) for s in (0, 0, 12345)]

    first, again, retried = asyncio.run(scenario())
    assert seeds == [0, 12345]
    assert (first[1], again[1], retried[1]) == ("none", "cache", "none")
    assert retried[0].answer == "vote with seed 12345" and model.gate.active == 0
