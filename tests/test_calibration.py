"""Percentages that mean what they say: the calibration error, temperature scaling of fine-tuned classifiers, and
what a model folder keeps and shows of it."""

import json

import numpy as np
import pytest

from helpers import fine_tuned_topics
from mathtune.errors import ModelError
from mathtune.metrics.calibration import calibrate, expected_calibration_error, reliability, softmax
from mathtune.models.saved import load_predictor


def test_the_calibration_error_is_the_gap_between_how_sure_and_how_often_right():
    assert expected_calibration_error([0.9] * 10, [1] * 9 + [0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.95] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.45)
    bins = reliability([0.15, 0.95, 0.97], [0, 1, 0])
    assert [(b.low, b.rows) for b in bins] == [(0.1, 1), (0.9, 2)] and bins[1].accuracy == 0.5
    assert expected_calibration_error([], []) == 0.0


def test_temperature_scaling_tames_an_overconfident_model_without_changing_its_answers():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    scores = rng.normal(0, 1, (2000, 4))
    scores[np.arange(2000), labels] += 1.0   # right more often than chance...
    scores *= 8                              # ...and far surer than it is right
    result = calibrate(scores, labels)
    assert result.temperature > 3
    assert result.ece_before > 0.2 and result.ece_after < 0.05 and result.rows == 2000
    assert (softmax(scores, result.temperature).argmax(1) == scores.argmax(1)).all()
    # rows without a known label do not count; too few rows leave the scores as they are
    assert calibrate(np.vstack([scores, scores[:5]]), np.r_[labels, [-1] * 5]).rows == 2000
    assert calibrate(scores[:1], labels[:1]).temperature == 1.0


@pytest.fixture
def bert_model(topic_csv, tiny_bert):
    return fine_tuned_topics(tiny_bert, peft="none", max_length=48, epochs=2, val_size=0.3)


def test_a_fine_tuned_model_shows_its_temperature_scaled_probabilities(bert_model):
    from mathtune.models.scoring import logits_of, tokenize
    from mathtune.serve.webui.models_tab import sure_sentence

    manifest = json.loads((bert_model / "mathtune.json").read_text())
    calibration = manifest["calibration"]
    assert calibration["temperature"] > 0 and calibration["rows"] == manifest["validation"]["n"]
    metrics = json.loads((bert_model / "metrics.json").read_text())["validation"]
    assert metrics["calibration_error"] == pytest.approx(calibration["ece_after"], abs=1e-6)
    assert (bert_model / "calibration.png").stat().st_size > 5000
    sure = manifest["validation"]["when_sure"]
    assert sure["threshold"] == 0.9 and 0 <= sure["right"] <= sure["rows"] <= manifest["validation"]["n"]

    texts = ["Solve for x: 3x + 1 = 7.", "Find the area of a circle of radius 2.", "How many subsets has a 5-set?"]
    predictor = load_predictor(bert_model)
    idx, prob = predictor.topk(texts, k=2)
    logits = logits_of(predictor._model, tokenize(predictor._tokenizer, texts, 48), predictor._tokenizer.pad_token_id, 8)
    expected = softmax(logits, calibration["temperature"])
    assert np.allclose(np.take_along_axis(expected, idx, axis=1), prob, atol=1e-4)

    manifest["calibration"]["temperature"] = calibration["temperature"] * 4  # a hotter model: the same answers, less sure
    (bert_model / "mathtune.json").write_text(json.dumps(manifest))
    hotter_idx, hotter = load_predictor(bert_model).topk(texts, k=2)
    assert (hotter_idx[:, 0] == idx[:, 0]).all() and (hotter[:, 0] < prob[:, 0]).all()

    class Shown:
        pass
    shown = Shown()
    shown.manifest = {"validation": {"when_sure": {"threshold": 0.9, "rows": 12, "right": 11}}}
    assert sure_sentence(shown) == "When it said it was 90% sure or more (12 questions), it was right 11 times."
    shown.manifest = {"validation": {"when_sure": {"threshold": 0.9, "rows": 0, "right": 0}}}
    assert "never 90% sure" in sure_sentence(shown)
    shown.manifest = {"validation": {"f1_micro": 0.8}}  # trained before this was measured: nothing said
    assert sure_sentence(shown) is None

    for bad in (0, -1, "hot", True, None, float("nan")):
        manifest["calibration"] = {"temperature": bad}
        (bert_model / "mathtune.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelError, match="calibration.temperature"):
            load_predictor(bert_model)
    del manifest["calibration"]  # a folder from before calibration: its raw softmax, as before
    (bert_model / "mathtune.json").write_text(json.dumps(manifest))
    raw_idx, raw = load_predictor(bert_model).topk(texts, k=2)
    assert np.allclose(np.take_along_axis(softmax(logits), raw_idx, axis=1), raw, atol=1e-4)
