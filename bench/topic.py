"""Topic benchmark: accuracy, time and memory of the topic recipes, and fine-tuner throughput vs transformers.Trainer.

    python bench/topic.py                       # everything, writes bench/results/topic.json
    python bench/topic.py --skip-recipes        # throughput comparison only
    python bench/topic.py --recipes topic-tfidf # one recipe

Data: math-topics/train.csv from the data directory (MATHTUNE_DATA_DIR or ../shared/data), fixed stratified
80/20 split with seed 0 (the recipes' own split). Each recipe runs as a separate `mathtune train` process, so
its peak memory is its own. Throughput: the same model, data, batch size, max length and LoRA settings, one
epoch over the same training rows, in this process:
  - mathtune: our loop (bf16 autocast where supported, length-grouped batches, dynamic padding);
  - plain Trainer: the usual seed-style script (tokenize with padding="max_length", Trainer defaults, fp32);
  - tuned Trainer: Trainer given the same tricks (bf16=True, group_by_length sampling, dynamic padding),
    to show how much of the gain is settings any Trainer user could turn on.
Figures are ratios within one run, since this machine is noisy.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.config import TrainConfig, load_recipe  # noqa: E402
from mathtune.io import write_json  # noqa: E402

RECIPES = ["topic-tfidf", "topic-lora", "topic-llm-lora", "topic-embedding", "topic-best"]


def load_rows(recipe_name: str, n: int):
    from mathtune.tasks import TOPIC_NAMES, LabelMap
    from mathtune.train.run import load_splits

    recipe = load_recipe(REPO / "recipes" / f"{recipe_name}.yaml")
    train, _ = load_splits(recipe)
    labels = LabelMap.infer(train.raw_labels, TOPIC_NAMES)
    y = labels.encode(train.raw_labels)
    return recipe, train.texts[:n], y[:n]


def ours(recipe, texts, labels) -> dict:
    from mathtune.models.hf import load_classifier
    from mathtune.train.finetune import fit, set_seed

    set_seed(recipe.train.seed)  # the classification head is initialised at load time
    loaded = load_classifier(recipe.model, 8, {i: str(i) for i in range(8)})
    cfg = TrainConfig(**{**recipe.train.model_dump(), "epochs": 1, "early_stopping_patience": None,
                         "checkpoint_every_steps": 10**9})
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(loaded.model, loaded.tokenizer, texts, labels, texts[:16], labels[:16], cfg,
                     recipe.model.max_length, 8, evaluate=lambda y, top: {"acc": float((top[:, 0] == y).mean())},
                     primary_metric="acc", checkpoint_dir=Path(tmp))
    return {"samples_per_second": result.samples_per_second, "seconds": result.train_seconds}


def trainer_baseline(recipe, texts, labels, tuned: bool) -> dict:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    from mathtune.models.hf import forget_gguf_origin, load_tokenizer
    from mathtune.models.registry import resolve
    from mathtune.train.finetune import set_seed

    set_seed(recipe.train.seed)
    source = resolve(recipe.model.name, recipe.model.gguf_file)
    tokenizer = load_tokenizer(source)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    model = AutoModelForSequenceClassification.from_pretrained(source.path, num_labels=8, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    forget_gguf_origin(model)
    lora = recipe.model.lora
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.r, lora_alpha=lora.alpha,
                                             lora_dropout=lora.dropout, target_modules=lora.target_modules))
    padding = False if tuned else "max_length"
    enc = tokenizer(list(texts), truncation=True, max_length=recipe.model.max_length, padding=padding)
    dataset = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": int(labels[i])}
               for i in range(len(texts))]
    if not tuned:
        dataset = [{k: torch.tensor(v) for k, v in row.items()} for row in dataset]
    t = recipe.train
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=t.batch_size, num_train_epochs=1, learning_rate=t.learning_rate,
            weight_decay=t.weight_decay, warmup_steps=int(t.warmup_ratio * len(texts) / t.batch_size), max_grad_norm=t.max_grad_norm, seed=t.seed,
            save_strategy="no", eval_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True, logging_steps=10**6, bf16=tuned,
            train_sampling_strategy="group_by_length" if tuned else "random",
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset,
                          data_collator=DataCollatorWithPadding(tokenizer) if tuned else None)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"samples_per_second": len(texts) / seconds, "seconds": seconds}


def throughput(recipe_name: str, n: int) -> dict:
    recipe, texts, labels = load_rows(recipe_name, n)
    out = {"recipe": recipe_name, "model": recipe.model.name, "samples": len(texts),
           "batch_size": recipe.train.batch_size, "max_length": recipe.model.max_length, "peft": recipe.model.peft}
    out["mathtune"] = ours(recipe, texts, labels)
    out["plain_trainer"] = trainer_baseline(recipe, texts, labels, tuned=False)
    out["tuned_trainer"] = trainer_baseline(recipe, texts, labels, tuned=True)
    mine = out["mathtune"]["samples_per_second"]
    out["ratio_vs_plain_trainer"] = round(mine / out["plain_trainer"]["samples_per_second"], 3)
    out["ratio_vs_tuned_trainer"] = round(mine / out["tuned_trainer"]["samples_per_second"], 3)
    return out


def run_recipe(name: str, workdir: Path, extra: list[str]) -> dict:
    output = workdir / name
    cmd = [sys.executable, "-m", "mathtune.cli", "train", str(REPO / "recipes" / f"{name}.yaml"), "--output", str(output),
           "--overwrite", "--set", "tracking=none", *[a for kv in extra for a in ("--set", kv)]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"recipe": name, "error": proc.stderr[-2000:] or proc.stdout[-2000:]}
    metrics = json.loads((output / "metrics.json").read_text())
    summary, val = metrics["summary"], metrics["validation"]
    per_class = {row["label"]: round(row["f1"], 4) for row in val["per_class"]}
    entry = {"recipe": name, "f1_micro": round(val["f1_micro"], 4), "f1_macro": round(val["f1_macro"], 4),
             "accuracy": round(val["accuracy"], 4), "per_class_f1": per_class, "train_seconds": summary["train_seconds"],
             "wall_seconds": round(wall, 1), "peak_rss_mb": summary["peak_rss_mb"], "epochs_run": len(metrics["history"]),
             "n_train": summary["n_train"], "n_validation": summary["n_validation"], "overrides": extra,
             "refit": bool(summary.get("refit") or val.get("member_refits")),
             "predict_rows_per_second": predict_speed(output)}
    if "members" in val:  # an ensemble: its members' own validation figures beside its own
        entry["members"] = [{k: m.get(k) for k in ("name", "trainer", "model", "f1_micro", "f1_macro", "train_seconds")}
                            for m in val["members"]]
    return entry


def predict_speed(folder: Path, rows: int = 1000) -> float:
    """Rows per second of the saved model on topic questions (one pass over `rows` questions of the training file,
    in the batches `mathtune predict` uses), measured in this process after training."""
    import pandas as pd

    from mathtune.models.saved import load_predictor
    from mathtune.paths import resolve_data_path

    frame = pd.read_csv(resolve_data_path("math-topics/train.csv")).head(rows)
    predictor = load_predictor(folder)
    predictor.predict_frame(frame.head(32), k=1)  # warm-up (first batch, lazy loads)
    start = time.perf_counter()
    predictor.predict_frame(frame, k=1)
    return round(len(frame) / (time.perf_counter() - start), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=RECIPES)
    parser.add_argument("--skip-recipes", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--throughput-samples", type=int, default=480)
    parser.add_argument("--throughput-llm-samples", type=int, default=160)
    parser.add_argument("--set", action="append", default=[], help="recipe override passed to every recipe run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "topic.json")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-topic")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import torch

    results: dict = {"benchmark": "topic", "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                                                       "cuda": torch.cuda.is_available()},
                     "data": "math-topics/train.csv, stratified 80/20 split, seed 0", "throughput": [], "recipes": []}
    if args.out.exists():  # keep earlier sections when running parts
        previous = json.loads(args.out.read_text())
        results["throughput"] = previous.get("throughput", []) if args.skip_throughput else []
        results["recipes"] = [r for r in previous.get("recipes", []) if r["recipe"] not in args.recipes or args.skip_recipes]
    if not args.skip_throughput:
        for name, n in (("topic-lora", args.throughput_samples), ("topic-llm-lora", args.throughput_llm_samples)):
            results["throughput"].append(throughput(name, n))
            write_json(args.out, results)
            print(json.dumps(results["throughput"][-1], indent=1), flush=True)
    if not args.skip_recipes:
        for name in args.recipes:
            entry = run_recipe(name, args.workdir, args.set)
            results["recipes"] = [r for r in results["recipes"] if r["recipe"] != name] + [entry]
            write_json(args.out, results)
            print(json.dumps(entry), flush=True)


if __name__ == "__main__":
    main()
