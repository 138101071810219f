"""Products benchmark: cross-validated and held-out accuracy, F1-macro and one-vs-rest AUC per classifier.

    python bench/products.py            # writes bench/results/products.json

Data: products/amazon_in_products_2023_top100_per_subcat.csv from the data directory (see its SOURCE.md: a stand-in
for seed 004's Amazon 2018 data; title, prices and ratings only). Duplicate links dropped, the `stores` and
refurbished labels excluded, stratified 80/20 split (seed 0); 5-fold CV on the training part, SMOTE inside each fold.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=["products-rf", "products-linear"])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "products.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-products")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {"benchmark": "products", "cpus": os.cpu_count(), "runs": []}
    for name in args.recipes:
        output = args.workdir / name
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mathtune.cli", "train", str(REPO / "recipes" / f"{name}.yaml"), "--output",
                               str(output), "--overwrite", "--set", "tracking=none"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        if proc.returncode != 0:
            results["runs"].append({"recipe": name, "error": (proc.stderr or proc.stdout)[-2000:]})
        else:
            m = json.loads((output / "metrics.json").read_text())
            v = m["validation"]
            results["runs"].append({
                "recipe": name, "validation": {k: round(v[k], 4) for k in ("accuracy", "f1_macro", "auc_ovr")},
                "cross_validation": {k: round(v["cross_validation"][k], 4) for k in ("accuracy", "f1_macro", "auc_ovr")},
                "top_features": v.get("top_features", [])[:10], "train_seconds": m["summary"]["train_seconds"],
                "wall_seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": m["summary"]["peak_rss_mb"],
                "n_train": m["summary"]["n_train"], "n_validation": m["summary"]["n_validation"]})
        write_json(args.out, results)
        print(json.dumps(results["runs"][-1])[:400], flush=True)


if __name__ == "__main__":
    main()
