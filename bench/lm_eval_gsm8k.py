"""The tutor through a harness we did not write (issue #44): lm-evaluation-harness (`lm-eval`, its
`local-chat-completions` model) on 100 held-out GSM8K problems, a local JSON task scored by the standard GSM8K
flexible-extract filter, asked of the raw model (llama.cpp's own server, greedy) and of mathtune's default mode
(`mathtune serve`'s /v1/chat/completions), through the same harness.

    pip install "lm-eval[api]"          # not a mathtune dependency
    python bench/lm_eval_gsm8k.py       # writes bench/results/lm_eval_gsm8k.json (about an hour on 2 cores)

The problems: the seeded held-out order bench/tutor_modes.py uses, from problem 200 on (the modes were chosen on
the first 200).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS
from mathtune.io import write_json

sys.path.insert(0, str(REPO / "tests"))
MODEL = "bundled:qwen2.5-coder-1.5b"
TASK = "mathtune_gsm8k_heldout"
TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0.0
  max_gen_toks: 512
num_fewshot: 0
filter_list:
  - name: "flexible-extract"
    filter:
      - function: "regex"
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: "take_first"
metadata:
  version: 1.0
"""


def write_task(folder: Path, start: int, n: int) -> Path:
    from tutor_modes import problems

    pairs = problems("gsm8k/train.jsonl", start + n, True)
    data = folder / "problems.jsonl"
    with data.open("w") as f:
        for q, r, a in zip(pairs.questions[start:], pairs.responses[start:], pairs.answers[start:], strict=True):
            f.write(json.dumps({"question": q, "answer": f"{r}\n#### {a}"}) + "\n")  # GSM8K's own answer format
    (folder / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, data=data))
    return data


def harness(base_url: str, model: str, tasks: Path, out: Path, key: str) -> dict:
    """lm-eval against ``base_url``'s chat completions; its score and seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lm_eval", "run", "--model", "local-chat-completions", "--model_args",
                    f"base_url={base_url}/chat/completions,model={model},num_concurrent=1,max_retries=1,"
                    "tokenized_requests=False,timeout=900",
                    "--tasks", TASK, "--include_path", str(tasks), "--apply_chat_template", "--output_path", str(out),
                    "--log_samples"], check=True, env={**os.environ, "OPENAI_API_KEY": key})
    seconds = time.perf_counter() - start
    [result] = list(out.rglob("results_*.json"))
    scores = json.loads(result.read_text())["results"][TASK]
    return {"exact_match_flexible": scores["exact_match,flexible-extract"],
            "stderr": scores.get("exact_match_stderr,flexible-extract"), "seconds": round(seconds, 1)}


def kept_score(folder: Path, n: int) -> dict:
    """The raw model's flexible-extract exact match on the first ``n`` problems of a kept run (its samples file)."""
    [samples] = list((folder / "raw").rglob("samples_*.jsonl"))
    rows = sorted((json.loads(line) for line in samples.read_text().splitlines()), key=lambda r: r["doc_id"])[:n]
    scores = [r["exact_match"] for r in rows if r.get("filter") in (None, "flexible-extract")]
    return {"exact_match_flexible": sum(scores) / len(scores), "stderr": None, "seconds": None, "n": len(scores)}


def main() -> None:
    from mathtune.models.registry import resolve
    from servers import llama_server, served

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--start", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="keep the task and the harness's per-problem samples here")
    parser.add_argument("--raw-from", type=Path, help="a kept run's folder (--keep) whose raw-model samples cover these "
                                                     "problems: scored again on them instead of asking the raw model")
    args = parser.parse_args()
    source = resolve(MODEL)
    results = {"benchmark": "lm_eval_gsm8k", "harness": "lm-evaluation-harness " + __import__("lm_eval").__version__,
               "model": MODEL, "task": "GSM8K, 0-shot chat, flexible-extract exact match",
               "problems": f"gsm8k/train.jsonl seeded held-out order, {args.start} to {args.start + args.problems - 1}",
               "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        write_task(folder, args.start, args.problems)
        if args.raw_from:
            results["raw_model"] = {"through": "llama.cpp's own server, greedy (kept samples, the same problems)",
                                    **kept_score(args.raw_from, args.problems)}
        else:
            with llama_server(os.path.join(source.path, source.gguf_file), "raw-key") as base:
                results["raw_model"] = {"through": "llama.cpp's own server, greedy",
                                        **harness(base, os.path.join(source.path, source.gguf_file), folder,
                                                  folder / "raw", "raw-key")}
        print(json.dumps(results["raw_model"]), flush=True)
        with served(["--tutor", MODEL], {"MATHTUNE_API_KEY": "tutor-key"}) as (_proc, port):
            results["mathtune_default"] = {"through": "mathtune serve, /v1/chat/completions, model tutor (the "
                                                      "bundled default preset)",
                                           **harness(f"http://127.0.0.1:{port}/v1", "tutor", folder,
                                                     folder / "tutor", "tutor-key")}
        print(json.dumps(results["mathtune_default"]), flush=True)
    write_json(RESULTS / "lm_eval_gsm8k.json", results)


if __name__ == "__main__":
    main()
