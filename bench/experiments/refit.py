"""Does `train.refit` help on rows no model has seen? The project's fixed 80/20 split of a training file: both
models are trained on the 80% only (the usual inner 80/20 split picks the settings; the refit model then also
learns the inner validation rows) and scored on the outer 20%, which neither saw.

    python bench/experiments/refit.py                      # writes bench/results/refit.json
    python bench/experiments/refit.py --recipes topic-tfidf
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mathtune.config import load_recipe  # noqa: E402
from mathtune.data.readers import read_table  # noqa: E402
from mathtune.data.split import stratified_split  # noqa: E402
from mathtune.inference import evaluate_file  # noqa: E402
from mathtune.paths import resolve_data_path  # noqa: E402
from mathtune.train.run import task_for, train_from_recipe  # noqa: E402

LABELS = {"topic-tfidf": "label", "misconception-tfidf": None}


def outer_split(recipe, folder: Path) -> tuple[Path, Path]:
    path = resolve_data_path(recipe.data.train)
    frame = read_table(path)
    task = task_for(recipe)
    frame = task.clean(frame, recipe.data.label_column, str(path))
    raw = task.raw_labels(frame, recipe.data.label_column, str(path))
    train_idx, test_idx = stratified_split(raw, 0.2, 0)
    train, test = folder / "outer_train.csv", folder / "outer_test.csv"
    frame.iloc[train_idx].to_csv(train, index=False)
    frame.iloc[test_idx].to_csv(test, index=False)
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", nargs="*", default=["topic-tfidf", "misconception-tfidf"])
    args = parser.parse_args()
    rows = []
    for name in args.recipes:
        base = load_recipe(REPO / "recipes" / f"{name}.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            train_file, test_file = outer_split(base, folder)
            for refit in (False, True):
                recipe = base.model_copy(update={
                    "data": base.data.model_copy(update={"train": str(train_file)}),
                    "train": base.train.model_copy(update={"refit": refit}),
                    "tracking": base.tracking.model_copy(update={"backend": "none"})})
                start = time.perf_counter()
                result = train_from_recipe(recipe, folder / f"model-{refit}")
                seconds = time.perf_counter() - start
                scored = evaluate_file(result.output, test_file)
                primary = task_for(recipe).primary_metric
                row = {"recipe": name, "refit": refit, "held_out_rows": scored.get("n"), primary: scored[primary],
                       "validation_" + primary: result.metrics.get(primary), "wall_seconds": round(seconds, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = REPO / "bench" / "results" / "refit.json"
    out.write_text(json.dumps({"benchmark": "refit", "cpus": os.cpu_count(), "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
