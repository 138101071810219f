"""Trainers: one registry from a recipe's ``trainer`` to what fits a model.

A trainer is an object with a ``name``, the model ``kind`` it saves (models/kinds.py loads it back), the recipe
``section`` it reads (or None), and ``fit(ctx: FitContext) -> Fitted``: a typed context in (recipe, work folder,
task, labels, splits, candidate masks, reporter), a typed result out (metrics, history, validation top-k, timing).
The pipeline around it (train/run.py) splits the data, checks the task allows the trainer, evaluates, writes the
model folder and talks to MLflow. A trainer whose task needs a pipeline of its own (the tutor's SFT) sets
``pipeline``. Register a new one with ``register_trainer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import Recipe, register_section, unregister_section
from ..errors import RecipeError
from ..metrics.plots import confusion_matrix_png
from ..models.folder import HF_SUBDIR
from ..tasks import LabelMap
from ..tasks.base import candidates_of
from .common import Split

SWITCHES = ("restrict_to_question", "derive_correctness")


@dataclass
class FitContext:
    recipe: Recipe
    work: Path
    task: Any
    labels: LabelMap
    train: Split
    val: Split
    y_train: list[int]
    y_val: list[int]
    masks: dict[str, np.ndarray | None]
    reporter: Any
    dist: Any = None


@dataclass
class Fitted:
    metrics: dict
    history: list[dict]
    train_seconds: float
    val_top: tuple[np.ndarray, np.ndarray] | None = None
    samples_per_second: float | None = None
    ablation: dict = field(default_factory=dict)
    resumed_from_step: int = 0
    calibration: dict | None = None   # a temperature the saved model's scores are divided by (mathtune.json)


class Trainer(Protocol):
    name: str
    kind: str
    section: str | None
    pipeline: Callable | None
    # A plugin trainer may also set ``settings_model`` (a pydantic model): its ``section`` then becomes a recipe
    # section of its own, validated by that model, with its defaults when a recipe leaves it out
    # (``ctx.recipe.section(trainer.section)``).

    def fit(self, ctx: FitContext) -> Fitted: ...


TRAINERS: dict[str, Trainer] = {}


def register_trainer(trainer: Trainer) -> Trainer:
    """Make ``trainer`` known to recipes by its name (and its own recipe section, if it brings one). A name that is
    taken raises: a second registration would silently replace the first."""
    if trainer.name in TRAINERS:
        raise RecipeError(f"trainer {trainer.name!r} is already registered ({type(TRAINERS[trainer.name]).__name__}); "
                          "choose another name")
    settings_model = getattr(trainer, "settings_model", None)
    if settings_model is not None:
        if not trainer.section:
            raise RecipeError(f"trainer {trainer.name!r}: a settings_model needs a section name to read it from")
        register_section(trainer.section, settings_model, trainer=trainer.name)
    TRAINERS[trainer.name] = trainer
    return trainer


def unregister_trainer(name: str) -> None:
    """Forget a trainer and the section it brought (tests, notebooks that redefine one)."""
    trainer = TRAINERS.pop(name, None)
    if trainer is not None and getattr(trainer, "settings_model", None) is not None:
        unregister_section(trainer.section)


def get_trainer(name: str) -> Trainer:
    try:
        return TRAINERS[name]
    except KeyError:
        raise RecipeError(f"trainer: unknown trainer {name!r} (known: {', '.join(sorted(TRAINERS))})") from None


def validation_variants(task, frame, structure, labels) -> tuple[dict, list[str]]:
    """Candidate masks for the final validation: the recipe's setting ("final"), and for tasks with
    switches every combination of them, so one training run also gives the switch ablation."""
    final, notes = candidates_of(task, frame, structure, labels)
    variants = {"final": final}
    if structure is not None:
        for a in (False, True):
            for b in (False, True):
                mask, _ = candidates_of(task, frame, structure, labels, {SWITCHES[0]: a, SWITCHES[1]: b})
                variants[f"{SWITCHES[0]}={a},{SWITCHES[1]}={b}"] = mask
    return variants, notes


def final_metrics(task, y_val, outputs: dict, labels) -> tuple[dict, dict]:
    metrics = task.metrics(y_val, outputs["final"][0], labels)
    ablation = {name: {k: v for k, v in task.metrics(y_val, top[0], labels).items() if isinstance(v, float)}
                for name, top in outputs.items() if name != "final"}
    return metrics, ablation


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


class TfidfTrainer:
    """Word + character TF-IDF and a linear model (train/classical.py); saved as JSON + arrays."""

    name, kind, section, pipeline = "tfidf", "tfidf", "tfidf", None

    def fit(self, ctx: FitContext) -> Fitted:
        from ..models.tfidf import save, tfidf_topk_variants
        from .classical import fit_tfidf

        ctx.reporter.start("fit TF-IDF + linear model", None)
        start = time.perf_counter()
        model = fit_tfidf(ctx.train.texts, ctx.y_train, ctx.recipe.tfidf, ctx.recipe.train.seed)
        seconds = time.perf_counter() - start
        save(model, ctx.work)
        outputs = tfidf_topk_variants(model, ctx.val.texts, len(ctx.labels), ctx.task.top_k, ctx.masks)
        metrics, ablation = final_metrics(ctx.task, ctx.y_val, outputs, ctx.labels)
        history = [{"epoch": 1, "step": 1, **_scalars(metrics)}]
        return Fitted(metrics, history, seconds, outputs["final"], len(ctx.train.texts) / max(seconds, 1e-9), ablation)


class SklearnTrainer:
    """The products pipeline (train/tabular.py): cross-validated metrics, then a fit on the training split."""

    name, kind, section, pipeline = "sklearn", "sklearn", "products", None

    def fit(self, ctx: FitContext) -> Fitted:
        from ..metrics.plots import feature_importance_png
        from ..models.tabular import full_probabilities, save
        from .tabular import build_pipeline, cross_validated_probabilities, feature_importances

        cfg, task, labels, work = ctx.recipe.products, ctx.task, ctx.labels, ctx.work
        x_train = task.features(ctx.train.frame, ctx.train.source)
        x_val = task.features(ctx.val.frame, ctx.val.source)
        y = np.asarray(ctx.y_train)
        ctx.reporter.start(f"cross-validate ({cfg.cv_folds} folds)", cfg.cv_folds)
        start = time.perf_counter()
        oof = cross_validated_probabilities(cfg, x_train, y, len(labels), ctx.recipe.train.seed, progress=ctx.reporter.advance)
        cv = task.metrics(y, np.argsort(-oof, axis=1)[:, :1], labels, oof)
        confusion_matrix_png(cv["confusion_matrix"], labels.names, work / "cv_confusion_matrix.png",
                             title=f"Cross-validated confusion matrix (F1-macro {cv['f1_macro']:.4f})")
        ctx.reporter.start(f"fit {cfg.classifier} on the training split", None)
        counts = np.bincount(y)
        pipeline = build_pipeline(cfg, x_train, int(counts[counts > 0].min()), ctx.recipe.train.seed)
        pipeline.fit(x_train, y)
        seconds = time.perf_counter() - start
        save(pipeline, work)
        probs = full_probabilities(pipeline, x_val, len(labels))
        metrics = task.metrics(ctx.y_val, np.argsort(-probs, axis=1)[:, :1], labels, probs)
        metrics["cross_validation"] = _scalars(cv)
        importances = feature_importances(pipeline)
        if importances:
            feature_importance_png(importances, work / "feature_importance.png", f"Top features ({cfg.classifier})")
            metrics["top_features"] = importances
        history = [{"epoch": 1, "step": 1, **_scalars(metrics),
                    **{f"cv_{k}": v for k, v in metrics["cross_validation"].items()}}]
        top = np.argsort(-probs, axis=1)[:, :1]
        return Fitted(metrics, history, seconds, (top, np.take_along_axis(probs, top, axis=1)),
                         len(y) * (cfg.cv_folds + 1) / max(seconds, 1e-9))


class FinetuneTrainer:
    """Any HF encoder or decoder with a classification head (full, LoRA, QLoRA) on the shared loop."""

    name, kind, section, pipeline = "finetune", "transformer", "model", None

    def fit(self, ctx: FitContext) -> Fitted:
        import torch

        from ..metrics.calibration import calibrate
        from ..models.hf import load_classifier, merge_for_saving
        from ..models.scoring import logits_of, masked_topk, tokenize
        from .distributed import Local
        from .finetune import fit

        recipe, task, labels, reporter = ctx.recipe, ctx.task, ctx.labels, ctx.reporter
        dist = ctx.dist or Local()
        reporter.start(f"load {recipe.model.name}", None)
        loaded = load_classifier(recipe.model, len(labels), dict(enumerate(labels.names)))
        fitted = fit(
            loaded.model, loaded.tokenizer, ctx.train.texts, ctx.y_train, ctx.val.texts, ctx.y_val, recipe.train,
            max_length=recipe.model.max_length, num_labels=len(labels),
            evaluate=lambda y, top: task.metrics(y, top, labels), primary_metric=task.primary_metric,
            checkpoint_dir=ctx.work / "checkpoints", top_k=task.top_k, reporter=reporter, dist=dist,
            greater_is_better=task.greater_is_better,
        )
        if not dist.is_main:
            return Fitted({}, fitted.history, fitted.train_seconds)
        model = merge_for_saving(dist.unwrap(loaded.model), recipe.model)
        reporter.start("validate best epoch", len(ctx.val.texts))
        val_ids = tokenize(loaded.tokenizer, ctx.val.texts, recipe.model.max_length)
        logits = logits_of(model, val_ids, loaded.tokenizer.pad_token_id, recipe.train.eval_batch_size,
                           recipe.train.precision, reporter)
        # a fine-tuned softmax is often surer than it is right: one temperature, fitted on validation, fixes that
        calibration = calibrate(logits, ctx.y_val, recipe.train.seed)
        scores = torch.from_numpy(logits)
        outputs = {name: masked_topk(scores, mask, task.top_k, calibration.temperature)
                   for name, mask in ctx.masks.items()}
        metrics, ablation = final_metrics(task, ctx.y_val, outputs, labels)
        reporter.start("save model", None)
        if sum(p.numel() for p in model.parameters()) > 100e6:
            model = model.to("cpu").to(dtype=torch.bfloat16)  # large models: half the disk
        model.save_pretrained(ctx.work / HF_SUBDIR, safe_serialization=True)
        loaded.tokenizer.save_pretrained(ctx.work / HF_SUBDIR)
        metrics["trainable_params"] = int(loaded.trainable_params)
        metrics["best_epoch"] = int(fitted.best_epoch)
        return Fitted(metrics, fitted.history, fitted.train_seconds, outputs["final"],
                      round(fitted.samples_per_second, 3), ablation, fitted.resumed_from_step, calibration.to_dict())


class EmbeddingTrainer:
    """Frozen sentence embeddings + logistic regression (models/embedding.py): the encoder runs once per text."""

    name, kind, section, pipeline = "embedding", "embedding", "model", None

    def fit(self, ctx: FitContext) -> Fitted:
        from sklearn.linear_model import LogisticRegression

        from ..models import embedding as emb
        from ..models.probs import masked_topk

        recipe, cfg = ctx.recipe, ctx.recipe.embedding
        ctx.reporter.start(f"load {recipe.model.name}", None)
        encoder = emb.load_encoder(recipe.model.name, recipe.model.max_length)
        key = (recipe.model.name, recipe.model.max_length)
        start = time.perf_counter()
        ctx.reporter.start("embed the training texts", len(set(ctx.train.texts)))
        x = emb.embed(encoder, ctx.train.texts, key, recipe.train.precision, cfg.batch_size, ctx.reporter)
        ctx.reporter.start("fit the logistic regression", None)
        head = LogisticRegression(C=cfg.C, max_iter=3000, class_weight=cfg.class_weight,
                                  random_state=recipe.train.seed).fit(x, np.asarray(ctx.y_train))
        seconds = time.perf_counter() - start
        emb.save(ctx.work, recipe.model.name, recipe.model.max_length, head.coef_.astype(np.float32),
                 head.intercept_.astype(np.float32), head.classes_.astype(np.int64), encoder)
        ctx.reporter.start("embed the validation texts", len(set(ctx.val.texts)))
        xv = emb.embed(encoder, ctx.val.texts, key, recipe.train.precision, cfg.batch_size, ctx.reporter)
        probs = emb.head_probabilities(head.coef_, head.intercept_, head.classes_, xv, len(ctx.labels))
        outputs = masked_topk(probs, ctx.task.top_k, ctx.masks)
        metrics, ablation = final_metrics(ctx.task, ctx.y_val, outputs, ctx.labels)
        history = [{"epoch": 1, "step": 1, **_scalars(metrics)}]
        return Fitted(metrics, history, seconds, outputs["final"], len(ctx.train.texts) / max(seconds, 1e-9), ablation)


class SftTrainer:
    """Supervised fine-tuning of a causal LM for the tutor: a pipeline of its own (train/tutor_run.py)."""

    name, kind, section = "sft", "generator", "model"

    @staticmethod
    def pipeline(recipe, output, overwrite, resume, reporter):
        from .tutor_run import train_tutor

        return train_tutor(recipe, output, overwrite, resume, reporter)

    def fit(self, ctx: FitContext) -> Fitted:
        raise RecipeError("trainer sft runs through its own pipeline (the tutor task)")


# the ensemble trainer (train/ensemble.py) registers itself; train/run.py imports it
for _trainer in (TfidfTrainer(), SklearnTrainer(), FinetuneTrainer(), EmbeddingTrainer(), SftTrainer()):
    register_trainer(_trainer)
