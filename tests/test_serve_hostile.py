"""The API under hostile and careless clients: one auth rule over every route, no 5xx and no plain-text error for
any body (a fuzzer over the OpenAPI schema plus our own list), per-request validation inside micro-batches, a
worker that survives a failing batch, bounded metric labels, and slow bodies dropped."""

from __future__ import annotations

import asyncio
import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def app(model_dirs):  # noqa: F811
    return create_app(model_dirs, ServeSettings(max_batch=8, max_text_chars=500, max_body_bytes=20_000))


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def _walk(routes):
    """The app's route table, included routers opened up."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from (_walk(inner.routes) if inner is not None else [route])


def test_every_route_but_the_probes_needs_the_key(model_dirs):  # noqa: F811
    app = create_app(model_dirs[:1], ServeSettings(api_key=KEY))
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    public = {"/livez", "/readyz", "/ui/login", "/favicon.ico"}
    walked = 0
    for route in _walk(app.routes):
        path = route.path.replace("{name}", "topic").replace("{file}", "confusion_matrix.png").replace("/ui/static", "/ui/static/app.js")
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            response = client.request(method, path, json={})
            walked += 1
            if path in public:
                # the key page may say the key is wrong, but it is never the API's 401
                assert not response.headers.get("content-type", "").startswith("application/json") or \
                    response.status_code != 401, (method, path)
                continue
            if path in ("/", "/ui", "/ui/"):  # a browser is sent to the key page
                assert response.status_code == 303 and response.headers["location"] == "/ui/login", (method, path)
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            error = response.json()["error"]  # OpenAI's routes say it in OpenAI's shape
            assert "API key" in (error["message"] if isinstance(error, dict) else error)
    assert walked >= 12
    # the Gradio app mounted at /ui: its config, API, queue and upload routes need the key too
    for method, path in (("GET", "/ui/config"), ("GET", "/ui/gradio_api/info"), ("POST", "/ui/gradio_api/queue/join"),
                         ("POST", "/ui/gradio_api/upload"), ("GET", "/ui/gradio_api/queue/data")):
        response = client.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.status_code)
    assert client.get("/ui/config", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer s3cret-kez"})
    assert wrong.status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/docs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_ui_key_page_sets_a_strict_cookie(model_dirs):  # noqa: F811
    client = TestClient(create_app(model_dirs[:1], ServeSettings(api_key=KEY)), follow_redirects=False)
    page = client.get("/ui/login")
    assert page.status_code == 200 and '<label for="key">' in page.text
    assert client.post("/ui/login", data={"key": "nope"}).status_code == 401
    ok = client.post("/ui/login", data={"key": KEY})
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/ui/").status_code == 200  # the cookie now opens the UI and its API calls
    assert client.post("/v1/topics", json={"questions": ["Solve 2x = 4."]}).status_code == 200


def test_metrics_take_the_scrapers_own_token(model_dirs):  # noqa: F811
    client = TestClient(create_app(model_dirs[:1], ServeSettings(api_key=KEY, metrics_key="scrape")))
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer scrape"}).status_code == 401


HOSTILE = [
    ("/invocations", {"dataframe_split": "x"}),
    ("/invocations", {"dataframe_split": {"columns": "Question", "data": [["a"]]}}),
    ("/invocations", {"dataframe_split": {"columns": ["Question"], "data": "a"}}),
    ("/invocations", {"dataframe_split": {"columns": ["Question"], "data": [["a", "b"]]}}),
    ("/invocations", {"dataframe_split": {"columns": ["Question"], "data": [[{"x": 1}]]}}),
    ("/invocations", {"dataframe_records": [{"foo": "a"}]}),
    ("/invocations", {"dataframe_records": []}),
    ("/invocations", {"dataframe_records": [{}]}),
    ("/invocations", {"dataframe_records": "x"}),
    ("/invocations", {"inputs": [{"zzz": "a"}]}),
    ("/invocations", {"inputs": [1, 2]}),
    ("/invocations", {"input_data": {"columns": "Question", "data": [["a"]]}}),
    ("/invocations", {"input_data": {"columns": ["Question"]}}),
    ("/invocations", {"input_data": []}),
    ("/invocations", [1, 2, 3]),
    ("/invocations?model=products", {"dataframe_records": [{"title": "x"}]}),
    ("/invocations?model=misconception", {"dataframe_records": [{"QuestionText": "x"}]}),
    ("/invocations?model=nope", {"inputs": ["a"]}),
    ("/v1/topics", {"questions": ["\ud800"]}),
    ("/v1/topics", {"questions": ["ok", "\udfff tail"]}),
    ("/invocations", {"inputs": ["\ud800"]}),
    ("/v1/products", {"records": [{"title": "\ud800"}]}),
    ("/v1/products", {"records": [{"title": {"nested": 1}}]}),
    ("/v1/products", {"records": [{"description": "x"}]}),
    ("/v1/misconceptions", {"items": [{"question_text": "", "mc_answer": "", "student_explanation": "x"}]}),
    ("/v1/tutor", {"question": "x"}),
    ("/v1/topics", {"questions": [None]}),
    ("/v1/topics", {"\ud800": 1}),
]


@pytest.mark.parametrize("path,body", HOSTILE)
def test_hostile_bodies_get_a_json_4xx(client, path, body):
    # json.dumps escapes lone surrogates as \\ud800, as a hostile client would send them
    response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]


def test_a_valid_emoji_pair_is_not_a_lone_surrogate(client):
    assert client.post("/v1/topics", json={"questions": ["Solve 2x = 4 \U0001F600"]}).status_code == 200


def test_each_request_is_validated_before_it_joins_a_batch(app):
    """A record missing fields gets its own 422 even when it shares a micro-batch with valid requests."""
    import httpx

    transport = httpx.ASGITransport(app=app)

    async def burst():
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            good = {"records": [{"title": "running sneaker sole", "price": "₹2,000"}]}
            bad = {"records": [{"description": "no title or price"}]}
            return await asyncio.gather(*(c.post("/v1/products", json=good if i % 2 else bad) for i in range(20)))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses[0::2]] == [422] * 10
    assert all("title" in r.json()["error"] for r in responses[0::2])
    assert [r.status_code for r in responses[1::2]] == [200] * 10


def test_a_failing_batch_answers_json_and_the_worker_keeps_serving(model_dirs, monkeypatch):  # noqa: F811
    app = create_app(model_dirs[:1])
    client = TestClient(app, raise_server_exceptions=False)
    served = app.state.mathtune.models["topic"]
    calls = {"n": 0}
    original = served.predict_frame

    def flaky(frame, k, record=True):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected failure")
        return original(frame, k, record)

    monkeypatch.setattr(served, "predict_frame", flaky)
    failed = client.post("/v1/topics", json={"questions": ["Solve 2x = 4."]})
    assert failed.status_code == 500 and "internal error" in failed.json()["error"]
    assert "injected" not in failed.text and "Traceback" not in failed.text
    assert client.post("/v1/topics", json={"questions": ["Solve 2x = 4."]}).status_code == 200


def test_metric_labels_come_from_a_fixed_set(client):
    for i in range(30):
        client.request(f"FOO{i}", "/v1/topics")
        client.get(f"/v1/made-up-{i}")
    client.post("/v1/tutor", json={"question": "What is 2+2?"})
    text = client.get("/metrics").text
    assert "FOO" not in text and "made-up" not in text
    assert 'method="other"' in text and 'route="other"' in text
    assert 'route="/v1/tutor"' in text


def test_slow_body_is_dropped_with_408(model_dirs):  # noqa: F811
    app = create_app(model_dirs[:1], ServeSettings(body_timeout_s=0.3))
    sent = []

    async def drip():
        messages = [{"type": "http.request", "body": b'{"questions": [', "more_body": True}]

        async def receive():
            if messages:
                return messages.pop(0)
            await asyncio.sleep(5)  # the rest never comes
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/topics", "raw_path": b"/v1/topics", "query_string": b"",
                 "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http",
                 "server": ("t", 80), "client": ("c", 1), "root_path": "", "app": app}
        await asyncio.wait_for(app(scope, receive, send), timeout=3)

    asyncio.run(drip())
    assert sent[0]["status"] == 408


def test_chunked_body_is_counted_as_it_streams(model_dirs):  # noqa: F811
    client = TestClient(create_app(model_dirs[:1], ServeSettings(max_body_bytes=1000)))

    def chunks():
        for _ in range(50):
            yield b"x" * 100

    response = client.post("/v1/topics", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


# --------------------------------------------------------------------------- the fuzzer

def _operations(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_5xx_and_errors_are_json(app, mode):
    """schemathesis generates bodies, queries and headers from the app's own OpenAPI schema (valid ones and
    ones that break it) for every operation."""
    operations = _operations(app)
    assert {op.path for op in operations} >= {"/v1/topics", "/v1/misconceptions", "/v1/products", "/v1/tutor",
                                              "/invocations"}
    calls = []
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case):
            response = case.call()
            calls.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
            if response.status_code >= 400:
                content_type = response.headers.get("content-type") or [""]
                assert content_type[0].startswith("application/json"), (case.path, response.text[:200])
                assert "error" in response.json()

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send (a GET without parameters)
            assert mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET", operation.path
    assert len(calls) >= 5 * len(operations) // 2
