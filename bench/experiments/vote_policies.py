"""Which vote to run, chosen on problems outside the benchmark's sample: draw each answer a policy could use once
(a bank), then replay the policies over the bank.

For each dev problem (GSM8K train.jsonl in the benchmark's seeded order, from --start: the benchmark's sample is
the first 200) the bank holds the greedy code answer, the greedy cot answer and six code samples (temperature 0.7,
one batch), each with its final answer, whether it is right and its new tokens. A policy (a first round, the
agreement that ends it, the answers drawn after it) is replayed on those answers; its seconds are modelled from
the tokens each round decodes and the engine's decode step at each batch size, measured here on the same model
(--steps) plus a fixed cost a round (prompt and sandbox, --round-seconds). The modelled seconds rank policies;
bench/tutor_modes.py then measures the chosen one for real on the benchmark's sample.

  python bench/experiments/vote_policies.py --draw 80            # add problems to bench/results/vote_bank.jsonl (resumes)
  python bench/experiments/vote_policies.py --steps              # decode seconds a step at batch 1..6 (xllamacpp, 2 threads)
  python bench/experiments/vote_policies.py                      # replay: bench/results/vote_policies.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/: the shared scripts
RESULTS = Path(__file__).parents[1] / "results"
BANK, STEPS, OUT = RESULTS / "vote_bank.jsonl", RESULTS / "vote_steps.json", RESULTS / "vote_policies.json"
# The second-round bank: the default vote's real first round on each dev problem and, where fewer than 2 of its 3
# answers agree, four samples in each mode a second round could draw (code, cot, program; one batch each).
SECOND = RESULTS / "vote_second.jsonl"
SECOND_MODES = ("code", "cot", "program")
SECOND_K = 4
MODEL = "bundled:qwen2.5-coder-1.5b"
SAMPLES = 6


def answer_row(s, gold: str) -> dict:
    """One answer as the banks keep it: its final answer, whether it is right, its tokens, whether its program ran
    and in how many attempts."""
    from mathtune.metrics.answers import answers_match

    return {"final": s.final_answer, "ok": bool(s.final_answer and not s.refused and answers_match(s.final_answer, gold)),
            "tok": s.new_tokens, "ran": s.program_ok, "att": s.attempts}


def draw(start: int, n: int) -> None:
    from common import solve_named as solve
    from mathtune.models.generate import load_tutor
    from mathtune.models.solving.rounds import drawn_together as _drawn_together
    from tutor_modes import problems

    pairs = problems("gsm8k/train.jsonl", start + n, True)
    generator = load_tutor(MODEL, "auto")
    done = {(r["i"], r["v"]) for r in map(json.loads, BANK.open())} if BANK.exists() else set()

    def reading(s, i):
        return answer_row(s, pairs.answers[i])

    for i in range(start, start + n):
        for v in ("code", "cot", f"code{SAMPLES}"):
            if (i, v) in done:
                continue
            t = time.perf_counter()
            if v == "code" or v == "cot":
                [s] = solve(generator, [pairs.questions[i]], v, max_new_tokens=512)
                row = reading(s, i)
            else:
                drawn = _drawn_together(generator, pairs.questions[i], None, 512, SAMPLES, "code", 0.7, 0, 1, False)[0]
                row = {"samples": [reading(s, i) for s in drawn]}
            row.update(i=i, v=v, sec=round(time.perf_counter() - t, 2))
            with BANK.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def draw_second(start: int, n: int) -> None:
    """For each dev problem the default vote's first round (greedy code and two code samples, drawn as solve draws
    them) and, when fewer than two agree, SECOND_K samples of each second-round mode, with the seeds the vote would
    give them."""
    from mathtune.models.generate import load_tutor
    from mathtune.models.solving.rounds import drawn_together as _drawn_together
    from mathtune.models.solving.vote import _agreeing, _first_round
    from tutor_modes import problems

    pairs = problems("gsm8k/train.jsonl", start + n, True)
    generator = load_tutor(MODEL, "auto")
    done = {r["i"] for r in map(json.loads, SECOND.open())} if SECOND.exists() else set()

    def reading(s, i):
        return {**answer_row(s, pairs.answers[i]), "mode": str(s.method)}

    for i in range(start, start + n):
        if i in done:
            continue
        t = time.perf_counter()
        first = _first_round(generator, pairs.questions[i], None, 512, 3, "code", 0.7, 0, 1)[0]
        row = {"i": i, "first": [reading(s, i) for s in first], "agreed": _agreeing(first) >= 2,
               "sec_first": round(time.perf_counter() - t, 2)}
        if not row["agreed"]:
            for mode in SECOND_MODES:
                t = time.perf_counter()
                drawn = _drawn_together(generator, pairs.questions[i], None, 512, SECOND_K, mode, 0.7, 3, 1, False,
                                        modes=[mode] * SECOND_K)[0]
                row[mode] = [reading(s, i) for s in drawn]
                row[f"sec_{mode}"] = round(time.perf_counter() - t, 2)
        with SECOND.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k.startswith(("i", "agreed", "sec"))}), flush=True)


STEP_QUESTION = "Natalia sold clips to 48 of her friends in April, and half as many in May. How many in all?"


def decode_step(generator, n: int, tokens: int) -> tuple[float, int]:
    """Seconds a decode step with ``n`` sequences of one prompt, ``tokens`` steps (end of sequence ignored), on a
    llama.cpp generator; and the tokens made."""
    body = generator._body(generator._chat(STEP_QUESTION, None, None), tokens, 0.7, 1, (), ignore_eos=True, n=n)
    start = time.perf_counter()
    generations = generator._complete(body)
    return (time.perf_counter() - start) / tokens, sum(g.new_tokens for g in generations)


def steps(tokens: int = 200) -> None:
    """Seconds a decode step with 1..SAMPLES sequences of one prompt (end of sequence ignored)."""
    from mathtune.models.generate import load_tutor

    generator = load_tutor(MODEL, "auto")
    out = {}
    for n in range(1, SAMPLES + 1):
        step, made = decode_step(generator, n, tokens)
        out[n] = {"seconds_a_step": round(step, 4), "tokens_per_s": round(made / (step * tokens), 1)}
        print(n, out[n], flush=True)
    STEPS.write_text(json.dumps({"model": MODEL, "threads": os.cpu_count(), "tokens": tokens, "batch": out},
                                indent=1) + "\n")


def replay(round_seconds: float) -> dict:
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))
    from mathtune.metrics.answers import answers_match
    from mathtune.models.solving.rounds import answer_groups as _answer_groups
    from mathtune.models.solving.values import Solution

    step = {int(n): v["seconds_a_step"] for n, v in json.loads(STEPS.read_text())["batch"].items()}
    problems: dict[int, dict] = {}
    for row in map(json.loads, BANK.open()):
        problems.setdefault(row["i"], {})[row["v"]] = row
    problems = {i: p for i, p in problems.items() if len(p) == 3}

    def batch(answers) -> float:  # sequences that finish leave the batch
        lengths, t, before = sorted(a["tok"] for a in answers), 0.0, 0
        for j, length in enumerate(lengths):
            t += (length - before) * step[min(len(lengths) - j, max(step))]
            before = length
        return t + round_seconds

    # the vote's own rules (models/solving/rounds.py): answers grouped by math-verify equivalence, the largest group in the
    # order the answers came (the greedy answer first, so a tie goes to it), no two alike: the greedy answer
    def as_solution(a: dict) -> Solution:
        s = Solution("", a["final"], "program", new_tokens=a["tok"])
        s.row = a
        return s

    def groups(answers):
        return [[s.row for s in g] for g in _answer_groups([as_solution(a) for a in answers])]

    def same(a, b) -> bool:
        return a is not None and b is not None and answers_match(a, b)

    def vote(answers, greedy):
        gs = groups(answers)
        return max(gs, key=len)[0] if gs and max(len(g) for g in gs) > 1 else greedy

    def adaptive(p, first: int, agree: int, k: int):
        code, samples = p["code"], p[f"code{SAMPLES}"]["samples"]
        one = [code, *samples[:first - 1]]
        t = batch(one)
        if max((len(g) for g in groups(one)), default=0) >= agree:
            return vote(one, code), t, True
        rest = samples[first - 1:k - 1]
        return vote(one + rest, code), t + batch(rest), False

    def code_and_cot(p, k: int):  # greedy code and greedy cot together; on disagreement k code samples
        code, cot, samples = p["code"], p["cot"], p[f"code{SAMPLES}"]["samples"]
        t = batch([code, cot])
        if same(code["final"], cot["final"]):
            return code, t, True
        return vote([code, cot, *samples[:k]], code), t + batch(samples[:k]), False

    policies = {"greedy code": lambda p: (p["code"], batch([p["code"]]), True),
                "greedy cot": lambda p: (p["cot"], batch([p["cot"]]), True),
                **{f"vote of {k} code (greedy + {k - 1} samples at once)":
                   (lambda p, k=k: (vote([p["code"], *p[f"code{SAMPLES}"]["samples"][:k - 1]], p["code"]),
                                    batch([p["code"], *p[f"code{SAMPLES}"]["samples"][:k - 1]]), True))
                   for k in (3, 5, 7)},
                **{f"adaptive: {agree} of the first {first} agree, else up to {k}":
                   (lambda p, first=first, agree=agree, k=k: adaptive(p, first, agree, k))
                   for first, agree, k in ((2, 2, 5), (2, 2, 7), (3, 2, 5), (3, 2, 7), (3, 3, 7), (4, 2, 7),
                                           (4, 3, 7), (5, 3, 7))},
                **{f"greedy code and cot agree, else {k} code samples":
                   (lambda p, k=k: code_and_cot(p, k)) for k in (3, 6)}}
    rows = []
    for name, policy in policies.items():
        results = [policy(p) for p in problems.values()]
        rows.append({"policy": name, "n": len(results),
                     "answer_accuracy": round(sum(r[0]["ok"] for r in results) / len(results), 4),
                     "ended_in_round_one": round(sum(r[2] for r in results) / len(results), 4),
                     "modelled_median_seconds": round(statistics.median(r[1] for r in results), 1),
                     "modelled_mean_seconds": round(statistics.mean(r[1] for r in results), 1)})
    measured = {v: statistics.median(p[v]["sec"] for p in problems.values()) for v in ("code", "cot")}
    second = second_rounds(batch, vote) if SECOND.exists() else None
    return {"model": MODEL, "problems": sorted(problems), "round_seconds": round_seconds, "policies": rows,
            **({"second_round": second} if second else {}),
            "check": {"greedy code median seconds, measured": measured["code"],
                      "greedy cot median seconds, measured": measured["cot"]}}


def second_rounds(batch, vote) -> dict:
    """The default first round (2 of 3 code answers agree), then each second round the bank holds, replayed: all
    seven answers vote (a tie goes to the greedy code answer), or the second round's four alone."""
    rows = [json.loads(line) for line in SECOND.open()]
    rows = [r for r in rows if r["agreed"] or all(m in r for m in SECOND_MODES)]
    def mixed(r):  # sample_modes("mixed", 7)[3:]
        return [r["program"][0], r["cot"][0], r["program"][1], r["cot"][1]]

    drawn = {m: (lambda r, m=m: r[m]) for m in SECOND_MODES}
    policies = {**{f"then {SECOND_K} {m}, all 7 vote": (drawn[m], False) for m in SECOND_MODES},
                f"then {SECOND_K} mixed (2 program, 2 cot), all 7 vote": (mixed, False),
                **{f"then {SECOND_K} {m}, they vote alone": (drawn[m], True) for m in ("cot", "program")}}
    out = []
    for name, (rest_of, alone) in policies.items():
        results = []
        for r in rows:
            first, greedy = r["first"], r["first"][0]
            if r["agreed"]:
                results.append((vote(first, greedy), batch(first), True))
                continue
            rest = rest_of(r)
            results.append((vote(rest if alone else first + rest, greedy), batch(first) + batch(rest), False))
        two = [res for res in results if not res[2]]
        out.append({"policy": name, "n": len(results),
                    "answer_accuracy": round(sum(res[0]["ok"] for res in results) / len(results), 4),
                    "went_to_round_two": len(two), "right_in_round_two": sum(res[0]["ok"] for res in two),
                    "modelled_median_seconds": round(statistics.median(res[1] for res in results), 1),
                    "modelled_mean_seconds": round(statistics.mean(res[1] for res in results), 1)})
    disagreed = [r for r in rows if not r["agreed"]]
    greedy = {m: sum(any(a["ok"] for a in r[m]) for r in disagreed) for m in SECOND_MODES}
    return {"bank": SECOND.name, "problems": [r["i"] for r in rows], "policies": out,
            "round_two_problems_with_a_right_sample": greedy,
            "measured_median_seconds": {
                "first round": statistics.median(r["sec_first"] for r in rows),
                **{f"{SECOND_K} {m}": statistics.median(r[f"sec_{m}"] for r in disagreed) for m in SECOND_MODES}}
            if disagreed else {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draw", type=int, default=0, help="dev problems to add to the bank")
    parser.add_argument("--start", type=int, default=200, help="first dev problem (the benchmark uses 0-199)")
    parser.add_argument("--draw-second", type=int, default=0,
                        help="dev problems to add to the second-round bank (from --start)")
    parser.add_argument("--steps", action="store_true", help="measure the decode step at each batch size")
    parser.add_argument("--round-seconds", type=float, default=2.0,
                        help="fixed seconds a round: the prompt and the sandbox")
    args = parser.parse_args()
    if args.draw:
        draw(args.start, args.draw)
    if args.draw_second:
        draw_second(args.start, args.draw_second)
    if args.steps:
        steps()
    if not args.draw and not args.steps and not args.draw_second:
        result = replay(args.round_seconds)
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        for row in result["policies"]:
            print(f"{row['policy']:55s} {row['answer_accuracy']:.3f}  round one {row['ended_in_round_one']:.2f}  "
                  f"median {row['modelled_median_seconds']:5.1f} s  mean {row['modelled_mean_seconds']:5.1f} s")
        print(result["check"])
        for row in result.get("second_round", {}).get("policies", []):
            print(f"{row['policy']:55s} {row['answer_accuracy']:.3f}  round two {row['right_in_round_two']}/"
                  f"{row['went_to_round_two']}  median {row['modelled_median_seconds']:5.1f} s  "
                  f"mean {row['modelled_mean_seconds']:5.1f} s")


if __name__ == "__main__":
    main()
