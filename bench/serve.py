"""Serving benchmark: mathtune's /v1/topics against a naive FastAPI + transformers-pipeline server, same model.

    python bench/serve.py               # writes bench/results/serve.json

The model: recipes/topic-lora.yaml (bundled MiniLM + LoRA, merged), trained briefly here (``--limit`` rows, one
epoch: accuracy is not the point) and exported to ONNX (fp32 and int8). Servers run one at a time as uvicorn
subprocesses on loopback; the load generator (this process, httpx + asyncio) sends one question per request
from the math-topics validation questions, for ``--seconds`` at each concurrency (1, 8, 32), after a warm-up.

- mathtune: `mathtune serve` with micro-batching, torch and onnx-int8 backends.
- naive: the seed-style app: a transformers ``pipeline("text-classification")`` loaded at start-up and called
  once per request in a plain FastAPI endpoint, calls serialized by a lock (the baseline of the ratios);
  naive-unlocked: the same without the lock, as such apps are often written (the pipeline is not thread-safe).

Then a soak of ``--soak-seconds`` (default 120) at concurrency 8 against mathtune (onnx-int8): errors, and the
server's resident memory at the start and the end (and its peak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402

NAIVE_APP = textwrap.dedent("""
    import contextlib
    import os
    import threading
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    classifier = pipeline("text-classification", model=os.environ["NAIVE_MODEL"], device="cpu")
    # FastAPI runs plain `def` endpoints in a thread pool; a transformers pipeline is not thread-safe, so the
    # working version of the usual app serializes calls with a lock (NAIVE_LOCK=0 shows what happens without it)
    lock = threading.Lock() if os.environ.get("NAIVE_LOCK", "1") == "1" else contextlib.nullcontext()
    app = FastAPI()

    class Body(BaseModel):
        questions: list[str]

    @app.get("/livez")
    def livez():
        return {"status": "ok"}

    @app.post("/v1/topics")
    def topics(body: Body):
        with lock:
            return {"predictions": classifier(body.questions)}
""")


def wait_ready(url: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def rss_mb(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    return (proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))) / 2**20


async def load(url: str, questions: list[str], concurrency: int, seconds: float) -> dict:
    import httpx

    latencies, errors, statuses = [], 0, {}
    stop = time.perf_counter() + seconds
    counter = 0

    async def worker(client):
        nonlocal errors, counter
        while time.perf_counter() < stop:
            q = questions[counter % len(questions)]
            counter += 1
            t = time.perf_counter()
            try:
                r = await client.post(url, json={"questions": [q]}, timeout=20)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code != 200:
                    errors += 1
                else:
                    latencies.append((time.perf_counter() - t) * 1000)
            except httpx.HTTPError:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    a = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "statuses": statuses,
            "throughput_rps": round(len(latencies) / elapsed, 2), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2)}


def start_server(kind: str, model_dir: Path, port: int, backend: str = "torch") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if kind.startswith("naive"):
        env["NAIVE_LOCK"] = "0" if kind == "naive-unlocked" else "1"
        app_file = REPO / "runs" / "bench-serve" / "naive_app.py"
        app_file.write_text(NAIVE_APP)
        env["NAIVE_MODEL"] = str(model_dir / "model")
        cmd = [sys.executable, "-m", "uvicorn", "naive_app:app", "--app-dir", str(app_file.parent), "--port", str(port),
               "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "mathtune.cli", "serve", "--model", str(model_dir), "--port", str(port),
               "--backend", backend]
    # the server's logs go to a file: a pipe nobody reads fills up (64 KB of access logs) and blocks the server
    log = open(REPO / "runs" / "bench-serve" / f"server-{port}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}/livez")
    if not kind.startswith("naive"):
        wait_ready(f"http://127.0.0.1:{port}/readyz")
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--soak-seconds", type=float, default=120)
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-serve")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = args.workdir / "topic-lora"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if not (model_dir / "mathtune.json").exists():
        subprocess.run([sys.executable, "-m", "mathtune.cli", "train", str(REPO / "recipes" / "topic-lora.yaml"), "--output",
                        str(model_dir), "--overwrite", "--set", "tracking=none", "--set", f"data.limit={args.limit}",
                        "--set", "train.epochs=1"], check=True, env=env, capture_output=True)
        subprocess.run([sys.executable, "-m", "mathtune.cli", "export", str(model_dir), "--onnx", "--int8"], check=True,
                       env=env, capture_output=True)
    from mathtune.data.readers import read_table
    from mathtune.paths import resolve_data_path

    questions = read_table(resolve_data_path("math-topics/train.csv"))["Question"].astype(str).tolist()[:2000]
    results = {"benchmark": "serve", "cpus": os.cpu_count(), "model": "topic-lora (MiniLM + LoRA, merged)",
               "seconds_per_level": args.seconds, "servers": {}}
    configs = [("naive", "torch"), ("naive-unlocked", "torch"), ("mathtune", "torch"), ("mathtune", "onnx-int8")]
    for i, (kind, backend) in enumerate(configs):
        name = kind if kind.startswith("naive") else f"mathtune-{backend}"
        port = 8700 + i
        proc = start_server(kind, model_dir, port, backend)
        url = f"http://127.0.0.1:{port}/v1/topics"
        try:
            asyncio.run(load(url, questions, 4, 3))  # warm-up
            results["servers"][name] = [asyncio.run(load(url, questions, c, args.seconds)) for c in args.levels]
        finally:
            stop_server(proc)
        write_json(args.out, results)
    naive = {r["concurrency"]: r for r in results["servers"]["naive"]}
    results["ratios"] = {name: {f"throughput_x_naive_c{r['concurrency']}": round(r["throughput_rps"] / naive[r["concurrency"]]["throughput_rps"], 2)
                                for r in runs} for name, runs in results["servers"].items() if name.startswith("mathtune")}

    proc = start_server("mathtune", model_dir, 8790, "onnx-int8")
    url = "http://127.0.0.1:8790/v1/topics"
    try:
        asyncio.run(load(url, questions, 4, 3))
        start_rss = rss_mb(proc.pid)
        samples = [start_rss]
        chunks = max(1, int(args.soak_seconds // 10))
        runs = []
        for _ in range(chunks):
            runs.append(asyncio.run(load(url, questions, 8, args.soak_seconds / chunks)))
            samples.append(rss_mb(proc.pid))
        results["soak"] = {"seconds": args.soak_seconds, "concurrency": 8, "backend": "onnx-int8",
                           "requests": sum(r["requests"] for r in runs), "errors": sum(r["errors"] for r in runs),
                           "rss_mb_start": round(start_rss, 1), "rss_mb_end": round(samples[-1], 1),
                           "rss_mb_max": round(max(samples), 1), "rss_mb_samples": [round(s, 1) for s in samples],
                           "p99_ms_per_window": [r["p99_ms"] for r in runs]}
    finally:
        stop_server(proc)
    write_json(args.out, results)
    print(json.dumps({k: results[k] for k in ("ratios", "soak")}, indent=1))


if __name__ == "__main__":
    main()
