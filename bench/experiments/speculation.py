"""Does llama.cpp's draftless speculative decoding make the bundled tutor's answers faster on this CPU?

The n-gram kinds (ngram_simple, ngram_mod) draft the next tokens from repeats earlier in the prompt or answer (a
code answer repeats its variable names) and the model checks a draft in one batch. On a GPU checking a batch costs
about what one token does; on 2 CPU cores a batch of n costs more (bench/results/vote_steps.json), so it pays only
when most drafted tokens are accepted. Each kind is a separate engine loaded side by side; every problem is answered
greedily in code mode by each in turn (so machine noise falls on all alike), and the JSON reports each kind's total
seconds as a ratio to no speculation, its tokens, and on how many problems its answer differs from the plain engine's
(greedy answers should not change; a verified batch is computed in another order, so a few can).

  python bench/experiments/speculation.py --n 8            # dev problems 400.. of the benchmark's seeded GSM8K order
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/: the shared scripts
OUT = Path(__file__).parents[1] / "results" / "speculation.json"
MODEL = "bundled:qwen2.5-coder-1.5b"
# kind: (type name, n-gram to match, tokens drafted at most). The library's defaults (match 12, draft 48) never
# drafted on these answers; these are short enough to match a repeated name.
KINDS = {"none": None, "ngram_simple 3/8": ("NGRAM_SIMPLE", 3, 8), "ngram_mod 4/8": ("NGRAM_MOD", 4, 8)}


def engine(kind):
    """A tutor whose llama.cpp server speculates as ``kind`` says."""
    import xllamacpp

    from mathtune.models.generate import load_tutor

    plain = xllamacpp.Server

    def server(params):
        if kind is not None:
            name, match, draft = kind
            params.speculative.types = [getattr(xllamacpp.common_speculative_type, f"COMMON_SPECULATIVE_TYPE_{name}")]
            if name == "NGRAM_SIMPLE":
                params.speculative.ngram_simple.size_n, params.speculative.ngram_simple.size_m = match, draft
            else:
                params.speculative.ngram_mod.n_match, params.speculative.ngram_mod.n_max = match, draft
            params.speculative.draft.n_max, params.speculative.draft.n_min = draft, 1
        return plain(params)

    xllamacpp.Server = server
    try:
        return load_tutor(MODEL, "auto")
    finally:
        xllamacpp.Server = plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="dev problems")
    parser.add_argument("--start", type=int, default=400, help="first dev problem (the benchmark uses 0-199)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from common import solve_named as solve
    from tutor_modes import problems

    pairs = problems("gsm8k/train.jsonl", args.start + args.n, True)
    engines = {name: engine(kind) for name, kind in KINDS.items()}
    for generator in engines.values():  # first answers pay for warm-up and the system prompt's cache
        solve(generator, ["What is 2 + 3?"], "code", max_new_tokens=64)
    rows = {name: [] for name in engines}
    for i in range(args.start, args.start + args.n):
        for name, generator in engines.items():
            start = time.perf_counter()
            [s] = solve(generator, [pairs.questions[i]], "code", max_new_tokens=512)
            rows[name].append({"i": i, "seconds": round(time.perf_counter() - start, 2), "pieces": s.new_tokens,
                               "final": s.final_answer, "text": s.answer})
            print(name, i, rows[name][-1]["seconds"], s.final_answer, flush=True)
    plain = rows["none"]
    total = {name: sum(r["seconds"] for r in got) for name, got in rows.items()}
    result = {"model": MODEL, "threads": os.cpu_count(), "problems": [r["i"] for r in plain],
              "kinds": [{"kind": name, "seconds": round(total[name], 1),
                         "seconds_vs_none": round(total[name] / total["none"], 3),
                         "answers_differing_from_none": sum(a["text"] != b["text"] for a, b in zip(got, plain)),
                         "final_answers_differing_from_none": sum(a["final"] != b["final"] for a, b in zip(got, plain))}
                        for name, got in rows.items()]}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["kinds"], indent=1))


if __name__ == "__main__":
    main()
