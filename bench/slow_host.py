"""The bundled tutor's default (adaptive(code,2of3) with its 60 s time budget) on a host half as fast: does its
accuracy hold, and under which budget rule? Also replays the default's answers against tutor_modes' cached run.

    python bench/slow_host.py --problems 24 --minutes 60   # writes bench/results/slow_host.json (+ .jsonl, resumable)

The first ``--problems`` GSM8K problems of tutor_modes' seeded sample, 512 tokens an answer, as tutor_modes solved
them, one engine (2 threads):

- fast: tutor_modes' cached answers of the same vote on a quiet host of this kind (where the vote took over 0.8 x
  the budget, time_budget.py's answer under the budget; the budget could not bind on the others).
- replay: the default as served, solved now: where neither it nor the cached run was cut by the budget, the answer
  must be the cached one (same seeds, same answers; llama.cpp's batched decoding is not promised to be bit-for-bit
  repeatable, so a rare difference is that, not a change of behaviour).
- slow: with one busy loop per core beside the engine, so each core is shared in half and it decodes at about
  half its speed (its speed() measured again under them); each problem solved twice, with the budget as plain
  seconds (``seconds``) and stretched by the measured speed (``stretched``, the default's rule), in turn.

Nothing else should run meanwhile; OMP_WAIT_POLICY=PASSIVE. ``--minutes`` starts no new problem after that long;
the figures are over the problems every run has.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path

from common import RESULTS, bank_rows
from mathtune.io import write_json
from mathtune.metrics.answers import answers_match
from mathtune.models.generate import load_tutor
from mathtune.models.solving.budget import budget_seconds
from mathtune.models.solving.presets import DEFAULT_PRESET, default_settings
from mathtune.models.solving.solve import solve
from time_budget import current
from time_budget import summary as timing
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
    return {**timing(rows), "cut_by_time_budget": sum(r["out_of_time"] for r in rows),
            "mean_samples": round(statistics.mean(r["samples"] for r in rows), 2)}


def fast_rows(n: int, pairs, cache: Cache, prompt: str, budget: float) -> list[dict]:
    """The default on a quiet host: tutor_modes' cached vote, or time_budget.py's answer where the budget binds."""
    budgeted = {row["i"]: row for row in bank_rows(RESULTS / "time_budget.jsonl")
                if row["data"] == "gsm8k" and row["budget"] == budget and current(row)}
    rows = []
    for i in range(n):
        cached = cache.get(model=MODEL, backend="llama.cpp", mode=DEFAULT_PRESET[MODEL], data="gsm8k", i=i,
                           question=_sha(pairs.questions[i]), prompt=prompt)
        if cached is None:
            break
        row = cached if cached["seconds"] < REPLAY_MARGIN * budget else budgeted.get(i)
        if row is None:
            break
        rows.append({"run": "fast", "i": i, "final": row["final"], "gold": pairs.answers[i],
                     "correct": right(row["final"], pairs.answers[i]), "seconds": row["seconds"],
                     "samples": row["samples"], "out_of_time": bool(row.get("out_of_time")),
                     "cached_seconds": cached["seconds"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--minutes", type=float, default=None, help="start no new problem after this long")
    parser.add_argument("--cache", type=Path, default=RESULTS / "tutor_modes_problems.jsonl.gz")
    parser.add_argument("--out", type=Path, default=RESULTS / "slow_host.json")
    args = parser.parse_args()
    stop = time.time() + 60 * args.minutes if args.minutes is not None else float("inf")
    bank = args.out.with_suffix(".jsonl")
    done = {(row["run"], row["i"]): row for row in bank_rows(bank)}
    pairs = problems("gsm8k/train.jsonl", args.problems, True)
    default = default_settings(MODEL)
    rules = {"replay": default, "seconds": default.model_copy(update={"budget_speed": None}), "stretched": default}
    generator = load_tutor(MODEL, "auto", threads=2)
    prompt = prompt_hash(generator, DEFAULT_PRESET[MODEL], MAX_NEW_TOKENS)
    fast = fast_rows(args.problems, pairs, Cache(args.cache), prompt, default.time_budget)
    speeds: dict[str, float] = {}

    def solved(run: str, i: int) -> dict | None:
        if (run, i) in done:
            return done[(run, i)]
        if time.time() > stop:
            return None
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

    speeds["replay"] = generator.speed(remeasure=True)
    replay = [row for i in range(len(fast)) if (row := solved("replay", i)) is not None]
    slow: dict[str, list[dict]] = {"seconds": [], "stretched": []}
    with HalfSpeed():
        speeds["seconds"] = speeds["stretched"] = generator.speed(remeasure=True)
        for i in range(len(fast)):
            got = {run: solved(run, i) for run in slow}
            if any(row is None for row in got.values()):
                break
            for run, row in got.items():
                slow[run].append(row)  # type: ignore[arg-type]
    generator.close()

    n = min(len(fast), *(len(rows) for rows in slow.values()))
    same = [a["final"] == b["final"] or right(a["final"], b["final"])
            for a, b in zip(replay, fast) if not a["out_of_time"] and not b["out_of_time"]]
    results = {"benchmark": "slow_host", "cpus": os.cpu_count(), "model": MODEL, "preset": DEFAULT_PRESET[MODEL],
               "time_budget": default.time_budget, "budget_speed": default.budget_speed,
               "engine_speed": {"replay": round(speeds["replay"], 2), "slow": round(speeds["seconds"], 2)},
               "problems": f"gsm8k/train.jsonl, tutor_modes' seeded sample: the first {n} (replay: {len(replay)})",
               "runs": {"fast": summary(fast[:n]),
                        **{f"slow, {run}": summary(rows[:n]) for run, rows in slow.items()}},
               "same_answer_as_fast": {f"slow, {run}": sum(a["final"] == b["final"] for a, b in zip(rows, fast[:n]))
                                       for run, rows in slow.items()},
               "replay": {"solved": len(replay), "compared": len(same), "same_answer": sum(same),
                          "cut_by_budget": sum(r["out_of_time"] for r in replay), **summary(replay),
                          "of": "the default solved again, against tutor_modes' cached answers where neither was cut"}}
    for run in slow:
        results["runs"][f"slow, {run}"]["accuracy_minus_fast"] = round(
            results["runs"][f"slow, {run}"]["answer_accuracy"] - results["runs"]["fast"]["answer_accuracy"], 4)
    write_json(args.out, results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
