"""`mathtune train`: recipe -> data -> trainer -> evaluation -> tracking -> model folder.

The model folder appears only when everything succeeded: work happens in ``OUTPUT.partial`` (which also
holds the resumable checkpoints) and is renamed at the end. A bad input removes the partial folder;
a killed run leaves it, and the same command resumes from its last checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import mathtune

from .. import tracking
from ..config import Recipe, recipe_to_yaml
from ..data.demo import load_demo
from ..data.readers import read_table, require_columns
from ..data.split import stratified_split, stratified_subsample
from ..errors import DataError, MathtuneError, RecipeError
from ..io import replace_dir, write_json, write_text
from ..metrics.classification import classification_metrics, headline
from ..metrics.plots import confusion_matrix_png, training_curve_png
from ..models.saved import HF_SUBDIR, MANIFEST
from ..paths import is_demo, resolve_data_path
from ..tasks import LabelMap, get_task
from .finetune import NullReporter, Reporter, peak_rss_mb, score, set_seed, tokenize

log = logging.getLogger(__name__)


@dataclass
class Split:
    texts: list[str]
    raw_labels: list[str]
    source: str


@dataclass
class TrainResult:
    output: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)
    tracking: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    samples_per_second: float | None = None
    resumed_from_step: int = 0


# ----------------------------------------------------------------------------- data


def load_frame(ref: str, fmt: str = "auto", encoding: str = "utf-8") -> tuple[pd.DataFrame, str]:
    if is_demo(ref):
        return load_demo(ref), ref
    path = resolve_data_path(ref)
    return read_table(path, fmt, encoding), str(path)


def _labels(frame: pd.DataFrame, column: str, source: str) -> list[str]:
    require_columns(frame, [column], source, hint="Set data.label_column to the label column.")
    values = frame[column].astype(str).str.strip().tolist()
    empty = [i + 1 for i, v in enumerate(values) if not v]
    if empty:
        raise DataError(f"{source}: column {column} is empty in data row(s) {', '.join(map(str, empty[:10]))}")
    return values


def load_splits(recipe: Recipe) -> tuple[Split, Split]:
    task = get_task(recipe.task)
    d = recipe.data
    frame, source = load_frame(d.train, d.format, d.encoding)
    texts = task.inputs(frame, d.text_column, source)
    labels = _labels(frame, d.label_column, source)
    if d.limit and d.limit < len(texts):
        keep = stratified_subsample(labels, d.limit, d.split_seed)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    if d.validation:
        vframe, vsource = load_frame(d.validation, d.format, d.encoding)
        return Split(texts, labels, source), Split(task.inputs(vframe, d.text_column, vsource),
                                                   _labels(vframe, d.label_column, vsource), vsource)
    train_idx, val_idx = stratified_split(labels, d.val_size, d.split_seed)
    pick = lambda idx, xs: [xs[i] for i in idx]  # noqa: E731
    return (Split(pick(train_idx, texts), pick(train_idx, labels), f"{source} (train split)"),
            Split(pick(val_idx, texts), pick(val_idx, labels), f"{source} (validation split)"))


# ----------------------------------------------------------------------------- output folder


def _prepare_work_dir(output: Path, recipe_yaml: str, overwrite: bool, resume: bool) -> Path:
    if output.exists() and not overwrite:
        raise MathtuneError(f"{output} already exists; pass --overwrite to replace it (it is kept until the new model is complete)")
    if output.exists() and not (output / MANIFEST).exists() and any(output.iterdir()):
        raise MathtuneError(f"{output} exists and is not a mathtune model folder; choose another --output")
    work = output.with_name(output.name + ".partial")
    if work.exists():
        previous = work / "recipe.yaml"
        if resume and previous.exists() and previous.read_text(encoding="utf-8") == recipe_yaml:
            log.info("resuming the interrupted run in %s", work)
            return work
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_text(work / "recipe.yaml", recipe_yaml)
    return work


# ----------------------------------------------------------------------------- training


def train_from_recipe(recipe: Recipe, output: str | Path, overwrite: bool = False, resume: bool = True,
                      reporter: Reporter | None = None) -> TrainResult:
    reporter = reporter or NullReporter()
    task = get_task(recipe.task)
    output = Path(output)
    check_recipe_runnable(recipe)
    train, val = load_splits(recipe)
    labels = LabelMap.infer(train.raw_labels, task.default_label_names, recipe.labels)
    y_train = labels.encode(train.raw_labels, train.source)
    y_val = labels.encode(val.raw_labels, val.source)

    recipe_yaml = recipe_to_yaml(recipe)
    work = _prepare_work_dir(output, recipe_yaml, overwrite, resume)
    run_file = work / "run.json"
    prior_run = json.loads(run_file.read_text()) if run_file.exists() else {}
    tracker = None
    try:
        tracker = tracking.start(recipe, run_name=output.name, default_experiment=f"mathtune-{recipe.task}",
                                 run_id=prior_run.get("run_id"))
        write_json(run_file, tracker.info)
        set_seed(recipe.train.seed)
        if recipe.trainer == "tfidf":
            result = _train_tfidf(recipe, work, train.texts, y_train, val.texts, y_val, labels, reporter)
        else:
            result = _train_finetune(recipe, work, train.texts, y_train, val.texts, y_val, labels, reporter, task)
        metrics, history = result["metrics"], result["history"]
        for entry in history:
            tracker.log_metrics({k: v for k, v in entry.items() if k not in ("epoch", "step")}, step=entry["epoch"])
        summary = {
            **headline(metrics),
            "train_seconds": round(result["train_seconds"], 3),
            "train_samples_per_second": result.get("samples_per_second"),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "n_train": len(y_train),
            "n_validation": len(y_val),
        }
        tracker.log_metrics({k: v for k, v in summary.items() if v is not None and k != "n"})
        manifest = {
            "format_version": 1,
            "mathtune_version": mathtune.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "task": recipe.task,
            "kind": "tfidf" if recipe.trainer == "tfidf" else "transformer",
            "labels": labels.to_dict(),
            "text_column": recipe.data.text_column,
            "id_column": recipe.data.id_column,
            "max_length": recipe.model.max_length,
            "base_model": None if recipe.trainer == "tfidf" else recipe.model.name,
            "peft": None if recipe.trainer == "tfidf" else recipe.model.peft,
            "primary_metric": task.primary_metric,
            "validation": {task.primary_metric: metrics[task.primary_metric], "n": len(y_val)},
        }
        write_json(work / MANIFEST, manifest)
        write_json(work / "metrics.json", {"validation": metrics, "summary": summary, "history": history})
        _write_reports(work, metrics, history, labels, task.primary_metric)
        for name in ("confusion_matrix.png", "training_curve.png", "per_class.csv", "metrics.json", "recipe.yaml"):
            if (work / name).exists():
                tracker.log_artifact(work / name, "reports")
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        run_file.unlink(missing_ok=True)
        if recipe.tracking.log_model:
            registered = tracker.log_model(work, recipe.tracking.register_as or task.registered_name)
            manifest["tracking"] = {**tracker.info, **registered}
        else:
            manifest["tracking"] = tracker.info
        write_json(work / MANIFEST, manifest)
        tracker.end("FINISHED")
        replace_dir(work, output)
        return TrainResult(output, {**metrics, **summary}, history, manifest["tracking"], result["train_seconds"],
                           result.get("samples_per_second"), result.get("resumed_from_step", 0))
    except MathtuneError:
        if tracker:
            tracker.end("FAILED")
        if not (work / "checkpoints").exists():
            shutil.rmtree(work, ignore_errors=True)
        raise
    except BaseException:
        if tracker:
            tracker.end("KILLED")
        raise


def _evaluate(y_true, top_idx, labels: LabelMap) -> dict:
    return classification_metrics(y_true, top_idx[:, 0], labels.names)


def _train_tfidf(recipe, work, x_train, y_train, x_val, y_val, labels, reporter) -> dict:
    import time

    from .classical import class_probabilities, fit_tfidf, save

    reporter.start("fit TF-IDF + linear model", None)
    start = time.perf_counter()
    pipeline = fit_tfidf(x_train, y_train, recipe.tfidf, recipe.train.seed)
    seconds = time.perf_counter() - start
    save(pipeline, work)
    probs = class_probabilities(pipeline, x_val, len(labels))
    metrics = _evaluate(y_val, np.argsort(-probs, axis=1)[:, :1], labels)
    history = [{"epoch": 1, "step": 1, **{k: v for k, v in metrics.items() if isinstance(v, float)}}]
    return {"metrics": metrics, "history": history, "train_seconds": seconds,
            "samples_per_second": len(x_train) / max(seconds, 1e-9)}


def _train_finetune(recipe, work, x_train, y_train, x_val, y_val, labels, reporter, task) -> dict:
    from ..models.hf import load_classifier, merge_for_saving
    from .finetune import fit

    reporter.start(f"load {recipe.model.name}", None)
    loaded = load_classifier(recipe.model, len(labels), dict(enumerate(labels.names)))
    fitted = fit(
        loaded.model, loaded.tokenizer, x_train, y_train, x_val, y_val, recipe.train,
        max_length=recipe.model.max_length, num_labels=len(labels),
        evaluate=lambda y, top: _evaluate(y, top, labels), primary_metric=task.primary_metric,
        checkpoint_dir=work / "checkpoints", top_k=task.top_k, reporter=reporter,
    )
    model = merge_for_saving(loaded.model)
    reporter.start("validate best epoch", len(x_val))
    val_ids = tokenize(loaded.tokenizer, x_val, recipe.model.max_length)
    top_idx, _, _ = score(model, val_ids, loaded.tokenizer.pad_token_id, recipe.train.eval_batch_size,
                          task.top_k, recipe.train.precision, reporter=reporter)
    metrics = _evaluate(y_val, top_idx, labels)
    reporter.start("save model", None)
    if sum(p.numel() for p in model.parameters()) > 100e6:
        model = model.to("cpu").to(dtype=__import__("torch").bfloat16)  # large models: half the disk
    model.save_pretrained(work / HF_SUBDIR, safe_serialization=True)
    loaded.tokenizer.save_pretrained(work / HF_SUBDIR)
    metrics["trainable_params"] = int(loaded.trainable_params)
    metrics["best_epoch"] = int(fitted.best_epoch)
    return {"metrics": metrics, "history": fitted.history, "train_seconds": fitted.train_seconds,
            "samples_per_second": round(fitted.samples_per_second, 3), "resumed_from_step": fitted.resumed_from_step}


def _write_reports(work: Path, metrics: dict, history: list[dict], labels: LabelMap, primary: str) -> None:
    confusion_matrix_png(metrics["confusion_matrix"], labels.names, work / "confusion_matrix.png",
                         title=f"Validation confusion matrix ({primary} {metrics[primary]:.4f})")
    if history:
        training_curve_png(history, work / "training_curve.png", primary)
    per_class = pd.DataFrame(metrics["per_class"])
    write_text(work / "per_class.csv", per_class.to_csv(index=False))


def check_recipe_runnable(recipe: Recipe) -> None:
    if recipe.trainer == "finetune" and recipe.model.peft == "qlora":
        from ..models.hf import _quantization_config

        _quantization_config(recipe.model)
    if recipe.trainer not in ("tfidf", "finetune"):
        raise RecipeError(f"trainer {recipe.trainer!r} is not available for task {recipe.task}")
