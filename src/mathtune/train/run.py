"""`mathtune train`: recipe -> data -> trainer -> evaluation -> tracking -> model folder.

The model folder appears only when everything succeeded: work happens in ``OUTPUT.partial`` (which also
holds the resumable checkpoints) and is renamed at the end. A bad input removes the partial folder;
a killed run leaves it, and the same command resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
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
from ..metrics.classification import headline
from ..metrics.drift import build_reference
from ..metrics.plots import confusion_matrix_png, training_curve_png
from ..models.saved import HF_SUBDIR, MANIFEST
from ..paths import is_demo, resolve_data_path
from ..tasks import LabelMap, get_task
from .finetune import tokenize
from .loop import NullReporter, Reporter, peak_rss_mb, set_seed

log = logging.getLogger(__name__)


@dataclass
class Split:
    frame: pd.DataFrame
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
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- data


def load_frame(ref: str, fmt: str = "auto", encoding: str = "utf-8") -> tuple[pd.DataFrame, str]:
    if is_demo(ref):
        return load_demo(ref), ref
    path = resolve_data_path(ref)
    return read_table(path, fmt, encoding), str(path)


def task_for(recipe: Recipe):
    settings = {"misconception": recipe.misconception, "products": recipe.products}.get(recipe.task)
    return get_task(recipe.task, settings)


def _split_of(frame: pd.DataFrame, task, d, source: str) -> Split:
    frame = frame.reset_index(drop=True)
    return Split(frame, task.inputs(frame, d.text_column, source), task.raw_labels(frame, d.label_column, source), source)


def grouped_split(groups: list[str], val_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole groups (e.g. questions) go to validation, to measure how a model does on unseen ones."""
    from sklearn.model_selection import GroupShuffleSplit

    if len(set(groups)) < 2:
        raise DataError("a grouped split needs at least 2 groups")
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_size, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train_idx), np.sort(val_idx)


def load_splits(recipe: Recipe) -> tuple[Split, Split]:
    task = task_for(recipe)
    d = recipe.data
    frame, source = load_frame(d.train, d.format, d.encoding)
    frame = task.clean(frame, d.label_column, source)
    full = _split_of(frame, task, d, source)
    if d.validation:
        vframe, vsource = load_frame(d.validation, d.format, d.encoding)
        train, val = full, _split_of(vframe, task, d, vsource)
    else:
        if d.split == "grouped":
            require_columns(frame, [d.group_column], source, hint="Set data.group_column, or use data.split: stratified.")
            train_idx, val_idx = grouped_split(frame[d.group_column].astype(str).tolist(), d.val_size, d.split_seed)
        else:
            train_idx, val_idx = stratified_split(full.raw_labels, d.val_size, d.split_seed)
        train = _subset(full, train_idx, f"{source} (train split)")
        val = _subset(full, val_idx, f"{source} (validation split)")
    if d.limit and d.limit < len(train.texts):
        train = _subset(train, stratified_subsample(train.raw_labels, d.limit, d.split_seed), train.source)
    return train, val


def _augment(recipe: Recipe, train: Split, reporter) -> tuple[Split, object]:
    """Augment rare classes of the training split only: validation rows never see augmented copies."""
    from ..data.augment import augment_rows

    if recipe.task != "topic":
        raise RecipeError(f"augment: available for the topic task, not {recipe.task} (its inputs are structured)")
    reporter.start("augment rare classes", None)
    texts, labels, report = augment_rows(train.texts, train.raw_labels, recipe.augment)
    d = recipe.data
    extra = pd.DataFrame({d.text_column: texts, d.label_column: labels})
    frame = pd.concat([train.frame, extra], ignore_index=True)
    return Split(frame, train.texts + texts, train.raw_labels + labels, train.source + " + augmented"), report


def _subset(split: Split, idx, source: str) -> Split:
    idx = list(idx)
    return Split(split.frame.iloc[idx].reset_index(drop=True), [split.texts[i] for i in idx],
                 [split.raw_labels[i] for i in idx], source)


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


def prepare_work(recipe: Recipe, output: Path, overwrite: bool, resume: bool, dist) -> tuple[Path, str | None]:
    """The partial folder (made by the main process; the others wait for it) and the MLflow run to continue."""
    work = output.with_name(output.name + ".partial")
    if dist.is_main:
        work = _prepare_work_dir(output, recipe_to_yaml(recipe), overwrite, resume)
    dist.barrier()
    run_file = work / "run.json"
    return work, (json.loads(run_file.read_text()).get("run_id") if run_file.exists() else None)


