"""Tutor benchmark: base versus fine-tuned SmolLM2 on GSM8K (and MATH-500), and llama.cpp versus transformers
generation speed.

    python bench/tutor.py                      # writes bench/results/tutor.json

1. Fine-tunes recipes/tutor-lora.yaml (LoRA on GSM8K worked solutions) within a CPU budget (``--limit`` GSM8K
   training problems, ``--math-mix`` MATH training problems, ``--refusals`` non-math prompts, one epoch); validation = the recipe's fixed 3% of gsm8k/train.jsonl (224 problems, split seed 0):
   perplexity on all of them, answer accuracy (math-verify), ROUGE and BLEU on the first ``--eval-samples``,
   refusal rates on 20 held-out non-math prompts. Base and fine-tuned in the same run.
2. A second view on MATH-500 (first ``--math-samples`` problems), base and fine-tuned.
3. Generation tokens/s of the fine-tuned model with the transformers backend (fp32, batch 1) and the llama.cpp
   backend (its f16 GGUF export, same prompts, same max_new_tokens), as a ratio; the bundled Q4_1 base GGUF too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402

SPEED_PROMPTS = [
    "A baker makes 24 muffins and sells 3/4 of them. How many muffins are left?",
    "What is the sum of the interior angles of a hexagon?",
    "Solve for x: 5x - 7 = 18.",
    "Sara reads 12 pages a day. How many days does she need for a 180-page book?",
]


def speed(generator, max_new_tokens: int, repeats: int = 2) -> dict:
    """Tokens/s over the same prompts, each forced to exactly max_new_tokens (end-of-sequence ignored), so both
    backends do the same work; the time includes prompt processing, as a user waits for it."""
    generator.generate(SPEED_PROMPTS[:1], 16)  # warm-up
    tokens, seconds = 0, 0.0
    for _ in range(repeats):
        for prompt in SPEED_PROMPTS:
            g = generator.generate([prompt], max_new_tokens, ignore_eos=True)[0]
            tokens += g.new_tokens
            seconds += g.seconds
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=700, help="GSM8K training problems (CPU budget)")
    parser.add_argument("--math-mix", type=int, default=300, help="MATH training problems mixed in (tutor.mix)")
    parser.add_argument("--refusals", type=int, default=50, help="non-math prompts answered with the refusal (tutor.refusal_examples)")
    parser.add_argument("--skip-speed", action="store_true", help="leave the generation speed comparison out")
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--math-samples", type=int, default=40)
    parser.add_argument("--speed-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tutor.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-tutor")
    parser.add_argument("--skip-train", action="store_true", help="reuse the model folder from an earlier run")
    parser.add_argument("--only-speed", action="store_true", help="reuse the earlier results and only re-measure speed")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = args.workdir / "tutor-lora"
    results = {"benchmark": "tutor", "cpus": os.cpu_count(), "recipe": "tutor-lora", "limit": args.limit,
               "math_mix": args.math_mix, "refusal_examples": args.refusals}
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    import yaml

    recipe = yaml.safe_load((REPO / "recipes" / "tutor-lora.yaml").read_text())
    recipe["tutor"]["mix"] = [{"train": "math-hendrycks/train.jsonl", "limit": args.math_mix}] if args.math_mix else []
    recipe["tutor"]["refusal_examples"] = args.refusals
    recipe_path = args.workdir / "tutor-lora.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    if not args.skip_train:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mathtune.cli", "train", str(recipe_path),
                               "--output", str(model_dir), "--overwrite", "--set", "tracking=none",
                               "--set", f"data.limit={args.limit}", "--set", f"tutor.eval_samples={args.eval_samples}"],
                              capture_output=True, text=True, env=env)
        results["train_wall_seconds"] = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            results["error"] = (proc.stderr or proc.stdout)[-3000:]
            write_json(args.out, results)
            sys.exit(1)
    if args.only_speed:
        results = json.loads(args.out.read_text())
        measure_speed(model_dir, args, results)
        return
    m = json.loads((model_dir / "metrics.json").read_text())
    results["gsm8k"] = {"base": m["validation"].get("base"), "fine_tuned": m["validation"]["fine_tuned"]}
    results["summary"] = m["summary"]
    results["merge_parity"] = m.get("merge_parity")
    write_json(args.out, results)

    from mathtune.train.tutor_eval import evaluate_tutor_file

    data_dir = Path(os.environ.get("MATHTUNE_DATA_DIR", REPO.parent / "shared" / "data"))
    math500 = evaluate_tutor_file(model_dir, data_dir / "math-hendrycks" / "math500_test.jsonl",
                                  samples=args.math_samples, compare_base=True,
                                  report_out=args.workdir / "math500_report.md")
    results["math500"] = {"n": args.math_samples, "base": math500.get("base"),
                          "fine_tuned": {k: v for k, v in math500.items() if k not in ("base", "model", "data")}}
    write_json(args.out, results)
    if not args.skip_speed:
        measure_speed(model_dir, args, results)


def measure_speed(model_dir: Path, args, results: dict) -> None:
    from mathtune.models.generate import load_tutor
    from mathtune.models.gguf_export import export_tutor_gguf

    transformers_speed = speed(load_tutor(model_dir, "transformers"), args.speed_tokens)
    llama_speed = speed(load_tutor(model_dir, "llama.cpp"), args.speed_tokens)
    base_q4 = speed(load_tutor("bundled:smollm2", "llama.cpp"), args.speed_tokens)
    q8_dir = args.workdir / "tutor-lora-q8"  # the same fine-tuned model, exported as Q8_0
    if not (q8_dir / "model.gguf").exists():
        import shutil

        shutil.rmtree(q8_dir, ignore_errors=True)
        shutil.copytree(model_dir, q8_dir, ignore=shutil.ignore_patterns("model.gguf"))
        export_tutor_gguf(q8_dir, "q8_0")
    llama_q8 = speed(load_tutor(q8_dir, "llama.cpp"), args.speed_tokens)
    results["generation_speed"] = {
        "max_new_tokens": args.speed_tokens, "prompts": len(SPEED_PROMPTS), "batch_size": 1,
        "equal_length": True,
        "transformers_fp32": transformers_speed, "llama_cpp_f16": llama_speed, "llama_cpp_q8_0": llama_q8,
        "llama_cpp_base_q4_1": base_q4,
        "ratio_llama_cpp_q8_vs_transformers": round(llama_q8["tokens_per_second"] / transformers_speed["tokens_per_second"], 2),
        "ratio_llama_cpp_f16_vs_transformers": round(llama_speed["tokens_per_second"] / transformers_speed["tokens_per_second"], 2),
        "ratio_llama_cpp_q4_vs_transformers": round(base_q4["tokens_per_second"] / transformers_speed["tokens_per_second"], 2),
    }
    write_json(args.out, results)
    print(json.dumps(results["generation_speed"], indent=1))


if __name__ == "__main__":
    main()
