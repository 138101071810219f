"""POST /v1/tutor: JSON answers with steps and sources, server-sent-event streaming, errors, readiness."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def client(tutor_dir):
    return TestClient(create_app([tutor_dir], ServeSettings(max_text_chars=200, tutor_max_new_tokens=8)))


def test_ready_and_listed(client):
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["models"]["tutor"]["ready"] is True
    models = client.get("/v1/mathtune/models").json()
    assert models["tutor"]["kind"] == "generator" and models["tutor"]["backend"] == "transformers"
    assert models["tutor"]["retrieval"] is True and models["tutor"]["retrieval_style"] == "examples"


def test_answer_with_steps_and_sources(client):
    response = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "max_new_tokens": 500})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["answer"], str) and body["steps"] == [s for s in body["answer"].splitlines() if s.strip()]
    assert body["new_tokens"] <= 8  # the server's cap wins over the request
    assert body["sources"][0]["source"] == "notes.md" and body["sources"][0]["score"] > 0
    body = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "retrieval": False}).json()
    assert body["sources"] == []


def test_streaming_events(client):
    with client.stream("POST", "/v1/tutor", json={"question": "what is 4 plus 4?", "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [block.split("\n") for block in text.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names[0] == "sources" and names[-1] == "done"
    done = json.loads(events[-1][1].removeprefix("data: "))
    streamed = "".join(json.loads(e[1].removeprefix("data: "))["text"] for e in events if e[0] == "event: token")
    assert done["answer"] == streamed.strip()


def test_a_follow_up_is_solved_with_the_conversation_so_far(client, monkeypatch):
    from mathtune.serve import tutor_service

    asked = []
    original = tutor_service.solve

    def spy(generator, questions, *args, **kwargs):
        asked.extend(questions)
        return original(generator, questions, *args, **kwargs)

    monkeypatch.setattr(tutor_service, "solve", spy)
    first = "A pen costs $2 and a notebook costs $5. How much do 3 pens and 2 notebooks cost?"
    body = client.post("/v1/tutor", json={"question": "What if she buys 4 pens instead of 3?", "retrieval": False,
                                          "history": [{"question": first, "answer": "16"}]}).json()
    assert body["history_dropped"] == 0 and first in asked[-1] and "Tutor: 16" in asked[-1]
    assert "keep every other quantity" in asked[-1]
    long = [{"question": f"what is {i} plus {i}? " + "x" * 150, "answer": str(2 * i)} for i in range(30)]
    body = client.post("/v1/tutor", json={"question": "and the next one?", "retrieval": False, "history": long}).json()
    assert body["history_dropped"] > 0 and "what is 29 plus 29" in asked[-1] and "what is 0 plus 0" not in asked[-1]
    with client.stream("POST", "/v1/tutor", json={"question": "what is 4 plus 4?", "stream": True,
                                                  "history": long}) as response:
        text = "".join(response.iter_text())
    first_event = text.split("\n\n")[0]
    assert first_event.startswith("event: sources") and '"history_dropped": 0' not in first_event
    assert '"history_dropped": ' in first_event


@pytest.mark.parametrize("body,status,needle", [
    ({"question": "   "}, 422, "question is empty"),
    ({"question": "x" * 300}, 422, "over the limit"),
    ({"question": "hi", "k": 0}, 422, "k"),
    ({"question": "hi", "mode": "vote", "time_budget": 0}, 422, "time_budget"),
    ({"questions": ["hi"]}, 422, "question"),
    ({"question": "hi", "history": [{"q": "1+1?"}]}, 422, "history"),
])
def test_bad_requests(client, body, status, needle):
    response = client.post("/v1/tutor", json=body)
    assert response.status_code == status and needle in response.json()["error"]


def test_no_tutor_served_is_404(tmp_path):
    app = create_app({}, ServeSettings())
    response = TestClient(app).post("/v1/tutor", json={"question": "1+1?"})
    assert response.status_code == 404 and "no tutor model" in response.json()["error"]
    response = TestClient(app).post("/v1/tutor", json={"mode": "nonsense"})  # said before the body's faults
    assert response.status_code == 404 and "no tutor model" in response.json()["error"]


@contextmanager
def _counted_steps(model, delay: float):
    """The model's forward passes, each made ``delay`` seconds slower (a slow model), counted in ``steps["n"]``."""
    steps = {"n": 0}
    original = model.forward

    def counting(*args, **kwargs):
        steps["n"] += 1
        time.sleep(delay)
        return original(*args, **kwargs)

    model.forward = counting
    try:
        yield steps
    finally:
        model.forward = original


