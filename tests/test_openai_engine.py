"""#44: any OpenAI-compatible server as the tutor's engine, tested against one this project did not write:
llama.cpp's own HTTP server with the bundled SmolLM2, started by the test, offline."""

from __future__ import annotations

import os
import threading
import time

import openai
import pytest
from fastapi.testclient import TestClient

from mathtune.config import SolveConfig
from mathtune.errors import ModelError
from mathtune.models.openai_engine import EngineAddress, EngineUnavailable
from mathtune.models.solving.solve import solve
from servers import free_port, llama_server

pytestmark = pytest.mark.slow
KEY_ENV = "MATHTUNE_TEST_ENGINE_KEY"


@pytest.fixture(scope="module")
def engine_url():
    pytest.importorskip("xllamacpp")
    from mathtune.models.registry import resolve

    source = resolve("bundled:smollm2")
    os.environ[KEY_ENV] = "engine-secret"
    with llama_server(os.path.join(source.path, source.gguf_file), "engine-secret") as base:
        yield base


@pytest.fixture(scope="module")
def remote(engine_url):
    from mathtune.models.generate import load_tutor

    generator = load_tutor(f"openai:{engine_url}?key_env={KEY_ENV}&timeout=60")
    yield generator
    generator.close()


def test_the_address_is_read_with_its_options_and_bad_ones_are_named():
    address = EngineAddress.parse("openai:http://gpu:8000/v1/?model=qwen&key_env=VLLM_KEY&timeout=30&preset=code")
    assert (address.base_url, address.model, address.key_env, address.timeout, address.preset) == \
        ("http://gpu:8000/v1", "qwen", "VLLM_KEY", 30.0, "code")
    for bad, needle in (("openai:gpu:8000", "http"), ("openai:http://x/v1?tmeout=3", "tmeout"),
                        ("openai:http://x/v1?timeout=soon", "seconds"), ("openai:http://x/v1?preset=guess", "preset")):
        with pytest.raises(ModelError, match=needle):
            EngineAddress.parse(bad)


def test_the_tutor_solves_on_a_remote_engine(remote):
    assert remote.model.endswith(".gguf")  # the one model the engine serves, read from its /v1/models
    [cot] = solve(remote, ["What is 12 + 30?"], SolveConfig(mode="cot"), max_new_tokens=48)
    assert cot.answer and cot.new_tokens > 0
    [voted] = solve(remote, ["What is 12 + 30?"], SolveConfig(mode="vote", samples=3, tiebreak="none"),
                    max_new_tokens=48)
    assert voted.method == "vote(cot)" and 1 <= voted.samples <= 3
    assert remote.takes_n is not None  # learnt whether the engine draws n answers in one request
    pieces = list(remote.stream("What is 2 + 2?", 24))
    assert len(pieces) > 1
    # the answer so far is continued, not begun again (tool-integrated reasoning, a code answer's opening)
    rest = remote.continue_answer("What is 2 + 2?", "Let me think. 2 plus 2", 8)
    assert rest.text and not rest.text.startswith("Let me think")


def test_a_vote_falls_back_to_separate_requests_when_the_engine_refuses_n(remote):
    remote.takes_n = False
    samples = remote.sample("What is 3 + 4?", 3, 24, temperature=0.7, seed=5)
    assert len(samples) == 3 and all(s.text for s in samples)
    remote.takes_n = None


def test_a_caller_that_stops_closes_the_engines_stream(remote):
    cancel = threading.Event()
    seen = []

    def piece(_i, text):
        seen.append(text)
        if len(seen) == 3:
            cancel.set()
    start = time.perf_counter()
    body = remote._body(remote._chat("Count from 1 to 500, one number a line.", None, None), 400, 0.0, None, ())
    [cut] = remote._complete(body, cancel, on_piece=piece)
    assert cut.new_tokens <= 5 and time.perf_counter() - start < 10


def test_a_server_on_a_remote_engine_answers_openai_clients(engine_url):
    from mathtune.serve.app import create_app
    from mathtune.serve.settings import ServeSettings

    app = create_app([], ServeSettings(tutor=f"openai:{engine_url}?key_env={KEY_ENV}", tutor_max_new_tokens=48))
    http = TestClient(app)
    assert http.get("/readyz").json()["ready"]
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)
    reply = client.chat.completions.create(model="tutor:cot", messages=[{"role": "user", "content": "What is 6 + 7?"}])
    assert reply.choices[0].message.content and reply.model_extra["mathtune"]["method"] == "cot"


def test_an_engine_that_is_down_makes_readyz_false_and_answers_503_at_once():
    from mathtune.models.openai_engine import OpenAIEngineGenerator
    from mathtune.serve.app import create_app
    from mathtune.serve.settings import ServeSettings

    down = f"openai:http://127.0.0.1:{free_port()}/v1?model=m&timeout=5"
    with pytest.raises(EngineUnavailable, match="cannot be reached"):
        OpenAIEngineGenerator(EngineAddress.parse(down.replace("?model=m&", "?")))
    app = create_app([], ServeSettings(tutor=down))
    http = TestClient(app)
    ready = http.get("/readyz")
    assert ready.status_code == 503 and "cannot be reached" in ready.json()["error"]
    start = time.perf_counter()
    answer = http.post("/v1/tutor", json={"question": "What is 2 + 2?", "mode": "cot"})
    assert answer.status_code == 503 and "engine" in answer.json()["error"] and time.perf_counter() - start < 10
    chat = http.post("/v1/chat/completions", json={"model": "tutor", "messages": [{"role": "user", "content": "2+2?"}]})
    assert chat.status_code == 503 and chat.json()["error"]["type"] == "server_error"
    assert app.state.mathtune.models["tutor"].gate.active == 0
