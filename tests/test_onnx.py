"""ONNX export of an encoder classifier: parity with PyTorch, int8 copy, and the ONNX serving backend."""

import json

import pytest
from fastapi.testclient import TestClient

from helpers import fine_tuned_topics
from mathtune.config import recipe_from_dict
from mathtune.errors import ModelError
from mathtune.models.onnx import PARITY_TEXTS, export_onnx
from mathtune.models.saved import load_predictor
from mathtune.serve.app import create_app
from mathtune.train.run import train_from_recipe


@pytest.fixture
def bert_model(topic_csv, tiny_bert):
    return fine_tuned_topics(tiny_bert)


def test_export_parity_and_backend(bert_model):
    info = export_onnx(bert_model, int8=True)
    assert info["parity_top1"]["fp32"] == 1.0 and 0 <= info["parity_top1"]["int8"] <= 1
    assert (bert_model / "onnx" / "model.onnx").is_file() and (bert_model / "onnx" / "model.int8.onnx").is_file()
    torch_pred = load_predictor(bert_model)
    onnx_pred = load_predictor(bert_model, backend="onnx")
    texts = PARITY_TEXTS + ["Solve for x: 3x + 1 = 7."]
    onnx_pred.onnx_max_rows = len(texts)  # force the ONNX path for the whole set
    t_idx, t_prob = torch_pred.topk(texts, k=3)
    o_idx, o_prob = onnx_pred.topk(texts, k=3)
    assert (t_idx[:, 0] == o_idx[:, 0]).all()
    # the same logits to within rounding; a temperature below 1 (the model's calibration) sharpens their difference
    temperature = json.loads((bert_model / "mathtune.json").read_text())["calibration"]["temperature"]
    assert abs(t_prob - o_prob).max() < 1e-3 / min(1.0, temperature)
    calls = []
    onnx_pred._onnx.logits = lambda *a, **kw: calls.append(1) or (_ for _ in ()).throw(AssertionError("ONNX used"))
    onnx_pred.onnx_max_rows = 2
    assert onnx_pred.topk(texts, k=1)[0].shape == (len(texts), 1) and not calls  # a big batch goes to PyTorch
    client = TestClient(create_app([str(bert_model)], backend="onnx"))
    response = client.post("/v1/topics", json={"questions": ["Solve for x: 3x + 1 = 7."]})
    assert response.status_code == 200


def test_backend_needs_export(bert_model, topic_csv):
    with pytest.raises(ModelError, match="mathtune export"):
        load_predictor(bert_model, backend="onnx")
    tfidf = train_from_recipe(recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv"}, "tracking": "none"}), "runs/t")
    with pytest.raises(ModelError, match="transformer"):
        export_onnx(tfidf.output)
