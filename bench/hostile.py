"""The server under hostile and careless clients: mixed load, slow connections, and shutdown under load.

    python bench/hostile.py             # writes bench/results/hostile.json

One `mathtune serve` subprocess (a TF-IDF topic model trained here on math-topics, so the model is not the
bottleneck) on loopback; the load generator is this process (httpx + asyncio) on the same 2 cores.

- levels: /v1/topics at concurrency 1 / 8 / 32 (``--seconds`` each): requests/s, p50, p99, errors;
- mixed soak: ``--soak-seconds`` at concurrency 8 with 30% invalid requests (empty text, lone surrogates,
  malformed MLflow bodies, wrong types): 5xx count (must be 0), errors on the valid 70% (must be 0), RSS before/after;
- slow connections: ``--slow`` connections that send headers and one body byte every 5 s; /livez latency before
  and while they are open, and how many the server dropped (408) within the body deadline;
- SIGTERM under load: time from the signal to the process exit, and whether in-flight requests completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from serve import rss_mb, wait_ready  # noqa: E402

INVALID = [
    ("/v1/topics", b'{"questions": [""]}'),
    ("/v1/topics", b'{"questions": ["\\ud800"]}'),
    ("/v1/topics", b'{"questions": [1, 2]}'),
    ("/v1/topics", b'{not json'),
    ("/invocations", b'{"dataframe_split": "x"}'),
    ("/invocations", b'{"dataframe_records": [{"foo": "a"}]}'),
    ("/invocations", b'{"inputs": [{"zzz": "a"}]}'),
    ("/v1/products", b'{"records": [{"title": "x"}]}'),
]


async def mixed_load(base: str, questions: list[str], concurrency: int, seconds: float, invalid_share: float) -> dict:
    import httpx

    stats = {"valid": 0, "valid_errors": 0, "invalid": 0, "invalid_4xx": 0, "server_errors": 0, "transport_errors": 0}
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    rng = np.random.default_rng(0)

    async def worker(client):
        i = 0
        while time.perf_counter() < stop:
            i += 1
            bad = rng.random() < invalid_share
            if bad:
                path, body = INVALID[i % len(INVALID)]
            else:
                path, body = "/v1/topics", json.dumps({"questions": [questions[i % len(questions)]]}).encode()
            t = time.perf_counter()
            try:
                r = await client.post(base + path, content=body, headers={"content-type": "application/json"}, timeout=30)
            except httpx.HTTPError:
                stats["transport_errors"] += 1
                continue
            if r.status_code >= 500:
                stats["server_errors"] += 1
            if bad:
                stats["invalid"] += 1
                stats["invalid_4xx"] += 400 <= r.status_code < 500 and r.headers.get("content-type", "").startswith("application/json")
            else:
                stats["valid"] += 1
                if r.status_code == 200:
                    latencies.append((time.perf_counter() - t) * 1000)
                else:
                    stats["valid_errors"] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    a = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {"concurrency": concurrency, "seconds": round(elapsed, 1), **stats,
            "valid_rps": round(len(latencies) / elapsed, 2), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2)}


def livez_latency(base: str, n: int = 20) -> dict:
    import httpx

    times, failures = [], 0
    with httpx.Client() as client:
        for _ in range(n):
            t = time.perf_counter()
            try:
                ok = client.get(base + "/livez", timeout=10).status_code == 200
            except httpx.HTTPError:
                ok = False
            failures += not ok
            times.append((time.perf_counter() - t) * 1000)
            time.sleep(0.05)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2),
            "max_ms": round(max(times), 2), "failures": failures}


def slow_connections(port: int, count: int, watch_seconds: float, base: str) -> dict:
    """Open ``count`` connections that send headers and then one body byte every 5 s."""
    socks, refused = [], 0
    head = (b"POST /v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head + b"{")
            s.setblocking(False)
            socks.append(s)
        except OSError:
            refused += 1
    opened = time.perf_counter()
    during = livez_latency(base, 20)
    closed, got_408 = set(), 0
    while time.perf_counter() - opened < watch_seconds:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                data = s.recv(4096)
                if not data:
                    closed.add(i)
                elif b" 408 " in data.split(b"\r\n", 1)[0]:
                    got_408 += 1
                    closed.add(i)
            except BlockingIOError:
                try:
                    s.send(b" ")
                except OSError:
                    closed.add(i)
            except OSError:
                closed.add(i)
        time.sleep(5)
    after = livez_latency(base, 20)
    for s in socks:
        s.close()
    return {"connections": count, "refused_at_connect": refused, "watch_seconds": watch_seconds,
            "answered_408": got_408, "closed_by_server": len(closed), "livez_while_open": during,
            "livez_after_deadline": after}


def sigterm_under_load(cmd: list[str], env: dict, port: int, questions: list[str]) -> dict:
    import httpx

    log = open(REPO / "runs" / "bench-hostile" / "server-sigterm.log", "w")
    proc = subprocess.Popen(cmd + ["--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/readyz")
    results = {"ok": 0, "failed": 0}

    async def fire():
        async with httpx.AsyncClient() as client:
            async def one(q):
                try:
                    r = await client.post(base + "/v1/topics", json={"questions": [q] * 8}, timeout=30)
                    results["ok" if r.status_code == 200 else "failed"] += 1
                except httpx.HTTPError:
                    results["failed"] += 1
            tasks = [asyncio.create_task(one(q)) for q in questions[:64]]
            await asyncio.sleep(0.05)  # requests in flight
            start = time.perf_counter()
            os.killpg(proc.pid, signal.SIGTERM)
            await asyncio.gather(*tasks)
            return start

    start = asyncio.run(fire())
    proc.wait(timeout=60)
    return {"seconds_to_exit": round(time.perf_counter() - start, 2), "exit_code": proc.returncode,
            "in_flight_completed": results["ok"], "in_flight_failed": results["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--soak-seconds", type=float, default=120)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hostile.json")
    args = parser.parse_args()
    work = REPO / "runs" / "bench-hostile"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "MATHTUNE_BODY_TIMEOUT_S": "10",
           "MATHTUNE_LIMIT_CONCURRENCY": str(max(2 * args.slow, 256))}
    model = work / "topic-tfidf"
    if not (model / "mathtune.json").exists():
        subprocess.run([sys.executable, "-m", "mathtune.cli", "train", str(REPO / "recipes" / "topic-tfidf.yaml"),
                        "--output", str(model), "--overwrite", "--set", "tracking=none"], check=True, env=env,
                       capture_output=True)
    from mathtune.data.readers import read_table
    from mathtune.paths import resolve_data_path

    questions = read_table(resolve_data_path("math-topics/train.csv"))["Question"].astype(str).tolist()[:2000]
    cmd = [sys.executable, "-m", "mathtune.cli", "serve", "--model", str(model)]
    port = 8810
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(cmd + ["--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    results: dict = {"benchmark": "hostile", "cpus": os.cpu_count(), "model": "topic-tfidf",
                     "settings": {"body_timeout_s": 10, "limit_concurrency": env["MATHTUNE_LIMIT_CONCURRENCY"]}}
    try:
        wait_ready(base + "/readyz")
        asyncio.run(mixed_load(base, questions, 4, 3, 0.0))
        results["levels"] = [asyncio.run(mixed_load(base, questions, c, args.seconds, 0.0)) for c in args.levels]
        write_json(args.out, results)
        rss_start = rss_mb(proc.pid)
        soak = asyncio.run(mixed_load(base, questions, 8, args.soak_seconds, 0.3))
        results["mixed_soak"] = {**soak, "invalid_share": 0.3, "rss_mb_start": round(rss_start, 1),
                                 "rss_mb_end": round(rss_mb(proc.pid), 1)}
        write_json(args.out, results)
        results["livez_quiet"] = livez_latency(base)
        results["slow_connections"] = slow_connections(port, args.slow, 20, base)
        write_json(args.out, results)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    results["sigterm"] = sigterm_under_load(cmd, env, port + 1, questions)
    write_json(args.out, results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
