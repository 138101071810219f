"""The llama.cpp engine (xllamacpp) on the bundled SmolLM2 GGUF: batched samples, cancellation, and serving beside a
classifier without blocking it."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from mathtune.models.solving.prompts import PROGRAM_SYSTEM
from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings
from solving_helpers import solve_in as solve
from solving_helpers import streamed_text

pytest.importorskip("xllamacpp", reason="the llama.cpp backend is not installed: run `make install-all`")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from mathtune.models.generate import load_tutor

    generator = load_tutor("bundled:smollm2", "llama.cpp", threads=2, slots=6)
    yield generator
    generator.close()


def spy_requests(generator, monkeypatch) -> list[dict]:
    """Every completion request the engine sends (its body), in order."""
    bodies, original = [], generator._complete

    def spy(body, *args, **kwargs):
        bodies.append(body)
        return original(body, *args, **kwargs)

    monkeypatch.setattr(generator, "_complete", spy)
    return bodies


def test_a_votes_samples_are_one_batched_request(smollm2, monkeypatch):
    bodies = spy_requests(smollm2, monkeypatch)
    [s] = solve(smollm2, ["What is 12 times 7?"], "vote", max_new_tokens=40, k=4, tiebreak="none")
    assert bodies[0]["n_cmpl"] == 4 and bodies[0]["temperature"] > 0  # one prompt, four sequences
    assert s.samples == 4 and s.k == 4 and s.method == "vote(cot)"
    assert len([b for b in bodies if b.get("n_cmpl")]) == 1


def test_batched_samples_differ_and_repeat_with_their_seed(smollm2):
    first = smollm2.sample("Tell me one fact about the number 7.", 3, 24, temperature=1.0, seed=5)
    again = smollm2.sample("Tell me one fact about the number 7.", 3, 24, temperature=1.0, seed=5)
    assert len(first) == 3 and len({g.text for g in first}) > 1
    assert [g.text for g in first] == [g.text for g in again]
    assert all(0 < g.new_tokens <= 24 for g in first)


def test_the_engine_measures_its_speed_once_without_the_prompt(smollm2, monkeypatch):
    bodies = spy_requests(smollm2, monkeypatch)
    smollm2._speed = None
    speed = smollm2.speed()
    assert 1 < speed < 10_000 and smollm2.speed() == speed  # measured once
    assert len(bodies) == 1 and bodies[0]["ignore_eos"] and bodies[0]["max_tokens"] == 48


def test_a_mixed_vote_draws_cot_and_program_batches_side_by_side(smollm2, monkeypatch):
    bodies = spy_requests(smollm2, monkeypatch)
    [s] = solve(smollm2, ["What is 12 times 7?"], "vote", max_new_tokens=40, k=3, base="mixed", tiebreak="none")
    batches = {b["messages"][0]["content"] == PROGRAM_SYSTEM: b.get("n_cmpl", 1) for b in bodies[:2]}
    assert batches == {False: 2, True: 1}  # two cot samples in one batch, one program sample
    assert s.method == "vote(mixed)" and s.samples == 3


def test_code_answers_continue_the_programs_opening_greedy_and_batched(smollm2, monkeypatch):
    from mathtune.models.solving.prompts import CODE_PREFIX

    bodies = spy_requests(smollm2, monkeypatch)
    [greedy] = smollm2.generate(["What is 12 times 7?"], 24, prefix=CODE_PREFIX)
    samples = smollm2.sample("What is 12 times 7?", 3, 24, temperature=1.0, seed=5, prefix=CODE_PREFIX)
    # the answer so far is the last (assistant) message, continued; only what follows it comes back
    assert [b["messages"][-1] for b in bodies] == [{"role": "assistant", "content": CODE_PREFIX}] * 2
    assert bodies[1]["n_cmpl"] == 3 and len(samples) == 3
    assert all(0 < g.new_tokens <= 24 and not g.text.startswith("```python") for g in [greedy, *samples])
    [s] = solve(smollm2, ["What is 12 times 7?"], "code", max_new_tokens=40, repairs=0)
    assert s.answer.startswith(CODE_PREFIX) or s.refused


def test_a_closed_stream_ends_its_request_at_the_next_token(smollm2):
    info: dict = {}
    pieces = smollm2.stream("Write a very long story about a number that loved to count.", 400, info=info)
    got = [next(pieces) for _ in range(3)]
    pieces.close()
    deadline = time.monotonic() + 20
    while "new_tokens" not in info and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got and info["new_tokens"] < 100, info  # stopped, not run to the 400-token budget
    assert smollm2.generate(["What is 2 + 2?"], 4)[0].new_tokens <= 4  # the slot is free for the next request


def test_a_cancelled_greedy_answer_stops_at_the_next_token(smollm2):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    [g] = smollm2.generate(["Write a very long story about a number that loved to count."], 400,
                           ignore_eos=True, cancel=cancel)
    # stopped where it was, not run to the 400-token budget (on a loaded host the cancel can come before the first
    # token: then none)
    assert g.new_tokens < 300, g.new_tokens
    assert smollm2.generate(["What is 2 + 2?"], 4)[0].new_tokens <= 4  # the slot is free for the next request


def test_a_cot_answer_is_continued_after_its_program_runs(smollm2, monkeypatch):
    """Tool-integrated reasoning on the real engine: the sandbox's output goes where the model stopped."""
    from mathtune.models.generation import Generation

    seen = []
    original = smollm2.continue_answer

    def continued(question, prefix, *args, **kwargs):
        seen.append(prefix)
        return original(question, prefix, *args, **kwargs)

    monkeypatch.setattr(smollm2, "generate", lambda questions, *a, **k: [
        Generation("First compute it.\n```python\nprint(6 * 7)\n```", 12, 0.1)])
    monkeypatch.setattr(smollm2, "continue_answer", continued)
    [s] = solve(smollm2, ["What is 6 times 7?"], "cot", max_new_tokens=40)
    assert seen and seen[0].endswith("```output\n42\n```\n")
    assert s.answer.startswith("First compute it.") and "```output\n42\n```" in s.answer


