"""CHAMP retrieval quality by encoder, scoring and query formulation (issue: recall@5 was 0.329 with MiniLM).

    python bench/experiments/retrieval.py            # writes bench/results/retrieval.json

Each CHAMP problem names the concepts and hints it needs (``ch_list``); the index holds every concept and hint,
chunked as `mathtune index build demo:champ` does. For each encoder (bundled MiniLM, bundled mpnet when its parts
are installed), semantic and hybrid (BM25 mixed in) scoring, and three formulations of the query:
- ``problem``: the problem text as it is (what the tutor sends today);
- ``instruction``: "Concepts and hints needed to solve: " + the problem (an instruction-style query);
- ``no_numbers``: the problem with numbers and LaTeX commands removed (concepts are stated without the numbers).
recall@5 (share of a problem's needed items in the top 5), hit@5, MRR; build and query time per encoder.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402

FORMULATIONS = {
    "problem": lambda q: q,
    "instruction": lambda q: "Concepts and hints needed to solve: " + q,
    "no_numbers": lambda q: re.sub(r"\s+", " ", re.sub(r"\\[A-Za-z]+|[-+]?\d+(?:[.,]\d+)?|[$^_{}]", " ", q)).strip(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="*", default=["bundled:minilm", "bundled:mpnet"])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrieval.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-retrieval")
    args = parser.parse_args()
    from mathtune.errors import ModelError
    from mathtune.rag.corpus import champ_documents
    from mathtune.rag.evaluate import champ_queries, evaluate_queries
    from mathtune.rag.index import Embedder, Index, split_documents
    from mathtune.rag.retrieve import Retriever

    queries = champ_queries()
    results = {"benchmark": "retrieval", "data": "CHAMP (champ-dataset): each problem's needed concepts and hints",
               "queries": len(queries), "k": 5, "runs": []}
    for name in args.encoders:
        try:
            embedder = Embedder(name)
        except ModelError as exc:
            results["runs"].append({"encoder": name, "skipped": str(exc)})
            continue
        folder = args.workdir / name.replace(":", "-")
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        index = Index.create(folder, embedder=name, dim=embedder.dim)
        chunks = split_documents(champ_documents())
        index.add(chunks, embedder)
        index.save()
        build = time.perf_counter() - start
        retriever = Retriever(Index.open(folder), embedder)
        for formulation, rewrite in FORMULATIONS.items():
            rewritten = [(rewrite(q), relevant) for q, relevant in queries]
            for scoring, options in (("semantic", {}), ("hybrid", {"hybrid": True})):
                start = time.perf_counter()
                metrics = evaluate_queries(retriever, rewritten, 5, **options)
                entry = {"encoder": name, "formulation": formulation, "scoring": scoring, "chunks": len(chunks),
                         "build_seconds": round(build, 1),
                         "ms_per_query": round(1000 * (time.perf_counter() - start) / len(rewritten), 1),
                         **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
                results["runs"].append(entry)
                print(json.dumps(entry), flush=True)
        write_json(args.out, results)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
