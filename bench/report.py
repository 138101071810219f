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


def topic(data: dict) -> list[str]:
    lines = ["### Topics (`bench/topic.py`; math-topics train.csv, stratified 80/20, seed 0)", "",
             "| recipe | F1-micro | F1-macro | epochs | training time | peak memory |", "|---|---|---|---|---|---|"]
    for r in data.get("recipes", []):
        if "error" in r:
            lines.append(f"| {r['recipe']} | error | | | | |")
            continue
        memory = "n/a *" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb'] / 1024:.1f} GiB"
        timing = f"{r['train_seconds'] / 60:.1f} min" + (" *" if r.get("train_seconds_note") else "")
        lines.append(f"| {r['recipe']} | {r['f1_micro']:.4f} | {r['f1_macro']:.4f} | {r['epochs_run']} | {timing} | {memory} |")
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


def render() -> str:
    parts = []
    for name, fn in (("topic", topic), ("misconception", misconception), ("augment", augment), ("products", products)):
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