def _ask_then_leave(app, body: dict, leave_when=None) -> list[dict]:
    """POST ``body`` to /v1/tutor straight through the ASGI app, as a client that disconnects right after sending
    it, or once a message the server sends satisfies ``leave_when``; the messages sent."""
    import asyncio

    sent: list[dict] = []

    async def scenario():
        left = asyncio.Event()
        if leave_when is None:
            left.set()
        messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if leave_when is not None and leave_when(message):
                left.set()

        scope = {"type": "http", "method": "POST", "path": "/v1/tutor", "raw_path": b"/v1/tutor", "query_string": b"",
                 "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http",
                 "server": ("t", 80), "client": ("c", 1), "root_path": "", "app": app}
        await asyncio.wait_for(app(scope, receive, send), timeout=30)

    asyncio.run(scenario())
    return sent


def test_disconnected_stream_stops_generating(tutor_dir):
    """A streaming client that goes away frees the inference thread within a second."""
    from mathtune.serve.models import INFERENCE

    app = create_app([tutor_dir], ServeSettings(tutor_max_new_tokens=4000))
    model = app.state.mathtune.models["tutor"].generator.model
    # the inference thread is the process's: work an earlier test in this worker left on it (a generation ending
    # at its token limit) is not this stream's, so it is waited out before this stream's is measured
    INFERENCE.submit(lambda: None).result(timeout=120)
    with _counted_steps(model, 0.01) as steps:  # a slow model: 4000 tokens would take over 40 s
        _ask_then_leave(app, {"question": "what is 5 plus 5?", "stream": True, "max_new_tokens": 4000,
                              "retrieval": False},
                        leave_when=lambda m: m["type"] == "http.response.body" and b"event: token" in m.get("body", b""))
        start = time.perf_counter()
        INFERENCE.submit(lambda: None).result(timeout=10)
        freed = time.perf_counter() - start
    assert freed < 1.0, freed
    assert steps["n"] < 500, steps["n"]


def test_a_vote_whose_client_goes_away_stops_sampling(tutor_dir):
    """A vote (not streamed) whose client disconnects stops before its next sample: its sequences are freed."""
    app = create_app([tutor_dir], ServeSettings(tutor_max_new_tokens=300))
    model = app.state.mathtune.models["tutor"].generator.model
    with _counted_steps(model, 0.005) as steps:  # nine samples of up to 300 tokens: over 13 s
        sent = _ask_then_leave(app, {"question": "what is 5 plus 5?", "mode": "vote", "samples": 9, "vote_over": "cot",
                                     "tiebreak": "none", "max_new_tokens": 300, "retrieval": False})
    # the sample being decoded when the disconnect was seen finishes; none of the other eight is begun
    assert steps["n"] <= 2 * 300 + 10, steps["n"]
    assert sent and sent[0]["status"] == 200


