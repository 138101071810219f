"""Which prompt makes the bundled tutor's code answers right more often, chosen on dev problems outside the
benchmark's sample (GSM8K train.jsonl in bench/tutor_modes.py's seeded order: the benchmark's sample is the first
200, bench/vote_policies.py's bank 200-234; the default range here is 235-334).

Each variant answers every problem greedily in ``code`` mode (the program alone, steps in comments, run in the
sandbox, one repair); the variants differ only in what comes before the problem:

- ``zero-shot``: the code system prompt alone (today's default);
- ``cot-boxed``: not a program but step-by-step prose in the way Qwen2.5 models were taught to solve math: the
  Qwen system prompt and "Please reason step by step, and put your final answer within \\boxed{}." after the problem
  (the tutor's own cot prompt asks for "The answer is X." lines instead);
- ``three-shot``: the same system prompt, then three worked problems as earlier turns of the conversation, each
  answered by a commented program written for this benchmark (problems from the far end of the seeded order, 7441,
  7452 and 7457, never in any sample). The prefix is the same for every problem, so llama.cpp keeps its KV cache and
  only the first problem pays for reading it.

Per-problem rows go to bench/results/code_prompts.jsonl (a rerun resumes); the summary (accuracy, paired wins and
losses against zero-shot, median seconds and tokens) to bench/results/code_prompts.json.

  python bench/experiments/code_prompts.py --variants zero-shot,three-shot --start 235 --n 100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/: the shared scripts
RESULTS = Path(__file__).parents[1] / "results"
ROWS, OUT = RESULTS / "code_prompts.jsonl", RESULTS / "code_prompts.json"
MODEL = "bundled:qwen2.5-coder-1.5b"

SHOTS = (
    ("James decides to cut down some trees.  In the first 2 days, he cuts down 20 trees each day.  For the next 3 "
     "days his 2 brothers help him cut down trees.  They cut 20% fewer trees per day than James.  How many total "
     "trees were cut down?",
     "```python\n"
     "# James cuts 20 trees a day for the first 2 days, alone\n"
     "james_per_day = 20\n"
     "first_days = 2 * james_per_day\n"
     "\n"
     "# Each brother cuts 20% fewer trees a day than James: 80% of 20\n"
     "brother_per_day = james_per_day * (1 - 0.20)\n"
     "\n"
     "# For the next 3 days James works with his 2 brothers, so 3 people cut each day\n"
     "per_day_together = james_per_day + 2 * brother_per_day\n"
     "next_days = 3 * per_day_together\n"
     "\n"
     "# The question asks for all trees cut over the 5 days\n"
     "total = first_days + next_days\n"
     "print(round(total))\n"
     "```"),
    ("A basketball team played 40 games and won 70% of the games. It still had 10 games to play. How many games can "
     "they lose to win 60% of their games?",
     "```python\n"
     "# Games won so far: 70% of the 40 games played\n"
     "won = 40 * 70 / 100\n"
     "\n"
     "# The season has 40 played + 10 still to play = 50 games in all\n"
     "season = 40 + 10\n"
     "\n"
     "# To win 60% of the season they need 60% of 50 wins\n"
     "wins_needed = season * 60 / 100\n"
     "\n"
     "# Wins still needed come from the 10 remaining games; the rest of those games they can lose\n"
     "more_wins = wins_needed - won\n"
     "can_lose = 10 - more_wins\n"
     "print(round(can_lose))\n"
     "```"),
    ("Melony makes $21 of profit every time she sells 3 shirts and four times as much profit when she sells two "
     "pairs of sandals. How much profit will she make if she sells 7 shirts and 3 pairs of sandals?",
     "```python\n"
     "from fractions import Fraction\n"
     "\n"
     "# $21 profit for 3 shirts, so the profit on one shirt is 21 / 3\n"
     "per_shirt = Fraction(21, 3)\n"
     "\n"
     "# Two pairs of sandals make four times as much as 3 shirts: 4 * 21, so one pair makes half of that\n"
     "per_pair = Fraction(4 * 21, 2)\n"
     "\n"
     "# She sells 7 shirts and 3 pairs of sandals\n"
     "profit = 7 * per_shirt + 3 * per_pair\n"
     "print(profit)\n"
     "```"),
)


QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
BOXED = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
MODES = {"zero-shot": "code", "three-shot": "code", "cot-boxed": "cot"}


def context(variant: str):
    from mathtune.tasks.tutor import WorkedExamples

    if variant in ("zero-shot", "cot-boxed"):
        return None
    if variant == "three-shot":
        return WorkedExamples(SHOTS)
    raise SystemExit(f"unknown variant {variant!r}: choose {', '.join(MODES)}")


@contextlib.contextmanager
def patched_cot(boxed: bool):
    """cot answers under the Qwen system prompt instead of the tutor's (solve's PROMPTS table, for this run)."""
    from mathtune.models.solving import prompts

    saved = prompts.PROMPTS["cot"]
    if boxed:
        prompts.PROMPTS["cot"] = (QWEN_SYSTEM, None)
    try:
        yield
    finally:
        prompts.PROMPTS["cot"] = saved


def run(variants: list[str], start: int, n: int) -> None:
    from common import solve_named as solve
    from mathtune.metrics.answers import answers_match
    from mathtune.models.generate import load_tutor
    from tutor_modes import problems

    for v in variants:
        context(v)
    pairs = problems("gsm8k/train.jsonl", start + n, True)
    generator = load_tutor(MODEL, "auto")
    done = {(r["i"], r["v"]) for r in map(json.loads, ROWS.open())} if ROWS.exists() else set()
    for i in range(start, start + n):  # variants in turn, problem by problem: a run cut short stays paired
        for v in variants:
            if (i, v) in done:
                continue
            t = time.perf_counter()
            question, mode = pairs.questions[i], MODES[v]
            if v == "cot-boxed":
                question += BOXED
            with patched_cot(v == "cot-boxed"):
                [s] = solve(generator, [question], mode, contexts=[context(v)], max_new_tokens=512)
            ok = bool(s.final_answer and not s.refused and answers_match(s.final_answer, pairs.answers[i]))
            row = {"i": i, "v": v, "final": s.final_answer, "gold": pairs.answers[i], "ok": ok, "tok": s.new_tokens,
                   "ran": s.program_ok, "att": s.attempts, "sec": round(time.perf_counter() - t, 2), "text": s.answer}
            with ROWS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("i", "v", "final", "gold", "ok", "tok", "sec")}), flush=True)


def summary(start: int, n: int) -> dict:
    rows = [r for r in map(json.loads, ROWS.open()) if start <= r["i"] < start + n]
    by = {}
    for r in rows:
        by.setdefault(r["v"], {})[r["i"]] = r
    base = by.get("zero-shot", {})
    out = {"model": MODEL, "data": f"gsm8k/train.jsonl seeded order {start}..{start + n - 1}", "variants": []}
    for v, got in by.items():
        common = sorted(set(got) & set(base))
        out["variants"].append({
            "variant": v, "n": len(got), "answer_accuracy": round(sum(r["ok"] for r in got.values()) / len(got), 3),
            "median_seconds": round(statistics.median(r["sec"] for r in got.values()), 1),
            "median_new_tokens": statistics.median(r["tok"] for r in got.values()),
            "program_ran_rate": round(sum(bool(r["ran"]) for r in got.values()) / len(got), 3),
            "paired_with_zero_shot": len(common),
            "right_only_here": sum(got[i]["ok"] and not base[i]["ok"] for i in common),
            "right_only_zero_shot": sum(base[i]["ok"] and not got[i]["ok"] for i in common)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="zero-shot,three-shot")
    ap.add_argument("--start", type=int, default=235)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--summary", action="store_true", help="only rewrite the summary from the rows")
    args = ap.parse_args()
    if not args.summary:
        run(args.variants.split(","), args.start, args.n)
    result = summary(args.start, args.n)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
