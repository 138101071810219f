"""Does retrieval help the pretrained 1.5B tutor? The same problems solved with and without retrieved worked
examples (few-shot turns, not context to copy), per mode: answer accuracy, seconds per problem, prompt growth.

    python bench/tutor_retrieval.py                  # writes bench/results/tutor_retrieval.json
    python bench/tutor_retrieval.py --gsm8k 40 --math 20 --modes cot program --math-modes cot -k 2
    python bench/tutor_retrieval.py --modes cot --math 0 --styles passages --append --skip-none

Problems: the same fixed GSM8K sample as bench/tutor_modes.py (gsm8k/train.jsonl, seeded shuffle, seed 0, the
first N) and the first M of MATH-500. Worked examples: an index of whole training problems with their solutions
(`mathtune index build FILE --whole-documents`): GSM8K's training file for GSM8K problems (the problem being
solved, and any indexed text containing it, is excluded), MATH's training file for MATH-500 (disjoint from it).
Both conditions run in this process on the same generator (llama.cpp, 2 threads, greedy), so the accuracy
difference is only the retrieved examples. OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from mathtune.config import SolveConfig  # noqa: E402
from mathtune.io import write_json  # noqa: E402
from mathtune.metrics.answers import answers_match  # noqa: E402
from mathtune.models.generate import load_tutor  # noqa: E402
from mathtune.paths import resolve_data_path  # noqa: E402
from mathtune.train.loop import peak_rss_mb  # noqa: E402
from mathtune.train.tutor_eval import evaluate_generator  # noqa: E402
from tutor_modes import problems  # noqa: E402

CORPORA = {"gsm8k": "gsm8k/train.jsonl", "math500": "math-hendrycks/train.jsonl"}


def examples_index(name: str, folder: Path):
    """An index of whole worked examples of ``name``'s training file, built once into ``folder``."""
    from mathtune.rag.corpus import read_corpus
    from mathtune.rag.index import Embedder, Index, split_documents
    from mathtune.rag.retrieve import Retriever

    if not (folder / "index.json").is_file():
        start = time.perf_counter()
        embedder = Embedder()
        index = Index.create(folder, embedder="bundled:minilm", chunk_size=1_000_000, chunk_overlap=0, dim=embedder.dim)
        docs = read_corpus(str(resolve_data_path(CORPORA[name])))
        index.add(split_documents(docs, 1_000_000, 0), embedder)
        index.save()
        print(f"{name}: indexed {len(index)} worked examples in {time.perf_counter() - start:.0f} s", flush=True)
    return Retriever.open(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:qwen2.5-coder-1.5b")
    parser.add_argument("--modes", nargs="*", default=["cot", "program"])
    parser.add_argument("--gsm8k", type=int, default=40)
    parser.add_argument("--math", type=int, default=20)
    parser.add_argument("--math-modes", nargs="*", default=["cot"], help="modes run on MATH-500 (30 s a problem)")
    parser.add_argument("-k", type=int, default=2, help="worked examples per problem")
    parser.add_argument("--styles", nargs="*", default=["examples"], choices=["examples", "passages"],
                        help="how the retrieved examples reach the model (each run beside no retrieval)")
    parser.add_argument("--append", action="store_true", help="add these runs to an existing --out file")
    parser.add_argument("--skip-none", action="store_true", help="leave out the run without retrieval (no paired view)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--index-dir", type=Path, default=REPO / "runs" / "bench-tutor-retrieval")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tutor_retrieval.json")
    args = parser.parse_args()
    sets = {"gsm8k": problems("gsm8k/train.jsonl", args.gsm8k, True)}
    if args.math:
        sets["math500"] = problems("math-hendrycks/math500_test.jsonl", args.math, False)
    contexts, retrieval_seconds = {}, {}
    for name, pairs in sets.items():
        retriever = examples_index(name, args.index_dir / name)
        start = time.perf_counter()
        hits = [retriever.search(q, args.k, exclude_text=q) for q in pairs.questions]
        retrieval_seconds[name] = (time.perf_counter() - start) / len(pairs.questions)
        for style in args.styles:
            contexts[name, style] = [retriever.render(h, style) for h in hits]
    generator = load_tutor(args.model, "auto")
    results = {"benchmark": "tutor_retrieval", "model": args.model, "backend": generator.backend,
               "cpus": os.cpu_count(), "k": args.k, "runs": []}
    if args.append and args.out.is_file():
        results["runs"] = json.loads(args.out.read_text())["runs"]
    for mode in args.modes:
        for name, pairs in sets.items():
            if name == "math500" and mode not in args.math_modes:
                continue
            right = {}
            for retrieval in ((*args.styles,) if args.skip_none else (None, *args.styles)):
                start = time.perf_counter()
                evaluated = evaluate_generator(generator, pairs, args.max_new_tokens, batch_size=1, solving=SolveConfig(mode=mode),
                                               contexts=contexts[name, retrieval] if retrieval else None, off_topic=[])
                metrics = {k: v for k, v in evaluated.metrics.items() if not isinstance(v, dict)}
                entry = {"mode": mode, "data": name, "retrieval": retrieval or "none",
                         "wall_seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                         "retrieval_seconds_per_problem": round(retrieval_seconds[name], 4) if retrieval else 0.0,
                         **metrics}
                right[retrieval] = [answers_match(f, a) for f, a in zip(evaluated.finals, pairs.answers)]
                entry["correct"] = right[retrieval]
                if retrieval and None in right:  # the paired view: which problems the examples fixed and which they broke
                    entry["fixed_by_examples"] = sum(w and not wo for wo, w in zip(right[None], right[retrieval]))
                    entry["broken_by_examples"] = sum(wo and not w for wo, w in zip(right[None], right[retrieval]))
                results["runs"].append(entry)
                write_json(args.out, results)
                print(json.dumps({k: entry[k] for k in ("mode", "data", "retrieval", "answer_accuracy",
                                                        "seconds_per_problem")}), flush=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
