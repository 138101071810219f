"""Misconception benchmark: MAP@3 and top-1 accuracy per recipe, split and candidate-label switch.

    python bench/misconception.py                                  # tfidf and lora, both splits
    python bench/misconception.py --recipes misconception-tfidf
    python bench/misconception.py --lora-set data.limit=8000 --lora-set train.epochs=1   # a CPU-sized LoRA run

Data: map-misconceptions/train.csv from the data directory. Splits: the fixed stratified 80/20 split on the joint
label (seed 0; single-member classes stay in train) and a grouped 80/20 split by QuestionId (whole questions held
out, seed 0). Each recipe and split trains once in its own `mathtune train` process (so peak memory is its own);
the four on/off combinations of the two switches (restrict_to_question, derive_correctness) are scored on the
same validation predictions. Writes bench/results/misconception.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402

RECIPES = ["misconception-tfidf", "misconception-lora", "misconception-best"]
SPLITS = ["stratified", "grouped"]


def run(recipe: str, split: str, workdir: Path, extra: list[str]) -> dict:
    output = workdir / f"{recipe}-{split}"
    cmd = [sys.executable, "-m", "mathtune.cli", "train", str(REPO / "recipes" / f"{recipe}.yaml"), "--output", str(output),
           "--overwrite", "--set", "tracking=none", "--set", f"data.split={split}", *sum((["--set", s] for s in extra), [])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    wall = time.perf_counter() - start
    entry = {"recipe": recipe, "split": split, "overrides": extra}
    if proc.returncode != 0:
        return {**entry, "error": (proc.stderr or proc.stdout)[-2000:]}
    metrics = json.loads((output / "metrics.json").read_text())
    val, summary = metrics["validation"], metrics["summary"]
    return {
        **entry,
        "map@3": round(val["map@3"], 4),
        "top1_accuracy": round(val["accuracy"], 4),
        "top3_accuracy": round(val["top3_accuracy"], 4),
        "n_validation": val["n"],
        "n_validation_labels_unseen_in_train": val.get("n_unseen_labels", 0),
        "switches": {name: {"map@3": round(v["map@3"], 4), "top1_accuracy": round(v["accuracy"], 4)}
                     for name, v in metrics["ablation"].items()},
        "per_category": val["per_category"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": summary["peak_rss_mb"],
        "n_train": summary["n_train"],
        "refit": bool(summary.get("refit") or val.get("member_refits")),
        "predict_rows_per_second": predict_speed(output),
        **({"members": [{k: m.get(k) for k in ("name", "trainer", "model", "map@3", "accuracy", "train_seconds")}
                        for m in val["members"]]} if "members" in val else {}),
    }


def predict_speed(folder: Path, rows: int = 1000) -> float:
    """Rows per second of the saved model on `rows` rows of the training file, measured in this process."""
    import pandas as pd

    from mathtune.models.saved import load_predictor
    from mathtune.paths import resolve_data_path

    frame = pd.read_csv(resolve_data_path("map-misconceptions/train.csv"), dtype=str, keep_default_na=False).head(rows)
    predictor = load_predictor(folder)
    predictor.predict_frame(frame.head(32), k=3)  # warm-up
    start = time.perf_counter()
    predictor.predict_frame(frame, k=3)
    return round(len(frame) / (time.perf_counter() - start), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=RECIPES)
    parser.add_argument("--splits", nargs="*", default=SPLITS)
    parser.add_argument("--set", action="append", default=[], help="override for every recipe")
    parser.add_argument("--lora-set", action="append", default=[], help="override for fine-tuning recipes only")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "misconception.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-misconception")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {"benchmark": "misconception", "data": "map-misconceptions/train.csv; stratified and grouped-by-QuestionId 80/20, seed 0",
               "cpus": os.cpu_count(), "runs": []}
    if args.out.exists():
        results["runs"] = [r for r in json.loads(args.out.read_text()).get("runs", [])
                           if not (r["recipe"] in args.recipes and r["split"] in args.splits)]
    for recipe in args.recipes:
        for split in args.splits:
            extra = args.set + ([] if recipe.endswith("tfidf") else args.lora_set)
            entry = run(recipe, split, args.workdir, extra)
            results["runs"].append(entry)
            write_json(args.out, results)
            print(json.dumps({k: v for k, v in entry.items() if k != "per_category"}), flush=True)


if __name__ == "__main__":
    main()