def test_the_whole_prompt_is_saved_and_read_back(tutor_dir, tmp_path):
    """System prompt, layout, retrieval header, stops, answer pattern and refusal travel with the model."""
    import shutil
    from pathlib import Path

    from mathtune.models.generate import load_tutor

    manifest = json.loads((Path(tutor_dir) / "mathtune.json").read_text())
    prompt = manifest["prompt"]
    assert set(prompt) == {"system", "layout", "retrieval_header", "stops", "answer_pattern", "refusal"}
    assert prompt["system"] == "solve."
    copy = tmp_path / "tutor-copy"
    shutil.copytree(tutor_dir, copy)
    edited = {**prompt, "stops": ["ZZZ"], "layout": "Q: {question}\nNotes: {context}", "answer_pattern": r"Result: (\d+)"}
    (copy / "mathtune.json").write_text(json.dumps({**manifest, "prompt": edited}))
    generator = load_tutor(copy)
    assert generator.stops == ("ZZZ",) and generator.system_prompt == "solve."
    assert generator.tutor_prompt.user_message("q?", "ctx") == "Q: q?\nNotes: ctx"
    assert generator.tutor_prompt.final_answer("so... Result: 42") == "42"


def test_modes_over_the_api(client):
    program = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "mode": "program", "retrieval": False})
    assert program.status_code == 200, program.text
    body = program.json()
    # a tiny model writes no program: then the answer is its prose's, and the method says so
    assert body["method"] == "program" and body["program"] or body["method"] == "cot" and body["program"] is None
    assert body["program_attempts"] in (1, 2)
    vote = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "mode": "vote", "samples": 3,
                                          "retrieval": False}).json()
    assert vote["confidence"] is None or 0 <= vote["confidence"] <= 1
    assert 2 <= vote["samples_drawn"] <= 3  # two that agree already decide a vote of three
    assert vote["method"] in ("vote(cot)", "vote(cot)+program")  # split votes are decided by a greedy program
    plain = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "mode": "vote", "samples": 2,
                                           "tiebreak": "none", "retrieval": False}).json()
    assert plain["method"] == "vote(cot)"
    bad = client.post("/v1/tutor", json={"question": "x", "mode": "vote", "tiebreak": "coin"})
    assert bad.status_code == 422 and "tiebreak" in bad.json()["error"]
    bad = client.post("/v1/tutor", json={"question": "x", "mode": "guess"})
    assert bad.status_code == 422 and "mode" in bad.json()["error"]
    with client.stream("POST", "/v1/tutor", json={"question": "what is 1 plus 1?", "stream": True, "mode": "vote",
                                                  "samples": 2}) as response:
        text = "".join(response.iter_text())
    assert "event: done" in text and '"method": "vote(cot)' in text
    assert "event: progress" in text and '"drawn": 1' in text  # a vote says how far it has got as it goes
    with client.stream("POST", "/v1/tutor", json={"question": "what is 1 plus 1?", "stream": True, "mode": "program",
                                                  "max_new_tokens": 16, "retrieval": False}) as response:
        events = [e for e in "".join(response.iter_text()).split("\n\n") if e.strip()]
    assert events[0].startswith("event: sources") and events[-1].startswith("event: done")
    assert any(e.startswith("event: token") for e in events)  # a program answer streams as it is written
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert done["method"] in ("program", "cot") and "program_ok" in done  # then the checked answer


def test_a_tutor_solves_as_its_recipe_says_unless_a_request_says_otherwise(client, tutor_dir, tmp_path):
    import shutil

    assert json.loads((Path(tutor_dir) / "mathtune.json").read_text())["solve"]["mode"] == "cot"
    assert client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "retrieval": False}).json()["method"] == "cot"
    folder = tmp_path / "voting-tutor"
    shutil.copytree(tutor_dir, folder)
    manifest = json.loads((folder / "mathtune.json").read_text())
    manifest["solve"] = {"mode": "vote", "samples": 2, "vote_over": "program", "tiebreak": "none", "temperature": 0.9}
    (folder / "mathtune.json").write_text(json.dumps(manifest))
    voting = TestClient(create_app([str(folder)], ServeSettings(max_text_chars=200, tutor_max_new_tokens=8)))
    # a tutor saved before agree_first existed solves as it did: every sample at once
    assert voting.get("/v1/mathtune/models").json()["tutor"]["solve"] == {**manifest["solve"], "agree_first": 0, "then_over": None, "first_round": 0, "time_budget": None,
                                                                       "budget_speed": None}
    body = voting.post("/v1/tutor", json={"question": "what is 3 plus 3?", "retrieval": False}).json()
    assert body["method"] == "vote(program)" and body["samples_drawn"] == 2, body  # k = 2: one sample never decides
    body = voting.post("/v1/tutor", json={"question": "what is 3 plus 3?", "retrieval": False, "vote_over": "cot"}).json()
    assert body["method"] == "vote(cot)", body
    body = voting.post("/v1/tutor", json={"question": "what is 3 plus 3?", "retrieval": False, "mode": "cot"}).json()
    assert body["method"] == "cot" and body["samples_drawn"] == 1, body
    bad = voting.post("/v1/tutor", json={"question": "x", "vote_over": "vote"})
    assert bad.status_code == 422 and "vote_over" in bad.json()["error"]


