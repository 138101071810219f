"""Evaluate a tutor: final-answer accuracy (math-verify), ROUGE-1/2/L, BLEU, perplexity on the reference
solutions, refusal rate on non-math prompts and false-refusal rate on math prompts; and the base-versus-
fine-tuned report (a table and side-by-side examples, as Markdown).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import SolveConfig
from ..metrics.answers import answers_match, is_refusal
from ..metrics.generation import bleu, rouge
from ..models.device import place
from ..tasks.tutor import REFUSAL_EVAL, Pairs

HEADLINE = ("answer_accuracy", "rougeL", "rouge1", "rouge2", "bleu", "perplexity", "refusal_rate",
            "false_refusal_rate", "tokens_per_second")


@dataclass
class TutorEval:
    metrics: dict
    outputs: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    finals: list[str | None] = field(default_factory=list)  # each problem's final answer, as scored


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def evaluate_generator(generator, pairs: Pairs, max_new_tokens: int = 256, batch_size: int = 16,
                       contexts: Sequence[str | None] | None = None, off_topic: Sequence[str] = REFUSAL_EVAL,
                       reporter=None, solving: SolveConfig | None = None) -> TutorEval:
    """Answer every pair (and each off-topic prompt) as ``solving`` says (cot, program, code or vote; default: the
    generator's own settings, a trained tutor's recipe) and score the answers."""
    from ..models.solving.solve import solve

    solving = solving or generator.solving
    mode = solving.mode
    questions = pairs.questions
    contexts = list(contexts) if contexts is not None else [None] * len(questions)
    if reporter:
        reporter.start(f"generate ({generator.backend}, {mode})", len(questions) + len(off_topic))
    solutions = []
    for start, chunk in _batches(questions, batch_size if mode == "cot" else 1):
        solutions += solve(generator, chunk, solving, contexts[start:start + len(chunk)], max_new_tokens)
        if reporter:
            reporter.advance(len(chunk))
    refusals = []
    single = str(solving.vote_over if mode == "vote" else mode)  # an off-topic prompt is answered once, not voted on
    single = "cot" if single == "mixed" else single
    for _, chunk in _batches(list(off_topic), batch_size if single == "cot" else 1):
        refusals += [s.answer for s in solve(generator, chunk, SolveConfig(mode=single), None,
                                             48 if single == "cot" else 160)]
        if reporter:
            reporter.advance(len(chunk))
    metrics = solution_metrics(solutions, pairs, refusals, mode)
    if mode == "vote" and solving.time_budget:  # the budget as this engine ran it (stretched on a slower one)
        from ..models.solving.budget import budget_seconds

        metrics["time_budget_seconds"] = budget_seconds(solving, generator)
        if solving.budget_speed and hasattr(generator, "speed"):
            metrics["engine_tokens_per_second"] = generator.speed()
    return TutorEval(metrics, [s.answer for s in solutions], refusals, [s.final_answer for s in solutions])


def per_problem(pairs: Pairs, evaluated: TutorEval) -> list[dict]:
    """Each problem's question, reference answer, final answer and whole answer."""
    return [{"question": q, "reference": a, "final_answer": f, "answer": o}
            for q, a, f, o in zip(pairs.questions, pairs.answers, evaluated.finals, evaluated.outputs, strict=True)]