def start_tracker(recipe: Recipe, output: Path, work: Path, prior_run_id: str | None, dist):
    """The MLflow run (main process only), remembered in run.json so a resumed run continues it."""
    if not dist.is_main:
        return None
    tracker = tracking.start(recipe, run_name=output.name, default_experiment=f"mathtune-{recipe.task}",
                             run_id=prior_run_id)
    write_json(work / "run.json", tracker.info)
    return tracker


@contextlib.contextmanager
def tracked_run(recipe: Recipe, output: Path, work: Path, prior_run_id: str | None, dist):
    """The MLflow run around a training pipeline: a bad input ends it FAILED and removes the partial folder
    (unless it holds checkpoints to resume from); anything else (a kill, a crash) ends it KILLED and keeps the
    folder, so the same command resumes."""
    tracker = None
    try:
        tracker = start_tracker(recipe, output, work, prior_run_id, dist)
        yield tracker
    except MathtuneError:
        if tracker:
            tracker.end("FAILED")
        if dist.is_main and not (work / "checkpoints").exists():
            shutil.rmtree(work, ignore_errors=True)
        raise
    except BaseException:
        if tracker:
            tracker.end("KILLED")
        raise


# ----------------------------------------------------------------------------- training


def train_from_recipe(recipe: Recipe, output: str | Path, overwrite: bool = False, resume: bool = True,
                      reporter: Reporter | None = None) -> TrainResult:
    reporter = reporter or NullReporter()
    check_recipe_runnable(recipe)
    if recipe.task == "tutor":
        from .tutor_run import train_tutor

        return train_tutor(recipe, output, overwrite, resume, reporter)
    from .distributed import current

    dist = current()
    task = task_for(recipe)
    output = Path(output)
    train, val = load_splits(recipe)
    augment_report = None
    if recipe.augment:
        train, augment_report = _augment(recipe, train, reporter)
    labels = LabelMap.infer(train.raw_labels, task.default_label_names, recipe.labels)
    y_train = labels.encode(train.raw_labels, train.source)
    # a split made here can put labels in validation that training never saw (a grouped split, or a training
    # part cut down by data.limit): they count as misses and are reported; a validation file given by the user
    # must only hold known labels
    made_here = not recipe.data.validation and (recipe.data.split == "grouped" or recipe.data.limit is not None)
    y_val = labels.encode(val.raw_labels, val.source, allow_unknown=made_here)
    structure = task.structure(train.frame, train.raw_labels, labels)
    masks, notes = _validation_variants(task, val.frame, structure, labels)

    if dist.world > 1 and recipe.trainer != "finetune":
        if not dist.is_main:  # classical trainers run in one process; the others have nothing to do
            return TrainResult(output, {})
    work, prior_run_id = prepare_work(recipe, output, overwrite, resume, dist)
    run_file = work / "run.json"
    with tracked_run(recipe, output, work, prior_run_id, dist) as tracker:
        set_seed(recipe.train.seed)
        if recipe.trainer == "finetune" and dist.world > 1:
            result = _train_finetune(recipe, work, train.texts, y_train, val.texts, y_val, labels, reporter, task, masks, dist)
            if not dist.is_main:  # the main process evaluates, saves and logs
                return TrainResult(output, {}, result["history"])
        elif recipe.trainer == "sklearn":
            result = _train_sklearn(recipe, work, train, val, y_train, y_val, labels, reporter, task)
        elif recipe.trainer == "tfidf":
            result = _train_tfidf(recipe, work, train.texts, y_train, val.texts, y_val, labels, reporter, task, masks)
        else:
            result = _train_finetune(recipe, work, train.texts, y_train, val.texts, y_val, labels, reporter, task, masks)
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
            "n_augmented": sum(augment_report.added_per_label.values()) if augment_report else 0,
            "processes": dist.world,
        }
        tracker.log_metrics({k: v for k, v in summary.items() if v is not None and k != "n"})
        manifest = {
            "format_version": 1,
            "mathtune_version": mathtune.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "task": recipe.task,
            "kind": {"tfidf": "tfidf", "sklearn": "sklearn"}.get(recipe.trainer, "transformer"),
            "labels": labels.to_dict(),
            "text_column": recipe.data.text_column,
            "id_column": recipe.data.id_column,
            "max_length": recipe.model.max_length,
            "base_model": recipe.model.name if recipe.trainer == "finetune" else None,
            "peft": recipe.model.peft if recipe.trainer == "finetune" else None,
            "primary_metric": task.primary_metric,
            "validation": {task.primary_metric: metrics[task.primary_metric], "n": len(y_val)},
            "task_settings": task.settings_dict(),
            "structure": structure,
        }
        write_json(work / MANIFEST, manifest)
        write_json(work / "metrics.json", {"validation": metrics, "summary": summary, "history": history,
                                           "ablation": result.get("ablation", {}), "split": recipe.data.split})
        _write_reports(work, metrics, history, labels, task)
        top_idx, top_prob = result["val_top"]
        write_json(work / "drift_reference.json",
                   build_reference(train.texts, val.texts, top_prob[:, 0], top_idx[:, 0], len(labels), seed=recipe.train.seed))
        for name in ("confusion_matrix.png", "training_curve.png", "feature_importance.png", "cv_confusion_matrix.png",
                     "per_class.csv", "metrics.json", "recipe.yaml"):
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
        return TrainResult(output, {**metrics, **summary, "ablation": result.get("ablation", {})}, history,
                           manifest["tracking"], result["train_seconds"], result.get("samples_per_second"),
                           result.get("resumed_from_step", 0), notes)


