"""Tutor solving modes on pretrained models, without training: answer accuracy (math-verify), seconds per problem,
tokens/s, program-ran rate, vote agreement, refusal rates.

    python bench/tutor_modes.py                          # writes bench/results/tutor_modes.json
    python bench/tutor_modes.py --gsm8k 40 --math 20 --modes cot program --vote-gsm8k 20

Problems: a fixed sample of ``../shared/data/gsm8k/train.jsonl`` (seeded shuffle, seed 0; the first N) and the
first M of MATH-500. Models: ``bundled:qwen2.5-coder-1.5b`` (llama.cpp when installed) and ``bundled:smollm2``.
The machine is shared with nothing else while it runs; OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.config import TutorConfig  # noqa: E402
from mathtune.data.readers import read_table  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.models.generate import load_tutor  # noqa: E402
from mathtune.paths import resolve_data_path  # noqa: E402
from mathtune.tasks.tutor import REFUSAL_EVAL, Pairs, pairs_from_frame  # noqa: E402
from mathtune.train.loop import peak_rss_mb  # noqa: E402
from mathtune.train.tutor_eval import evaluate_generator  # noqa: E402


def problems(name: str, n: int, shuffle: bool) -> Pairs:
    path = resolve_data_path(name)
    pairs = pairs_from_frame(read_table(path), TutorConfig(), str(path))
    order = list(range(len(pairs.questions)))
    if shuffle:
        random.Random(0).shuffle(order)
    order = order[:n]
    return Pairs([pairs.questions[i] for i in order], [pairs.responses[i] for i in order],
                 [pairs.answers[i] for i in order], f"{path} ({n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["bundled:qwen2.5-coder-1.5b", "bundled:smollm2"])
    parser.add_argument("--modes", nargs="*", default=["cot", "program"])
    parser.add_argument("--gsm8k", type=int, default=200)
    parser.add_argument("--math", type=int, default=100)
    parser.add_argument("--vote-gsm8k", type=int, default=0, help="problems for vote (k=5) on the first model")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tutor_modes.json")
    args = parser.parse_args()
    sets = {"gsm8k": problems("gsm8k/train.jsonl", args.gsm8k, True)}
    if args.math:
        sets["math500"] = problems("math-hendrycks/math500_test.jsonl", args.math, False)
    results = {"benchmark": "tutor_modes", "cpus": os.cpu_count(), "runs": []}
    for model in args.models:
        start = time.perf_counter()
        generator = load_tutor(model, "auto", threads=args.threads)
        load_seconds = time.perf_counter() - start
        runs = [(mode, name, pairs) for mode in args.modes for name, pairs in sets.items()]
        if args.vote_gsm8k and model == args.models[0]:
            runs.append(("vote", "gsm8k", Pairs(*(getattr(sets["gsm8k"], f)[: args.vote_gsm8k]
                                                  for f in ("questions", "responses", "answers")), "gsm8k vote")))
        for mode, name, pairs in runs:
            t = time.perf_counter()
            off_topic = REFUSAL_EVAL if name == "gsm8k" and mode != "vote" else []
            evaluated = evaluate_generator(generator, pairs, args.max_new_tokens, batch_size=8, mode=mode,
                                           off_topic=off_topic)
            entry = {"model": model, "backend": generator.backend, "mode": mode, "data": name,
                     "wall_seconds": round(time.perf_counter() - t, 1), "load_seconds": round(load_seconds, 1),
                     "peak_rss_mb": round(peak_rss_mb(), 1),
                     **{k: v for k, v in evaluated.metrics.items() if not isinstance(v, dict)}}
            results["runs"].append(entry)
            write_json(args.out, results)
            print(json.dumps({k: entry[k] for k in ("model", "mode", "data", "answer_accuracy", "seconds_per_problem",
                                                    "refusal_rate", "false_refusal_rate")}), flush=True)
        del generator
    write_json(args.out, results)


if __name__ == "__main__":
    main()
