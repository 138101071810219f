"""Steps of a training pipeline that more than one trainer uses: the recipe's task, a subset of a split, the refit
on train + validation, and the check that a recipe can run (train/run.py and the ensemble trainer)."""

from __future__ import annotations

import shutil

import pandas as pd

from ..config import Recipe
from ..errors import RecipeError
from ..tasks import get_task, task_class
from ..tasks.base import structure_of
from .common import Split
from .trainers import FitContext, Fitted, get_trainer


def task_for(recipe: Recipe):
    """The recipe's task with the recipe's settings section for it."""
    key = task_class(recipe.task).settings_key
    return get_task(recipe.task, getattr(recipe, key) if key else None)


def _subset(split: Split, idx, source: str) -> Split:
    idx = list(idx)
    return Split(split.frame.iloc[idx].reset_index(drop=True), [split.texts[i] for i in idx],
                 [split.raw_labels[i] for i in idx], source)


def refit_on_all(ctx: FitContext, trainer, fitted: Fitted) -> tuple[dict, object]:
    """Train once more on train + validation (rows with labels the model knows) with the settings chosen on the
    validation split: the number of epochs of the best epoch, no early stopping. The model files in the work folder
    are replaced; the first fit's validation figures stand (the refit model has seen those rows)."""
    import dataclasses
    import time

    recipe = ctx.recipe
    known = [i for i, y in enumerate(ctx.y_val) if y >= 0]
    both = Split(pd.concat([ctx.train.frame, ctx.val.frame.iloc[known]], ignore_index=True),
                 ctx.train.texts + [ctx.val.texts[i] for i in known],
                 ctx.train.raw_labels + [ctx.val.raw_labels[i] for i in known], f"{ctx.train.source} + validation")
    epochs = int(fitted.metrics.get("best_epoch") or recipe.train.epochs)
    train_cfg = recipe.train.model_copy(update={"epochs": epochs, "early_stopping_patience": None, "refit": False})
    shutil.rmtree(ctx.work / "checkpoints", ignore_errors=True)  # the second fit must not resume the first
    refit_ctx = dataclasses.replace(ctx, recipe=recipe.model_copy(update={"train": train_cfg}), train=both,
                                    y_train=ctx.y_train + [ctx.y_val[i] for i in known])
    ctx.reporter.start(f"refit on train + validation ({len(both.texts)} rows)", None)
    start = time.perf_counter()
    trainer.fit(refit_ctx)  # its own validation figures are on rows it trained on: not reported
    structure = structure_of(ctx.task, both.frame, both.raw_labels, ctx.labels)
    return {"refit": True, "refit_rows": len(both.texts), "refit_epochs": epochs,
            "refit_seconds": round(time.perf_counter() - start, 3)}, structure


def check_recipe_runnable(recipe: Recipe):
    """The recipe's trainer, once the task allows it (and QLoRA has what it needs)."""
    trainer = get_trainer(recipe.trainer)
    allowed = task_class(recipe.task).trainers
    if recipe.trainer not in allowed:
        raise RecipeError(f"trainer: the {recipe.task} task trains with trainer {' or '.join(allowed)}, not {recipe.trainer}")
    if trainer.section == "model" and recipe.model.peft == "qlora":
        from ..models.hf import _quantization_config

        _quantization_config(recipe.model)
    return trainer