def solution_metrics(solutions: Sequence, pairs: Pairs, refusals: Sequence[str], mode: str) -> dict:
    """Scores of ``solutions`` (models/solving Solution, one per pair, in order) against ``pairs``, with the
    answers given to off-topic prompts (``refusals``)."""
    outputs = [s.answer for s in solutions]
    scored = [(s.final_answer, a) for s, a in zip(solutions, pairs.answers) if a is not None]
    correct = sum(answers_match(p, a) for p, a in scored)
    tokens, seconds = sum(s.new_tokens for s in solutions), sum(s.seconds for s in solutions)
    programs = [s.program_ok for s in solutions if s.program_ok is not None]
    confidences = [s.confidence for s in solutions if s.confidence is not None]
    return {
        "mode": mode,
        "n": len(pairs.questions),
        "n_with_answer": len(scored),
        "answer_accuracy": correct / len(scored) if scored else None,
        "answer_extracted_rate": sum(p is not None for p, _ in scored) / len(scored) if scored else None,
        **rouge(outputs, pairs.responses),
        "bleu": bleu(outputs, pairs.responses),
        "refusal_rate": sum(map(is_refusal, refusals)) / len(refusals) if refusals else None,
        "false_refusal_rate": sum(s.refused or is_refusal(s.answer) for s in solutions) / len(solutions) if solutions else None,
        "mean_new_tokens": tokens / max(len(outputs), 1),
        "tokens_per_second": tokens / seconds if seconds else None,
        "seconds_per_problem": seconds / len(solutions) if solutions else None,
        "median_seconds_per_problem": statistics.median(s.seconds for s in solutions) if solutions else None,
        "program_ran_rate": sum(programs) / len(programs) if programs else None,
        "mean_confidence": sum(confidences) / len(confidences) if confidences else None,
        "mean_samples": sum(s.samples for s in solutions) / len(solutions) if solutions else None,
        # how many votes the time budget cut (the samples still drawing stopped): on a slower host the same default
        # is a different tutor, and this says how different
        "cut_by_time_budget": sum(s.out_of_time for s in solutions),
        "cut_by_time_budget_rate": sum(s.out_of_time for s in solutions) / len(solutions) if solutions else None,
    }


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def comparison_markdown(base: TutorEval | None, tuned: TutorEval, pairs: Pairs, title: str,
                        examples: int = 5, notes: Sequence[str] = ()) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    lines += ["| metric | base | fine-tuned | change |", "|---|---|---|---|"]
    for key in HEADLINE:
        b = base.metrics.get(key) if base else None
        t = tuned.metrics.get(key)
        change = f"{t - b:+.4f}" if isinstance(b, (int, float)) and isinstance(t, (int, float)) else "–"
        lines.append(f"| {key} | {_fmt(b)} | {_fmt(t)} | {change} |")
    lines += ["", "Lower is better for perplexity and false_refusal_rate; higher for the rest.", "",
              "## Side by side", ""]
    for i in range(min(examples, len(tuned.outputs))):
        lines += [f"### Problem {i + 1}", "", pairs.questions[i], "",
                  f"**Reference** (answer: {pairs.answers[i]})", "", pairs.responses[i], ""]
        if base:
            lines += ["**Base model**", "", base.outputs[i] or "(empty)", ""]
        lines += ["**Fine-tuned**", "", tuned.outputs[i] or "(empty)", ""]
    if tuned.refusals:
        lines += ["## Non-math prompts", "", "| prompt | base | fine-tuned |", "|---|---|---|"]
        for i, prompt in enumerate(REFUSAL_EVAL[: min(examples, len(tuned.refusals))]):
            b = base.refusals[i] if base else ""
            lines.append(f"| {prompt} | {_cell(b)} | {_cell(tuned.refusals[i])} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    text = " ".join(text.split())
    return (text[:120] + "…" if len(text) > 120 else text).replace("|", "\\|")


def _read_pairs(data, samples: int | None, question_column: str | None, response_column: str | None) -> tuple[Pairs, str]:
    from ..config import TutorConfig
    from ..data.readers import read_table
    from ..paths import resolve_data_path
    from ..tasks.tutor import pairs_from_frame

    path = resolve_data_path(data)
    pairs = pairs_from_frame(read_table(path), TutorConfig(question_column=question_column,
                                                            response_column=response_column), str(path))
    if samples:
        pairs = Pairs(pairs.questions[:samples], pairs.responses[:samples], pairs.answers[:samples], pairs.source)
    return pairs, str(path)


def evaluate_pretrained(model: str, data, backend: str = "auto", samples: int | None = None,
                        solving: SolveConfig | None = None, max_new_tokens: int = 512, question_column: str | None = None,
                        response_column: str | None = None, json_out=None, reporter=None) -> dict:
    """`mathtune evaluate` on a pretrained model used as a tutor without training (a bundled name, a GGUF file, a
    hub id): answer accuracy, ROUGE, BLEU, refusal rates and speed, solving as ``solving`` says (default: cot)."""
    from ..io import write_json
    from ..models.generate import load_tutor

    pairs, path = _read_pairs(data, samples, question_column, response_column)
    generator = load_tutor(model, backend)
    evaluated = evaluate_generator(generator, pairs, max_new_tokens, reporter=reporter, solving=solving)
    result = {"model": str(model), "data": path, "backend": generator.backend, **evaluated.metrics}
    if json_out:
        write_json(json_out, {**result, "problems": per_problem(pairs, evaluated)})
    return result


def evaluate_tutor_file(model_dir, data, backend: str = "transformers", samples: int | None = None,
                        compare_base: bool = False, question_column: str | None = None,
                        response_column: str | None = None, json_out=None, report_out=None, reporter=None,
                        solving: SolveConfig | None = None) -> dict:
    """`mathtune evaluate` on a tutor folder: generation metrics on ``samples`` problems of ``data`` (all when
    empty) with either backend, perplexity with transformers, and optionally the base model side by side; solving
    as ``solving`` says (default: as the tutor's recipe said, ``solve`` in its manifest)."""
    from pathlib import Path

    from ..config import ModelConfig
    from ..io import write_json, write_text
    from ..models.causal import load_causal_lm
    from ..models.generate import TransformersGenerator, load_tutor, saved_solving
    from ..models.saved import HF_SUBDIR, read_manifest
    from ..tasks.tutor import TutorPrompt
    from .sft import build_examples, response_nll

    folder = Path(model_dir)
    manifest = read_manifest(folder)
    if manifest["task"] != "tutor":
        from ..errors import ModelError

        raise ModelError(f"{folder}: a {manifest['task']} model, not a tutor")
    pairs, path = _read_pairs(data, samples, question_column, response_column)
    saved = TutorPrompt.from_dict(manifest.get("prompt"), system=manifest.get("system_prompt"))
    system = saved.system
    max_new = manifest.get("max_new_tokens", 256)
    loaded = load_causal_lm(ModelConfig(name=str(folder / HF_SUBDIR), peft="none"))
    place(loaded.model)
    generator = load_tutor(folder, backend) if backend != "transformers" else \
        TransformersGenerator(loaded.model, loaded.tokenizer, tutor_prompt=saved)
    solving = solving or saved_solving(folder, manifest)
    tuned = evaluate_generator(generator, pairs, max_new, reporter=reporter, solving=solving)
    examples = build_examples(loaded.tokenizer, pairs, manifest.get("max_length", 512), system)
    tuned.metrics.update(response_nll(loaded.model, examples, loaded.tokenizer.pad_token_id, 16, reporter=reporter))
    base = None
    if compare_base:
        base_cfg = ModelConfig(name=manifest["base_model"], gguf_file=manifest.get("base_gguf_file"), peft="none")
        base_model = place(load_causal_lm(base_cfg).model)
        base = evaluate_generator(TransformersGenerator(base_model, loaded.tokenizer, tutor_prompt=saved), pairs, max_new,
                                  reporter=reporter, solving=solving)
        base.metrics.update(response_nll(base_model, examples, loaded.tokenizer.pad_token_id, 16, reporter=reporter))
    result = {"model": str(folder), "data": str(path), "backend": generator.backend, **tuned.metrics}
    if base:
        result["base"] = base.metrics
    if json_out:  # with each problem's answer, so a run can be compared with another door's or replayed
        write_json(json_out, {**result, "problems": per_problem(pairs, tuned)})
    if report_out:
        notes = [f"data: {path} ({len(pairs.questions)} problems)", f"backend: {generator.backend}"]
        write_text(report_out, comparison_markdown(base, tuned, pairs, "Tutor evaluation", notes=notes))
    return result
