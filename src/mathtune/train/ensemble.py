"""The ensemble trainer: fits member recipes on the same split and combines their probabilities.

- ``average``: a weighted mean of the members' probabilities (each member calibrated on its own: logistic
  regression and fine-tuned softmaxes as they are, the linear SVM through its fitted temperature).
- ``stacking``: each member is also fitted on k folds of the training split (seeded) to predict the fold it did not
  see; a multinomial logistic regression learns from those out-of-fold log-probabilities how to combine them, then
  the members are fitted on the whole training split.

Each member is saved as an ordinary model folder under ``members/`` with its own validation figures, which the
ensemble reports beside its own (``metrics.json``: ``members``). With ``train.refit`` (the ensemble's, or a member's
own ``train.refit``) a member is refitted on train + validation with the settings its first fit chose (train/run.py
``refit_on_all``): a slow fine-tuned member can opt out while a fast TF-IDF member is refitted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import numpy as np

from ..config import member_recipes
from ..io import write_json
from ..models.ensemble import MEMBERS, combine, masked_topk, member_probabilities, save_spec, stack_features
from ..models.folder import MANIFEST
from ..tasks.base import structure_of
from .common import Split
from .steps import _subset, check_recipe_runnable, refit_on_all, task_for
from .trainers import FitContext, Fitted, _scalars, final_metrics, get_trainer, register_trainer


def _member_context(ctx: FitContext, recipe, work, train: Split | None = None, val: Split | None = None,
                    y_train=None, y_val=None) -> FitContext:
    task = task_for(recipe)
    train, val = train or ctx.train, val or ctx.val
    # the member's own inputs (its prompt template) from the same rows
    own = lambda split: Split(split.frame, task.inputs(split.frame, recipe.data.text_column, split.source),  # noqa: E731
                              split.raw_labels, split.source)
    return dataclasses.replace(ctx, recipe=recipe, work=work, task=task, train=own(train), val=own(val),
                               y_train=list(ctx.y_train if y_train is None else y_train),
                               y_val=list(ctx.y_val if y_val is None else y_val), dist=None)


def _write_member_manifest(mctx: FitContext, trainer, fitted: Fitted | None, structure) -> None:
    recipe = mctx.recipe
    uses_model = trainer.section == "model"
    manifest = {
        "format_version": 1, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": recipe.task, "kind": trainer.kind, "trainer": trainer.name, "labels": mctx.labels.to_dict(),
        "text_column": recipe.data.text_column, "id_column": recipe.data.id_column,
        "max_length": recipe.model.max_length if recipe.model else None,
        "base_model": recipe.model.name if uses_model else None,
        "peft": recipe.model.peft if uses_model and trainer.name != "embedding" else None,
        "primary_metric": mctx.task.primary_metric, "task_settings": mctx.task.settings_dict(), "structure": structure,
    }
    if fitted is not None and fitted.calibration:  # the member's probabilities as the ensemble learned them
        manifest["calibration"] = fitted.calibration
    if fitted is not None:
        manifest["validation"] = {mctx.task.primary_metric: fitted.metrics.get(mctx.task.primary_metric),
                                  "n": len(mctx.y_val)}
    write_json(mctx.work / MANIFEST, manifest)


def _fold_probabilities(ctx: FitContext, name: str, recipe, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of one member on the training split (each row predicted by a fit without it)."""
    import shutil

    from sklearn.model_selection import StratifiedKFold

    from ..models.saved import load_predictor

    y = np.asarray(ctx.y_train)
    oof = np.zeros((len(y), len(ctx.labels)), dtype=np.float32)
    trainer = get_trainer(recipe.trainer)
    counts = np.bincount(y)
    splitter = StratifiedKFold(min(folds, max(2, int(counts[counts > 0].min()))), shuffle=True, random_state=seed)
    for fold, (fit_idx, held_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        ctx.reporter.start(f"{name}: out-of-fold fit {fold + 1}/{splitter.n_splits}", None)
        work = ctx.work / "folds" / f"{name}-{fold}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        part, held = _subset(ctx.train, fit_idx, ctx.train.source), _subset(ctx.train, held_idx, ctx.train.source)
        fold_recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"refit": False})})
        mctx = _member_context(ctx, fold_recipe, work, part, held, y[fit_idx], y[held_idx])
        mctx = dataclasses.replace(mctx, masks={"final": None})
        fold_fit = trainer.fit(mctx)
        _write_member_manifest(mctx, trainer, fold_fit, None)
        oof[held_idx] = member_probabilities(load_predictor(work), held.frame)
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(ctx.work / "folds", ignore_errors=True)
    return oof