SWITCHES = ("restrict_to_question", "derive_correctness")


def _validation_variants(task, frame, structure, labels) -> tuple[dict, list[str]]:
    """Candidate masks for the final validation: the recipe's setting ("final"), and for tasks with
    switches every combination of them, so one training run also gives the switch ablation."""
    final, notes = task.candidate_masks(frame, structure, labels)
    variants = {"final": final}
    if structure is not None:
        for a in (False, True):
            for b in (False, True):
                mask, _ = task.candidate_masks(frame, structure, labels, {SWITCHES[0]: a, SWITCHES[1]: b})
                variants[f"{SWITCHES[0]}={a},{SWITCHES[1]}={b}"] = mask
    return variants, notes


def _final_metrics(task, y_val, outputs: dict, labels) -> tuple[dict, dict]:
    metrics = task.metrics(y_val, outputs["final"][0], labels)
    ablation = {name: {k: v for k, v in task.metrics(y_val, top[0], labels).items() if isinstance(v, float)}
                for name, top in outputs.items() if name != "final"}
    return metrics, ablation


def _train_tfidf(recipe, work, x_train, y_train, x_val, y_val, labels, reporter, task, masks) -> dict:
    import time

    from ..models.saved import tfidf_topk_variants
    from .classical import fit_tfidf, save

    reporter.start("fit TF-IDF + linear model", None)
    start = time.perf_counter()
    model = fit_tfidf(x_train, y_train, recipe.tfidf, recipe.train.seed)
    seconds = time.perf_counter() - start
    save(model, work)
    outputs = tfidf_topk_variants(model, x_val, len(labels), task.top_k, masks)
    metrics, ablation = _final_metrics(task, y_val, outputs, labels)
    history = [{"epoch": 1, "step": 1, **{k: v for k, v in metrics.items() if isinstance(v, float)}}]
    return {"metrics": metrics, "history": history, "train_seconds": seconds, "ablation": ablation,
            "samples_per_second": len(x_train) / max(seconds, 1e-9), "val_top": outputs["final"]}


def _train_sklearn(recipe, work, train, val, y_train, y_val, labels, reporter, task) -> dict:
    import time

    from ..metrics.plots import feature_importance_png
    from .tabular import build_pipeline, cross_validated_probabilities, feature_importances, full_probabilities, save

    cfg = recipe.products
    x_train = task.features(train.frame, train.source)
    x_val = task.features(val.frame, val.source)
    y = np.asarray(y_train)
    reporter.start(f"cross-validate ({cfg.cv_folds} folds)", cfg.cv_folds)
    start = time.perf_counter()
    oof = cross_validated_probabilities(cfg, x_train, y, len(labels), recipe.train.seed, progress=reporter.advance)
    cv = task.metrics(y, np.argsort(-oof, axis=1)[:, :1], labels, oof)
    confusion_matrix_png(cv["confusion_matrix"], labels.names, work / "cv_confusion_matrix.png",
                         title=f"Cross-validated confusion matrix (F1-macro {cv['f1_macro']:.4f})")
    reporter.start(f"fit {cfg.classifier} on the training split", None)
    counts = np.bincount(y)
    pipeline = build_pipeline(cfg, x_train, int(counts[counts > 0].min()), recipe.train.seed)
    pipeline.fit(x_train, y)
    seconds = time.perf_counter() - start
    save(pipeline, work)
    probs = full_probabilities(pipeline, x_val, len(labels))
    metrics = task.metrics(y_val, np.argsort(-probs, axis=1)[:, :1], labels, probs)
    metrics["cross_validation"] = {k: v for k, v in cv.items() if isinstance(v, float)}
    importances = feature_importances(pipeline)
    if importances:
        feature_importance_png(importances, work / "feature_importance.png", f"Top features ({cfg.classifier})")
        metrics["top_features"] = importances
    history = [{"epoch": 1, "step": 1, **{k: v for k, v in metrics.items() if isinstance(v, float)},
                **{f"cv_{k}": v for k, v in metrics["cross_validation"].items()}}]
    top = np.argsort(-probs, axis=1)[:, :1]
    return {"metrics": metrics, "history": history, "train_seconds": seconds,
            "samples_per_second": len(y) * (cfg.cv_folds + 1) / max(seconds, 1e-9),
            "val_top": (top, np.take_along_axis(probs, top, axis=1))}


