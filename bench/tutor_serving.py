"""The tutor served beside a classifier: does a teacher's question to the tutor hold up everyone else?

    python bench/tutor_serving.py                 # writes bench/results/tutor_serving.json

A real server (`mathtune serve --model TOPIC --tutor bundled:qwen2.5-coder-1.5b`, a uvicorn subprocess on loopback,
OMP_WAIT_POLICY=PASSIVE) and this process as the clients. The topic model is topic-tfidf trained here on
``--topic-rows`` rows unless ``--topic-model`` names one. The problems are the first GSM8K problems of
bench/tutor_modes.py's held-out sample. Measured, each the issue's ratio with its baseline in the same run:

- ``topics_ms``: /v1/topics latency (one question a request, one every 100 ms) idle, during one 5-sample vote and
  during four cot answers at once; the target is max <= 250 ms during a vote.
- ``vote_vs_cot``: a 5-sample vote (over cot, no tie-break, ended once decided) / one greedy cot answer, same
  problem, through the API; target <= 2.5. Baselines in this run, in this process after the server stopped, on the
  same engine: the vote with all 5 samples batched (no early end), and with its samples drawn one after another
  (what every vote cost before samples were batched).
- ``four_vs_one``: four cot answers to four problems asked at once: the time until the last is done / the mean time
  of the same four asked alone; target <= 2. Their lengths differ (the longest bounds the four), so also
  ``four_same_vs_one``: one problem asked by four clients at once / the same problem asked alone, and
  ``four_each_vs_alone``: each teacher's own wait when the four ask at once / the same question's wait alone
  (each, mean, max; and per token, as an answer drawn beside others can come out a few tokens longer).

These run on a server that does not share answers (MATHTUNE_TUTOR_SHARE_ANSWERS=false), so each request is answered
anew. ``shared``: the same four clients with one problem on a server that shares (serve/shared.py): one answer is
made and the other three join it (the default); then a fifth asks it again and gets the kept answer (kept answers
are not the default: MATHTUNE_TUTOR_ANSWER_CACHE=256 here).

Every ratio is measured with nothing else asked of the server; ``polled`` repeats the vote and the four while
/v1/topics is polled (the topics latencies come from those runs), with the cot answer it is compared with.

The accuracy table comes from bench/tutor_modes.py's results (tutor_modes.json, by run; run tutor_modes: 200 held-out problems on the
llama-cpp-python engine; tutor_modes_xllamacpp.json: this engine, fewer problems), copied in so that one file has
every figure the README shows (``--refresh-accuracy`` copies it again without measuring).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import httpx  # noqa: E402

from mathtune.io import write_json  # noqa: E402

QUESTIONS = ["A pen costs $2 and a notebook costs $5. How much do 3 pens and 2 notebooks cost?",
             "How many prime numbers are there between 10 and 30?", "What is 15% of 240?",
             "Simplify (x^2 - 9)/(x - 3)."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topic_model(args, workdir: Path) -> str:
    if args.topic_model:
        return args.topic_model
    out = workdir / "topic"
    subprocess.run([sys.executable, "-m", "mathtune.cli", "train", str(REPO / "recipes" / "topic-tfidf.yaml"),
                    "--output", str(out), "--overwrite", "--set", f"data.limit={args.topic_rows}",
                    "--set", "tracking=none"], check=True, cwd=workdir)
    return str(out)


def start_server(topic: str, tutor: str, port: int, log, share: bool = False) -> subprocess.Popen:
    # without sharing, every request is answered anew (the figures measure the engine, and ask one problem often);
    # with it, requests join the same answer being made (the default) and finished answers are kept (not the default)
    env = {**os.environ, "MATHTUNE_TUTOR_SCOPE": "false", "MATHTUNE_TUTOR_SHARE_ANSWERS": "true" if share else "false",
           "MATHTUNE_TUTOR_ANSWER_CACHE": "256" if share else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "mathtune.cli", "serve", "--model", topic, "--tutor", tutor,
                             "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log)
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see its log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit("the server was not ready within 15 minutes")


class TopicPoller:
    """/v1/topics once every ``every`` seconds while running; latencies in ms."""

    def __init__(self, base: str, every: float = 0.1):
        self.base, self.every, self.ms, self.errors = base, every, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                ok = client.post("/v1/topics", json={"questions": ["Solve 2x + 3 = 11 for x."]}).status_code == 200
                self.ms.append((time.perf_counter() - start) * 1000)
                self.errors += not ok
                self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        ms = sorted(self.ms)
        return {"n": len(ms), "median": round(statistics.median(ms), 1), "p95": round(ms[int(0.95 * (len(ms) - 1))], 1),
                "max": round(ms[-1], 1), "errors": self.errors}


def tutor(base: str, question: str, **body) -> dict:
    start = time.perf_counter()
    reply = httpx.post(f"{base}/v1/tutor", json={"question": question, "retrieval": False, **body}, timeout=900)
    reply.raise_for_status()
    return {**reply.json(), "wall_seconds": round(time.perf_counter() - start, 2)}


def idle_topics(base: str, n: int = 30) -> dict:
    poller = TopicPoller(base, every=0.05)
    with poller:
        while len(poller.ms) < n:
            time.sleep(0.05)
    return poller.summary()


def at_once(base: str, questions: list[str], poller: TopicPoller | None = None) -> tuple[float, list[dict]]:
    """Every question asked at the same moment, one client each: the time until the last is answered."""
    results: list = [None] * len(questions)

    def ask(i):
        results[i] = tutor(base, questions[i], mode="cot")

    start = time.perf_counter()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return time.perf_counter() - start, results


def served_figures(base: str, problem: str, k: int) -> dict:
    """Each ratio with its baseline under the same conditions: the times with nothing else asked of the server, and
    again while /v1/topics is polled (which is where the topics latencies come from)."""
    tutor(base, "What is 2 + 2?", max_new_tokens=8)  # warm
    out: dict = {"topics_ms": {"idle": idle_topics(base)}}
    vote_body = {"mode": "vote", "samples": k, "vote_over": "cot", "tiebreak": "none"}
    cot = tutor(base, problem, mode="cot")
    vote = tutor(base, problem, **vote_body)
    with TopicPoller(base) as poller:
        cot_polled = tutor(base, problem, mode="cot")
    out["topics_ms"]["during_cot"] = poller.summary()
    with TopicPoller(base) as poller:
        vote_polled = tutor(base, problem, **vote_body)
    out["topics_ms"]["during_vote"] = poller.summary()
    alone = [tutor(base, q, mode="cot") for q in QUESTIONS]
    four_wall, results = at_once(base, QUESTIONS)
    same_wall, same = at_once(base, [problem] * 4)  # four teachers with one problem: the same work four times
    with TopicPoller(base) as poller:
        four_polled, _ = at_once(base, QUESTIONS)
    out["topics_ms"]["during_four_cot"] = poller.summary()
    mean_alone = statistics.mean(a["wall_seconds"] for a in alone)
    out["cot_seconds"], out["cot_tokens"] = cot["wall_seconds"], cot["new_tokens"]
    out["vote_seconds"], out["vote_tokens"], out["vote_samples"] = vote["wall_seconds"], vote["new_tokens"], \
        vote["samples_drawn"]
    out["vote_vs_cot"] = round(vote["wall_seconds"] / cot["wall_seconds"], 2)
    out["polled"] = {"cot_seconds": cot_polled["wall_seconds"], "vote_seconds": vote_polled["wall_seconds"],
                     "vote_vs_cot": round(vote_polled["wall_seconds"] / cot_polled["wall_seconds"], 2),
                     "four_at_once_seconds": round(four_polled, 2),
                     "four_vs_one": round(four_polled / mean_alone, 2)}
    out["alone_seconds"] = [a["wall_seconds"] for a in alone]
    out["alone_tokens"] = [a["new_tokens"] for a in alone]
    out["four_at_once_seconds"] = round(four_wall, 2)
    out["four_at_once_tokens"] = [r["new_tokens"] for r in results]
    out["four_vs_one"] = round(four_wall / mean_alone, 2)
    out["four_vs_longest_alone"] = round(four_wall / max(a["wall_seconds"] for a in alone), 2)
    # each teacher's own wait: their answer's time when four ask at once / the same question's time alone (and the
    # same per token, since an answer drawn beside others may come out a little longer or shorter)
    each = [r["wall_seconds"] / a["wall_seconds"] for r, a in zip(results, alone)]
    per_token = [(r["wall_seconds"] / max(r["new_tokens"], 1)) / (a["wall_seconds"] / max(a["new_tokens"], 1))
                 for r, a in zip(results, alone)]
    out["four_each_seconds"] = [r["wall_seconds"] for r in results]
    out["four_each_vs_alone"] = {"each": [round(x, 2) for x in each], "mean": round(statistics.mean(each), 2),
                                 "max": round(max(each), 2),
                                 "per_token": [round(x, 2) for x in per_token],
                                 "per_token_max": round(max(per_token), 2)}
    out["four_same_seconds"] = round(same_wall, 2)
    out["four_same_tokens"] = [r["new_tokens"] for r in same]
    out["four_same_vs_one"] = round(same_wall / cot["wall_seconds"], 2)
    return out


def shared_figures(base: str, problem: str, alone_seconds: float) -> dict:
    """On a server that shares answers: four clients ask the problem at once (one answer is made, the other three
    join it: the default), then a fifth asks it again (the kept answer: MATHTUNE_TUTOR_ANSWER_CACHE); against the
    same cot answer alone, measured on the unsharing server in this run."""
    tutor(base, "What is 2 + 2?", max_new_tokens=8)  # warm
    wall, four = at_once(base, [problem] * 4)
    again = tutor(base, problem, mode="cot")
    return {"four_same_seconds": round(wall, 2), "four_same_vs_one": round(wall / alone_seconds, 2),
            "four_same_reused": sorted(r["reused"] for r in four),
            "four_same_answers_alike": len({r["answer"] for r in four}) == 1,
            "again_seconds": again["wall_seconds"], "again_reused": again["reused"]}


def in_turn_baseline(tutor_name: str, problem: str, k: int, threads: int | None) -> dict:
    """The same vote with samples drawn one after another (the engine as it was used before batching), beside one
    batched vote and one cot answer, all in this process on one engine."""
    from common import solve_named as solve
    from mathtune.models.generate import load_tutor
    from mathtune.models.solving.rounds import drawn_in_turn as _drawn_in_turn
    from mathtune.models.solving.rounds import drawn_together as _drawn_together

    generator = load_tutor(tutor_name, "llama.cpp", threads=threads)
    generator.generate(["What is 2 + 2?"], 8)
    timings = {}
    for name, run in (("cot", lambda: solve(generator, [problem], "cot", max_new_tokens=512)),
                      ("vote_batched", lambda: _drawn_together(generator, problem, None, 512, k, "cot", 0.7, 0, 1)[0]),
                      ("vote_batched_all_samples", lambda: _drawn_together(generator, problem, None, 512, k, "cot",
                                                                           0.7, 0, 1, early_stop=False)[0]),
                      ("vote_in_turn", lambda: _drawn_in_turn(generator, problem, None, 512, k, "cot", 0.7, 0, 1,
                                                              early_stop=False)[0])):
        start = time.perf_counter()
        result = run()
        timings[name] = {"seconds": round(time.perf_counter() - start, 2),
                         "tokens": sum(s.new_tokens for s in result), "samples": len(result)}
    generator.close()
    return {**timings, "vote_batched_vs_cot": round(timings["vote_batched"]["seconds"] / timings["cot"]["seconds"], 2),
            "vote_in_turn_vs_cot": round(timings["vote_in_turn"]["seconds"] / timings["cot"]["seconds"], 2),
            "vote_batched_all_vs_cot": round(timings["vote_batched_all_samples"]["seconds"] / timings["cot"]["seconds"], 2),
            "in_turn_vs_batched": round(timings["vote_in_turn"]["seconds"] / timings["vote_batched_all_samples"]["seconds"], 2)}


# The tutor_modes results the accuracy table is read from: the 200-problem runs (the llama-cpp-python engine, one
# sample after another) and the runs on this engine (xllamacpp: batched votes), each row saying which.
ACCURACY_RUNS = {"tutor_modes": "llama-cpp-python", "tutor_modes_xllamacpp": "xllamacpp",
                 "tutor_modes_adaptive": "xllamacpp", "tutor_modes_adaptive_code": "xllamacpp",
                 "tutor_modes_adaptive_code_program": "xllamacpp", "tutor_modes_code": "xllamacpp",
                 "tutor_modes_adaptive_2of3": "xllamacpp", "tutor_modes_math_code": "xllamacpp",
                 "tutor_modes_math_default": "xllamacpp"}
MODES_RESULTS = REPO / "bench" / "results" / "tutor_modes.json"


def accuracy_table(runs: list[str], model: str) -> list[dict]:
    """The accuracy rows of ``model`` in the named runs of bench/tutor_modes.py (tutor_modes.json, by run)."""
    keep = ("mode", "data", "n", "n_target", "answer_accuracy", "median_seconds_per_problem", "seconds_per_problem",
            "mean_samples", "max_load1")
    by_run = json.loads(MODES_RESULTS.read_text()).get("by_run", {}) if MODES_RESULTS.is_file() else {}
    rows = []
    for name in runs:
        for run in (by_run.get(name) or {}).get("runs", []):
            if run.get("model") == model:
                rows.append({**{k: run.get(k) for k in keep}, "engine": ACCURACY_RUNS.get(name, name),
                             "source": f"tutor_modes.json:{name}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tutor", default="bundled:qwen2.5-coder-1.5b")
    parser.add_argument("--topic-model", default=None)
    parser.add_argument("--topic-rows", type=int, default=3000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--accuracy", nargs="+", default=list(ACCURACY_RUNS),
                        help="runs of bench/tutor_modes.py (tutor_modes.json) the accuracy table is read from")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tutor_serving.json")
    parser.add_argument("--refresh-accuracy", action="store_true",
                        help="only copy the accuracy table again into an existing --out (after bench/tutor_modes.py)")
    args = parser.parse_args()
    if args.refresh_accuracy:
        result = json.loads(args.out.read_text())
        result["accuracy"] = accuracy_table(args.accuracy, result["tutor"])
        result["accuracy_source"] = "bench/results/tutor_modes.json, runs " + ", ".join(args.accuracy)
        write_json(args.out, result)
        return
    from tutor_modes import problems

    problem = problems("gsm8k/train.jsonl", 1, True).questions[0]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        topic = topic_model(args, workdir)
        port = free_port()
        with (workdir / "server.log").open("w") as log:
            server = start_server(topic, args.tutor, port, log)
            try:
                served = served_figures(f"http://127.0.0.1:{port}", problem, args.k)
            finally:
                server.terminate()
                server.wait(timeout=60)
            port = free_port()
            server = start_server(topic, args.tutor, port, log, share=True)
            try:
                served["shared"] = shared_figures(f"http://127.0.0.1:{port}", problem, served["cot_seconds"])
            finally:
                server.terminate()
                server.wait(timeout=60)
    baseline = in_turn_baseline(args.tutor, problem, args.k, args.threads)
    targets = {"topics_max_during_vote_ms": 250, "vote_vs_cot": 2.5, "four_vs_one": 2.0}
    result = {"benchmark": "tutor_serving", "cpus": os.cpu_count(), "tutor": args.tutor, "k": args.k,
              "load1_at_end": round(os.getloadavg()[0], 2), "served": served, "engine": baseline, "targets": targets,
              "met": {"topics_max_during_vote_ms": served["topics_ms"]["during_vote"]["max"] <= 250,
                      "vote_vs_cot": served["vote_vs_cot"] <= 2.5, "four_vs_one": served["four_vs_one"] <= 2.0,
                      "four_same_vs_one": served["four_same_vs_one"] <= 2.0,
                      "four_same_shared_vs_one": served["shared"]["four_same_vs_one"] <= 2.0,
                      "four_each_vs_alone_max": served["four_each_vs_alone"]["max"] <= 2.0},
              "accuracy": accuracy_table(args.accuracy, args.tutor),
              "accuracy_source": "bench/results/tutor_modes.json, runs " + ", ".join(args.accuracy)}
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("served", "engine", "met")}, indent=1))


if __name__ == "__main__":
    main()
