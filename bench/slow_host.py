"""The bundled tutor's default (adaptive(code,2of3) with its 60 s time budget) on a host half as fast: does its
accuracy hold, and under which budget rule? Also replays the default's answers against tutor_modes' cached run.

    python bench/slow_host.py --problems 24      # writes bench/results/slow_host.json (+ .jsonl, resumable)

One process, one engine (2 threads), the first ``--problems`` GSM8K problems of tutor_modes' seeded sample, 512
tokens an answer, as tutor_modes solved them:

- fast: this machine as it is, the default as served (its budget stretches only on an engine slower than the speed
  it was set for, which this one is not). Where tutor_modes' cached run (the same vote without a budget) took
  under 0.8 x the budget, the budget cannot have changed the answer: those are the replay check (same seeds, same
  answers).
- slow: the same with one busy loop per core beside it, so each core is shared in half and the engine decodes at
  about half its speed (its speed() is measured again under them), each problem solved twice: with the budget as
  plain seconds (``seconds``) and stretched by the measured speed (``stretched``, the default's rule).

Nothing else should run meanwhile; OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path

from common import RESULTS
from mathtune.io import write_json
from mathtune.metrics.answers import answers_match
from mathtune.models.generate import load_tutor
from mathtune.models.solving.budget import budget_seconds
from mathtune.models.solving.presets import DEFAULT_PRESET, default_settings
from mathtune.models.solving.solve import solve
from tutor_modes import Cache, _sha, problems, prompt_hash

MODEL = "bundled:qwen2.5-coder-1.5b"
MAX_NEW_TOKENS = 512
REPLAY_MARGIN = 0.8


def busy() -> None:
    while True:
        pass


class HalfSpeed:
    """One busy loop per core while inside: the machine's CPU time is shared in half with them."""

    def __enter__(self):
        self.loops = [multiprocessing.Process(target=busy, daemon=True) for _ in range(os.cpu_count() or 1)]
        for loop in self.loops:
            loop.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        for loop in self.loops:
            loop.terminate()
        for loop in self.loops:
            loop.join()


def right(final, gold) -> bool:
    return bool(gold is not None and final is not None and answers_match(final, gold))


def summary(rows: list[dict]) -> dict:
    seconds = [r["seconds"] for r in rows]
    return {"n": len(rows), "answer_accuracy": round(sum(r["correct"] for r in rows) / len(rows), 4),
            "median_seconds": round(statistics.median(seconds), 1), "mean_seconds": round(statistics.mean(seconds), 1),
            "max_seconds": round(max(seconds), 1), "cut_by_time_budget": sum(r["out_of_time"] for r in rows),
            "mean_samples": round(statistics.mean(r["samples"] for r in rows), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--cache", type=Path, default=RESULTS / "tutor_modes_problems.jsonl.gz")
    parser.add_argument("--out", type=Path, default=RESULTS / "slow_host.json")
    args = parser.parse_args()
    bank = args.out.with_suffix(".jsonl")
    done = {}
    if bank.is_file():
        for line in bank.read_text().splitlines():
            row = json.loads(line)
            done[(row["run"], row["i"])] = row
    pairs = problems("gsm8k/train.jsonl", args.problems, True)
    default = default_settings(MODEL)
    rules = {"fast": default, "seconds": default.model_copy(update={"budget_speed": None}), "stretched": default}
    generator = load_tutor(MODEL, "auto", threads=2)
    cache = Cache(args.cache)
    prompt = prompt_hash(generator, DEFAULT_PRESET[MODEL], MAX_NEW_TOKENS)
    speeds: dict[str, float] = {}

    def solved(run: str, i: int) -> dict:
        if (run, i) in done:
            return done[(run, i)]
        [s] = solve(generator, [pairs.questions[i]], rules[run], max_new_tokens=MAX_NEW_TOKENS)
        row = {"run": run, "i": i, "final": s.final_answer, "gold": pairs.answers[i],
               "correct": right(s.final_answer, pairs.answers[i]), "seconds": round(s.seconds, 3),
               "samples": s.samples, "out_of_time": s.out_of_time, "method": s.method, "speed": speeds[run],
               "budget_seconds": round(budget_seconds(rules[run], generator) or 0, 1),
               "load1": round(os.getloadavg()[0], 2), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with bank.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("run", "i", "final", "gold", "correct", "seconds", "samples",
                                              "out_of_time", "budget_seconds")}), flush=True)
        done[(run, i)] = row
        return row

    speeds["fast"] = generator.speed(remeasure=True)
    fast = [solved("fast", i) for i in range(args.problems)]
    with HalfSpeed():
        speeds["seconds"] = speeds["stretched"] = generator.speed(remeasure=True)
        slow = {run: [] for run in ("seconds", "stretched")}
        for i in range(args.problems):
            for run in slow:
                slow[run].append(solved(run, i))
    generator.close()

    replay = []
    for i, row in enumerate(fast):
        cached = cache.get(model=MODEL, backend=generator.backend, mode=DEFAULT_PRESET[MODEL], data="gsm8k", i=i,
                           question=_sha(pairs.questions[i]), prompt=prompt)
        if cached is not None and cached["seconds"] < REPLAY_MARGIN * default.time_budget:
            replay.append(cached["final"] == row["final"] or right(row["final"], cached["final"]))
    results = {"benchmark": "slow_host", "cpus": os.cpu_count(), "model": MODEL, "preset": DEFAULT_PRESET[MODEL],
               "time_budget": default.time_budget, "budget_speed": default.budget_speed,
               "engine_speed": {"fast": round(speeds["fast"], 2), "slow": round(speeds["seconds"], 2)},
               "problems": f"gsm8k/train.jsonl, tutor_modes' seeded sample, first {args.problems}",
               "runs": {"fast": summary(fast), **{f"slow, {run}": summary(rows) for run, rows in slow.items()}},
               "same_answer_as_fast": {f"slow, {run}": sum(a["final"] == b["final"] for a, b in zip(rows, fast))
                                       for run, rows in slow.items()},
               "replay": {"compared": len(replay), "same_answer": sum(replay),
                          "of": f"cached default answers (no budget) that took under {REPLAY_MARGIN} x the budget"}}
    for run in slow:
        results["runs"][f"slow, {run}"]["accuracy_minus_fast"] = round(
            results["runs"][f"slow, {run}"]["answer_accuracy"] - results["runs"]["fast"]["answer_accuracy"], 4)
    write_json(args.out, results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
