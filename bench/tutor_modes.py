"""Tutor solving modes on pretrained models, without training: answer accuracy (math-verify), seconds per problem,
tokens/s, program-ran rate, vote agreement, refusal rates.

    python bench/tutor_modes.py                          # writes bench/results/tutor_modes.json
    python bench/tutor_modes.py --gsm8k 200 --math 100 --modes cot program --vote-gsm8k 200 --minutes 90

Problems: a fixed sample of ``../shared/data/gsm8k/train.jsonl`` (seeded shuffle, seed 0; the first N) and the
first M of MATH-500. Models: ``bundled:qwen2.5-coder-1.5b`` (llama.cpp when installed) and ``bundled:smollm2``.
The machine is shared with nothing else while it runs; OMP_WAIT_POLICY=PASSIVE.

Resumable: each problem's result is appended to ``--cache`` (JSONL, one line per problem, keyed by model, backend,
mode, data set, problem number, the problem's text and a hash of the prompts and settings that shape the answer),
and a later run reuses every line that still matches, so the full benchmark (hours on 2 cores) can be run a piece
at a time: ``--minutes`` stops starting new problems after that long, and each run's figures are over the first
``n`` problems done (``n_target`` is what was asked for). Each line keeps the 1-minute load average when the
problem started, so a timing taken on a busy machine can be seen.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

sys.path.insert(0, str(REPO / "bench"))
from common import solve_named  # noqa: E402
from mathtune.config import TutorConfig  # noqa: E402
from mathtune.data.readers import read_table  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.metrics.answers import answers_match  # noqa: E402
from mathtune.models.generate import load_tutor  # noqa: E402
from mathtune.models.solving.prompts import (  # noqa: E402
    CODE_PREFIX,
    CODE_SYSTEM,
    PROGRAM_STOPS,
    PROGRAM_SYSTEM,
    REPAIR_REQUEST,
)
from mathtune.models.solving.rounds import decides, sample_modes  # noqa: E402
from mathtune.models.solving.running import TOOL_CALLS  # noqa: E402
from mathtune.models.solving.values import Solution  # noqa: E402
from mathtune.paths import resolve_data_path  # noqa: E402
from mathtune.tasks.tutor import REFUSAL_EVAL, Pairs, pairs_from_frame  # noqa: E402
from mathtune.train.loop import peak_rss_mb  # noqa: E402
from mathtune.train.tutor_eval import solution_metrics  # noqa: E402

VOTE_K = 5
VOTE_PROGRAM = "vote(program)"  # a vote over program-mode samples (mode "vote" is over cot)
VOTE_MIXED = "vote(mixed)"      # cot and program samples in turn, one vote each
# Adaptive consistency, adaptive(<base>): the greedy answer (in the base's first mode) and one sample first, three
# more only when they disagree (solve's agree_first); a tie goes to the greedy answer's group, and a vote with no two
# alike to a greedy program-mode answer (the strongest single answer: it may also choose prose; for program the
# first round's own). Over program; over code (the program alone, explained in comments: about half the tokens);
# and code,program: a first round of code answers, a second of program answers (solve's then_over).
# code,2of3: the greedy code answer and two code samples first, ended when two of the three agree (solve's
# first_round); otherwise four more (k = 7), a split going to the greedy code answer (no answer asked again).
ADAPTIVE_OVER = ("program", "code", "code,program", "code,2of3")
AGREE_FIRST = 2
VOTE_ADAPTIVE = "adaptive(program)"
ADAPTIVE = {f"adaptive({over})": {"agree_first": AGREE_FIRST, "tiebreak": "program",
                                  "then_over": over.split(",")[1] if "," in over else None}
            for over in ADAPTIVE_OVER[:3]}
ADAPTIVE["adaptive(code,2of3)"] = {"agree_first": 2, "first_round": 3, "k": 7, "tiebreak": "code"}
VOTE_OVER = {"vote": "cot", VOTE_PROGRAM: "program", VOTE_MIXED: "mixed",
             **{f"adaptive({over})": over.split(",")[0] for over in ADAPTIVE_OVER}}


def save_run(out: Path, run: str, results: dict) -> None:
    """``results`` as run ``run`` of the results file (its other runs kept)."""
    kept = json.loads(out.read_text()) if out.is_file() else {}
    by_run = kept.get("by_run", {})
    by_run[run] = results
    write_json(out, {"benchmark": "tutor_modes", "note": kept.get("note", "each run of bench/tutor_modes.py, by its "
                                                                             "--run name"), "by_run": by_run})


def problems(name: str, n: int, shuffle: bool) -> Pairs:
    path = resolve_data_path(name)
    pairs = pairs_from_frame(read_table(path), TutorConfig(), str(path))
    order = list(range(len(pairs.questions)))
    if shuffle:
        random.Random(0).shuffle(order)
    order = order[:n]
    return Pairs([pairs.questions[i] for i in order], [pairs.responses[i] for i in order],
                 [pairs.answers[i] for i in order], f"{path} ({n})")


def head(pairs: Pairs, n: int, source: str) -> Pairs:
    """The first ``n`` problems of ``pairs``."""
    return Pairs(*(getattr(pairs, f)[:n] for f in ("questions", "responses", "answers")), source)


def prompt_hash(generator, mode: str, max_new_tokens: int) -> str:
    """What shapes an answer besides the model and the problem: a change invalidates the cached lines."""
    parts = [generator.system_prompt, json.dumps(generator.tutor_prompt.to_dict(), sort_keys=True),
             repr(list(getattr(generator, "stops", ()))), str(max_new_tokens), mode]
    if mode in ("program", VOTE_PROGRAM, VOTE_MIXED, VOTE_ADAPTIVE):
        parts += [PROGRAM_SYSTEM, repr(PROGRAM_STOPS), REPAIR_REQUEST, "repairs=1"]
    if mode == "code" or VOTE_OVER.get(mode) == "code":
        parts += [CODE_SYSTEM, CODE_PREFIX, repr(PROGRAM_STOPS), REPAIR_REQUEST, "repairs=1"]
    if mode in VOTE_OVER:  # up to k samples at solve()'s default temperature and seed, stopped once decided
        parts.append(f"k={ADAPTIVE.get(mode, {}).get('k', VOTE_K)} early-stop")
    if mode in ADAPTIVE:
        tiebreak, then_over = ADAPTIVE[mode]["tiebreak"], ADAPTIVE[mode].get("then_over")
        parts.append(f"agree_first={AGREE_FIRST} tiebreak=" +
                     ("greedy" if tiebreak == sample_modes(VOTE_OVER[mode], 1)[0] else tiebreak))
        if ADAPTIVE[mode].get("first_round"):
            parts.append(f"first_round={ADAPTIVE[mode]['first_round']}")
        if then_over:
            parts += [f"then_over={then_over}", PROGRAM_SYSTEM]
    if getattr(generator, "engine", None) == "xllamacpp":  # a new engine: batched samples, tool-integrated cot
        parts += ["xllamacpp", "batched" if generator.parallel else "in-turn", f"tools={TOOL_CALLS}"]
        if mode in VOTE_OVER:  # the batch is cut off once its finished samples decide the vote
            parts.append("decided-early")
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Cache:
    """Per-problem results, appended as they are made (a killed run loses at most the problem in progress). A
    ``.gz`` path is gzip-compressed (each append its own gzip member): the answers' text is most of its size."""

    def __init__(self, path: Path):
        self.path, self.rows = path, {}
        if path.is_file():
            try:
                with self._open("rt") as f:
                    for line in f:
                        if line.strip():
                            row = json.loads(line)
                            self.rows[self.key(row)] = row
            except (EOFError, gzip.BadGzipFile, json.JSONDecodeError) as err:  # a run killed mid-write
                print(f"{path}: kept the {len(self.rows)} rows before a cut-off line ({err})", file=sys.stderr)

    def _open(self, how: str):
        return gzip.open(self.path, how) if self.path.suffix == ".gz" else self.path.open(how[0])

    @staticmethod
    def key(row: dict) -> tuple:
        return tuple(row[k] for k in ("model", "backend", "mode", "data", "i", "question", "prompt"))

    def get(self, **key):
        return self.rows.get(self.key(key))

    def add(self, row: dict) -> None:
        self.rows[self.key(row)] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._open("at") as f:
            f.write(json.dumps(row) + "\n")


