"""Every demo recipe, and a short LoRA run of the 1.5B tutor model, timed on this machine: wall time of the
whole `mathtune train` (loading, training, evaluation, saving), training samples/s and peak RSS (VmHWM of the
training process, from its metrics.json).

    python bench/demos.py                      # writes bench/results/demos.json
    python bench/demos.py --only demo-tutor

Targets (issue #19): demo-tutor in <= 3 minutes with peak RSS <= 3 GB on 2 cores.
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
RUNS = {
    "demo-topic": ["recipes/demo-topic.yaml"],
    "demo-tutor": ["recipes/demo-tutor.yaml"],
    # #15: LoRA SFT of Qwen2.5-Coder-1.5B (the bundled GGUF, dequantized) must run on a CPU: a smoke run of a few steps
    "qwen-1.5b-lora-smoke": ["recipes/tutor-lora.yaml", "--set", "model.name=bundled:qwen2.5-coder-1.5b",
                             "--set", "data.train=demo:champ", "--set", "data.limit=24", "--set", "model.max_length=256",
                             "--set", "train.batch_size=4", "--set", "train.epochs=1", "--set", "tutor.eval_samples=0",
                             "--set", "tutor.compare_base=false", "--set", "model.lora.top_layers=4",
                             "--set", "tutor.question_column=Question", "--set", "tutor.response_column=solution",
                             "--set", "tutor.answer_column=answer", "--set", "tutor.refusal_examples=0",
                             "--set", "tutor.gguf_export=none"],
}


def run(name: str, args: list[str], out_root: Path) -> dict:
    out = out_root / name
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MATHTUNE_LOG_EVERY_S": "30"}
    cmd = [sys.executable, "-m", "mathtune.cli", "train", *args, "--output", str(out), "--overwrite",
           "--set", "tracking.backend=none"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    row = {"recipe": name, "command": " ".join(cmd[2:]), "wall_seconds": round(wall, 1), "ok": proc.returncode == 0}
    if proc.returncode != 0:
        row["error"] = (proc.stderr or proc.stdout)[-1500:]
        return row
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    row.update({k: summary.get(k) for k in ("train_seconds", "train_samples_per_second", "peak_rss_mb", "n_train")})
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", default="/tmp/mathtune-bench-demos")
    args = parser.parse_args()
    results_path = REPO / "bench" / "results" / "demos.json"
    previous = json.loads(results_path.read_text())["runs"] if results_path.is_file() else []
    rows = {r["recipe"]: r for r in previous}
    for name, recipe_args in RUNS.items():
        if args.only and name not in args.only:
            continue
        rows[name] = run(name, recipe_args, Path(args.out))
        print(json.dumps(rows[name]), flush=True)
    results_path.write_text(json.dumps({"benchmark": "demos", "cpus": os.cpu_count(), "runs": list(rows.values())},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
