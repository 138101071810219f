"""Does a topic model's percentage mean what it says, and does the page say when the model is out of its depth?

    python bench/calibration.py                      # writes bench/results/calibration.json
    python bench/calibration.py --models demo-topic  # one model

For each model (trained here from its recipe, tracking off, no refit so the validation split stays unseen):
  - calibration: validation ECE (10 bins) of the raw softmax and of what the saved model shows; for the
    transformer kinds the temperature is fitted on validation, so the "after" figure is cross-fitted (fitted on one
    half, measured on the other: metrics/calibration.py); TF-IDF fits its temperature on out-of-fold training scores.
  - out of its depth: the share of questions the served "not sure" rule (metrics/drift.py Familiarity, the model's
    drift reference) marks unfamiliar, on questions it never trained on: math-topics test.csv (the Kaggle test
    questions: competition math like the training data, so a mark there is a false alarm for the math-topics models),
    GSM8K (grade-school word problems), MATH-500 (competition math), and the questions a teacher typed in issue #48,
    with what the model said of each.
Data: the data directory (MATHTUNE_DATA_DIR or ../shared/data).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, RESULTS  # noqa: F401 (src on the path)
from mathtune.config import load_recipe  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.paths import data_dir  # noqa: E402

MODELS = ("demo-topic", "topic-tfidf", "topic-lora-small")
TEACHER = [  # issue #48's questions, as typed
    "A pen costs $2 and a notebook costs $5. How much do 3 pens and 2 notebooks cost?",
    "Tom reads 12 pages a day; how many days for 150 pages?",
    "If 2 1/2 cups of flour make 10 cookies, how much flour is needed for 25 cookies?",
    "What is 15% of 80?",
    "Solve for x: 2x+3=11",
    "How many ways can 5 books be arranged on a shelf?",
    "Roses are red, violets are blue, sugar is sweet and so are you.",
]
PER_SET = 500


def recipe_for(name: str):
    if name == "topic-lora-small":  # the demo's LoRA recipe on the real topic data, sized for 2 CPU cores
        recipe = load_recipe(REPO / "recipes" / "demo-topic.yaml")
        data = recipe.data.model_copy(update={"train": "math-topics/train.csv", "limit": 2000, "val_size": 0.25})
        return recipe.model_copy(update={"data": data})
    return load_recipe(REPO / "recipes" / f"{name}.yaml")


def question_sets() -> dict[str, list[str]]:
    root = data_dir()
    with open(root / "math-topics" / "test.csv", encoding="utf-8", newline="") as handle:
        kaggle = [row["Question"] for row in csv.DictReader(handle)]
    gsm = [json.loads(line)["question"] for line in (root / "gsm8k" / "train.jsonl").read_text().splitlines()[-PER_SET:]]
    math500 = [json.loads(line)["problem"] for line in (root / "math-hendrycks" / "math500_test.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    kaggle = [kaggle[i] for i in sorted(rng.choice(len(kaggle), PER_SET, replace=False))]
    return {"math_topics_test": kaggle, "gsm8k": gsm, "math500": math500[:PER_SET]}


def tfidf_calibration(recipe, folder: Path) -> dict:
    """TF-IDF keeps its temperature in its own file; its raw softmax of margins (temperature 1) measured beside it."""
    import copy

    from mathtune.metrics.calibration import expected_calibration_error
    from mathtune.models.tfidf import class_probabilities, load
    from mathtune.tasks import LabelMap
    from mathtune.train.run import load_splits, task_for

    train, val = load_splits(recipe)
    labels = LabelMap.infer(train.raw_labels, task_for(recipe).default_label_names, recipe.labels)
    y = np.asarray(labels.encode(val.raw_labels, val.source))
    model = load(folder)
    ece = {}
    for name, temperature in (("before", 1.0), ("after", model.temperature)):
        scored = copy.copy(model)
        scored.temperature = temperature
        probs = class_probabilities(scored, val.texts, len(labels))
        ece[name] = expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == y)
    return {"temperature": round(model.temperature, 6), "ece_before": round(ece["before"], 6),
            "ece_after": round(ece["after"], 6), "rows": len(y), "method": "temperature fitted on out-of-fold training scores"}


def measure(name: str, sets: dict[str, list[str]], work: Path) -> dict:
    from mathtune.models.saved import load_predictor
    from mathtune.serve.drift import DriftMonitor
    from mathtune.train.run import train_from_recipe

    recipe = recipe_for(name)
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"refit": False}),
                                       "tracking": recipe.tracking.model_copy(update={"backend": "none"})})
    start = time.perf_counter()
    result = train_from_recipe(recipe, work / name, overwrite=True)
    seconds = time.perf_counter() - start
    folder = Path(result.output)
    manifest = json.loads((folder / "mathtune.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())["validation"]
    predictor = load_predictor(folder)
    monitor = DriftMonitor(folder, len(predictor.labels))
    out = {"recipe": name, "kind": manifest["kind"], "train_seconds": round(seconds, 1),
           "n_validation": metrics.get("n"), "f1_micro": round(metrics["f1_micro"], 4),
           "calibration_error": metrics.get("calibration_error"), "calibration": manifest.get("calibration"),
           "unfamiliar_share": {}}
    if manifest["kind"] == "tfidf":
        out["calibration"] = tfidf_calibration(recipe, folder)
    for set_name, texts in sets.items():
        marks = monitor.unfamiliar(texts)
        out["unfamiliar_share"][set_name] = round(sum(m is not None for m in marks) / len(texts), 4)
    idx, prob = predictor.topk(TEACHER, k=1)
    marks = monitor.unfamiliar(TEACHER)
    out["teacher_questions"] = [{"question": q, "topic": predictor.labels.names[int(i[0])], "probability": round(float(p[0]), 3),
                                 "unfamiliar": m is not None} for q, i, p, m in zip(TEACHER, idx, prob, marks)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    sets = question_sets()
    path = RESULTS / "calibration.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["sets"] = {name: len(texts) for name, texts in sets.items()}
    results.setdefault("models", {})
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"== {name}", flush=True)
            results["models"][name] = measure(name, sets, Path(tmp))
            print(json.dumps(results["models"][name], indent=1), flush=True)
            write_json(path, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
