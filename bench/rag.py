"""Retrieval benchmark: index build throughput, query latency at 10k and 100k chunks against brute-force NumPy,
recall@5 / MRR where relevance is known, and the tutor's answers with and without retrieval.

    python bench/rag.py                 # writes bench/results/rag.json

1. Index: the GSM8K training part of recipes/tutor-lora.yaml's split (the validation problems are never indexed,
   so retrieval cannot leak their solutions), chunked 500/50 with the recursive splitter and embedded with the
   bundled MiniLM: chunks/s.
2. Latency, same process: FAISS flat inner product vs a NumPy matrix-vector product + argpartition over the same
   vectors, p50/p99 over ``--queries`` questions, at the real index size (~10k) and at 100k vectors (the real
   embeddings tiled with small Gaussian noise and re-normalized: a flat index's cost depends only on count and
   dimension). Query embedding time is reported separately and in the end-to-end figure. recall@5 of FAISS
   against the brute-force top 5.
3. Relevance: CHAMP problems against the concepts and hints each one needs (recall@5, hit@5, MRR), semantic,
   hybrid (BM25) and MMR; MATH-500 problems against a MATH-train index, same-subject precision@5 and MRR.
4. Tutor: the first ``--tutor-samples`` validation problems answered with and without the top-4 retrieved chunks
   (answer accuracy, ROUGE-L), by the fine-tuned tutor of bench/tutor.py when present, else the base SmolLM2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402


def percentiles(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def latency(index_vectors: np.ndarray, queries: np.ndarray, k: int = 5) -> dict:
    """FAISS flat and HNSW (as mathtune searches: one query on one thread) against NumPy brute force."""
    from mathtune.rag.index import new_faiss_index, search

    out = {"vectors": len(index_vectors)}
    truth, numpy_ms = [], []
    for q in queries:
        t = time.perf_counter()
        scores = index_vectors @ q
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        numpy_ms.append((time.perf_counter() - t) * 1000)
        truth.append(set(top.tolist()))
    out["numpy_bruteforce"] = percentiles(numpy_ms)
    for kind in ("flat", "hnsw"):
        index = new_faiss_index(kind, index_vectors.shape[1])
        t = time.perf_counter()
        index.add(index_vectors)
        build = time.perf_counter() - t
        ms, agree = [], []
        for q, expected in zip(queries, truth):
            t = time.perf_counter()
            _, ids = search(index, q[None, :], k)
            ms.append((time.perf_counter() - t) * 1000)
            agree.append(len(set(ids[0].tolist()) & expected) / k)
        out[f"faiss_{kind}"] = {**percentiles(ms), "recall@5_vs_bruteforce": round(float(np.mean(agree)), 4),
                                "add_seconds": round(build, 1),
                                "speedup_p50_vs_numpy": round(float(np.percentile(numpy_ms, 50) / np.percentile(ms, 50)), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--only-latency", action="store_true", help="reuse the built index; re-measure latency only")
    parser.add_argument("--tutor-samples", type=int, default=50)
    parser.add_argument("--math-index-docs", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rag.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-rag")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import shutil

    from mathtune.config import load_recipe
    from mathtune.rag.corpus import champ_documents, read_corpus
    from mathtune.rag.evaluate import champ_queries, evaluate_queries
    from mathtune.rag.index import Embedder, Index, split_documents
    from mathtune.rag.retrieve import Retriever
    from mathtune.train.tutor_run import load_tutor_splits

    results: dict = {"benchmark": "rag", "cpus": os.cpu_count()}
    embedder = Embedder()
    recipe = load_recipe(REPO / "recipes" / "tutor-lora.yaml")
    train, val = load_tutor_splits(recipe)
    corpus = args.workdir / "gsm8k_train_split.jsonl"
    corpus.write_text("".join(json.dumps({"question": q, "answer": r}) + "\n"
                              for q, r in zip(train.questions, train.responses)), encoding="utf-8")

    # 1. build
    folder = args.workdir / "gsm8k-index"
    if args.only_latency:
        results = json.loads(args.out.read_text())
        index = Index.open(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        index = Index.create(folder)
        chunks = split_documents(read_corpus(str(corpus)), 500, 50)
        start = time.perf_counter()
        added, skipped = index.add(chunks, embedder)
        index.save()
        seconds = time.perf_counter() - start
        results["build"] = {"documents": len(train.questions), "chunks": added, "duplicates_skipped": skipped,
                            "seconds": round(seconds, 1), "chunks_per_second": round(added / seconds, 1)}
        write_json(args.out, results)

    # 2. latency
    questions = val.questions + train.questions
    questions = questions[: args.queries]
    query_vectors = embedder.encode(questions, batch_size=64)
    single = []
    for q in questions[:100]:
        t = time.perf_counter()
        embedder.encode([q], batch_size=1)
        single.append((time.perf_counter() - t) * 1000)
    vectors = index.vectors()
    rng = np.random.default_rng(0)
    reps = -(-100_000 // len(vectors))
    big = np.concatenate([vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32) for _ in range(reps)])[:100_000]
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    results["latency"] = {"query_embedding": percentiles(single), "real": latency(vectors, query_vectors),
                          "100k": latency(big.astype(np.float32), query_vectors)}
    e2e = []
    retriever = Retriever(Index.open(folder), embedder)
    for q in questions[:100]:
        t = time.perf_counter()
        retriever.search(q, 5)
        e2e.append((time.perf_counter() - t) * 1000)
    results["latency"]["end_to_end_real_index"] = percentiles(e2e)
    if args.only_latency:
        for kind in ("flat", "hnsw"):
            results["latency"][f"end_to_end_100k_{kind}_estimate_p99_ms"] = round(
                results["latency"]["query_embedding"]["p99_ms"] + results["latency"]["100k"][f"faiss_{kind}"]["p99_ms"], 3)
        results["latency"].pop("end_to_end_100k_estimate_p99_ms", None)
        write_json(args.out, results)
        return
    for kind in ("flat", "hnsw"):
        results["latency"][f"end_to_end_100k_{kind}_estimate_p99_ms"] = round(
            results["latency"]["query_embedding"]["p99_ms"] + results["latency"]["100k"][f"faiss_{kind}"]["p99_ms"], 3)
    write_json(args.out, results)

    # 3. relevance
    champ_folder = args.workdir / "champ-index"
    shutil.rmtree(champ_folder, ignore_errors=True)
    champ = Index.create(champ_folder)
    champ.add(split_documents(champ_documents()), embedder)
    champ.save()
    champ_retriever = Retriever(Index.open(champ_folder), embedder)
    queries = champ_queries()
    results["champ"] = {name: evaluate_queries(champ_retriever, queries, 5, **opts)
                        for name, opts in {"semantic": {}, "hybrid": {"hybrid": True}, "mmr": {"mmr": True},
                                           "hybrid+mmr": {"hybrid": True, "mmr": True}}.items()}
    data_dir = Path(os.environ.get("MATHTUNE_DATA_DIR", REPO.parent / "shared" / "data"))
    math_folder = args.workdir / "math-index"
    shutil.rmtree(math_folder, ignore_errors=True)
    math_docs = read_corpus(str(data_dir / "math-hendrycks" / "train.jsonl"))
    math_docs = [math_docs[i] for i in np.random.default_rng(0).permutation(len(math_docs))[: args.math_index_docs]]
    math_index = Index.create(math_folder)
    math_index.add(split_documents(math_docs), embedder)
    math_index.save()
    math500 = [json.loads(line) for line in (data_dir / "math-hendrycks" / "math500_test.jsonl").read_text().splitlines()]
    math_queries = [(row["problem"], {row["subject"]}) for row in math500[:200]]
    results["math_subject"] = evaluate_queries(Retriever(Index.open(math_folder), embedder), math_queries, 5)
    results["math_subject"]["index_documents"] = len(math_docs)
    write_json(args.out, results)

    # 4. tutor with and without retrieval
    from mathtune.models.generate import load_tutor
    from mathtune.tasks.tutor import Pairs
    from mathtune.train.tutor_eval import evaluate_generator

    tutor_dir = REPO / "runs" / "bench-tutor" / "tutor-lora"
    model = str(tutor_dir) if (tutor_dir / "mathtune.json").exists() else "bundled:smollm2"
    generator = load_tutor(model, "transformers")
    n = args.tutor_samples
    sample = Pairs(val.questions[:n], val.responses[:n], val.answers[:n], val.source)
    contexts = [retriever.context(q, 4) for q in sample.questions]
    without = evaluate_generator(generator, sample, 256, 16, off_topic=[])
    with_rag = evaluate_generator(generator, sample, 256, 16, contexts=contexts, off_topic=[])
    keys = ("answer_accuracy", "rougeL", "bleu", "mean_new_tokens")
    results["tutor"] = {"model": model, "n": n, "k": 4,
                        "without_retrieval": {k: without.metrics[k] for k in keys},
                        "with_retrieval": {k: with_rag.metrics[k] for k in keys}}
    write_json(args.out, results)
    print(json.dumps({k: results[k] for k in ("build", "latency")}, indent=1))


if __name__ == "__main__":
    main()
