"""Drift measures: PSI, KS, Jensen-Shannon against a reference saved at training time."""

import json

import numpy as np

from mathtune.config import recipe_from_dict
from mathtune.metrics.drift import build_reference, compare, js_divergence, psi
from mathtune.train.run import train_from_recipe


def test_divergences():
    p = np.array([0.25, 0.25, 0.5])
    assert psi(p, p) == 0 and js_divergence(p, p) < 1e-12
    q = np.array([0.6, 0.3, 0.1])
    assert psi(p, q) > 0.2 and 0 < js_divergence(p, q) <= 1


def test_same_population_does_not_drift_and_shift_does():
    rng = np.random.default_rng(0)
    texts = [f"solve {rng.integers(1, 99)} x plus {rng.integers(1, 99)} equals {rng.integers(1, 99)}" for _ in range(900)]
    conf = rng.uniform(0.5, 1, 600)
    pred = rng.integers(0, 3, 600)
    # train texts fix the vocabulary and centroid; validation texts give the reference samples
    reference = build_reference(texts[600:], texts[300:600], conf[300:], pred[300:], 3)
    from mathtune.metrics.drift import SignalExtractor

    extractor = SignalExtractor(set(reference["vocabulary"]), np.asarray(reference["centroid"]))
    calm = extractor.signals(texts[:300])
    calm.update(confidence=conf[:300], predicted_class=pred[:300])
    result = compare(reference, calm, 3)
    assert not any(entry["drift"] for entry in result.values()), result
    shifted = extractor.signals(["integrate the trigonometric function over the interval " * 5] * 300)
    shifted.update(confidence=np.full(300, 0.3), predicted_class=np.zeros(300, dtype=int))
    result = compare(reference, shifted, 3)
    assert all(result[s]["drift"] for s in ("text_length", "unknown_word_share", "centroid_distance", "confidence", "predicted_class"))
    assert result["text_length"]["ks_pvalue"] < 0.01


def test_a_question_unlike_the_training_questions_is_called_unfamiliar():
    """#48 item 8: a money word problem was labelled Combinatorics at 97% by a model trained on competition math."""
    from mathtune.metrics.drift import Familiarity, SignalExtractor

    rng = np.random.default_rng(1)
    shapes = ["Find the number of ways to arrange {a} distinct books on a shelf with {b} fixed.",
              "Compute the probability that {a} fair dice show a sum of {b}.",
              "Find all real x such that x^2 - {a}x + {b} = 0.",
              "How many positive divisors does {a}{b} have?",
              "Evaluate the integral of x^{a} from 0 to {b}."]
    texts = [shapes[i % 5].format(a=rng.integers(2, 40), b=rng.integers(2, 40)) for i in range(900)]
    reference = build_reference(texts[:600], texts[600:], np.full(300, 0.9), np.zeros(300, dtype=int), 3)
    familiarity = Familiarity(SignalExtractor(set(reference["vocabulary"]), np.asarray(reference["centroid"])), reference)
    like = [shapes[i].format(a=a, b=b) for i, (a, b) in enumerate([(7, 3), (3, 11), (5, 6), (72, 1), (3, 2)])]
    assert familiarity.reasons(like) == [None] * 5
    money = "A pen costs $2 and a notebook costs $5. How much do 3 pens and 2 notebooks cost together at the shop?"
    [why] = familiarity.reasons([money])
    assert why is not None and "learned from" in why


def test_training_saves_reference(topic_csv):
    result = train_from_recipe(recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv"}, "tracking": "none"}), "runs/d")
    reference = json.loads((result.output / "drift_reference.json").read_text())
    assert set(reference["signals"]) == {"text_length", "unknown_word_share", "centroid_distance", "confidence", "predicted_class"}
    assert len(reference["signals"]["predicted_class"]["proportions"]) == 8