def solution_from_row(row: dict) -> Solution:
    return Solution(row["output"], row["final"], row["method"], row["refused"], program_ok=row["program_ok"],
                    confidence=row["confidence"], samples=row["samples"],
                    k=row.get("k", VOTE_K if row["mode"].startswith("vote") else 1), attempts=row.get("attempts", 1),
                    new_tokens=row["new_tokens"],
                    seconds=row["seconds"])


def run_problems(generator, model: str, mode: str, data: str, questions: list[str], cache: Cache,
                 max_new_tokens: int, deadline: float, answers=None) -> list[Solution]:
    """Solutions of the first problems of ``questions`` that are cached or can be made before ``deadline``
    (a prefix: the figures are over the first n)."""
    prompt = prompt_hash(generator, mode, max_new_tokens)
    solutions = []
    for i, question in enumerate(questions):
        key = dict(model=model, backend=generator.backend, mode=mode, data=data, i=i, question=_sha(question),
                   prompt=prompt)
        row = cache.get(**key)
        if row is None:
            if time.time() > deadline:
                break
            load = os.getloadavg()[0]
            over = VOTE_OVER.get(mode, "cot")
            base_mode, budget = ("vote" if mode in VOTE_OVER else mode, max_new_tokens) if data != "offtopic" \
                else (mode if mode in ("cot", "program", "code") else "cot", 48 if mode == "cot" else 160)
            # the vote without its tie-break: with_tiebreak() adds it from program mode's rows
            adaptive = ADAPTIVE.get(mode, {})
            [s] = solve_named(generator, [question], base_mode, None, budget, base=over,
                              **{"k": VOTE_K, "tiebreak": None, **adaptive})
            gold = answers[i] if answers else None
            row = {**key, "final": s.final_answer, "gold": gold,
                   "correct": bool(gold is not None and s.final_answer is not None and answers_match(s.final_answer, gold)),
                   "method": s.method, "refused": s.refused, "program_ok": s.program_ok, "confidence": s.confidence,
                   "samples": s.samples, "k": s.k, "attempts": s.attempts, "new_tokens": s.new_tokens, "seconds": round(s.seconds, 3),
                   "load1": round(load, 2), "output": s.answer, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            cache.add(row)
            print(json.dumps({k: row[k] for k in ("mode", "data", "i", "final", "gold", "correct", "seconds")}),
                  flush=True)
        solutions.append(solution_from_row(row))
    return solutions


def with_tiebreak(votes: list[Solution], decider: list[Solution]) -> list[Solution]:
    """What ``solve(..., "vote", tiebreak=mode)`` answers, from the vote's and that mode's cached per-problem results:
    where no two samples agreed, the greedy answer of the other mode (deterministic on llama.cpp, so the same as a
    fresh call), with the seconds and tokens of both."""
    out = []
    for v, d in zip(votes, decider):
        ran = v.agreeing <= 1 and v.samples > 1
        seconds, tokens = v.seconds + (d.seconds if ran else 0), v.new_tokens + (d.new_tokens if ran else 0)
        if ran and decides(d, "program"):
            out.append(Solution(d.answer, d.final_answer, f"{v.method}+{d.method}", False,
                                confidence=v.confidence, samples=v.samples, k=v.k, new_tokens=tokens, seconds=seconds))
        else:
            out.append(Solution(v.answer, v.final_answer, v.method, v.refused, confidence=v.confidence,
                                samples=v.samples, k=v.k, new_tokens=tokens, seconds=seconds))
    return out


def entry(model: str, backend: str, mode: str, name: str, solutions: list[Solution], pairs: Pairs,
          refusals: list[str], cache: Cache, wall: float, load_seconds: float, n_target: int | None = None) -> dict:
    """One row of the results: the metrics of the first ``len(solutions)`` problems of ``pairs``."""
    done = Pairs(*(getattr(pairs, f)[: len(solutions)] for f in ("questions", "responses", "answers")), pairs.source)
    metrics = solution_metrics(solutions, done, refusals if len(refusals) == len(REFUSAL_EVAL) else [], mode)
    cached = mode.split("+")[0]
    row = {"model": model, "backend": backend, "mode": mode, "data": name,
           "n_target": n_target or len(pairs.questions), "wall_seconds": round(wall, 1),
           "load_seconds": round(load_seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
           "max_load1": max(r["load1"] for r in cache.rows.values() if r["model"] == model and
                            r["mode"] == cached and r["data"] == name and r["i"] < len(solutions)),
           "programs_corrected": sum(bool(s.program_ok) and s.attempts > 1 for s in solutions),
           **{k: v for k, v in metrics.items() if not isinstance(v, dict)}}
    if mode in VOTE_OVER:  # is the agreement a confidence worth showing? accuracy by votes for the answer
        by: dict = {}
        for s, gold in zip(solutions, done.answers):
            top = by.setdefault(str(s.agreeing), {"n": 0, "correct": 0})
            top["n"] += 1
            top["correct"] += bool(gold is not None and s.final_answer is not None and answers_match(s.final_answer, gold))
        row["accuracy_by_agreeing_samples"] = dict(sorted(by.items()))
    print(json.dumps({k: row[k] for k in ("model", "mode", "data", "n", "n_target", "answer_accuracy",
                                          "seconds_per_problem", "median_seconds_per_problem", "refusal_rate", "false_refusal_rate")}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["bundled:qwen2.5-coder-1.5b", "bundled:smollm2"])
    parser.add_argument("--modes", nargs="*", default=["cot", "program"])
    parser.add_argument("--gsm8k", type=int, default=200)
    parser.add_argument("--math", type=int, default=100)
    parser.add_argument("--math-modes", nargs="*", default=None, help="modes on MATH-500 (default: --modes)")
    parser.add_argument("--vote-gsm8k", type=int, default=0, help=f"problems for vote (k={VOTE_K}) on the first model")
    parser.add_argument("--vote-program-gsm8k", type=int, default=0,
                        help=f"problems for a vote over programs (k={VOTE_K}) on the first model")
    parser.add_argument("--vote-mixed-gsm8k", type=int, default=0,
                        help=f"problems for a mixed vote (cot and program samples, k={VOTE_K}) on the first model")
    parser.add_argument("--adaptive-gsm8k", type=int, default=0,
                        help=f"problems for adaptive consistency (agree_first={AGREE_FIRST}, k={VOTE_K}) on the "
                             "first model, over each of --adaptive-over")
    parser.add_argument("--adaptive-math", type=int, default=0,
                        help="problems of MATH-500 (its first, of --math) for each --adaptive-over on the first model")
    parser.add_argument("--adaptive-over", nargs="*", default=["program"], choices=ADAPTIVE_OVER)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="start no new problem after this long")
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "tutor_modes_problems.jsonl.gz")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tutor_modes.json",
                        help="the results file: every run is kept in it under its --run name")
    parser.add_argument("--run", default="tutor_modes", help="this run's name in --out (another name keeps the others)")
    args = parser.parse_args()
    deadline = time.time() + 60 * args.minutes if args.minutes is not None else float("inf")
    cache = Cache(args.cache)
    sets = {"gsm8k": problems("gsm8k/train.jsonl", args.gsm8k, True)}
    if args.math:
        sets["math500"] = problems("math-hendrycks/math500_test.jsonl", args.math, False)
    results = {"benchmark": "tutor_modes", "cpus": os.cpu_count(), "cache": str(args.cache.relative_to(REPO))
               if args.cache.is_relative_to(REPO) else str(args.cache), "runs": []}
    for model in args.models:
        start = time.perf_counter()
        generator = load_tutor(model, "auto", threads=args.threads)
        load_seconds = time.perf_counter() - start
        runs = [(mode, name, pairs) for name, pairs in sets.items()
                for mode in (args.math_modes if name == "math500" and args.math_modes is not None else args.modes)]
        for mode, n in (("vote", args.vote_gsm8k), (VOTE_PROGRAM, args.vote_program_gsm8k),
                        (VOTE_MIXED, args.vote_mixed_gsm8k),
                        *((f"adaptive({base})", args.adaptive_gsm8k) for base in args.adaptive_over)):
            if n and model == args.models[0]:
                runs.append((mode, "gsm8k", head(sets["gsm8k"], n, f"gsm8k {mode}")))
        for base in args.adaptive_over if args.adaptive_math and "math500" in sets and model == args.models[0] else ():
            runs.append((f"adaptive({base})", "math500", head(sets["math500"], args.adaptive_math,
                                                              f"math500 adaptive({base})")))
        done: dict = {}
        for mode, name, pairs in runs:
            t = time.perf_counter()
            solutions = run_problems(generator, model, mode, name, pairs.questions, cache, args.max_new_tokens,
                                     deadline, pairs.answers)
            refusals = []
            if name == "gsm8k" and mode not in VOTE_OVER:
                refusals = [s.answer for s in run_problems(generator, model, mode, "offtopic", list(REFUSAL_EVAL),
                                                           cache, args.max_new_tokens, deadline)]
            if not solutions:
                continue
            done[mode, name] = solutions
            results["runs"].append(entry(model, generator.backend, mode, name, solutions, pairs, refusals, cache,
                                         time.perf_counter() - t, load_seconds))
            save_run(args.out, args.run, results)
        if ("vote", "gsm8k") in done and ("program", "gsm8k") in done:  # the vote with the program as tie-break
            votes = done["vote", "gsm8k"]
            solutions = with_tiebreak(votes, done["program", "gsm8k"][: len(votes)])
            results["runs"].append(entry(model, generator.backend, "vote+program", "gsm8k", solutions, sets["gsm8k"],
                                         [], cache, 0.0, load_seconds, n_target=args.vote_gsm8k))
            save_run(args.out, args.run, results)
        del generator
    save_run(args.out, args.run, results)


if __name__ == "__main__":
    main()
