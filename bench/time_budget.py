"""What a time budget does to the bundled tutor's default vote (adaptive(code,2of3)): accuracy and seconds per
problem with and without it, on the problems of bench/tutor_modes.py's default runs (GSM8K's 200, MATH-500's first
43).

    python bench/time_budget.py --budget 60          # writes bench/results/time_budget.json (+ .jsonl, resumable)

A budget changes only the votes that would run past it: a vote that ends before its budget never sees it. So each
problem the default vote took longer than ``--margin`` x budget on (in tutor_modes' per-problem cache) is solved
again with ``time_budget`` set, and the others keep the cached answer and seconds (problems past the cached ones
are solved with the budget only, and counted in ``with_budget_all``); ``--check N`` solves N of
those others again too (with the budget), to see that they come out as cached (the vote's samples are seeded, but
llama.cpp's batched decoding is not promised to be bit-for-bit repeatable). The figures compare the default vote
without a budget (all cached) with the same vote under the budget (cached where it could not bind, solved again
where it could). OMP_WAIT_POLICY=PASSIVE; nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from common import bank_rows  # noqa: E402
from common import solve_named as solve  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.metrics.answers import answers_match  # noqa: E402
from mathtune.models.generate import load_tutor  # noqa: E402
from tutor_modes import ADAPTIVE, Cache, _sha, problems, prompt_hash  # noqa: E402

MODEL, MODE = "bundled:qwen2.5-coder-1.5b", "adaptive(code,2of3)"
# What the budget cuts. 1: the second round's samples (the first round always completed; a correction or tie-break
# begun before the deadline ran to its end). 2: also the first round's samples (its greedy answer completes) and a
# correction of a sample or a tie-break under way. 3: also a correction of the first round's greedy answer.
# A row solved under an earlier rule is kept where the rules cannot differ, else solved again: SAME_UNTIL[rule] is
# how long past the deadline that rule and this one agree (rule 1 differs from the deadline on; a rule-2 vote that
# ended within 1.5 s of it had no greedy correction under way).
RULE = 3
SAME_UNTIL = {1: 0.0, 2: 1.5}


def current(row: dict) -> bool:
    """Whether the row stands for this rule: solved under it, or where an earlier rule cannot differ from it."""
    rule = row.get("rule", 1)
    return rule == RULE or row["seconds"] < row["budget"] + SAME_UNTIL.get(rule, -1e9)
SETS = {"gsm8k": ("gsm8k/train.jsonl", True), "math500": ("math-hendrycks/math500_test.jsonl", False)}


def right(final, gold) -> bool:
    return bool(gold is not None and final is not None and answers_match(final, gold))


def summary(rows: list[dict]) -> dict:
    seconds = [r["seconds"] for r in rows]
    return {"n": len(rows), "answer_accuracy": round(sum(r["correct"] for r in rows) / len(rows), 4),
            "median_seconds": round(statistics.median(seconds), 1), "mean_seconds": round(statistics.mean(seconds), 1),
            "p90_seconds": round(sorted(seconds)[int(0.9 * (len(seconds) - 1))], 1), "max_seconds": round(max(seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=60.0, help="the vote's time budget, seconds")
    parser.add_argument("--margin", type=float, default=0.8,
                        help="solve again every problem the default took longer than this x budget on")
    parser.add_argument("--gsm8k", type=int, default=200)
    parser.add_argument("--math", type=int, default=43)
    parser.add_argument("--check", type=int, default=3, help="problems under the margin solved again, per data set")
    parser.add_argument("--minutes", type=float, default=None, help="start no new problem after this long")
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "tutor_modes_problems.jsonl.gz")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "time_budget.json")
    args = parser.parse_args()
    stop = time.time() + 60 * args.minutes if args.minutes is not None else float("inf")
    bank = args.out.with_suffix(".jsonl")
    done: dict = {}
    for row in bank_rows(bank):
        key = (row["data"], row["i"], row["budget"])
        if current(row) and (key not in done or row.get("rule", 1) >= done[key].get("rule", 1)):
            done[key] = row
    cache = Cache(args.cache)
    generator = load_tutor(MODEL, "auto")
    prompt = prompt_hash(generator, MODE, 512)
    settings = dict(ADAPTIVE[MODE])  # k 7, agree_first 2, first_round 3, tie-break: the greedy code answer
    results = {"benchmark": "time_budget", "cpus": os.cpu_count(), "model": MODEL, "mode": MODE,
               "budget_seconds": args.budget, "margin": args.margin, "rule": RULE,
               "engine": getattr(generator, "engine", None),
               "sets": {}}
    for name, n in (("gsm8k", args.gsm8k), ("math500", args.math)):
        if not n:
            continue
        pairs = problems(SETS[name][0], n, SETS[name][1])  # a seeded shuffle's first n: the same for every n
        before, after, rerun, checks, fresh = [], [], [], [], []
        for i in range(n):
            question, gold = pairs.questions[i], pairs.answers[i]
            cached = cache.get(model=MODEL, backend=generator.backend, mode=MODE, data=name, i=i,
                               question=_sha(question), prompt=prompt)
            if cached is None and before and len(before) == i:
                print(f"{name}: the default vote without a budget was run on its first {i} problems; the next are "
                      "solved with the budget only (with_budget_all)", file=sys.stderr)
            if cached is not None and len(before) == i:
                before.append(cached)
            binds = cached is None or cached["seconds"] > args.margin * args.budget
            if not binds and len(checks) >= args.check:
                after.append(cached)
                continue
            key = (name, i, args.budget)
            if key not in done:
                if time.time() > stop:
                    break
                [s] = solve(generator, [question], "vote", None, 512, base="code", time_budget=args.budget,
                            **settings)
                done[key] = {"data": name, "i": i, "budget": args.budget, "final": s.final_answer, "gold": gold,
                             "correct": right(s.final_answer, gold), "seconds": round(s.seconds, 3),
                             "samples": s.samples, "out_of_time": s.out_of_time, "method": s.method,
                             "cached_final": (cached or {}).get("final"),
                             "cached_correct": (cached or {}).get("correct"),
                             "cached_seconds": (cached or {}).get("seconds"), "check": not binds,
                             "load1": round(os.getloadavg()[0], 2), "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "rule": RULE}
                with bank.open("a") as f:
                    f.write(json.dumps(done[key]) + "\n")
                print(json.dumps({k: done[key][k] for k in ("data", "i", "final", "gold", "correct", "seconds",
                                                            "out_of_time", "cached_seconds")}), flush=True)
            row = done[key]
            (checks if row["check"] else fresh if cached is None else rerun).append(row)
            after.append(cached if row["check"] else row)  # a check is not part of the figures, only a test of them
        if len(after) < n:
            print(f"{name}: stopped at {len(after)} of {n} (--minutes)", file=sys.stderr)
        paired = min(len(before), len(after))  # the problems both ways were measured on
        results["sets"][name] = {
            "without_budget": summary(before[:paired]), "with_budget": summary(after[:paired]),
            **({"with_budget_all": summary(after), "solved_only_with_budget": len(fresh),
                "cut_of_solved_only_with_budget": sum(r["out_of_time"] for r in fresh)} if fresh else {}),
            "solved_again": len(rerun), "cut_by_budget": sum(r["out_of_time"] for r in rerun),
            "right_before_of_solved_again": sum(r["cached_correct"] for r in rerun),
            "right_after_of_solved_again": sum(r["correct"] for r in rerun),
            "right_before_of_cut": sum(r["cached_correct"] for r in rerun if r["out_of_time"]),
            "right_after_of_cut": sum(r["correct"] for r in rerun if r["out_of_time"]),
            "checks": len(checks), "checks_same_answer": sum(
                r["final"] == r["cached_final"] or right(r["final"], r["cached_final"]) for r in checks)}
        write_json(args.out, results)
        print(json.dumps({name: results["sets"][name]}), flush=True)
    generator.close()
    write_json(args.out, results)


if __name__ == "__main__":
    main()
