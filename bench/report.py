"""Render bench/results/*.json as the Markdown tables in README.md.

    python bench/report.py            # prints the tables
    python bench/report.py --write    # replaces the block after <!-- bench-tables --> in README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MARK = "<!-- bench-tables -->"
END = "<!-- /bench-tables -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


RARE = ("Linear Algebra", "Abstract Algebra and Topology")


def topic(data: dict) -> list[str]:
    lines = ["### Topics (`bench/topic.py`; math-topics train.csv, stratified 80/20, seed 0)", "",
             "| recipe | F1-micro | F1-macro | Linear Algebra F1 | Abstract Algebra and Topology F1 | epochs | training time | "
             "peak memory | prediction | refit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data.get("recipes", []):
        if "error" in r:
            lines.append(f"| {r['recipe']} | error | | | | | | | | |")
            continue
        memory = "n/a *" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb'] / 1024:.1f} GiB"
        timing = f"{r['train_seconds'] / 60:.1f} min" + (" *" if r.get("train_seconds_note") else "")
        rare = " | ".join(f"{r['per_class_f1'].get(name, float('nan')):.2f}" for name in RARE)
        speed = f"{r['predict_rows_per_second']:.0f} rows/s" if r.get("predict_rows_per_second") else "-"
        lines.append(f"| {r['recipe']} | {r['f1_micro']:.4f} | {r['f1_macro']:.4f} | {rare} | {r['epochs_run']} | {timing} | "
                     f"{memory} | {speed} | {'yes' if r.get('refit') else ('no' if 'refit' in r else '-')} |")
    for r in data.get("recipes", []):
        if r.get("members"):
            lines += ["", f"{r['recipe']}'s members, each on its own (same split; the ensemble is the average of their probabilities):", "",
                      "| member | trainer | model | F1-micro | F1-macro | training time |", "|---|---|---|---|---|---|"]
            for m in r["members"]:
                lines.append(f"| {m['name']} | {m['trainer']} | {m['model']} | {m['f1_micro']:.4f} | {m['f1_macro']:.4f} | "
                             f"{m['train_seconds'] / 60:.1f} min |")
    notes = [f"\\* {r['recipe']}: " + " ".join(filter(None, (r.get("train_seconds_note"), r.get("peak_rss_note"))))
             for r in data.get("recipes", []) if r.get("train_seconds_note") or r.get("peak_rss_note")]
    if notes:
        lines += [""] + notes
    if data.get("throughput"):
        lines += ["", "Training throughput, one epoch over the same rows, same model, batch size, max length and LoRA settings:", "",
                  "| model | rows | mathtune | plain Trainer + peft | ratio | Trainer with bf16 + length grouping + dynamic padding | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for t in data["throughput"]:
            lines.append(f"| {t['model']} | {t['samples']} | {t['mathtune']['samples_per_second']:.1f}/s | "
                         f"{t['plain_trainer']['samples_per_second']:.1f}/s | {t['ratio_vs_plain_trainer']:.2f}x | "
                         f"{t['tuned_trainer']['samples_per_second']:.1f}/s | {t['ratio_vs_tuned_trainer']:.2f}x |")
    return lines


def misconception(data: dict) -> list[str]:
    lines = ["### Misconceptions (`bench/misconception.py`; MAP train.csv, 80/20, seed 0)", "",
             "| recipe | split | MAP@3 | top-1 | no switches | restrict only | correctness only | training time | peak memory | overrides |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data.get("runs", []):
        if "error" in r:
            lines.append(f"| {r['recipe']} | {r['split']} | error | | | | | | | |")
            continue
        sw = r["switches"]
        get = lambda a, b: sw.get(f"restrict_to_question={a},derive_correctness={b}", {}).get("map@3", float("nan"))  # noqa: E731
        lines.append(f"| {r['recipe']} | {r['split']} | {r['map@3']:.4f} | {r['top1_accuracy']:.4f} | {get(False, False):.4f} | "
                     f"{get(True, False):.4f} | {get(False, True):.4f} | {r['train_seconds'] / 60:.1f} min | "
                     f"{r['peak_rss_mb'] / 1024:.1f} GiB | {' '.join(r.get('overrides', [])) or '-'} |")
    for r in data.get("runs", []):
        if r.get("members"):
            lines += ["", f"{r['recipe']}'s members, each on its own ({r['split']} split; the ensemble averages their "
                          f"probabilities; prediction {r.get('predict_rows_per_second', 0):.0f} rows/s):", "",
                      "| member | trainer | model | MAP@3 | top-1 | training time |", "|---|---|---|---|---|---|"]
            for m in r["members"]:
                lines.append(f"| {m['name']} | {m['trainer']} | {m['model']} | {m['map@3']:.4f} | {m['accuracy']:.4f} | "
                             f"{m['train_seconds'] / 60:.1f} min |")
    return lines


def products(data: dict) -> list[str]:
    lines = ["### Products (`bench/products.py`; Amazon.in listings, 80/20, seed 0; 5-fold CV on the training part)", "",
             "| recipe | accuracy | F1-macro | AUC (OvR) | CV accuracy | CV F1-macro | CV AUC | time |", "|---|---|---|---|---|---|---|---|"]
    for r in data.get("runs", []):
        if "error" in r:
            lines.append(f"| {r['recipe']} | error | | | | | | |")
            continue
        v, c = r["validation"], r["cross_validation"]
        lines.append(f"| {r['recipe']} | {v['accuracy']:.4f} | {v['f1_macro']:.4f} | {v['auc_ovr']:.4f} | {c['accuracy']:.4f} | "
                     f"{c['f1_macro']:.4f} | {c['auc_ovr']:.4f} | {r['train_seconds'] / 60:.1f} min |")
    return lines


def augment(data: dict) -> list[str]:
    w, wo = data["runs"]["with"], data["runs"]["without"]
    rare = [k for k in wo if k.startswith("f1_") and k not in ("f1_macro", "f1_micro")]
    head = "| | F1-macro | F1-micro | " + " | ".join(k[3:] for k in rare) + " | training rows |"
    lines = [f"### Augmentation (`bench/augment.py`; {data['recipe']}, methods {', '.join(data['methods'])}, rare topics up to "
             f"{data['target_count']} rows)", "", head, "|" + "---|" * (4 + len(rare))]
    for name, r in (("without", wo), ("with", w)):
        lines.append(f"| {name} | {r['f1_macro']:.4f} | {r['f1_micro']:.4f} | " + " | ".join(f"{r[k]:.4f}" for k in rare)
                     + f" | {r['n_train']} ({r['n_augmented']} new) |")
    return lines


def _f(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _gb(mb) -> str:
    return "–" if mb is None else f"{mb / 1024:.1f} GB"


def tutor(data: dict) -> list[str]:
    s = data.get("summary", {})
    limit = data.get("limit") or s.get("n_train", 0)
    lines = [f"### Tutor (`bench/tutor.py`; SmolLM2-135M + LoRA on {limit} GSM8K training problems + "
             f"{s.get('n_train', limit) - limit} refusal examples, one epoch, {s.get('train_seconds', 0) / 60:.1f} min; "
             "validation: fixed 3% of gsm8k/train.jsonl; MATH-500: its first 40 problems)", "",
             "| data | model | answer accuracy | ROUGE-L | BLEU | perplexity | refusal rate (non-math) | false refusals (math) |",
             "|---|---|---|---|---|---|---|---|"]
    for view in ("gsm8k", "math500"):
        block = data.get(view)
        if not block:
            continue
        for label, key in (("base", "base"), ("fine-tuned", "fine_tuned")):
            m = block.get(key) or {}
            lines.append(f"| {view} (n={m.get('n', '?')}) | {label} | {_f(m.get('answer_accuracy'))} | {_f(m.get('rougeL'))} | "
                         f"{_f(m.get('bleu'), 2)} | {_f(m.get('perplexity'), 3)} | {_f(m.get('refusal_rate'))} | "
                         f"{_f(m.get('false_refusal_rate'))} |")
    speed = data.get("generation_speed")
    if speed:
        length = "exactly" if speed.get("equal_length") else "up to"
        lines += ["", f"Generation, batch 1, greedy, {length} {speed['max_new_tokens']} new tokens, {speed['prompts']} prompts x 2, "
                      "prompt processing included:", "",
                  "| backend | tokens/s | vs transformers |", "|---|---|---|",
                  f"| transformers (fine-tuned, fp32) | {speed['transformers_fp32']['tokens_per_second']:.1f} | 1.00x |",
                  f"| llama.cpp (fine-tuned, f16 GGUF export) | {speed['llama_cpp_f16']['tokens_per_second']:.1f} | "
                  f"{speed['ratio_llama_cpp_f16_vs_transformers']:.2f}x |",
                  *([f"| llama.cpp (fine-tuned, Q8_0 GGUF export) | {speed['llama_cpp_q8_0']['tokens_per_second']:.1f} | "
                     f"{speed['ratio_llama_cpp_q8_vs_transformers']:.2f}x |"] if "llama_cpp_q8_0" in speed else []),
                  f"| llama.cpp (bundled base, Q4_1 GGUF) | {speed['llama_cpp_base_q4_1']['tokens_per_second']:.1f} | "
                  f"{speed['ratio_llama_cpp_q4_vs_transformers']:.2f}x |"]
    return lines


def tutor_mix(data: dict) -> list[str]:
    """The SmolLM2 fine-tune before (bench/results/tutor.json) and after mixing MATH problems into training."""
    before = _load("tutor") or {}
    lines = ["### Tutor fine-tune: MATH mixed in, fewer refusal examples (`bench/tutor.py --skip-speed`)", "",
             "| training | data | model | answer accuracy | ROUGE-L | refusal rate (non-math) | false refusals (math) |",
             "|---|---|---|---|---|---|---|"]
    for label, run in ((f"{before.get('limit', '?')} GSM8K + 100 refusals (before)", before),
                       (f"{data.get('limit')} GSM8K + {data.get('math_mix')} MATH + {data.get('refusal_examples')} "
                        "refusals", data)):
        for view in ("gsm8k", "math500"):
            block = run.get(view) or {}
            for name, key in (("base", "base"), ("fine-tuned", "fine_tuned")):
                m = block.get(key)
                if not m or (name == "base" and run is data):
                    continue  # the base model's rows are the same in both runs
                lines.append(f"| {label} | {view} (n={m.get('n', '?')}) | {name} | {_f(m.get('answer_accuracy'))} | "
                             f"{_f(m.get('rougeL'))} | {_f(m.get('refusal_rate'))} | {_f(m.get('false_refusal_rate'))} |")
    return lines


def tutor_retrieval(data: dict) -> list[str]:
    lines = [f"### Tutor with and without retrieved worked examples (`bench/tutor_retrieval.py`; {data['model']}, "
             f"{data['backend']}, k = {data['k']} examples as few-shot turns)", "",
             "| mode | data | n | retrieval | answer accuracy | fixed / broken by the examples | s / problem | "
             "program ran |", "|---|---|---|---|---|---|---|---|"]
    for r in data.get("runs", []):
        paired = f"+{r['fixed_by_examples']} / -{r['broken_by_examples']}" if "fixed_by_examples" in r else "–"
        lines.append(f"| {r['mode']} | {r['data']} | {r['n']} | {r['retrieval']} | {_f(r.get('answer_accuracy'))} | "
                     f"{paired} | {_f(r.get('seconds_per_problem'), 1)} | {_f(r.get('program_ran_rate'))} |")
    return lines


def rag(data: dict) -> list[str]:
    b, lat = data["build"], data.get("latency", {})
    lines = [f"### Retrieval (`bench/rag.py`; index of the GSM8K training split: {b['chunks']} chunks)", "",
             f"Build: {b['chunks_per_second']:.1f} chunks/s (split + MiniLM embedding + FAISS), {b['seconds']:.0f} s.", ""]
    if lat:
        lines += ["| vectors | search | p50 | p99 | recall@5 vs brute force |", "|---|---|---|---|---|"]
        for key in ("real", "100k"):
            r = lat[key]
            lines.append(f"| {r['vectors']} | NumPy brute force | {r['numpy_bruteforce']['p50_ms']:.2f} ms | "
                         f"{r['numpy_bruteforce']['p99_ms']:.2f} ms | 1.000 |")
            for kind in ("flat", "hnsw"):
                f = r.get(f"faiss_{kind}")
                if f:
                    lines.append(f"| {r['vectors']} | FAISS {kind} | {f['p50_ms']:.2f} ms | {f['p99_ms']:.2f} ms | "
                                 f"{f['recall@5_vs_bruteforce']:.3f} |")
        q = lat["query_embedding"]
        lines += ["", f"Query embedding (MiniLM, one question): p50 {q['p50_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms; "
                      f"end to end on the real index (flat) p99 {lat['end_to_end_real_index']['p99_ms']:.1f} ms; at 100k "
                      "(embedding p99 + search p99): "
                      + ", ".join(f"{k} {lat[f'end_to_end_100k_{k}_estimate_p99_ms']:.1f} ms" for k in ("flat", "hnsw")
                                  if f"end_to_end_100k_{k}_estimate_p99_ms" in lat) + "."]
    if data.get("champ"):
        lines += ["", "| CHAMP problems -> needed concepts/hints | recall@5 | hit@5 | MRR |", "|---|---|---|---|"]
        for name, m in data["champ"].items():
            lines.append(f"| {name} | {m['recall@5']:.4f} | {m['hit@5']:.4f} | {m['mrr']:.4f} |")
    if data.get("math_subject"):
        m = data["math_subject"]
        lines += ["", f"MATH-500 problems against {m['index_documents']} MATH training solutions: same-subject "
                      f"precision@5 {m['precision@5']:.4f}, MRR {m['mrr']:.4f} ({m['queries']} queries)."]
    if data.get("tutor"):
        t = data["tutor"]
        lines += ["", f"| tutor ({t['model'].split('/')[-1]}, {t['n']} validation problems) | answer accuracy | ROUGE-L | BLEU |",
                  "|---|---|---|---|"]
        for name in ("without_retrieval", "with_retrieval"):
            m = t[name]
            lines.append(f"| {name.replace('_', ' ')} | {_f(m['answer_accuracy'])} | {_f(m['rougeL'])} | {_f(m['bleu'], 2)} |")
    return lines


def serve(data: dict) -> list[str]:
    lines = [f"### Serving (`bench/serve.py`; /v1/topics, one question per request, {data['seconds_per_level']:.0f} s per level, loopback)", "",
             "| server | concurrency | requests/s | p50 | p99 | errors | throughput vs naive |", "|---|---|---|---|---|---|---|"]
    naive = {r["concurrency"]: r for r in data["servers"].get("naive", [])}
    for name, runs in data["servers"].items():
        for r in runs:
            base = naive.get(r["concurrency"])
            ratio = f"{r['throughput_rps'] / base['throughput_rps']:.2f}x" if base and base["throughput_rps"] else "–"
            lines.append(f"| {name} | {r['concurrency']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
                         f"{r['errors']} | {ratio} |")
    soak = data.get("soak")
    if soak:
        lines += ["", f"Soak, {soak['seconds']:.0f} s at concurrency {soak['concurrency']} ({soak['backend']}): {soak['requests']} requests, "
                      f"{soak['errors']} errors; server memory {soak['rss_mb_start']:.0f} MB at the start, {soak['rss_mb_end']:.0f} MB at "
                      f"the end (max {soak['rss_mb_max']:.0f} MB)."]
    return lines


def hostile(data: dict) -> list[str]:
    lines = ["### Hostile and careless clients (`bench/hostile.py`; topic-tfidf served, load generator on the same 2 cores)", "",
             "| load | concurrency | valid requests/s | p50 | p99 | 5xx | errors on valid requests |", "|---|---|---|---|---|---|---|"]
    for r in data.get("levels", []):
        lines.append(f"| valid only, {r['seconds']:.0f} s | {r['concurrency']} | {r['valid_rps']:.1f} | {r['p50_ms']:.1f} ms | "
                     f"{r['p99_ms']:.1f} ms | {r['server_errors']} | {r['valid_errors']} |")
    soak = data.get("mixed_soak")
    if soak:
        lines.append(f"| {soak['invalid_share']:.0%} invalid, {soak['seconds']:.0f} s soak | {soak['concurrency']} | "
                     f"{soak['valid_rps']:.1f} | {soak['p50_ms']:.1f} ms | {soak['p99_ms']:.1f} ms | {soak['server_errors']} | "
                     f"{soak['valid_errors']} |")
        lines += ["", f"Soak: {soak['invalid_4xx']} of {soak['invalid']} invalid requests answered with a JSON 4xx; server memory "
                      f"{soak['rss_mb_start']:.0f} MB at the start, {soak['rss_mb_end']:.0f} MB at the end."]
    slow, quiet = data.get("slow_connections"), data.get("livez_quiet")
    if slow and quiet:
        lines += ["", f"{slow['connections']} slow connections (headers, then a body byte every 5 s; body deadline "
                      f"{data['settings']['body_timeout_s']} s): {slow['answered_408']} answered 408 and "
                      f"{slow['closed_by_server']} closed by the server within {slow['watch_seconds']} s. /livez: quiet p99 "
                      f"{quiet['p99_ms']:.1f} ms; while they were open p50 {slow['livez_while_open']['p50_ms']:.1f} ms, p99 "
                      f"{slow['livez_while_open']['p99_ms']:.0f} ms ({slow['livez_while_open']['failures']} failures); after the "
                      f"deadline p99 {slow['livez_after_deadline']['p99_ms']:.1f} ms."]
    term = data.get("sigterm")
    if term:
        lines += ["", f"SIGTERM under load: the server exited {term['seconds_to_exit']:.2f} s after the signal; "
                      f"{term['in_flight_completed']} of {term['in_flight_completed'] + term['in_flight_failed']} in-flight "
                      f"requests completed."]
    return lines


def tutor_modes(data: dict) -> list[str]:
    lines = ["### Tutor without training: solving modes (`bench/tutor_modes.py`; llama.cpp, 2 threads)", "",
             "| model | mode | data | n (of target) | answer accuracy | s / problem | tokens/s | program ran | vote agreement | "
             "refusal (non-math) | false refusals | peak RSS | max load |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    more = _load("tutor_modes_smollm2") or {}
    for r in data.get("runs", []) + more.get("runs", []):
        n = f"{r['n']} of {r['n_target']}" if r.get("n_target", r["n"]) != r["n"] else str(r["n"])
        lines.append(f"| {r['model']} | {r['mode']} | {r['data']} | {n} | {_f(r.get('answer_accuracy'))} | "
                     f"{_f(r.get('seconds_per_problem'), 1)} | {_f(r.get('tokens_per_second'), 1)} | "
                     f"{_f(r.get('program_ran_rate'))} | {_f(r.get('mean_confidence'))} | {_f(r.get('refusal_rate'))} | "
                     f"{_f(r.get('false_refusal_rate'))} | {_gb(r.get('peak_rss_mb'))} | {_f(r.get('max_load1'), 1)} |")
    lines += ["", "GSM8K: a fixed sample of gsm8k/train.jsonl (seeded shuffle, the first n; vote: up to k = 5 samples of "
                  "cot at temperature 0.7, stopped once the rest could not change the majority; vote+program: the same "
                  "votes, and where no two samples agreed, program mode's greedy answer; vote(program): up to 5 samples of "
                  "program mode at temperature 0.7, each corrected once if its program failed); MATH-500: its first n. "
                  "\"program ran\": the share of answers whose program ran cleanly in the "
                  "sandbox (after at most one correction); the others wrote no program (answered in prose, scored by "
                  "the answer they state) or a program that failed twice (no answer). \"max load\": the highest "
                  "1-minute load average when a problem started (2 cores: above 2, the machine was shared, and seconds "
                  "per problem are upper bounds). \"peak RSS\": the benchmark process's peak resident memory (VmHWM) "
                  "after the run, model included. Per-problem results: bench/results/tutor_modes_problems.jsonl."]
    for r in data.get("runs", []):
        if r.get("accuracy_by_agreeing_samples"):
            lines += ["", f"Vote agreement as a confidence ({r['model']}, {r['mode']}, {r['data']}, n = {r['n']}):", "",
                      "| samples agreeing with the answer | problems | answer right |", "|---|---|---|"]
            lines += [f"| {k} | {v['n']} | {v['correct']} ({v['correct'] / v['n']:.0%}) |"
                      for k, v in r["accuracy_by_agreeing_samples"].items()]
    return lines


def render() -> str:
    parts = []
    for name, fn in (("topic", topic), ("misconception", misconception), ("augment", augment), ("products", products),
                     ("tutor", tutor), ("tutor_mix", tutor_mix), ("tutor_modes", tutor_modes),
                     ("tutor_retrieval", tutor_retrieval), ("rag", rag),
                     ("serve", serve), ("hostile", hostile)):
        data = _load(name)
        if data:
            parts += fn(data) + [""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text = render()
    if not args.write:
        print(text)
        return
    readme = (REPO / "README.md").read_text()
    start = readme.index(MARK) + len(MARK)
    end = readme.index(END) if END in readme else start
    (REPO / "README.md").write_text(readme[:start] + "\n" + text + "\n" + END + readme[end + (len(END) if END in readme else 0):])


if __name__ == "__main__":
    main()
