"""The prebuilt xllamacpp wheel against one built for this CPU: the tutor's decode step at batch 1 and batch 4.

    pip wheel xllamacpp --no-binary :all: --no-deps -w /tmp/xwheel    # see docs/recipes.md for the CMAKE_ARGS
    pip install --no-deps --target /tmp/xnative /tmp/xwheel/xllamacpp-*.whl
    python bench/experiments/llama_build.py --native /tmp/xnative     # writes bench/results/llama_build.json

Each variant runs in its own process (the native one with ``--native`` first on PYTHONPATH), turn about, ``--rounds``
times; per round and variant, one prompt decoded for ``--tokens`` tokens (end of sequence ignored) with 1 and with 4
sequences, so the seconds a step are for equal work. The wheel is the baseline in the same run. What matters for a
classroom is the batch-4 step against the batch-1 step: four teachers at once wait that ratio times as long as one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "results" / "llama_build.json"


def measure(model: str, tokens: int) -> dict:
    """In this process: the engine's CPU features and the seconds a decode step with 1 and 4 sequences."""
    sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]
    import xllamacpp
    from vote_policies import decode_step

    from mathtune.models.generate import load_tutor

    generator = load_tutor(model, "llama.cpp")
    generator.generate(["What is 1 + 1?"], 4)
    out = {"xllamacpp": str(Path(xllamacpp.__file__).parent), "system_info": xllamacpp.get_system_info()}
    for n in (1, 4):
        step, made = decode_step(generator, n, tokens)
        out[f"step_{n}"], out[f"tokens_{n}"] = round(step, 4), made
    generator.close()
    return out


def run_variant(native: str | None, model: str, tokens: int) -> dict:
    env = dict(os.environ)
    if native:
        env["PYTHONPATH"] = os.pathsep.join([native, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, __file__, "--child", "--model", model, "--tokens", str(tokens)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--native", help="folder holding an xllamacpp built for this CPU (pip install --target)")
    parser.add_argument("--model", default="bundled:qwen2.5-coder-1.5b")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.tokens)))
        return
    if not args.native:
        raise SystemExit("--native: the folder an xllamacpp built for this CPU was installed into (see the usage)")
    runs: dict[str, list[dict]] = {"wheel": [], "native": []}
    for i in range(args.rounds):
        for name, path in (("wheel", None), ("native", args.native)):
            runs[name].append(run_variant(path, args.model, args.tokens))
            print(name, i, {k: v for k, v in runs[name][-1].items() if k.startswith("step")}, flush=True)
    summary = {}
    for name, rows in runs.items():
        step1 = statistics.median(r["step_1"] for r in rows)
        step4 = statistics.median(r["step_4"] for r in rows)
        summary[name] = {"step_1_s": round(step1, 4), "step_4_s": round(step4, 4),
                         "batch4_vs_batch1": round(step4 / step1, 2), "tokens_per_s_1": round(1 / step1, 1),
                         "tokens_per_s_4": round(4 / step4, 1), "system_info": rows[0]["system_info"],
                         "xllamacpp": rows[0]["xllamacpp"]}
    result = {"benchmark": "llama_build", "model": args.model, "cpus": os.cpu_count(), "tokens": args.tokens,
              "rounds": args.rounds, "variants": summary,
              "native_vs_wheel": {"step_1": round(summary["native"]["step_1_s"] / summary["wheel"]["step_1_s"], 2),
                                  "step_4": round(summary["native"]["step_4_s"] / summary["wheel"]["step_4_s"], 2)},
              "runs": runs}
    sys.path.insert(0, str(REPO / "src"))
    from mathtune.io import write_json

    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("variants", "native_vs_wheel")}, indent=1))


if __name__ == "__main__":
    main()