def _train_finetune(recipe, work, x_train, y_train, x_val, y_val, labels, reporter, task, masks, dist=None) -> dict:
    import torch

    from ..models.hf import load_classifier, merge_for_saving
    from .distributed import Local
    from .finetune import fit, score_variants

    dist = dist or Local()
    reporter.start(f"load {recipe.model.name}", None)
    loaded = load_classifier(recipe.model, len(labels), dict(enumerate(labels.names)))
    fitted = fit(
        loaded.model, loaded.tokenizer, x_train, y_train, x_val, y_val, recipe.train,
        max_length=recipe.model.max_length, num_labels=len(labels),
        evaluate=lambda y, top: task.metrics(y, top, labels), primary_metric=task.primary_metric,
        checkpoint_dir=work / "checkpoints", top_k=task.top_k, reporter=reporter, dist=dist,
    )
    if not dist.is_main:
        return {"history": fitted.history}
    model = merge_for_saving(dist.unwrap(loaded.model))
    reporter.start("validate best epoch", len(x_val))
    val_ids = tokenize(loaded.tokenizer, x_val, recipe.model.max_length)
    outputs, _ = score_variants(model, val_ids, loaded.tokenizer.pad_token_id, recipe.train.eval_batch_size,
                                task.top_k, recipe.train.precision, variants=masks, reporter=reporter)
    metrics, ablation = _final_metrics(task, y_val, outputs, labels)
    reporter.start("save model", None)
    if sum(p.numel() for p in model.parameters()) > 100e6:
        model = model.to("cpu").to(dtype=torch.bfloat16)  # large models: half the disk
    model.save_pretrained(work / HF_SUBDIR, safe_serialization=True)
    loaded.tokenizer.save_pretrained(work / HF_SUBDIR)
    metrics["trainable_params"] = int(loaded.trainable_params)
    metrics["best_epoch"] = int(fitted.best_epoch)
    return {"metrics": metrics, "history": fitted.history, "train_seconds": fitted.train_seconds, "ablation": ablation,
            "samples_per_second": round(fitted.samples_per_second, 3), "resumed_from_step": fitted.resumed_from_step,
            "val_top": outputs["final"]}


def _write_reports(work: Path, metrics: dict, history: list[dict], labels: LabelMap, task) -> None:
    primary = task.primary_metric
    matrix, names = task.confusion(metrics, labels)
    confusion_matrix_png(matrix, names, work / "confusion_matrix.png",
                         title=f"Validation confusion matrix ({primary} {metrics[primary]:.4f})")
    if history:
        training_curve_png(history, work / "training_curve.png", primary)
    rows = metrics.get("per_class") or metrics.get("per_category") or []
    write_text(work / "per_class.csv", pd.DataFrame(rows).to_csv(index=False))


def check_recipe_runnable(recipe: Recipe) -> None:
    if (recipe.task == "tutor") != (recipe.trainer == "sft"):
        raise RecipeError("trainer: the tutor task uses trainer: sft, and trainer sft is for the tutor task")
    if (recipe.task == "products") != (recipe.trainer == "sklearn"):
        raise RecipeError("trainer: the products task uses trainer: sklearn, and trainer sklearn is for the products task")
    if recipe.trainer == "finetune" and recipe.model.peft == "qlora":
        from ..models.hf import _quantization_config

        _quantization_config(recipe.model)
