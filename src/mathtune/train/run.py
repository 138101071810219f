"""`mathtune train`: recipe -> data -> trainer -> evaluation -> tracking -> model folder.

The model folder appears only when everything succeeded: work happens in ``OUTPUT.partial`` (which also
holds the resumable checkpoints) and is renamed at the end. A bad input removes the partial folder;
a killed run leaves it, and the same command resumes from its last checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

import mathtune

from ..config import Recipe
from ..data.readers import require_columns
from ..data.split import stratified_split, stratified_subsample
from ..errors import DataError, RecipeError
from ..io import replace_dir, write_json, write_text
from ..metrics.calibration import expected_calibration_error, reliability, top1_outcomes, when_sure
from ..metrics.classification import headline
from ..metrics.drift import build_reference
from ..metrics.plots import confusion_matrix_png, reliability_png, training_curve_png
from ..models.saved import MANIFEST
from ..tasks import LabelMap
from ..tasks.base import confusion_of, structure_of
from . import ensemble  # noqa: F401  (registers the ensemble trainer)
from .common import Split, TrainResult, load_frame, prepare_work, tracked_run  # noqa: F401 (re-exported)
from .loop import NullReporter, Reporter, peak_rss_mb, set_seed
from .steps import _subset, check_recipe_runnable, refit_on_all, task_for  # noqa: F401 (re-exported)
from .trainers import FitContext, Fitted, validation_variants

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data


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


# ----------------------------------------------------------------------------- training


def train_from_recipe(recipe: Recipe, output: str | Path, overwrite: bool = False, resume: bool = True,
                      reporter: Reporter | None = None) -> TrainResult:
    """Train what the recipe names: its task (tasks/) with its trainer (train/trainers.py)."""
    reporter = reporter or NullReporter()
    trainer = check_recipe_runnable(recipe)
    if trainer.pipeline is not None:  # a task with a pipeline of its own (the tutor)
        return trainer.pipeline(recipe, output, overwrite, resume, reporter)
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
    structure = structure_of(task, train.frame, train.raw_labels, labels)
    masks, notes = validation_variants(task, val.frame, structure, labels)
    distributed = getattr(trainer, "distributed", trainer.name == "finetune")
    if dist.world > 1 and not distributed and not dist.is_main:
        return TrainResult(output, {})  # one-process trainers: the other processes have nothing to do
    work, prior_run_id = prepare_work(recipe, output, overwrite, resume, dist)
    with tracked_run(recipe, output, work, prior_run_id, dist) as tracker:
        set_seed(recipe.train.seed)
        ctx = FitContext(recipe, work, task, labels, train, val, y_train, y_val, masks, reporter,
                         dist if distributed and dist.world > 1 else None)
        fitted = trainer.fit(ctx)
        if dist.world > 1 and not dist.is_main:  # the main process evaluates, saves and logs
            return TrainResult(output, {}, fitted.history)
        extra = {"n_augmented": sum(augment_report.added_per_label.values()) if augment_report else 0,
                 "processes": dist.world}
        if getattr(trainer, "handles_refit", False):
            refitted = [r["name"] for r in fitted.metrics.get("member_refits", [])]
            if refitted:
                notes.append(f"refit: member(s) {', '.join(refitted)} trained again on train + validation with the "
                             f"epochs their first fit chose; the validation figures are those of the first fits")
                # what the task learns from labelled rows (a question's labels, its right answer) from both parts too
                known = [i for i, y in enumerate(y_val) if y >= 0]
                structure = structure_of(task, pd.concat([train.frame, val.frame.iloc[known]], ignore_index=True),
                                         train.raw_labels + [val.raw_labels[i] for i in known], labels)
        elif recipe.train.refit:
            if dist.world > 1:
                notes.append("train.refit skipped: refitting runs in one process")
            else:
                refit, structure = refit_on_all(ctx, trainer, fitted)
                extra.update(refit)
                notes.append(f"refit: the saved model was trained on train + validation ({refit['refit_rows']} rows, "
                             f"{refit['refit_epochs']} epoch(s)); the validation figures are those of the first fit")
        return _finish(ctx, trainer, fitted, tracker, output, structure, extra, notes)


def _finish(ctx: FitContext, trainer, fitted: Fitted, tracker, output: Path, structure, extra: dict,
            notes: list[str]) -> TrainResult:
    """Metrics, manifest, reports, drift reference, MLflow; then the partial folder becomes the model folder."""
    recipe, task, labels, work = ctx.recipe, ctx.task, ctx.labels, ctx.work
    metrics, history = fitted.metrics, fitted.history
    when_sure = None
    if fitted.val_top is not None:
        metrics["calibration_error"], when_sure = _calibration_report(work, fitted, ctx.y_val)
    for entry in history:
        tracker.log_metrics({k: v for k, v in entry.items() if k not in ("epoch", "step")}, step=entry["epoch"])
    summary = {**headline(metrics), "train_seconds": round(fitted.train_seconds, 3),
               "train_samples_per_second": fitted.samples_per_second, "peak_rss_mb": round(peak_rss_mb(), 1),
               "n_train": len(ctx.y_train), "n_validation": len(ctx.y_val), **extra}
    tracker.log_metrics({k: v for k, v in summary.items() if v is not None and k != "n"})
    uses_model = trainer.section == "model"
    manifest = {
        "format_version": 1, "mathtune_version": mathtune.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": recipe.task, "kind": trainer.kind, "trainer": trainer.name, "labels": labels.to_dict(),
        "text_column": recipe.data.text_column, "id_column": recipe.data.id_column,
        "max_length": recipe.model.max_length if recipe.model else None,
        "base_model": recipe.model.name if uses_model else None,
        "peft": recipe.model.peft if uses_model and trainer.name != "embedding" else None,
        "primary_metric": task.primary_metric,
        # accuracy beside a primary metric that is not (products' F1-macro): the Models tab says "right N times in 10"
        "validation": {task.primary_metric: metrics[task.primary_metric],
                       **({"accuracy": metrics["accuracy"]} if isinstance(metrics.get("accuracy"), float) else {}),
                       "n": len(ctx.y_val), "when_sure": when_sure},
        "task_settings": task.settings_dict(), "structure": structure,
        "data": {"train": str(recipe.data.train), "split": recipe.data.split},
    }
    if fitted.calibration:
        manifest["calibration"] = fitted.calibration
    write_json(work / MANIFEST, manifest)
    write_json(work / "metrics.json", {"validation": metrics, "summary": summary, "history": history,
                                       "ablation": fitted.ablation, "split": recipe.data.split})
    _write_reports(work, metrics, history, labels, task)
    top_idx, top_prob = fitted.val_top
    write_json(work / "drift_reference.json",
               build_reference(ctx.train.texts, ctx.val.texts, top_prob[:, 0], top_idx[:, 0], len(labels),
                               seed=recipe.train.seed))
    for name in ("confusion_matrix.png", "training_curve.png", "feature_importance.png", "cv_confusion_matrix.png",
                 "calibration.png", "per_class.csv", "metrics.json", "recipe.yaml"):
        if (work / name).exists():
            tracker.log_artifact(work / name, "reports")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    (work / "run.json").unlink(missing_ok=True)
    registered = tracker.log_model(work, recipe.tracking.register_as or task.registered_name) \
        if recipe.tracking.log_model else {}
    manifest["tracking"] = {**tracker.info, **registered}
    write_json(work / MANIFEST, manifest)
    tracker.end("FINISHED")
    replace_dir(work, output)
    return TrainResult(output, {**metrics, **summary, "ablation": fitted.ablation}, history, manifest["tracking"],
                       fitted.train_seconds, fitted.samples_per_second, fitted.resumed_from_step, notes)


def _write_reports(work: Path, metrics: dict, history: list[dict], labels: LabelMap, task) -> None:
    primary = task.primary_metric
    matrix, names = confusion_of(task, metrics, labels)
    confusion_matrix_png(matrix, names, work / "confusion_matrix.png",
                         title=f"Validation confusion matrix ({primary} {metrics[primary]:.4f})")
    if history:
        training_curve_png(history, work / "training_curve.png", primary)
    rows = metrics.get("per_class") or metrics.get("per_category") or []
    write_text(work / "per_class.csv", pd.DataFrame(rows).to_csv(index=False))


def _calibration_report(work: Path, fitted: Fitted, y_val: list[int]) -> tuple[float, dict]:
    """The validation calibration error of the probabilities the saved model shows, its reliability plot, and how
    often it was right when it was sure (what the Models tab tells a teacher). Where a temperature was fitted on
    these rows, the error reported is the cross-fitted one (fair), not theirs."""
    confidence, correct = top1_outcomes(*fitted.val_top, y_val)
    calibration = fitted.calibration or {}
    ece = float(calibration.get("ece_after", expected_calibration_error(confidence, correct)))
    reliability_png(reliability(confidence, correct), work / "calibration.png", ece, calibration.get("ece_before"))
    return round(ece, 6), when_sure(confidence, correct)
