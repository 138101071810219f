"""Task ``tutor``: problem -> step-by-step solution, as chat messages for a causal LM.

Reads GSM8K (``question``/``answer`` with ``#### final``), MATH (``problem``/``solution`` with ``\\boxed{}``),
the CHAMP demo (``Question``/``solution``/``answer``) and any table with configurable columns. GSM8K's calculator
annotations (``<<48/2=24>>``) are removed and its ``#### 72`` becomes "The answer is 72." so every response ends
the way the system prompt asks.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import asdict, dataclass, fields

import pandas as pd

from ..config import TutorConfig
from ..errors import DataError, ModelError
from ..metrics.answers import THE_ANSWER_PATTERN, extract_final_answer
from .base import parse_settings, register_task, settings_as_dict

SYSTEM_PROMPT = (
    "You are a patient math tutor. Solve the problem step by step, one short step per line, "
    "and finish with 'The answer is <final answer>.' "
    "If the message is not a mathematics question, do not answer it; reply only: "
    "\"I can only help with math questions.\""
)
REFUSAL = "I can only help with math questions."
# Retrieved passages go before the problem, under this header, in this layout.
CONTEXT_HEADER = "Related worked examples and facts (use them if they help):"
LAYOUT = "{context}\n\nProblem: {question}"
# Generation stops at the end of the assistant's turn, or where a model starts writing the next problem or turn.
DEFAULT_STOPS = ("<|im_end|>", "<|endoftext|>", "\nProblem:", "\nUser:")

QUESTION_COLUMNS = ("question", "problem", "Question", "instruction", "prompt")
RESPONSE_COLUMNS = ("solution", "answer", "response", "output")
ANSWER_COLUMNS = ("final_answer", "answer")

# Prompts a math tutor should decline (seed 002's out-of-domain checks). The first half may be mixed into
# training (tutor.refusal_examples); evaluation uses the second half, which training never sees.
OFF_TOPIC = [
    "Write a short poem about the ocean.", "What is the capital of Australia?", "Who won the 2018 football World Cup?",
    "Give me a recipe for banana bread.", "How do I fix a flat bicycle tyre?", "Translate 'good morning' into Spanish.",
    "What is the best way to learn to play the guitar?", "Summarize the plot of Romeo and Juliet.",
    "Which programming language should I learn first?", "What causes the seasons on Earth?",
    "Recommend a good science fiction novel.", "How do I write a cover letter for a job?",
    "What is the meaning of the word 'ephemeral'?", "Tell me a joke about cats.", "How do vaccines work?",
    "Who painted the Mona Lisa?", "What should I pack for a weekend camping trip?", "How can I sleep better at night?",
    "Explain how a bill becomes a law.", "What are the rules of chess castling?",
    "Write an email asking my landlord to fix the heating.", "What is the tallest mountain in Africa?",
    "Describe the water cycle.", "Suggest a name for my new puppy.", "What language is spoken in Brazil?",
    "How do I clean a cast iron pan?", "Who was the first person to walk on the Moon?",
    "What are some tips for a job interview?", "Write a haiku about autumn leaves.", "Why is the sky blue?",
    "What is the plot of the movie Inception?", "How do I grow tomatoes on a balcony?",
    "Which planet is known as the Red Planet?", "Give me ideas for a birthday party.",
    "What is photosynthesis?", "How do I change the language on my phone?", "Name three famous composers.",
    "What is the difference between a virus and a bacterium?", "Plan a three-day trip to Rome.",
    "What does a good morning routine look like?",
]
REFUSAL_TRAIN, REFUSAL_EVAL = OFF_TOPIC[: len(OFF_TOPIC) // 2], OFF_TOPIC[len(OFF_TOPIC) // 2:]

_CALC = re.compile(r"<<[^<>]*>>")
_GSM_FINAL = re.compile(r"\n?####\s*(.+?)\s*$", re.S)


@dataclass
class Pairs:
    questions: list[str]
    responses: list[str]
    answers: list[str | None]   # reference final answers (None when a response has none)
    source: str


def _pick(frame: pd.DataFrame, configured: str | None, candidates: tuple[str, ...], role: str, source: str,
          key: str) -> str:
    if configured:
        if configured not in frame.columns:
            raise DataError(f"{source}: column {configured!r} ({role}) not found; columns are "
                            f"{', '.join(map(str, frame.columns))}. Set tutor.{key}.")
        return configured
    for name in candidates:
        if name in frame.columns:
            return name
    raise DataError(f"{source}: no {role} column (looked for {', '.join(candidates)}); columns are "
                    f"{', '.join(map(str, frame.columns))}. Set tutor.{key} in the recipe.")


def clean_response(text: str) -> str:
    """GSM8K style -> plain steps ending with 'The answer is X.'; other styles are kept as they are."""
    text = _CALC.sub("", str(text)).strip()
    match = _GSM_FINAL.search(text)
    if match:
        final = match.group(1).strip().replace(",", "")
        text = text[: match.start()].rstrip() + f"\nThe answer is {final}."
    return text


def pairs_from_frame(frame: pd.DataFrame, cfg: TutorConfig, source: str) -> Pairs:
    qcol = _pick(frame, cfg.question_column, QUESTION_COLUMNS, "question", source, "question_column")
    rcol = _pick(frame, cfg.response_column, tuple(c for c in RESPONSE_COLUMNS if c != qcol), "solution", source,
                 "response_column")
    acol = cfg.answer_column
    if acol is None:
        acol = next((c for c in ANSWER_COLUMNS if c in frame.columns and c not in (qcol, rcol)), None)
    elif acol not in frame.columns:
        raise DataError(f"{source}: column {acol!r} (tutor.answer_column) not found")
    questions, responses, answers = [], [], []
    empty = []
    given_answers = frame[acol].tolist() if acol else [None] * len(frame)
    for i, (q, r, given) in enumerate(zip(frame[qcol].tolist(), frame[rcol].tolist(), given_answers)):
        q, r = str(q).strip(), clean_response(r)
        if not q or not r or q == "nan" or r == "nan":
            empty.append(i + 2)
            continue
        final = extract_final_answer(r)
        given = str(given).strip() if given is not None else ""
        if final is None and given and given != "nan":
            final = given
            r = f"{r}\nThe answer is {given}."
        questions.append(q)
        responses.append(r)
        answers.append(final)
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DataError(f"{source}: {len(empty)} rows have an empty {qcol!r} or {rcol!r} (data rows {shown}); "
                        "remove them or fill them in")
    return Pairs(questions, responses, answers, source)


@register_task
class TutorTask:
    """Problem -> step-by-step solution (a generative task: no labels, no top-k)."""

    name = "tutor"
    settings_key = "tutor"
    settings_model = TutorConfig
    primary_metric = "perplexity"  # picks the best epoch on validation; answer accuracy is reported beside it
    metric_order = ("answer_accuracy", "base_answer_accuracy", "rougeL", "base_rougeL", "bleu", "base_bleu",
                    "perplexity", "base_perplexity", "refusal_rate", "base_refusal_rate", "false_refusal_rate",
                    "tokens_per_second")
    trainers = ("sft",)
    registered_name = "math-tutor"
    route = "tutor"

    def __init__(self, settings=None) -> None:
        self.settings = parse_settings(self.settings_model, settings)

    def settings_dict(self) -> dict:
        return settings_as_dict(self.settings)


@dataclass(frozen=True)
class TutorPrompt:
    """Everything that shapes how a tutor is asked and how its answer is read, as one object. It is saved with a
    trained model (``prompt`` in mathtune.json) and read back when the model is loaded, so changing these
    defaults later never changes how an older model is prompted."""

    system: str = SYSTEM_PROMPT
    layout: str = LAYOUT  # the user turn when retrieved passages come with the problem
    retrieval_header: str = CONTEXT_HEADER
    stops: tuple[str, ...] = DEFAULT_STOPS
    answer_pattern: str = THE_ANSWER_PATTERN  # "The answer is X." (with #### and \\boxed{} as fallbacks)
    refusal: str = REFUSAL

    def to_dict(self) -> dict:
        return {**asdict(self), "stops": list(self.stops)}

    @classmethod
    def from_dict(cls, saved: dict | None, system: str | None = None) -> TutorPrompt:
        """A saved prompt; a model saved before prompts were kept gets today's defaults with its system prompt."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (saved or {}).items() if k in known}
        if "stops" in values:
            values["stops"] = tuple(values["stops"]) if isinstance(values["stops"], list) else values["stops"]
        if system and "system" not in values:
            values["system"] = system
        prompt = cls(**values)
        prompt.check()
        return prompt

    def check(self) -> None:
        """A saved prompt is data from a model folder: plain text, a layout with only {context} and {question}
        (no attribute or index lookups), and a short answer pattern that compiles."""
        texts = (self.system, self.layout, self.retrieval_header, self.answer_pattern, self.refusal)
        if not all(isinstance(t, str) for t in texts) or not isinstance(self.stops, tuple) \
                or not all(isinstance(t, str) for t in self.stops):
            raise ModelError("the model's saved prompt (mathtune.json: prompt) has values that are not text")
        try:
            names = [name for _, name, spec, conv in string.Formatter().parse(self.layout) if name is not None]
        except ValueError as exc:
            raise ModelError(f"the model's saved prompt layout is not a valid template ({exc})") from None
        if sorted(set(names)) != ["context", "question"]:
            raise ModelError(f"the model's saved prompt layout may use only {{context}} and {{question}}, not {names}")
        if len(self.answer_pattern) > 300:
            raise ModelError("the model's saved answer pattern is over 300 characters")
        try:
            re.compile(self.answer_pattern)
        except re.error as exc:
            raise ModelError(f"the model's saved answer pattern is not a regular expression ({exc})") from None

    def user_message(self, question: str, context: str | None = None) -> str:
        return question if not context else self.layout.format(context=context, question=question)

    def final_answer(self, text: str) -> str | None:
        return extract_final_answer(text, self.answer_pattern)


