"""What the OpenAI-compatible door adds to the tutor's answer (issue #44: at most 5 ms at the median), and the
remote engine against the in-process one (at most 1.15x the time of the same vote).

    python bench/openai_door.py door               # writes the "door" part of bench/results/openai_door.json
    python bench/openai_door.py engine --problems 10   # the "engine" part (bundled Qwen: `make models` first)

door: the same answer asked through /v1/tutor and /v1/chat/completions, interleaved, in this process (no network),
the answer kept by the server's answer cache so that only what the routes do is timed (bundled SmolLM2).
engine: the bundled tutor's default vote on held-out GSM8K problems, drawn in-process (llama.cpp through
xllamacpp) and through llama.cpp's own HTTP server (mathtune.models.llama_server) as an openai: engine, problem
by problem in turn, same threads; both answers kept, so the runs can be compared answer by answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from common import REPO, RESULTS, solve_named  # noqa: F401 - common puts src/ on the path
from mathtune.io import write_json

OUT = RESULTS / "openai_door.json"


def door(rounds: int) -> dict:
    from fastapi.testclient import TestClient

    from mathtune.serve.app import create_app
    from mathtune.serve.settings import ServeSettings

    app = create_app([], ServeSettings(tutor="bundled:smollm2", tutor_answer_cache=16, tutor_max_new_tokens=64))
    http = TestClient(app)
    question = "What is 12 times 7?"
    tutor = {"question": question, "mode": "cot"}
    chat = {"model": "tutor:cot", "messages": [{"role": "user", "content": question}]}
    first = http.post("/v1/tutor", json=tutor).json()  # made once; every request after is the kept answer
    seconds: dict[str, list[float]] = {"tutor": [], "chat": []}
    for _ in range(rounds):
        for route, path, body in (("tutor", "/v1/tutor", tutor), ("chat", "/v1/chat/completions", chat)):
            start = time.perf_counter()
            reply = http.post(path, json=body)
            seconds[route].append(time.perf_counter() - start)
            assert reply.status_code == 200, reply.text
    answer = http.post("/v1/chat/completions", json=chat).json()
    assert answer["choices"][0]["message"]["content"].startswith(first["answer"].rstrip())
    median = {route: statistics.median(values) * 1000 for route, values in seconds.items()}
    return {"rounds": rounds, "median_ms": {k: round(v, 3) for k, v in median.items()},
            "p90_ms": {k: round(sorted(v)[int(0.9 * len(v))] * 1000, 3) for k, v in seconds.items()},
            "added_ms_median": round(median["chat"] - median["tutor"], 3), "target_ms": 5.0,
            "same_answer": True, "model": "bundled:smollm2"}


def engine(problems: int, start: int) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from mathtune.models.generate import load_tutor
    from mathtune.models.registry import resolve
    from mathtune.models.solving.presets import default_settings
    from mathtune.models.solving.solve import solve
    from servers import llama_server
    from tutor_modes import problems as gsm8k

    model = "bundled:qwen2.5-coder-1.5b"
    settings = default_settings(model).model_copy(update={"time_budget": None})  # the vote itself, not its cap
    pairs = gsm8k("gsm8k/train.jsonl", start + problems, True)  # the seeded held-out order tutor_modes uses
    source = resolve(model)
    threads = os.cpu_count() or 1
    os.environ["BENCH_ENGINE_KEY"] = "bench"
    rows = []
    with llama_server(os.path.join(source.path, source.gguf_file), "bench") as base:
        local = load_tutor(model, "llama.cpp", threads=threads, slots=7)
        remote = load_tutor(f"openai:{base}?key_env=BENCH_ENGINE_KEY&timeout=600")
        for i in range(start, start + problems):
            row = {"i": i}
            for name, generator in (("in_process", local), ("remote", remote)):
                began = time.perf_counter()
                [s] = solve(generator, [pairs.questions[i]], settings, max_new_tokens=512)
                row[name] = {"seconds": round(time.perf_counter() - began, 2), "final": s.final_answer,
                             "samples": s.samples, "method": str(s.method)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        local.close()
        remote.close()
    total = {name: sum(r[name]["seconds"] for r in rows) for name in ("in_process", "remote")}
    return {"model": model, "preset": "adaptive(code,2of3)", "problems": problems, "data": f"gsm8k/train.jsonl, seeded order, problems {start} to {start + problems - 1}",
            "threads": threads, "server": "llama.cpp's own HTTP server (xllamacpp, mathtune.models.llama_server)",
            "seconds": {k: round(v, 1) for k, v in total.items()},
            "remote_over_in_process": round(total["remote"] / total["in_process"], 3), "target": 1.15,
            "same_final_answers": sum(r["in_process"]["final"] == r["remote"]["final"] for r in rows), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["door", "engine"])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--problems", type=int, default=10)
    parser.add_argument("--start", type=int, default=200, help="first problem of the seeded order (the modes were chosen on the first 200)")
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "openai_door"}
    results[args.part] = door(args.rounds) if args.part == "door" else engine(args.problems, args.start)
    results[args.part]["cpus"] = os.cpu_count()
    write_json(OUT, results)
    print(json.dumps({k: v for k, v in results[args.part].items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
