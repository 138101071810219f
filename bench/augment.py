"""Augmentation benchmark: does augmenting the rare topics help them?

    python bench/augment.py                 # writes bench/results/augment.json
    python bench/augment.py --recipe topic-lora

On math-topics/train.csv with the fixed stratified 80/20 split of the topic benchmark (seed 0), the same recipe and
settings are trained twice: as is, and with `augment: {methods: [numbers], target_count: N}` (applied to the training
split only; the validation split is identical). Reports F1-macro, F1-micro and the F1 of the two rarest topics
(label 6 Linear Algebra, label 7 Abstract Algebra and Topology). Back-translation needs translation models that no
PyPI package carries, so the offline benchmark measures number substitution; pass --back-translation FWD BWD to add it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.config import load_recipe  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.train.run import train_from_recipe  # noqa: E402

RARE = ["Linear Algebra", "Abstract Algebra and Topology"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="topic-tfidf")
    parser.add_argument("--target-count", type=int, default=400)
    parser.add_argument("--back-translation", nargs=2, metavar=("FORWARD", "BACKWARD"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "augment.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-augment")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    methods = ["numbers"] + (["back_translation"] if args.back_translation else [])
    augment = [f"augment.methods={json.dumps(methods)}", f"augment.target_count={args.target_count}"]
    if args.back_translation:
        augment += [f"augment.back_translation.forward_model={args.back_translation[0]}",
                    f"augment.back_translation.backward_model={args.back_translation[1]}"]
    results = {"benchmark": "augment", "recipe": args.recipe, "cpus": os.cpu_count(), "methods": methods,
               "target_count": args.target_count, "runs": {}}
    for name, overrides in (("without", []), ("with", augment)):
        recipe = load_recipe(REPO / "recipes" / f"{args.recipe}.yaml", ["tracking=none", *overrides])
        result = train_from_recipe(recipe, args.workdir / name, overwrite=True)
        per_class = {row["label"]: row["f1"] for row in result.metrics["per_class"]}
        results["runs"][name] = {
            "f1_macro": round(result.metrics["f1_macro"], 4), "f1_micro": round(result.metrics["f1_micro"], 4),
            **{f"f1_{label}": round(per_class[label], 4) for label in RARE},
            "n_train": result.metrics["n_train"], "n_augmented": result.metrics["n_augmented"],
            "n_validation": result.metrics["n_validation"], "train_seconds": result.metrics["train_seconds"],
        }
        print(name, json.dumps(results["runs"][name]), flush=True)
    w, wo = results["runs"]["with"], results["runs"]["without"]
    results["delta"] = {k: round(w[k] - wo[k], 4) for k in wo if k.startswith("f1")}
    write_json(args.out, results)
    print(json.dumps(results["delta"]))


if __name__ == "__main__":
    main()
