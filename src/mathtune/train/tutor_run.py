"""`mathtune train` for the tutor task: pairs -> SFT -> merge (parity-checked) -> evaluation against the base
-> report, MLflow run and registered model. Same folder discipline as the classifiers: work in
``OUTPUT.partial``, rename when complete, resume a killed run with the same command.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import numpy as np

import mathtune

from ..config import ModelConfig, Recipe, TutorConfig
from ..errors import DataError
from ..io import replace_dir, write_json, write_text
from ..metrics.plots import training_curve_png
from ..models.saved import HF_SUBDIR, MANIFEST
from ..tasks.tutor import (
    REFUSAL_EVAL,
    SYSTEM_PROMPT,
    Pairs,
    TutorPrompt,
    TutorTask,
    mixed,
    pairs_from_frame,
    with_refusals,
)
from .common import TrainResult, load_frame, prepare_work, tracked_run
from .loop import NullReporter, Reporter, peak_rss_mb, release_memory, set_seed

log = logging.getLogger(__name__)
GGUF_FILE = "model.gguf"


def _subset(pairs: Pairs, idx, source: str) -> Pairs:
    idx = list(idx)
    return Pairs([pairs.questions[i] for i in idx], [pairs.responses[i] for i in idx],
                 [pairs.answers[i] for i in idx], source)


def load_tutor_splits(recipe: Recipe) -> tuple[Pairs, Pairs]:
    d = recipe.data
    frame, source = load_frame(d.train, d.format, d.encoding)
    pairs = pairs_from_frame(frame, recipe.tutor, source)
    if d.validation:
        vframe, vsource = load_frame(d.validation, d.format, d.encoding)
        train, val = pairs, pairs_from_frame(vframe, recipe.tutor, vsource)
    else:
        order = np.random.default_rng(d.split_seed).permutation(len(pairs.questions))
        n_val = max(1, int(round(d.val_size * len(order))))
        val = _subset(pairs, np.sort(order[:n_val]), f"{source} (validation split)")
        train = _subset(pairs, np.sort(order[n_val:]), f"{source} (train split)")
    if d.limit and d.limit < len(train.questions):
        keep = np.sort(np.random.default_rng(d.split_seed).permutation(len(train.questions))[: d.limit])
        train = _subset(train, keep, train.source)
    for mix in recipe.tutor.mix:  # other files' problems join the training split only
        mframe, msource = load_frame(mix.train, d.format, d.encoding)
        train = mixed(train, pairs_from_frame(mframe, TutorConfig(), msource), mix.limit, d.split_seed)
    return train, val


def retrieval_contexts(recipe: Recipe, questions: list[str], exclude_self: bool = False) -> list[str | None] | None:
    """Retrieved passages for each question when the recipe names an index (tutor.retrieval.index)."""
    cfg = recipe.tutor.retrieval
    if not cfg.index:
        return None
    from ..rag.retrieve import Retriever

    retriever = Retriever.open(cfg.index)
    return [retriever.context(q, cfg.k, cfg.style, hybrid=cfg.hybrid, mmr=cfg.mmr,
                              exclude_text=q if exclude_self else None)
            for q in questions]


def train_tutor(recipe: Recipe, output: str | Path, overwrite: bool = False, resume: bool = True,
                reporter: Reporter | None = None) -> TrainResult:
    from ..models.causal import load_causal_lm, merge_with_parity
    from .distributed import current
    from .sft import build_examples, fit_sft, pack

    reporter = reporter or NullReporter()
    dist = current()
    output = Path(output)
    cfg = recipe.tutor
    train, val = load_tutor_splits(recipe)
    train = with_refusals(train, cfg.refusal_examples)
    work, prior_run_id = prepare_work(recipe, output, overwrite, resume, dist)
    with tracked_run(recipe, output, work, prior_run_id, dist) as tracker:
        set_seed(recipe.train.seed)
        reporter.start(f"load {recipe.model.name}", None)
        loaded = load_causal_lm(recipe.model)
        tok = loaded.tokenizer
        train_ctx = retrieval_contexts(recipe, train.questions, exclude_self=True)
        val_ctx = retrieval_contexts(recipe, val.questions, exclude_self=True)
        train_ex = build_examples(tok, train, recipe.model.max_length, cfg.system_prompt, train_ctx)
        val_ex = build_examples(tok, val, recipe.model.max_length, cfg.system_prompt, val_ctx)
        if not train_ex.ids or not val_ex.ids:
            raise DataError(f"every {'training' if not train_ex.ids else 'validation'} prompt (system prompt + "
                            f"question) is longer than model.max_length={recipe.model.max_length} tokens; "
                            "raise model.max_length or shorten tutor.system_prompt")
        if cfg.packing:
            train_ex = pack(train_ex, recipe.model.max_length)
        fitted = fit_sft(loaded.model, tok, train_ex, val_ex, recipe, work / "checkpoints", reporter, dist)
        if not dist.is_main:
            dist.barrier()
            return TrainResult(output, {}, fitted.history)
        model = dist.unwrap(loaded.model)

        reporter.start("merge adapter (greedy parity check)", None)
        merged, parity = merge_with_parity(model, tok, recipe.model)
        del model
        loaded.model = None  # the unmerged model and its adapters are no longer needed: free them before evaluating
        release_memory()
        reporter.start("save model", None)
        merged.save_pretrained(work / HF_SUBDIR, safe_serialization=True)
        tok.save_pretrained(work / HF_SUBDIR)
        gguf_name = _export_gguf(recipe, merged, work) if cfg.gguf_export != "none" else None

        # the merged model gives the same greedy output as the trained one (parity check), so the validation
        # perplexity of the last epoch stands for it when that epoch was the best one: no second pass
        last = fitted.history[-1] if fitted.history else {}
        known = {"val_loss": last["val_loss"], "perplexity": last["perplexity"]} \
            if "perplexity" in last and fitted.best_epoch == last.get("epoch") else None
        metrics, report = _evaluate(recipe, merged, tok, val, val_ex, val_ctx, reporter, known)
        summary = {"train_seconds": round(fitted.train_seconds, 3),
                   "train_samples_per_second": round(fitted.samples_per_second, 3),
                   "final_train_loss": fitted.final_loss, "peak_rss_mb": round(peak_rss_mb(), 1),
                   "n_train": len(train.questions), "n_validation": len(val.questions),
                   "n_truncated": train_ex.truncated, "n_dropped_too_long": train_ex.dropped,
                   "trainable_params": int(loaded.trainable_params), "best_epoch": fitted.best_epoch}
        manifest = _tutor_manifest(recipe, loaded, metrics, gguf_name, parity, len(val.questions))
        tracking_info = _finish_tutor(recipe, work, tracker, fitted, metrics, summary, report, manifest, parity)
        replace_dir(work, output)
        dist.barrier()
        flat = {**metrics["fine_tuned"], **{f"base_{k}": v for k, v in metrics.get("base", {}).items()}, **summary}
        return TrainResult(output, flat, fitted.history, tracking_info, fitted.train_seconds,
                           fitted.samples_per_second, fitted.resumed_from_step, [])


def _tutor_manifest(recipe: Recipe, loaded, metrics: dict, gguf_name: str | None, parity, n_val: int) -> dict:
    cfg = recipe.tutor
    return {
        "format_version": 1, "mathtune_version": mathtune.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": "tutor", "kind": "generator", "trainer": "sft", "labels": None,
        "base_model": recipe.model.name, "base_gguf_file": loaded.source.gguf_file, "peft": recipe.model.peft,
        "max_length": recipe.model.max_length, "system_prompt": cfg.system_prompt,
        # the whole prompt (system, layout, retrieval header, stops, answer pattern, refusal), read back on load
        "prompt": TutorPrompt(system=cfg.system_prompt or SYSTEM_PROMPT).to_dict(),
        "max_new_tokens": cfg.max_new_tokens, "gguf": gguf_name,
        "retrieval": cfg.retrieval.model_dump() if cfg.retrieval.index else None,
        "solve": cfg.solve.model_dump(mode="json"),  # how it solves when asked or served without saying (tutor.solve)
        "primary_metric": "perplexity",
        "validation": {"perplexity": metrics["fine_tuned"]["perplexity"],
                       "answer_accuracy": metrics["fine_tuned"].get("answer_accuracy"), "n": n_val},
        "merge_parity": parity.__dict__,
    }


def _finish_tutor(recipe: Recipe, work: Path, tracker, fitted, metrics: dict, summary: dict, report: str,
                  manifest: dict, parity) -> dict:
    """Metrics, report and curve to the folder and MLflow; the model logged and registered."""
    for entry in fitted.history:
        tracker.log_metrics({k: v for k, v in entry.items() if k not in ("epoch", "step")}, step=entry["epoch"])
    tracker.log_metrics({**{k: v for k, v in metrics["fine_tuned"].items() if isinstance(v, (int, float))},
                         **{f"base_{k}": v for k, v in metrics.get("base", {}).items() if isinstance(v, (int, float))},
                         **{k: v for k, v in summary.items() if isinstance(v, (int, float))}})
    write_json(work / "metrics.json", {"validation": metrics, "summary": summary, "history": fitted.history,
                                       "merge_parity": parity.__dict__})
    write_text(work / "report.md", report)
    if fitted.history:
        training_curve_png(fitted.history, work / "training_curve.png", "perplexity")
    for name in ("training_curve.png", "report.md", "metrics.json", "recipe.yaml"):
        if (work / name).exists():
            tracker.log_artifact(work / name, "reports")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    (work / "run.json").unlink(missing_ok=True)
    write_json(work / MANIFEST, manifest)
    registered = tracker.log_model(work, recipe.tracking.register_as or TutorTask.registered_name) if recipe.tracking.log_model else {}
    manifest["tracking"] = {**tracker.info, **registered}
    write_json(work / MANIFEST, manifest)
    tracker.end("FINISHED")
    return manifest["tracking"]


def _export_gguf(recipe: Recipe, model, work: Path) -> str:
    from ..errors import ModelError
    from ..models.gguf_export import export_gguf
    from ..models.registry import resolve

    source = resolve(recipe.model.name, recipe.model.gguf_file)
    if not source.gguf_file:
        raise ModelError("tutor.gguf_export: the base model was not loaded from a GGUF file, so there is no "
                         "tokenizer metadata to copy; set tutor.gguf_export: none or use llama.cpp's converter")
    export_gguf(model, Path(source.path) / source.gguf_file, work / GGUF_FILE, recipe.tutor.gguf_export)
    return GGUF_FILE


def _evaluate(recipe: Recipe, merged, tok, val: Pairs, val_ex, val_ctx, reporter, known: dict | None = None) -> tuple[dict, str]:
    """Perplexity on every validation solution; generation metrics on the first tutor.eval_samples problems;
    the same for the base model when tutor.compare_base is set."""
    from ..models.causal import load_causal_lm
    from ..models.device import place
    from ..models.generate import TransformersGenerator
    from .sft import response_nll
    from .tutor_eval import comparison_markdown, evaluate_generator

    cfg = recipe.tutor
    n = min(cfg.eval_samples, len(val.questions))
    sample = _subset(val, range(n), val.source)
    ctx = val_ctx[:n] if val_ctx else None

    def run(model, label, result=None):
        if result is None:
            reporter.start(f"perplexity ({label})", len(val_ex.ids))
            result = response_nll(model, val_ex, tok.pad_token_id, recipe.train.eval_batch_size,
                                  recipe.train.precision, reporter=reporter)
        gen = None
        if n:
            gen = evaluate_generator(TransformersGenerator(model, tok, cfg.system_prompt), sample, cfg.max_new_tokens,
                                     cfg.eval_batch_size, ctx, off_topic=REFUSAL_EVAL[:cfg.refusal_eval_samples],
                                     reporter=reporter, solving=cfg.solve)
            result = {**gen.metrics, **result}
        return result, gen

    tuned_metrics, tuned_gen = run(merged, "fine-tuned", dict(known) if known else None)
    metrics = {"fine_tuned": tuned_metrics}
    base_gen = None
    if cfg.compare_base:
        release_memory()
        base = place(load_causal_lm(ModelConfig(name=recipe.model.name, gguf_file=recipe.model.gguf_file,
                                                peft="none")).model)
        base_metrics, base_gen = run(base, "base")
        metrics["base"] = base_metrics
        del base
    notes = [f"validation: {len(val.questions)} problems from {val.source}; generation on the first {n}",
             f"model: {recipe.model.name} ({recipe.model.peft}), max {cfg.max_new_tokens} new tokens, "
             + (f"mode {cfg.solve.mode}, greedy decoding" if cfg.solve.mode != "vote" else
                f"vote over up to {cfg.solve.samples} samples of {cfg.solve.vote_over} at temperature "
                f"{cfg.solve.temperature}")]
    report = ""
    if tuned_gen is not None:
        if base_gen is not None:
            base_gen.metrics.update({k: metrics["base"][k] for k in ("perplexity", "val_loss")})
        tuned_gen.metrics.update({k: tuned_metrics[k] for k in ("perplexity", "val_loss")})
        report = comparison_markdown(base_gen, tuned_gen, sample, "Tutor: base versus fine-tuned", notes=notes)
    else:
        report = "# Tutor evaluation\n\n" + "\n".join(f"- {k}: {v}" for k, v in tuned_metrics.items()) + "\n"
    return metrics, report
