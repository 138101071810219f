"""llama.cpp against transformers on the same pretrained tutor model, at equal length: tokens/s of greedy generation
with the end-of-sequence token suppressed (exactly N new tokens each), same prompt, same threads, one process.

    python bench/experiments/backends.py                                   # bundled:qwen2.5-coder-1.5b, 48 tokens
    python bench/experiments/backends.py --model bundled:smollm2 --tokens 64

Writes bench/results/backends.json. Target (issue #15): llama.cpp >= 5x transformers on the 1.5B model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mathtune.models.generate import load_tutor  # noqa: E402
from mathtune.train.loop import peak_rss_mb  # noqa: E402

PROMPT = "A train travels 60 km in 45 minutes. What is its speed in km/h?"


def measure(model: str, backend: str, tokens: int) -> dict:
    start = time.perf_counter()
    generator = load_tutor(model, backend)
    load = time.perf_counter() - start
    generator.generate([PROMPT], 4, ignore_eos=True)  # warm-up
    out = generator.generate([PROMPT], tokens, ignore_eos=True)[0]
    row = {"backend": backend, "load_seconds": round(load, 1), "new_tokens": out.new_tokens,
           "seconds": round(out.seconds, 2), "tokens_per_second": round(out.new_tokens / out.seconds, 2),
           "peak_rss_mb_so_far": round(peak_rss_mb(), 1)}
    del generator
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled:qwen2.5-coder-1.5b")
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    rows = [measure(args.model, "llama.cpp", args.tokens), measure(args.model, "transformers", args.tokens)]
    for row in rows:
        print(json.dumps(row), flush=True)
    speedup = rows[0]["tokens_per_second"] / rows[1]["tokens_per_second"]
    result = {"benchmark": "backends", "model": args.model, "cpus": os.cpu_count(), "prompt": PROMPT,
              "runs": rows, "llama_cpp_speedup": round(speedup, 2)}
    (REPO / "bench" / "results" / "backends.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"llama.cpp / transformers: {speedup:.2f}x")


if __name__ == "__main__":
    main()