def test_a_pretrained_model_is_served_as_the_tutor_without_training(tiny_chat_llama):
    client = TestClient(create_app([], ServeSettings(tutor=str(tiny_chat_llama), tutor_max_new_tokens=4)))
    assert client.get("/readyz").json()["models"]["tutor"]["ready"] is True
    answer = client.post("/v1/tutor", json={"question": "what is 2 plus 2?"})
    assert answer.status_code == 200 and answer.json()["method"] == "cot"
    assert client.get("/v1/mathtune/models").json()["tutor"]["plots"] == []


@pytest.mark.parametrize("field,value,needle", [
    ("layout", "{question.__class__.__init__.__globals__}", "only {context} and {question}"),
    ("layout", "{question} {context[0]}", "only {context} and {question}"),
    ("answer_pattern", "(unclosed", "not a regular expression"),
    ("answer_pattern", "a" * 400, "over 300 characters"),
    ("stops", 7, "not text"),
    ("solve", {"mode": "guess"}, "mode: Input should be 'cot', 'program', 'code' or 'vote'"),
    ("solve", {"samples": 10 ** 9}, "samples: Input should be less than or equal to 9"),
    ("solve", ["vote"], "solve has values a tutor cannot use"),
])
def test_a_crafted_saved_prompt_is_refused(tutor_dir, tmp_path, field, value, needle):
    """The prompt and solving settings in mathtune.json are data: no format-string lookups, no oversized or broken
    patterns, nothing a tutor cannot do."""
    import shutil
    from pathlib import Path

    from mathtune.errors import ModelError
    from mathtune.models.generate import load_tutor

    copy = tmp_path / "tutor-copy"
    shutil.copytree(tutor_dir, copy)
    manifest = json.loads((Path(tutor_dir) / "mathtune.json").read_text())
    if field == "solve":  # how it solves is data too: a mode it has not got, a vote of a billion samples
        manifest["solve"] = value
    else:
        manifest["prompt"][field] = value
    (copy / "mathtune.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=needle.replace("{", r"\{").replace("}", r"\}")):
        load_tutor(copy)


def test_a_tutor_trained_before_retrieval_styles_keeps_passages(tutor_dir, tmp_path):
    import shutil

    from mathtune.serve.models import load_tutor_model

    folder = tmp_path / "older"
    shutil.copytree(tutor_dir, folder)
    manifest = json.loads((folder / "mathtune.json").read_text())
    assert manifest["retrieval"]["style"] == "examples"  # what new tutors record
    del manifest["retrieval"]["style"]
    (folder / "mathtune.json").write_text(json.dumps(manifest))
    assert load_tutor_model("older", folder, ServeSettings()).style == "passages"  # as it was trained
    chosen = load_tutor_model("older", folder, ServeSettings(tutor_retrieval_style="examples"))
    assert chosen.style == "examples"


def test_the_server_caps_a_votes_time_budget():
    from mathtune.config import SolveConfig
    from mathtune.serve.tutor_service import TutorService

    capped = TutorService(None, ServeSettings(tutor_time_budget=30))
    assert capped.within_time(SolveConfig(mode="vote", time_budget=60)).time_budget == 30  # cut to the limit
    assert capped.within_time(SolveConfig(mode="vote")).time_budget == 30  # none asked: the limit
    assert capped.within_time(SolveConfig(mode="vote", time_budget=10)).time_budget == 10  # less is kept
    assert TutorService(None, ServeSettings()).within_time(SolveConfig(mode="vote")).time_budget is None
    stretched = SolveConfig(mode="vote", time_budget=20, budget_speed=20)  # a slow engine may take it to 60 s
    assert capped.within_time(stretched) == stretched.model_copy(update={"budget_speed": None})  # 20 s of wall clock
    assert TutorService(None, ServeSettings(tutor_time_budget=60)).within_time(stretched) == stretched
    from types import SimpleNamespace

    served = SimpleNamespace(generator=SimpleNamespace(solving=SolveConfig(mode="vote", time_budget=60)))
    assert TutorService(served, ServeSettings(tutor_time_budget=30)).solving.time_budget == 30  # what the page offers
    from mathtune.serve.describe import public_description

    class Described:  # what /v1/models shows: the budget a vote will get, the cap included
        def describe(self):
            return {"folder": "", "solve": SolveConfig(mode="vote", time_budget=60).model_dump()}

    shown = public_description("tutor", Described(), ServeSettings(tutor_time_budget=30))
    assert shown["solve"]["time_budget"] == 30


def test_the_same_request_again_is_the_kept_answer_streamed_or_not(tutor_dir):
    client = TestClient(create_app([tutor_dir], ServeSettings(max_text_chars=200, tutor_max_new_tokens=8,
                                                              tutor_answer_cache=16)))

    def streamed(body):
        with client.stream("POST", "/v1/tutor", json={**body, "stream": True}) as response:
            text = "".join(response.iter_text())
        events = [block.split("\n") for block in text.strip().split("\n\n")]
        tokens = "".join(json.loads(e[1].removeprefix("data: "))["text"] for e in events if e[0] == "event: token")
        return tokens, json.loads(events[-1][1].removeprefix("data: "))

    body = {"question": "what is 9 plus 9?", "retrieval": False, "mode": "cot"}
    first, again = client.post("/v1/tutor", json=body).json(), client.post("/v1/tutor", json=body).json()
    assert (first["reused"], again["reused"]) == ("none", "cache") and first["answer"] == again["answer"]
    assert client.post("/v1/tutor", json={**body, "max_new_tokens": 5}).json()["reused"] == "none"  # another budget
    (tokens, done), (tokens_again, done_again) = streamed(body), streamed(body)
    assert (done["reused"], done_again["reused"]) == ("none", "cache")  # a stream is kept apart from the answer
    assert tokens == tokens_again and done["answer"] == done_again["answer"]
    metrics = client.get("/metrics").text
    assert 'mathtune_tutor_answers_total{reuse="cache"}' in metrics
    shared = client.get("/v1/mathtune/models").json()["tutor"]["shared_answers"]
    assert shared == {"joined": True, "size": 16, "kept": 3}  # the answer, the other budget's, the stream
    assert client.get("/v1/mathtune/models").json()["tutor"]["shared_answers"]["kept"] == 3
    kept_off = TestClient(create_app([tutor_dir], ServeSettings(tutor_max_new_tokens=8)))  # the default keeps none
    assert [kept_off.post("/v1/tutor", json=body).json()["reused"] for _ in range(2)] == ["none", "none"]


class _HostileGenerator:
    """A tutor that answers every question with the program a hostile question made the real one write (#46)."""

    backend = "scripted"

    def __init__(self, real, program: str):
        self.real, self.program = real, program
        self.tutor_prompt, self.solving = real.tutor_prompt, real.solving

    def generate(self, questions, max_new_tokens=256, contexts=None, ignore_eos=False, system=None,
                 temperature=0.0, seed=None, stops=(), prefix=None, cancel=None):
        from mathtune.models.generation import Generation

        opening = "" if prefix else "```python\n"  # a code answer is begun for the model
        return [Generation(f"{opening}{self.program}\n```", 40, 0.01) for _ in questions]

    def close(self):
        self.real.close()


@pytest.mark.skipif(__import__("mathtune.sandbox", fromlist=["x"]).current_boundary().kind != "kernel",
                    reason="no kernel boundary on this host")
def test_a_hostile_program_from_the_model_stays_in_the_sandbox(client, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("MATHTUNE_API_KEY", "sk-not-for-programs")
    marker = tmp_path / "ran"
    program = "\n".join([
        "import fractions",
        "mods = fractions.sys.modules",
        "posix = mods['posix']",
        "out = []",
        f"for path in ('/proc/{os.getpid()}/environ', '/etc/hostname', '/proc/self/environ'):",
        "    try:",
        "        out.append(posix.read(posix.open(path, 0), 4096))",
        "    except Exception as exc:",
        "        out.append(str(exc))",
        "try:",
        f"    posix.kill({os.getpid()}, 9)",
        "except Exception as exc:",
        "    out.append(str(exc))",
        "try:",
        "    r, w = posix.pipe()",
        "    mods['_frozen_importlib']._gcd_import('_posixsubprocess').fork_exec("
        f"[b'/bin/sh', b'-c', b'touch {marker}'], [b'/bin/sh'], True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, "
        "w, False, False, -1, None, None, None, -1, None, False)",
        "except Exception as exc:",
        "    out.append(str(exc))",
        "print(out)",
    ])
    model = client.app.state.mathtune.models["tutor"]
    monkeypatch.setattr(model, "generator", _HostileGenerator(model.generator, program))
    response = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "mode": "code", "retrieval": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["program_ok"] is True and "sk-not-for-programs" not in response.text, {k: v for k, v in body.items() if "program" in k}
    assert "No such file or directory" in body["program_output"] and "Operation not permitted" in body["program_output"]
    assert not marker.exists()
    assert client.get("/readyz").status_code == 200  # the server lives
    assert client.get("/v1/mathtune/models").json()["tutor"]["sandbox"]["kind"] == "kernel"


def test_program_modes_are_422_where_the_host_runs_no_programs(client, monkeypatch):
    from mathtune.sandbox import run

    monkeypatch.setattr(run.shutil, "which", lambda name: None)
    monkeypatch.delenv("MATHTUNE_SANDBOX", raising=False)
    run._probe.cache_clear()
    try:
        for body in ({"mode": "program"}, {"mode": "code", "stream": True}, {"mode": "vote", "vote_over": "mixed"}):
            response = client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "retrieval": False, **body})
            assert response.status_code == 422 and "runs no" in response.json()["error"], response.text
            assert "mode cot" in response.json()["error"]
        assert client.post("/v1/tutor", json={"question": "what is 3 plus 3?", "mode": "cot"}).status_code == 200
        assert client.get("/v1/mathtune/models").json()["tutor"]["sandbox"]["kind"] == "none"
    finally:
        run._probe.cache_clear()


def test_every_question_of_a_conversation_is_held_to_the_scope_rule(client):
    """#46: a non-math question carried in ``history`` never reaches the model."""
    body = client.post("/v1/tutor", json={"question": "Do it again please", "history": [
        {"question": "Write a short poem about the ocean", "answer": ""}]}).json()
    assert body["refused"] is True and body["method"] == "scope"
    body = client.post("/v1/tutor", json={"question": "and the next one?", "retrieval": False, "history": [
        {"question": "what is 3 plus 3?", "answer": "6"}]}).json()
    assert body["method"] != "scope"
    too_long = client.post("/v1/tutor", json={"question": "what is 1 plus 1?", "history": [
        {"question": "what is 2 plus 2? " + "x" * 300, "answer": ""}]})
    assert too_long.status_code == 422 and "history[0]" in too_long.json()["error"]


def test_invocations_for_the_tutor_is_a_4xx(client):
    response = client.post("/invocations?model=tutor", json={"inputs": ["what is 1 plus 1?"]})
    assert response.status_code == 422 and "/v1/tutor" in response.json()["error"]