DEFAULT_PROMPT = TutorPrompt()


@dataclass(frozen=True)
class WorkedExamples:
    """Retrieved context as few-shot turns: each (problem, solution) pair becomes an earlier user turn and the
    tutor's answer to it, so the model sees how similar problems were solved instead of text to copy from;
    ``passages`` (retrieved chunks that are not whole worked examples) still go before the problem."""

    pairs: tuple[tuple[str, str], ...] = ()
    passages: str | None = None

    def __bool__(self) -> bool:
        return bool(self.pairs or self.passages)


# How an indexed problem with its solution reads (rag/corpus.py writes GSM8K and MATH rows this way)
WORKED_EXAMPLE = "Problem: {question}\nSolution: {solution}"


def worked_example(text: str) -> tuple[str, str] | None:
    """A whole indexed worked example (``WORKED_EXAMPLE``) as (problem, solution), the solution ending "The answer
    is X."; None for anything else (a piece of a longer document, a concept, a hint). Plain string splitting, in
    linear time whatever an index's chunk holds."""
    text = text.strip()
    if not text.startswith("Problem:"):
        return None
    question, found, solution = text[len("Problem:"):].partition("\nSolution:")
    question, solution = question.strip(), solution.strip()
    if not found or not question or not solution:
        return None
    solution = clean_response(solution)
    return question, with_answer_line(solution, extract_final_answer(solution))


