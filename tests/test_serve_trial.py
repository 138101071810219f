"""The rest of the hostile trial of issue #46, each as it was found: key guessing and the login cookie, the app's
API reading server files, a plot linked out of its folder, a model whose settings cannot work, CSV for people, slow
headers, answers cut by the shutdown, and the small ones."""

from __future__ import annotations

import os
import shutil

import pytest
from fastapi.testclient import TestClient

from mathtune.serve.access import SESSION_COOKIE, new_session, session_valid
from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings

KEY = "s3cret-key"


def test_key_guessing_is_limited_per_client_and_the_cookie_holds_no_key(model_dirs):  # noqa: F811
    client = TestClient(create_app(model_dirs[:1], ServeSettings(api_key=KEY, wrong_keys_per_minute=5)),
                        follow_redirects=False)
    answers = [client.post("/ui/login", data={"key": f"guess-{i}"}).status_code for i in range(8)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
    limited = client.post("/ui/login", data={"key": KEY})  # not even checked while the client is limited
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    api = client.get("/v1/topics", headers={"Authorization": f"Bearer {KEY}"})
    assert api.status_code == 429 and "too many wrong API keys" in api.json()["error"]
    openai_shaped = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["error"]
    assert openai_shaped["type"] == "rate_limit_error" and "too many wrong API keys" in openai_shaped["message"]
    assert client.get("/livez").status_code == 200  # the probes stay open

    fresh = TestClient(create_app(model_dirs[:1], ServeSettings(api_key=KEY)), follow_redirects=False)
    ok = fresh.post("/ui/login", data={"key": KEY})
    assert ok.status_code == 303
    value = ok.cookies[SESSION_COOKIE]
    assert KEY not in ok.headers["set-cookie"] and session_valid(value, KEY)
    assert "max-age=43200" in ok.headers["set-cookie"].lower()
    assert fresh.get("/v1/models").status_code == 200  # the session opens the API the UI calls
    fresh.cookies.clear()
    forged = {SESSION_COOKIE: value.split(".")[0] + ".0" * 10}
    assert fresh.get("/v1/models", cookies=forged).status_code == 401
    expired = new_session(KEY, now=1_000_000)
    assert fresh.get("/v1/models", cookies={SESSION_COOKIE: expired}).status_code == 401
    assert fresh.get("/v1/models", cookies={"mathtune_api_key": KEY}).status_code == 401  # the old raw-key cookie
    other_key = new_session("another-key")
    assert fresh.get("/v1/models", cookies={SESSION_COOKIE: other_key}).status_code == 401


def test_bearer_guessing_is_limited_too(model_dirs):  # noqa: F811
    client = TestClient(create_app(model_dirs[:1], ServeSettings(api_key=KEY, wrong_keys_per_minute=3)))
    codes = [client.get("/v1/models", headers={"Authorization": f"Bearer nope-{i}"}).status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert client.get("/v1/models").status_code == 401  # no key at all: a plain 401, not a guess


def test_a_models_plots_are_served_beside_its_details(model_dirs):  # noqa: F811
    """The OpenAI door's /v1/models/{id} took every path under /v1/models: the Models tab's plots were broken."""
    client = TestClient(create_app([model_dirs[0]]))
    plots = client.get("/v1/mathtune/models").json()["topic"]["plots"]
    assert plots and all(client.get(url).headers["content-type"] == "image/png" for url in plots)


def test_a_plot_linked_out_of_its_model_folder_is_not_served(model_dirs, tmp_path):  # noqa: F811
    folder = tmp_path / "topic"
    shutil.copytree(model_dirs[0], folder)
    (folder / "confusion_matrix.png").unlink(missing_ok=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    os.symlink(secret, folder / "confusion_matrix.png")
    client = TestClient(create_app([str(folder)]))
    response = client.get("/v1/mathtune/models/topic/plots/confusion_matrix.png")
    assert response.status_code == 404 and "root:x" not in response.text
    assert "/v1/mathtune/models/topic/plots/confusion_matrix.png" not in \
        client.get("/v1/mathtune/models").json()["topic"]["plots"]


def _call(client, fn: str, data: list) -> str:
    event = client.post(f"/ui/gradio_api/call/{fn}", json={"data": data}).json()["event_id"]
    return client.get(f"/ui/gradio_api/call/{fn}/{event}").text


def test_the_apps_api_reads_only_files_a_client_uploaded(model_dirs, tmp_path):  # noqa: F811
    import pandas as pd

    secret = tmp_path / "server-file.csv"
    pd.DataFrame({"Question": ["SECRET-ROW what is 2 + 2?"]}).to_csv(secret, index=False)
    with TestClient(create_app(model_dirs[:1], ServeSettings(max_upload_bytes=2000))) as client:
        crafted = _call(client, "classify", [None, {"path": str(secret), "meta": {"_type": "gradio.FileData"}}])
        assert "SECRET-ROW" not in crafted and "event: error" in crafted
        uploaded = client.post("/ui/gradio_api/upload", files={"files": ("mine.csv", secret.read_bytes(), "text/csv")})
        assert uploaded.status_code == 200, uploaded.text
        mine = _call(client, "classify", [None, {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}])
        assert "SECRET-ROW" in mine and "event: complete" in mine


def test_a_model_whose_settings_cannot_work_is_refused_at_load(model_dirs, tmp_path):  # noqa: F811
    import json
    from types import SimpleNamespace

    import pytest

    from mathtune.errors import ModelError
    from mathtune.models.saved import Predictor, check_settings
    from mathtune.tasks.labels import LabelMap

    # a transformer that reads 512 positions, told to read 100,000
    encoder = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=512, num_labels=2))
    predictor = Predictor(tmp_path, {"max_length": 100000}, LabelMap([0, 1], ["a", "b"]), _model=encoder)
    with pytest.raises(ModelError, match="max_length is 100000; it must be a whole number from 1 to 512"):
        check_settings(predictor)
    for field, value, needle in (("max_length", float("nan"), "max_length is nan"), ("max_length", -3, "max_length is -3"),
                                 ("max_length", "256", "max_length is '256'"), ("labels", "trim", "labels lists 3 classes")):
        folder = tmp_path / f"{field}-{value}"
        shutil.copytree(model_dirs[0], folder)
        manifest = json.loads((folder / "mathtune.json").read_text())
        if value == "trim":
            manifest["labels"] = {k: v[:3] for k, v in manifest["labels"].items()}
        else:
            manifest[field] = value
        (folder / "mathtune.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match=needle):
            create_app([str(folder)])
            pytest.fail(f"{field}={value!r} was loaded")


def test_predictions_written_for_people_run_no_formula_and_bad_files_say_why(model_dirs, tmp_path):  # noqa: F811
    import pytest

    from mathtune.errors import DataError
    from mathtune.inference import predict_file
    from mathtune.io import spreadsheet_safe

    assert [spreadsheet_safe(v) for v in ("=cmd|' /C calc'!A0", "+1", "-2.5", "-x", "@SUM(A1)", "\t=1", "q7", 3)] == \
        ["'=cmd|' /C calc'!A0", "+1", "-2.5", "'-x", "'@SUM(A1)", "'\t=1", "q7", 3]
    source = tmp_path / "in.csv"
    source.write_text("id,Question\n\"=cmd|' /C calc'!A0\",what is 2 + 2?\n17,solve x + 1 = 3\n")
    predict_file(model_dirs[0], source, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[1].startswith("'=cmd|") and lines[2].startswith("17,")
    (tmp_path / "header.csv").write_text("id,Question\n")
    with pytest.raises(DataError, match="no rows, only a header"):
        predict_file(model_dirs[0], tmp_path / "header.csv", tmp_path / "none.csv")
    (tmp_path / "huge.csv").write_text("id,Question\n1," + "x" * (2 << 20) + "\n")
    with pytest.raises(DataError, match="line 2 is longer than 1,048,576 bytes"):
        predict_file(model_dirs[0], tmp_path / "huge.csv", tmp_path / "none.csv")
    assert not (tmp_path / "none.csv").exists()


def test_the_small_ones(model_dirs):  # noqa: F811
    from mathtune.config import SolveConfig
    from mathtune.errors import MathtuneError
    from mathtune.serve.admission import TutorGate

    client = TestClient(create_app(model_dirs[:1]), raise_server_exceptions=False)
    # the app's API answers errors as every other route does
    for method, path, body, status in (("POST", "/ui/gradio_api/call/nope", {"data": []}, 404),
                                       ("GET", "/ui/gradio_api/file=/etc/passwd", None, 403),
                                       ("POST", "/ui/gradio_api/call/classify", {"x": 1}, 422)):
        response = client.request(method, path, json=body)
        assert response.status_code == status and "error" in response.json() and "detail" not in response.json()
    # NaN is no setting; more first-round answers than samples cannot agree
    import pytest

    with pytest.raises(MathtuneError, match="time_budget: Input should be a finite number"):
        SolveConfig.checked({"mode": "vote", "time_budget": float("nan")}, "solving settings: {problems}")
    with pytest.raises(MathtuneError, match="agree_first 7: more answers than the 5 samples"):
        SolveConfig.checked({"mode": "vote", "samples": 5, "agree_first": 7}, "solving settings: {problems}")
    # Retry-After from the time places take to free, not a request's wait counted as a turn
    gate = TutorGate(parallel=2, waiting=10)
    gate.active = 12
    gate._seconds.extend([6.0] * 20)  # each request spent 6 s in the line, most of it waiting
    assert gate.retry_after() == 1


@pytest.mark.slow
def test_slow_headers_are_cut_and_one_client_cannot_hold_every_connection(model_dirs):  # noqa: F811
    """#46: connections that send a header every few seconds held every place; now a request's headers must come
    within MATHTUNE_HEADER_TIMEOUT_S and one address holds at most MATHTUNE_MAX_CONNECTIONS_PER_CLIENT."""
    import socket
    import time
    import urllib.request

    from servers import served

    env = {"MATHTUNE_HEADER_TIMEOUT_S": "1.5", "MATHTUNE_MAX_CONNECTIONS_PER_CLIENT": "20"}
    held: list[socket.socket] = []
    with served(["--model", model_dirs[0]], env, ready_within=60) as (_, port):
        try:
            for _ in range(30):
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes
                held.append(conn)
            time.sleep(0.5)
            assert sum(_closed(conn) for conn in held[20:]) == 10  # past the client's 20: closed at once
            time.sleep(1.5)
            assert all(_closed(conn) for conn in held[:20])  # cut for their slow headers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                assert response.status == 200
        finally:
            for conn in held:
                conn.close()


def _closed(conn) -> bool:

    conn.settimeout(2)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:  # still open
        return False


@pytest.mark.parametrize("kind", ["json", "stream"])
def test_an_answer_cut_by_the_shutdown_ends_as_json_or_an_error_event(kind):
    import asyncio
    import json

    from mathtune.serve.shutdown import EndCutAnswers

    async def slow_app(scope, receive, send):
        if kind == "stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b"event: token\ndata: {}\n\n", "more_body": True})
        await asyncio.sleep(60)

    async def run() -> list[dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}
        task = asyncio.ensure_future(EndCutAnswers(slow_app)({"type": "http"}, receive, send))
        await asyncio.sleep(0.05)
        task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")  # what uvicorn does
        with pytest.raises(asyncio.CancelledError):
            await task
        return sent

    sent = asyncio.run(run())
    if kind == "json":
        assert sent[0]["status"] == 503 and (b"retry-after", b"5") in sent[0]["headers"]
        assert "shutting down" in json.loads(sent[1]["body"])["error"]
    else:
        assert sent[-1]["body"].startswith(b"event: error\ndata: ") and b"shutting down" in sent[-1]["body"]


def test_a_stream_ends_with_its_error_event_when_the_window_closes():
    import asyncio

    from mathtune.serve.shutdown import Stopping, until_stopped

    closed = []

    async def tokens():
        try:
            for i in range(100):
                await asyncio.sleep(0.02)
                yield f"event: token\ndata: {i}\n\n"
        finally:
            closed.append(True)  # the generation behind it is told to stop

    async def run() -> list[str]:
        stopping = Stopping()
        stopping.arm(0.2)
        return [event async for event in until_stopped(tokens(), stopping)]

    events = asyncio.run(run())
    assert 3 <= len(events) < 100 and events[-1].startswith("event: error\ndata: ") and "shutting down" in events[-1]
    assert closed == [True]


def test_wrong_keys_from_many_addresses_do_not_grow_without_bound():
    from mathtune.serve.access import WrongKeys

    keys = WrongKeys(limit=3)
    for i in range(10_000):
        keys.failed(f"10.0.{i // 256}.{i % 256}", now=0.0)
    keys.failed("10.9.9.9", now=120.0)  # a minute later: the old ones are forgotten
    assert len(keys._failures) == 1 and keys.retry_after("10.0.0.1", now=120.0) is None
