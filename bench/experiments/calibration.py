"""TF-IDF + linear SVC: softmax of margins against the temperature-calibrated probabilities on the topic validation
split (temperature fitted on out-of-fold training margins, never on validation): log-loss, ECE (10 bins), mean top-1
probability, accuracy (unchanged: a temperature never changes the ranking), and one clear calculus question.

    python bench/experiments/calibration.py        # writes bench/results/tfidf_calibration.json
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import json  # noqa: E402

import numpy as np  # noqa: E402

from mathtune.config import load_recipe  # noqa: E402
from mathtune.models.tfidf import class_probabilities  # noqa: E402
from mathtune.tasks import LabelMap  # noqa: E402
from mathtune.train.classical import fit_tfidf  # noqa: E402
from mathtune.train.run import load_splits, task_for  # noqa: E402

r = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "topic-tfidf.yaml")
train, val = load_splits(r)
task = task_for(r)
labels = LabelMap.infer(train.raw_labels, task.default_label_names, r.labels)
y = np.array(labels.encode(train.raw_labels, train.source))
yv = np.array(labels.encode(val.raw_labels, val.source))
out = {}
q = "Compute the derivative of f(x) = x^3 sin(x) and evaluate the integral of 2x from 0 to 1."
for cal in (False, True):
    cfg = r.tfidf.model_copy(update={"calibrate": cal})
    m = fit_tfidf(train.texts, y, cfg, 0)
    p = class_probabilities(m, val.texts, len(labels))
    nll = float(-np.log(np.maximum(p[np.arange(len(yv)), yv], 1e-12)).mean())
    conf, correct = p.max(1), p.argmax(1) == yv
    bins, ece = np.linspace(0, 1, 11), 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    pq = class_probabilities(m, [q], len(labels))[0]
    out["calibrated" if cal else "softmax_of_margins"] = {"temperature": round(m.temperature, 4), "val_nll": round(nll, 4),
        "ece_10_bins": round(float(ece), 4), "mean_top1_prob": round(float(conf.mean()), 4), "accuracy": round(float(correct.mean()), 4),
        "calculus_question_top": labels.names[int(pq.argmax())], "calculus_question_p": round(float(pq.max()), 4)}
print(json.dumps(out, indent=1))
json.dump(out, open(Path(__file__).resolve().parents[1] / "results" / "tfidf_calibration.json", "w"), indent=1)