def in_engine(app) -> threading.Event:
    """Set once the served tutor's engine has started a completion."""
    generator = app.state.mathtune.models["tutor"].generator
    started, original = threading.Event(), generator._complete

    def marked(body, *args, **kwargs):
        started.set()
        return original(body, *args, **kwargs)

    generator._complete = marked
    return started


async def _wait(event: threading.Event, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not event.is_set():
        assert time.monotonic() < deadline, "the tutor never started generating"
        await asyncio.sleep(0.02)


def test_a_classifier_answers_while_the_tutor_votes(tiny_topic_model):
    import httpx

    app = create_app([str(tiny_topic_model)], ServeSettings(tutor="bundled:smollm2", tutor_scope=False, tutor_slots=6))
    started = in_engine(app)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
            vote = asyncio.create_task(client.post("/v1/tutor", json={
                "question": "Write out the multiplication table of 7 from 1 to 12.", "mode": "vote", "samples": 5,
                "tiebreak": "none", "max_new_tokens": 400, "retrieval": False}))
            await _wait(started)
            topics = await client.post("/v1/topics", json={"questions": ["Solve 2x + 3 = 11 for x."]})
            answered_during_vote = not vote.done()
            voted = await vote
        return topics, answered_during_vote, voted

    topics, answered_during_vote, voted = asyncio.run(scenario())
    assert topics.status_code == 200 and topics.json()["predictions"]
    assert answered_during_vote  # the classifier did not wait for the vote to finish
    assert voted.status_code == 200 and voted.json()["samples_drawn"] == 5
    app.state.mathtune.models["tutor"].generator.close()


def test_a_full_line_gets_503_with_retry_after():
    import httpx

    app = create_app({}, ServeSettings(tutor="bundled:smollm2", tutor_scope=False, tutor_slots=2,
                                       tutor_parallel_requests=1, tutor_max_waiting=0))
    started = in_engine(app)
    body = {"question": "Count from 1 to 200, one number a line.", "max_new_tokens": 300, "retrieval": False}

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
            first = asyncio.create_task(client.post("/v1/tutor", json=body))
            await _wait(started)
            other = await client.post("/v1/tutor", json={**body, "question": "Count from 1 to 300."})
            same = await client.post("/v1/tutor", json=body)  # it would join the answer being made, but the line is full
            return await first, other, same

    first, other, same = asyncio.run(scenario())
    assert first.status_code == 200 and first.json()["reused"] == "none"
    assert other.status_code == same.status_code == 503 and int(other.headers["Retry-After"]) >= 1
    assert "busy" in other.json()["error"] and "limit 1" in other.json()["error"]
    assert app.state.mathtune.models["tutor"].gate.active == 0  # every place was given back
    app.state.mathtune.models["tutor"].generator.close()


def test_a_stream_that_is_being_written_is_joined_and_holds_a_place():
    import httpx

    app = create_app({}, ServeSettings(tutor="bundled:smollm2", tutor_scope=False, tutor_slots=2,
                                       tutor_parallel_requests=1, tutor_max_waiting=1))
    started = in_engine(app)
    body = {"question": "Count from 1 to 100, one number a line.", "max_new_tokens": 200, "retrieval": False,
            "mode": "cot", "stream": True}

    def events(text: str) -> list[tuple[str, dict]]:
        blocks = [b.split("\n") for b in text.strip().split("\n\n")]
        return [(b[0].removeprefix("event: "), json.loads(b[1].removeprefix("data: "))) for b in blocks]

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
            first = asyncio.create_task(client.post("/v1/tutor", json=body))
            await _wait(started)
            same = asyncio.create_task(client.post("/v1/tutor", json=body))  # joins, in the line's waiting place
            gate = app.state.mathtune.models["tutor"].gate
            while gate.active < 2:
                await asyncio.sleep(0.01)
            other = await client.post("/v1/tutor", json={**body, "question": "Count from 1 to 300."})
            return await first, other, await same

    first, other, same = asyncio.run(scenario())
    assert other.status_code == 503  # the line is full: one stream being written, one reading it
    assert first.status_code == same.status_code == 200
    (_, done), (_, done_same) = events(first.text)[-1], events(same.text)[-1]
    assert (done["reused"], done_same["reused"]) == ("none", "joined") and done["answer"] == done_same["answer"]
    tokens = ["".join(d["text"] for e, d in events(r.text) if e == "token") for r in (first, same)]
    assert tokens[0] == tokens[1] and tokens[0].strip()
    assert app.state.mathtune.models["tutor"].gate.active == 0
    app.state.mathtune.models["tutor"].generator.close()


def test_teachers_asking_the_same_problem_share_one_answer():
    """Four clients ask one vote at once: it is drawn once (one completion per sample, not four times that), all
    four get the same answer, a later ask is answered from the cache at once; a different budget is another answer."""
    import httpx

    app = create_app({}, ServeSettings(tutor="bundled:smollm2", tutor_scope=False, tutor_slots=4,
                                       tutor_answer_cache=8))
    generator = app.state.mathtune.models["tutor"].generator
    completions, original = [], generator._complete

    def counted(body, *args, **kwargs):
        completions.append(body)
        return original(body, *args, **kwargs)

    generator._complete = counted
    body = {"question": "What is 6 times 7?", "mode": "vote", "samples": 3, "vote_over": "cot", "tiebreak": "none",
            "max_new_tokens": 48, "retrieval": False}

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client:
            four = await asyncio.gather(*[client.post("/v1/tutor", json=body) for _ in range(4)])
            once = len(completions)
            later = await client.post("/v1/tutor", json=body)
            after_cache = len(completions)
            other = await client.post("/v1/tutor", json={**body, "max_new_tokens": 40})
            metrics = await client.get("/metrics")
            return four, once, later, after_cache, other, metrics.text

    four, once, later, after_cache, other, metrics = asyncio.run(scenario())
    assert all(r.status_code == 200 for r in four)
    assert sorted(r.json()["reused"] for r in four) == ["joined", "joined", "joined", "none"]
    assert len({r.json()["answer"] for r in four}) == 1
    assert 1 <= once <= 3 + 1  # one vote's samples (and at most one tie-break), not four votes' worth
    assert later.json()["reused"] == "cache" and later.json()["answer"] == four[0].json()["answer"]
    assert after_cache == once and later.json()["seconds"] < 0.5
    assert other.json()["reused"] == "none" and len(completions) > once
    assert 'mathtune_tutor_answers_total{reuse="joined"} 3.0' in metrics
    assert 'mathtune_tutor_answers_total{reuse="cache"} 1.0' in metrics
    generator.close()


def test_a_streamed_program_answer_is_the_program_answer_solve_gives(smollm2):

    question = "What is 12 times 7? Write a Python program."
    # llama.cpp's greedy text may differ between a prompt it evaluates afresh and one it finds in its cache (other
    # batch shapes, other rounding): asked once first, both answers below read the cached prompt
    solve(smollm2, [question], "program", max_new_tokens=96)
    info: dict = {}
    pieces = list(streamed_text(smollm2, question, 96, info=info, mode="program"))
    [solved] = solve(smollm2, [question], "program", max_new_tokens=96)
    streamed = info["solution"]
    assert len(pieces) > 1  # it came token by token
    assert (streamed.answer, streamed.final_answer, streamed.method) == (solved.answer, solved.final_answer,
                                                                          solved.method)
    assert "".join(pieces).strip() and info["new_tokens"] >= solved.new_tokens - 1


def test_serve_listens_on_its_port_alone_and_the_engine_answers_no_one():
    """#46: llama.cpp's own HTTP listener (xllamacpp always starts one) opens no TCP port: a Unix socket in a 0700
    folder, and even there nothing is answered without a key that never leaves the process."""
    import os
    import socket

    import psutil

    from servers import served

    env = {"MATHTUNE_API_KEY": "sk-serve-test", "OMP_WAIT_POLICY": "PASSIVE"}
    with served(["--tutor", "bundled:smollm2"], env) as (proc, port):
        server = psutil.Process(proc.pid)
        listening = {c.laddr.port for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert listening == {port}
        engine = [c.laddr for c in server.net_connections(kind="unix") if c.laddr and "mathtune-llama-" in c.laddr]
        assert len(engine) == 1 and os.stat(os.path.dirname(engine[0])).st_mode & 0o777 == 0o700
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(engine[0])
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
            reply = raw.recv(4096).decode(errors="replace")
        assert reply.startswith("HTTP/1.1 401"), reply[:200]
