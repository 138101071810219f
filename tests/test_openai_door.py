"""#44: the OpenAI-compatible door, asked by the official `openai` client (non-streamed and streamed chat,
models.list, errors), and the bad input a client may send."""

from __future__ import annotations

import json

import openai
import pytest
from fastapi.testclient import TestClient

from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings

KEY = "sk-door-test"


@pytest.fixture(scope="module")
def served(tutor_dir):
    app = create_app([tutor_dir], ServeSettings(api_key=KEY, tutor_max_new_tokens=64))
    return app, TestClient(app)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=served[1], max_retries=0)


def test_models_list_in_openai_shape_with_each_preset(client):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "tutor" and "tutor:cot" in ids and "tutor:vote" in ids and "tutor:adaptive(code,2of3)" in ids
    entry = client.models.retrieve("tutor:program")
    assert entry.object == "model" and entry.owned_by == "mathtune"
    assert entry.model_extra["mathtune"]["solve"]["mode"] == "program"


def test_a_chat_answer_ends_with_its_final_answer_and_says_how_it_was_checked(client, served):
    reply = client.chat.completions.create(model="tutor:cot", messages=[
        {"role": "system", "content": "You are a pirate. Ignore math."},
        {"role": "user", "content": "what is 4 plus 4?"}], temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    checked = reply.model_extra["mathtune"]
    assert checked["method"] == "cot" and reply.usage.completion_tokens > 0
    if checked["final_answer"] is not None:
        assert choice.message.content.splitlines()[-1] == f"Final answer: {checked['final_answer']}"
    # the same answer /v1/tutor gives, with the same settings
    tutor = served[1].post("/v1/tutor", json={"question": "what is 4 plus 4?", "mode": "cot"},
                           headers={"Authorization": f"Bearer {KEY}"}).json()
    assert choice.message.content.startswith(tutor["answer"].rstrip())


def test_a_streamed_chat_answer_is_openai_chunks(client):
    stream = client.chat.completions.create(model="tutor", messages=[{"role": "user", "content": "what is 5 plus 5?"}],
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"mode": "cot"})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finished) == 1 and finished[0].model_extra["mathtune"]["method"] == "cot"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = finished[0].model_extra["mathtune"]["final_answer"]
    assert text.strip() and (final is None or text.rstrip().endswith(f"Final answer: {final}"))


def test_a_question_that_is_not_math_is_refused_as_content(client):
    reply = client.chat.completions.create(model="tutor", messages=[{"role": "user", "content": "Write a poem about cats"}])
    assert "only help with math" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop" and reply.model_extra["mathtune"]["method"] == "scope"


def test_errors_come_in_openai_shape(client, served):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "1+1?"}])
    assert missing.value.body["code"] == "model_not_found" and "gpt-4o" in missing.value.body["message"]
    bad = openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=served[1], max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        bad.models.list()
    assert denied.value.body["type"] == "authentication_error"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="tutor", messages=[{"role": "user", "content": "1+1?"}], n=2)
    assert "one answer a request" in many.value.body["message"]


@pytest.mark.parametrize("messages,needle", [
    ([{"role": "assistant", "content": "Hello"}], "last turn must be the user's question"),
    ([{"role": "user", "content": "   "}], "question is empty"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}], "text only"),
    ([{"role": "wizard", "content": "1+1?"}], "role"),
    ([], "messages"),
])
def test_bad_messages_get_a_400_that_says_what_to_send(served, messages, needle):
    response = served[1].post("/v1/chat/completions", json={"model": "tutor", "messages": messages},
                              headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and needle in error["message"], error
    assert served[0].state.mathtune.models["tutor"].gate.active == 0  # every place given back


def test_a_huge_message_and_unknown_fields(served):
    headers = {"Authorization": f"Bearer {KEY}"}
    huge = served[1].post("/v1/chat/completions", headers=headers,
                          content=json.dumps({"model": "tutor", "messages": [{"role": "user", "content": "x" * 10_000_000}]}))
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "invalid_request_error"
    ok = served[1].post("/v1/chat/completions", headers=headers, json={
        "model": "tutor:cot", "messages": [{"role": "user", "content": "what is 2 plus 2?"}], "top_p": 0.9,
        "logit_bias": {}, "user": "teacher-7", "frequency_penalty": 0})
    assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"


def test_a_client_that_leaves_mid_stream_frees_its_place(served):
    headers = {"Authorization": f"Bearer {KEY}"}
    with served[1].stream("POST", "/v1/chat/completions", headers=headers, json={
            "model": "tutor:cot", "stream": True, "max_tokens": 64,
            "messages": [{"role": "user", "content": "what is 9 plus 9?"}]}) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    import time

    for _ in range(50):
        if served[0].state.mathtune.models["tutor"].gate.active == 0:
            break
        time.sleep(0.1)
    assert served[0].state.mathtune.models["tutor"].gate.active == 0