def with_answer_line(solution: str, final: str | None) -> str:
    """``solution`` ending "The answer is X." as the system prompt asks (MATH's end in \\boxed{X}: the line is
    added after it)."""
    if final is not None and not re.search(THE_ANSWER_PATTERN, solution.strip().splitlines()[-1]):
        return f"{solution}\nThe answer is {final}."
    return solution


def messages(question: str, response: str | None = None, system_prompt: str | None = None,
             context: str | WorkedExamples | None = None, prompt: TutorPrompt = DEFAULT_PROMPT) -> list[dict]:
    """Chat messages for one example; ``context`` (retrieved passages) goes before the question; worked examples
    (``WorkedExamples``) come first as earlier turns of the conversation."""
    out = [{"role": "system", "content": system_prompt or prompt.system}]
    if isinstance(context, WorkedExamples):
        for shot_question, shot_solution in context.pairs:
            out += [{"role": "user", "content": shot_question}, {"role": "assistant", "content": shot_solution}]
        context = context.passages
    out.append({"role": "user", "content": prompt.user_message(question, context)})
    if response is not None:
        out.append({"role": "assistant", "content": response})
    return out


def mixed(pairs: Pairs, extra: Pairs, limit: int | None, seed: int) -> Pairs:
    """``pairs`` plus up to ``limit`` of ``extra`` (a seeded sample), each added solution ending "The answer is X."."""
    order = sorted(random.Random(seed).sample(range(len(extra.questions)), min(limit or len(extra.questions),
                                                                                len(extra.questions))))
    responses = [with_answer_line(extra.responses[i], extra.answers[i]) for i in order]
    return Pairs(pairs.questions + [extra.questions[i] for i in order], pairs.responses + responses,
                 pairs.answers + [extra.answers[i] for i in order], f"{pairs.source} + {len(order)} of {extra.source}")


def with_refusals(pairs: Pairs, n: int) -> Pairs:
    """Append ``n`` off-topic prompts (cycling through the training half) answered with the refusal."""
    if n <= 0:
        return pairs
    extra = [REFUSAL_TRAIN[i % len(REFUSAL_TRAIN)] for i in range(n)]
    return Pairs(pairs.questions + extra, pairs.responses + [REFUSAL] * n, pairs.answers + [None] * n,
                 pairs.source + f" + {n} refusals")