class EnsembleTrainer:
    """Members fitted on one split; probabilities averaged or stacked (models/ensemble.py)."""

    name, kind, section, pipeline = "ensemble", "ensemble", "ensemble", None
    handles_refit = True  # each member is refitted with its own chosen epochs

    def fit(self, ctx: FitContext) -> Fitted:
        from ..models.saved import load_predictor

        cfg, seed = ctx.recipe.ensemble, ctx.recipe.train.seed
        members = member_recipes(ctx.recipe)
        preflight(members)
        start = time.perf_counter()
        val_probs, oof_probs, reports, refits = [], [], [], []
        for name, recipe in members:
            trainer = get_trainer(recipe.trainer)
            if cfg.method == "stacking":
                oof_probs.append(_fold_probabilities(ctx, name, recipe, cfg.folds, seed))
            work = ctx.work / MEMBERS / name
            work.mkdir(parents=True, exist_ok=True)
            member_recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"refit": False})})
            mctx = _member_context(ctx, member_recipe, work)
            ctx.reporter.start(f"member {name} ({recipe.trainer})", None)
            member_start = time.perf_counter()
            fitted = trainer.fit(mctx)
            structure = structure_of(mctx.task, mctx.train.frame, mctx.train.raw_labels, ctx.labels)
            _write_member_manifest(mctx, trainer, fitted, structure)
            val_probs.append(member_probabilities(load_predictor(work), ctx.val.frame))
            reports.append({"name": name, "trainer": recipe.trainer,
                            "model": recipe.model.name if recipe.model and trainer.section == "model" else recipe.trainer,
                            "train_seconds": round(time.perf_counter() - member_start, 3),
                            **{k: v for k, v in _scalars(fitted.metrics).items()},
                            "best_epoch": fitted.metrics.get("best_epoch")})
            if recipe.train.refit:  # the ensemble's train.refit, unless the member's own train section says otherwise
                refit, structure = refit_on_all(dataclasses.replace(mctx, recipe=recipe), trainer, fitted)
                _write_member_manifest(mctx, trainer, fitted, structure)
                refits.append({"name": name, **refit})
        coef = intercept = None
        spec = {"method": cfg.method, "members": [n for n, _ in members], "weights": cfg.weights}
        if cfg.method == "stacking":
            from sklearn.linear_model import LogisticRegression

            ctx.reporter.start("stack: logistic regression on out-of-fold predictions", None)
            y = np.asarray(ctx.y_train)
            meta = LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed).fit(stack_features(oof_probs), y)
            coef = np.zeros((len(ctx.labels), meta.coef_.shape[1]), dtype=np.float64)
            intercept = np.full(len(ctx.labels), -1e4, dtype=np.float64)  # labels absent from training: never chosen
            coef[meta.classes_] = meta.coef_ if len(meta.classes_) > 2 else np.vstack([-meta.coef_, meta.coef_]) / 2
            intercept[meta.classes_] = meta.intercept_ if len(meta.classes_) > 2 else np.array([-meta.intercept_[0], meta.intercept_[0]]) / 2
        save_spec(ctx.work, spec, coef, intercept)
        probs = combine(spec, val_probs, coef, intercept)
        outputs = masked_topk(probs, ctx.task.top_k, ctx.masks)
        metrics, ablation = final_metrics(ctx.task, ctx.y_val, outputs, ctx.labels)
        primary = ctx.task.primary_metric
        metrics["members"] = reports
        metrics["best_member"] = max(r.get(primary, float("-inf")) for r in reports)
        metrics["gain_over_best_member"] = metrics[primary] - metrics["best_member"]
        if refits:
            metrics["member_refits"] = refits
        seconds = time.perf_counter() - start
        # each member's figures beside the ensemble's, in MLflow too (member.<name>.<metric>)
        history = [{"epoch": 1, "step": 1, **_scalars(metrics),
                    **{f"member.{r['name']}.{k}": v for r in reports for k, v in r.items()
                       if isinstance(v, float) and k != "train_seconds"}}]
        return Fitted(metrics, history, seconds, outputs["final"], len(ctx.train.texts) / max(seconds, 1e-9), ablation)


def preflight(members) -> None:
    """Every member can run before the first one trains: its trainer suits the task, and its bundled model is
    installed (a missing mpnet part stops the run at once, not after the other members have trained)."""
    from ..errors import RecipeError
    from ..models.registry import PREFIX, resolve

    for name, recipe in members:
        allowed = _task_trainers(recipe.task)
        if recipe.trainer not in allowed:
            raise RecipeError(f"ensemble member {name}: the {recipe.task} task trains with {' or '.join(allowed)}, "
                              f"not {recipe.trainer}")
        check_recipe_runnable(recipe)
        if recipe.model is not None and get_trainer(recipe.trainer).section == "model" \
                and str(recipe.model.name).startswith(PREFIX):
            resolve(recipe.model.name)


def _task_trainers(task: str) -> tuple[str, ...]:
    from ..tasks.base import task_class

    return tuple(t for t in task_class(task).trainers if t != "ensemble")


register_trainer(EnsembleTrainer())
