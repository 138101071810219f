"""The REST API: every route, the scoring bodies, probes, metrics, limits, auth and JSON errors."""

import pytest
from fastapi.testclient import TestClient

from helpers import _rows
from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def client(model_dirs):
    return TestClient(create_app(model_dirs, ServeSettings(max_batch=8, max_text_chars=500, max_body_bytes=20_000)))


def test_probes_and_docs(client):
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["models"]) == {"topic", "misconception", "products"}
    assert "/v1/topics" in client.get("/openapi.json").json()["paths"]


def test_topics(client):
    response = client.post("/v1/topics", json={"questions": ["Find the remainder when 7^5 is divided by 3.", "Solve for x: 2x + 1 = 9."]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 2 and "x-request-id" in response.headers
    first = body["predictions"][0]
    assert first["topic"] == "Number Theory" and first["label"] == "4" and len(first["probabilities"]) == 8
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-3
    assert first["unfamiliar"] is None  # like the questions it learned from
    money = "A pen costs $2 and a notebook costs $5. How much do 3 pens and 2 notebooks cost together at the shop?"
    [guess] = client.post("/v1/topics", json={"questions": [money]}).json()["predictions"]
    assert "learned from" in guess["unfamiliar"]  # a topic all the same, said to be a guess


def test_misconceptions(client):
    item = {"question_text": "Which is bigger, 0.5 or 0.45?", "mc_answer": "0.45", "student_explanation": "the longer number is bigger",
            "question_id": "202"}
    body = client.post("/v1/misconceptions", json={"items": [item, {**item, "question_id": "999"}]}).json()
    first = body["predictions"][0]
    assert len(first["top3"]) == 3 and first["submission"].count(" ") == 2
    assert first["top3"][0]["label"].startswith("False_")
    assert body["notes"] and "999" in body["notes"][0]


def test_products(client):
    response = client.post("/v1/products", json={"records": [{"title": "lego puzzle doll", "price": "₹499"}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "toys"


def test_scoring_protocols(client):
    azure = client.post("/invocations", json={"input_data": ["Find the greatest common divisor of 12 and 18."]})
    assert azure.status_code == 200 and azure.json()["predictions"][0]["topic"] == "Number Theory"
    assert client.post("/score", json={"input_data": ["Solve for x: 3x = 9."]}).status_code == 200
    split = client.post("/invocations", json={"dataframe_split": {"columns": ["Question"], "data": [["Solve 2x = 4."]]}})
    assert split.status_code == 200
    records_body = client.post("/invocations?model=misconception", json={"dataframe_records": [
        {"QuestionText": "Simplify 6/8.", "MC_Answer": "6/4", "StudentExplanation": "only the bottom changes", "QuestionId": "303"}]})
    assert records_body.status_code == 200 and len(records_body.json()["predictions"][0]["labels"]) == 3


@pytest.mark.parametrize("body,status,needle", [
    ({"questions": []}, 422, "questions"),
    ({"questions": ["  "]}, 422, "empty"),
    ({"questions": "not a list"}, 422, "questions"),
    ({"question": ["typo in the key"]}, 422, "questions"),
    ({"questions": ["x" * 600]}, 422, "limit"),
    ({"questions": ["q"] * 9}, 413, "limit of 8"),
])
def test_bad_input_gets_json_4xx(client, body, status, needle):
    response = client.post("/v1/topics", json=body)
    assert response.status_code == status
    assert needle in response.json()["error"]


def test_malformed_json_oversized_body_and_unknown_route(client):
    bad = client.post("/v1/topics", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "error" in bad.json()
    assert "body: not valid JSON at character 1 (Expecting property name" in bad.json()["error"]
    big = client.post("/v1/topics", content=b"x" * 30_000, headers={"content-type": "application/json"})
    assert big.status_code == 413 and "limit" in big.json()["error"]
    missing = client.post("/v1/nope", json={})
    assert missing.status_code == 404 and "error" in missing.json()
    assert client.get("/livez").status_code == 200  # still serving


def test_unserved_task_is_404(model_dirs):
    only_topics = TestClient(create_app(model_dirs[:1]))
    response = only_topics.post("/v1/products", json={"records": [{"title": "x"}]})
    assert response.status_code == 404 and "no products model" in response.json()["error"]
    # the task nobody serves is said first, whatever the body lacks
    for route, body in (("/v1/products", {}), ("/v1/misconceptions", {"items": "x"})):
        response = only_topics.post(route, json=body)
        assert response.status_code == 404 and "model is served here" in response.json()["error"], route


def test_api_key(model_dirs):
    secured = TestClient(create_app(model_dirs[:1], ServeSettings(api_key="s3cret")))
    assert secured.post("/v1/topics", json={"questions": ["Solve 2x = 4."]}).status_code == 401
    ok = secured.post("/v1/topics", json={"questions": ["Solve 2x = 4."]}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert secured.get("/livez").status_code == 200 and secured.get("/readyz").status_code == 200
    assert secured.get("/metrics").status_code == 401  # one rule: everything but the probes needs the key
    assert secured.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_prometheus_metrics(client):
    client.post("/v1/topics", json={"questions": ["Solve for x: 2x + 1 = 9."]})
    text = client.get("/metrics").text
    for name in ("mathtune_requests_total", "mathtune_request_latency_seconds_bucket", "mathtune_requests_in_flight",
                 "mathtune_model_load_seconds", "mathtune_predictions_total", "mathtune_prediction_confidence_bucket"):
        assert name in text, name
    assert 'route="/v1/topics"' in text and 'status="200"' in text


def test_drift_report_and_gauges(model_dirs):
    client = TestClient(create_app(model_dirs[:1]))
    empty = client.get("/v1/drift").json()["topic"]
    assert empty["available"] and empty["window_size"] == 0 and not empty["retrain_suggested"]
    # inputs like the training data: no drift
    same = [q["Question"] for q in _rows(12, seed=7)]
    for start in range(0, len(same), 8):
        client.post("/v1/topics", json={"questions": same[start:start + 8]})
    calm = client.get("/v1/drift").json()["topic"]
    assert calm["window_size"] == 36 and not calm["enough_data"] and not calm["drifted_signals"]
    assert calm["signals"]["unknown_word_share"]["psi"] < 0.2  # same vocabulary as training
    # a very different population: long texts of unseen words
    odd = ["zqxv wvutsr plmk " * 40 + str(i) for i in range(120)]
    for start in range(0, len(odd), 8):
        client.post("/v1/topics", json={"questions": odd[start:start + 8]})
    report = client.get("/v1/drift").json()["topic"]
    assert report["signals"]["text_length"]["drift"] and report["signals"]["unknown_word_share"]["drift"]
    assert report["retrain_suggested"] is True
    text = client.get("/metrics").text
    assert 'mathtune_drift{measure="psi",model="topic",signal="text_length"}' in text
    assert 'mathtune_retrain_suggested{model="topic"} 1.0' in text


def test_concurrent_requests_share_batches(model_dirs):
    """Concurrent single-question requests are answered correctly from shared micro-batches."""
    import asyncio

    import httpx

    app = create_app(model_dirs[:1], ServeSettings(batch_wait_ms=20, batch_rows=16))
    questions = [q["Question"] for q in _rows(6, seed=11)]

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            alone = [(await client.post("/v1/topics", json={"questions": [q]})).json() for q in questions[:3]]
            together = await asyncio.gather(*(client.post("/v1/topics", json={"questions": [q]}) for q in questions))
            return alone, [r.json() for r in together]

    alone, together = asyncio.run(run())
    assert all(len(r["predictions"]) == 1 for r in together)
    for a, t in zip(alone, together[:3]):  # same answer alone or batched
        assert a["predictions"][0]["label"] == t["predictions"][0]["label"]
        assert abs(a["predictions"][0]["probability"] - t["predictions"][0]["probability"]) < 1e-5
    batcher = app.state.mathtune.batchers["topic"]
    assert batcher.rows == 3 + len(questions) and batcher.batches < 3 + len(questions)


def test_openapi_example_bodies_are_accepted_by_the_shipped_recipes_fields():
    """The documented /v1/products example carries every field the shipped products recipes read."""
    from helpers import REPO
    from mathtune.config import load_recipe
    from mathtune.serve.schemas import ProductsRequest

    example = ProductsRequest.model_config["json_schema_extra"]["example"]["records"][0]
    for name in ("products-rf", "products-linear"):
        products = load_recipe(REPO / "recipes" / f"{name}.yaml").products
        needed = {*products.text_fields, *products.categorical_fields, *products.numeric_fields, *products.list_count_fields}
        assert needed <= set(example), (name, needed - set(example))
