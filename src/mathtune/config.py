"""Recipes: YAML files validated by pydantic. Every field is documented once, here.

An unknown key is an error that names it (and suggests the closest known key);
``--set a.b=c`` overrides any key before validation.
"""

from __future__ import annotations

import difflib
import os
import reprlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .choices import Mode, Tiebreak, VoteOver
from .errors import MathtuneError, RecipeError, problem_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # NaN is no setting


class DataConfig(_Strict):
    train: str = Field(description="Training file (csv, jsonl, parquet; .gz too) relative to the data directory, or `demo:champ`.")
    validation: str | None = Field(None, description="Validation file; when empty, `val_size` of train is split off.")
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    encoding: str = Field("utf-8", description="Text encoding of csv/jsonl files.")
    text_column: str = Field("Question", description="Column with the question text.")
    label_column: str = Field("label", description="Column with the label (an id or a name).")
    id_column: str = Field("id", description="Column with row ids, used in prediction files when present.")
    val_size: float = Field(0.2, gt=0.0, lt=1.0, description="Share of train held out for validation.")
    split: Literal["stratified", "grouped"] = Field("stratified", description="stratified on the label (single-member classes stay in train), or grouped by `group_column` (unseen groups in validation).")
    group_column: str = Field("QuestionId", description="Column that groups rows for a grouped split.")
    split_seed: int = Field(0, description="Seed of the stratified train/validation split.")
    limit: int | None = Field(None, gt=0, description="Use at most this many training rows (stratified sample), for quick runs.")


class LoraConfig(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(None, description="Module names to adapt; empty: peft's default for the architecture.")
    top_layers: int | None = Field(None, gt=0, description="Adapt only the top N transformer layers: backpropagation stops below them, so a CPU step is about twice as fast and activations of the lower layers are not kept.")


class ModelConfig(_Strict):
    name: str | None = Field(None, description="`bundled:minilm`, `bundled:smollm2`, a local folder, or a Hugging Face model id; empty: the task's default (MiniLM for classifiers, SmolLM2 for the tutor).")
    gguf_file: str | None = Field(None, description="GGUF file inside `name` to load (dequantized) instead of safetensors.")
    peft: Literal["none", "lora", "qlora"] = Field("lora", description="none: full fine-tuning; lora; qlora: 4-bit NF4 base + LoRA (CUDA only).")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    max_length: int = Field(256, gt=8, description="Tokens per example; longer texts are truncated.")
    gradient_checkpointing: bool = False


class TfidfConfig(_Strict):
    word_ngrams: tuple[int, int] = (1, 3)
    char_ngrams: tuple[int, int] = (1, 5)
    max_features: int | None = Field(None, description="Per vectorizer; empty for no cap.")
    min_df: int = Field(1, ge=1)
    classifier: Literal["logreg", "linear_svc"] = "linear_svc"
    C: float = Field(1.0, gt=0, description="Inverse regularization strength of the linear model.")
    class_weight: Literal["balanced"] | None = None
    calibrate: bool = Field(True, description="linear_svc: fit a temperature on cross-validated margins so that their "
                                              "softmax is a calibrated probability (one scalar, saved; ranks unchanged).")
    calibration_folds: int = Field(3, ge=2, le=10)


class TrainConfig(_Strict):
    epochs: int = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps (quick runs, tests).")
    batch_size: int = Field(16, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    grad_accum_steps: int = Field(1, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    class_weights: bool = Field(False, description="Weight the cross-entropy by balanced class weights.")
    early_stopping_patience: int | None = Field(2, ge=1, description="Epochs without a better validation metric before stopping.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast where the CPU or GPU supports it.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding).")
    checkpoint_every_steps: int = Field(200, gt=0, description="Save a resumable checkpoint this often (and at each epoch end).")
    seed: int = 0
    threads: int | None = Field(None, gt=0, description="CPU threads; empty: all cores.")
    refit: bool = Field(False, description="After choosing the settings and the number of epochs on the validation split, train once more on train + validation with them and save that model (the validation figures stay those of the first fit).")


class TrackingConfig(_Strict):
    backend: Literal["mlflow", "none"] = "mlflow"
    uri: str | None = Field(None, description="Tracking URI; MLFLOW_TRACKING_URI wins; default sqlite:///mlflow.db in the working folder.")
    experiment: str | None = Field(None, description="Experiment name; default `mathtune-<task>`.")
    register_as: str | None = Field(None, description="Registered model name; default per task (math-topics, ...).")
    log_model: bool = Field(True, description="Log the model as an MLflow model and register a version.")


class BackTranslationConfig(_Strict):
    forward_model: str | None = Field(None, description="Seq2seq model to the pivot language (folder or hub id, e.g. Helsinki-NLP/opus-mt-en-fr).")
    backward_model: str | None = Field(None, description="Seq2seq model back to the source language (e.g. Helsinki-NLP/opus-mt-fr-en).")
    forward_lang: str | None = Field(None, description="Target language token for multilingual models (NLLB: fra_Latn).")
    backward_lang: str | None = Field(None, description="Target language token for the way back (NLLB: eng_Latn).")
    batch_size: int = Field(16, gt=0)


class AugmentConfig(_Strict):
    methods: list[Literal["numbers", "back_translation"]] = Field(default_factory=lambda: ["numbers"])
    target_count: int | None = Field(None, gt=0, description="Bring every class below this many rows up to it.")
    target_ratio: float = Field(0.5, gt=0, le=1, description="Without target_count: up to this share of the largest class.")
    max_per_example: int = Field(3, gt=0, description="At most this many new rows from one original per method.")
    near_duplicate_threshold: float = Field(0.97, gt=0, le=1, description="Drop new rows whose char n-gram cosine to an existing row reaches this.")
    seed: int = 0
    back_translation: BackTranslationConfig = Field(default_factory=BackTranslationConfig)


class MisconceptionConfig(_Strict):
    question_column: str = "QuestionText"
    answer_column: str = "MC_Answer"
    explanation_column: str = "StudentExplanation"
    question_id_column: str = "QuestionId"
    category_column: str = "Category"
    misconception_column: str = "Misconception"
    prompt_template: str | None = Field(None, description="Model input template with {QuestionText}, {MC_Answer}, {StudentExplanation}; empty: the seed's 'Analyze the student's reasoning' layout.")
    restrict_to_question: bool = Field(True, description="Rank only labels seen for the same QuestionId in training (unseen questions: all labels).")
    derive_correctness: bool = Field(True, description="Keep only True_/False_ labels matching whether the chosen answer is the question's correct one (learnt from training data).")


class ProductsConfig(_Strict):
    text_fields: list[str] = Field(default_factory=lambda: ["title", "description"], description="Joined into one TF-IDF text.")
    categorical_fields: list[str] = Field(default_factory=list, description="One-hot encoded (brand, category lists, ...).")
    numeric_fields: list[str] = Field(default_factory=list, description="Parsed as numbers: '₹32,999' -> 32999; empty -> imputed median.")
    list_count_fields: list[str] = Field(default_factory=list, description="Lists (JSON or comma-separated) turned into their length: also_buy, also_view, images.")
    drop_duplicates_on: list[str] = Field(default_factory=list, description="Drop rows repeating these fields before the split (e.g. the product link).")
    exclude_labels: list[str] = Field(default_factory=list, description="Drop rows with these labels.")
    classifier: Literal["random_forest", "linear", "gradient_boosting"] = "random_forest"
    n_estimators: int = Field(300, gt=0)
    max_depth: int | None = None
    min_samples_split: int = Field(2, ge=2)
    C: float = Field(5.0, gt=0, description="Inverse regularization of the linear option.")
    smote: bool = Field(True, description="SMOTE inside the pipeline: it only ever sees training folds.")
    smote_k_neighbors: int = Field(5, gt=0)
    max_text_features: int = Field(30000, gt=0)
    cv_folds: int = Field(5, ge=2, description="Stratified folds for cross-validated metrics on the training split.")


class RetrievalConfig(_Strict):
    index: str | None = Field(None, description="Index folder made by `mathtune index build`; empty: no retrieval.")
    k: int = Field(4, gt=0, le=50, description="Retrieved chunks put into each prompt.")
    hybrid: bool = Field(False, description="Mix BM25 keyword scores into the semantic scores.")
    mmr: bool = Field(False, description="Re-rank with maximal marginal relevance (less repetition among the k).")
    style: Literal["examples", "passages"] = Field("examples", description="examples: retrieved whole worked examples (an index built with --whole-documents) become few-shot turns before the problem, other chunks stay passages; passages: every chunk goes before the problem as context.")


class MixConfig(_Strict):
    train: str = Field(description="Another file of problems and worked solutions (relative to the data directory), e.g. math-hendrycks/train.jsonl.")
    limit: int | None = Field(None, gt=0, description="Take at most this many of its problems (a seeded sample).")


class SolveConfig(_Strict):
    """How a tutor solves problems: in the evaluation after training, and by default when the trained tutor is asked
    (`mathtune ask`, `mathtune evaluate`) or served (a request's own mode, samples, ... override it)."""
    mode: Mode = Field(Mode.COT, description="cot: step-by-step reasoning ending in the answer; program: a sentence or two on the approach, then a short Python program, run in the sandbox, that prints the answer; code: the program alone, each step explained in a comment (about half program's tokens); vote: the majority answer of up to `samples` sampled solutions.")
    samples: int = Field(5, ge=2, le=9, description="mode vote: samples to vote over (at most: sampling stops once the rest could not change the majority).")
    vote_over: VoteOver = Field(VoteOver.COT, description="mode vote: the mode each sample is solved in; mixed: about half the samples in cot and half in program mode, drawn together, one vote each.")
    tiebreak: Tiebreak = Field(Tiebreak.PROGRAM, description="mode vote: when no two samples agree, one greedy answer in this mode decides (a program only when it ran; with agree_first, the first round's greedy answer when it is in this mode); none: the first answer drawn stands.")
    temperature: float = Field(0.7, gt=0, le=2, description="mode vote: sampling temperature.")
    then_over: VoteOver | None = Field(None, description="mode vote with agree_first: the mode of the samples drawn when the first round disagrees (a cheap first round, a richer second); empty: vote_over.")
    agree_first: int = Field(0, ge=0, le=9, description="mode vote: first draw the greedy answer and agree_first - 1 samples (together); when they all agree that is the answer and no more are drawn, otherwise the rest are drawn and all vote, a tie going to the greedy answer (adaptive consistency); 0, or samples: all samples at once (more than samples is an error).")
    first_round: int = Field(0, ge=0, le=9, description="mode vote with agree_first: the answers drawn in the first round (the greedy one and first_round - 1 samples, together); when agree_first of them agree (2 of 3, say) that is the answer; 0: agree_first (they must all agree).")
    time_budget: float | None = Field(None, gt=0, le=3600, description="mode vote: seconds a vote may take; once they are spent, the samples still being drawn stop and the answer is voted from those finished (at least one: with agree_first the first round's greedy answer always completes, and its samples still decoding stop once an answer of the round is in), without correcting failed programs or asking a tie-break. Empty: no limit.")
    budget_speed: float | None = Field(None, gt=0, le=10000, description="mode vote with time_budget: the engine speed (tokens/s of one answer decoding alone, as the tutor measures it once) the budget was set for; on an engine measured slower, the budget's seconds stretch by the ratio, up to 3 times, so that a vote does about the same work on a slower host. Empty: the budget is seconds as they are.")

    @field_validator("agree_first")
    @classmethod
    def _a_round_can_agree(cls, value: int) -> int:
        if value == 1:
            raise ValueError("a round of one answer cannot agree; choose 0 (off) or 2 to samples")
        return value

    @model_validator(mode="after")
    def _the_first_round_fits(self) -> SolveConfig:
        if self.agree_first > self.samples:
            raise ValueError(f"agree_first {self.agree_first}: more answers than the {self.samples} samples cannot "
                             f"agree; choose 2 to {self.samples}, or 0 (all samples at once)")
        if self.first_round and self.first_round < max(self.agree_first, 2):
            raise ValueError(f"first_round {self.first_round}: a first round holds at least agree_first "
                             f"({max(self.agree_first, 2)}) answers")
        if self.first_round and self.first_round >= self.samples:
            raise ValueError(f"first_round {self.first_round}: it must be below samples ({self.samples}), or the "
                             "second round is empty")
        return self

    @classmethod
    def checked(cls, values, message: str, error: type[MathtuneError] = MathtuneError) -> SolveConfig:
        """``values`` as solving settings, or ``error`` with ``message`` (its ``{problems}``: each bad field and why)."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'solve'}: {problem_text(e)}" for e in err.errors())
            raise error(message.replace("{problems}", problems)) from None


class TutorConfig(_Strict):
    question_column: str | None = Field(None, description="Column with the problem; empty: the first of question, problem, Question, instruction, prompt.")
    response_column: str | None = Field(None, description="Column with the worked solution; empty: the first of solution, answer, response, output.")
    answer_column: str | None = Field(None, description="Column with the final answer when the solution does not end with one (CHAMP: answer).")
    system_prompt: str | None = Field(None, description="System message; empty: the step-by-step tutor prompt that declines non-math questions.")
    refusal_examples: int = Field(0, ge=0, description="Mix this many built-in non-math prompts, answered with the refusal, into training.")
    mix: list[MixConfig] = Field(default_factory=list, description="More training problems from other files (training split only; validation stays the main file's), so a tutor trained on GSM8K also sees e.g. MATH's notation and does not take it for a non-math question.")
    packing: bool = Field(False, description="Pack several short examples into one max_length sequence (fewer pad tokens).")
    max_new_tokens: int = Field(256, gt=0, description="Generation budget in evaluation.")
    eval_samples: int = Field(50, ge=0, description="Validation problems answered by generation (accuracy, ROUGE, BLEU); 0 skips generation.")
    eval_batch_size: int = Field(16, gt=0, description="Problems generated together in evaluation (left padding).")
    refusal_eval_samples: int = Field(20, ge=0, le=20, description="Held-out non-math prompts answered in evaluation (refusal rate); 0 skips them.")
    compare_base: bool = Field(True, description="Also evaluate the base model and write the base-versus-fine-tuned report.")
    gguf_export: Literal["none", "f16", "q8_0"] = Field("none", description="Also write model.gguf for the llama.cpp backend (Llama-family bases loaded from GGUF).")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    solve: SolveConfig = Field(default_factory=SolveConfig, description="How the tutor solves in evaluation and, saved with the model, when it is asked or served.")


class EmbeddingConfig(_Strict):
    C: float = Field(4.0, gt=0, description="Inverse regularization of the logistic regression on the frozen sentence vectors.")
    class_weight: Literal["balanced"] | None = None
    batch_size: int = Field(32, gt=0, description="Texts per encoder pass.")


class EnsembleConfig(_Strict):
    members: list[dict[str, Any]] = Field(min_length=2, description="Member recipes, each a `name` and its trainer with the sections that trainer reads (tfidf, model, train, augment, the task's section); task, data and labels come from the ensemble recipe, so every member sees the same split.")
    method: Literal["average", "stacking"] = Field("average", description="average: a weighted mean of the members' calibrated probabilities; stacking: a multinomial logistic regression on the members' out-of-fold log-probabilities.")
    weights: list[float] | None = Field(None, description="average: one non-negative weight per member; empty: equal weights.")
    folds: int = Field(5, ge=2, le=20, description="stacking: folds of the training split that give the out-of-fold predictions (seeded by train.seed).")
    C: float = Field(1.0, gt=0, description="stacking: inverse regularization of the logistic regression on top.")


DEFAULT_MODELS = {"topic": "bundled:minilm", "misconception": "bundled:minilm", "tutor": "bundled:smollm2",
                  "products": "bundled:minilm"}


@dataclass(frozen=True)
class Section:
    """A recipe section and who reads it: a task, or some trainers. One table (``SECTIONS``) holds every section, the
    built-in ones (fields of ``Recipe``) and those brought by plugins (``register_section``: validated by their own
    model, kept in ``Recipe.extensions``). A recipe that carries a section its task and trainer do not read is an
    error (it would be silently ignored otherwise); one that reads a ``filled`` section and leaves it out gets its
    defaults."""

    name: str
    model: type[BaseModel]
    trainers: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    filled: bool = True
    builtin: bool = False

    @property
    def reader(self) -> str:
        if self.tasks:
            return f"the {' or '.join(self.tasks)} task"
        return f"trainer {' or '.join(self.trainers)}"

    def read_by(self, task: str, trainer: str) -> bool:
        return task in self.tasks or trainer in self.trainers


SECTIONS: dict[str, Section] = {section.name: section for section in (
    Section("misconception", MisconceptionConfig, tasks=("misconception",), builtin=True),
    Section("products", ProductsConfig, tasks=("products",), builtin=True),
    Section("tutor", TutorConfig, tasks=("tutor",), builtin=True),
    Section("tfidf", TfidfConfig, trainers=("tfidf",), builtin=True),
    Section("model", ModelConfig, trainers=("finetune", "sft", "embedding"), builtin=True),
    Section("embedding", EmbeddingConfig, trainers=("embedding",), builtin=True),
    Section("augment", AugmentConfig, trainers=("tfidf", "finetune", "embedding"), filled=False, builtin=True),
    Section("ensemble", EnsembleConfig, trainers=("ensemble",), filled=False, builtin=True),  # members: no default
)}


def plugin_sections() -> dict[str, Section]:
    return {name: section for name, section in SECTIONS.items() if not section.builtin}


def task_section(task: str) -> str:
    """The section with a task's settings: its own, or ``settings`` for a task registered without one."""
    return next((name for name, s in SECTIONS.items() if s.builtin and task in s.tasks), "settings")


def register_section(name: str, model: type[BaseModel], *, trainer: str | None = None,
                     task: str | None = None) -> Section:
    """Make ``name:`` a recipe section, read by one plugin ``trainer`` (or ``task``) and validated with ``model``
    (register_trainer and register_task call this for a plugin's ``settings_model``). A name that is taken raises."""
    if (trainer is None) == (task is None):
        raise ValueError(f"section {name!r}: give the trainer or the task that reads it (one of them)")
    if name in Recipe.model_fields or name in SECTIONS:
        owner = SECTIONS[name].reader if name in SECTIONS and not SECTIONS[name].builtin else "mathtune"
        raise RecipeError(f"recipe section {name!r} is already registered (by {owner}); choose another name")
    section = Section(name, model, (trainer,) if trainer else (), (task,) if task else ())
    SECTIONS[name] = section
    return section


def unregister_section(name: str) -> None:
    if name in SECTIONS and not SECTIONS[name].builtin:
        del SECTIONS[name]


class Recipe(_Strict):
    task: str = Field("topic", description="A registered task: topic, misconception, products, tutor, or your own.")
    trainer: str = Field("finetune", description="A registered trainer: tfidf, finetune, embedding, ensemble, sklearn, sft, or your own.")
    labels: list[str] | None = Field(None, description="Label names in id order; default: the task's names or the data's values.")
    data: DataConfig
    model: ModelConfig | None = Field(None, description="The pretrained model (trainers finetune and sft).")
    tfidf: TfidfConfig | None = Field(None, description="TF-IDF settings (trainer tfidf).")
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    misconception: MisconceptionConfig | None = Field(None, description="Settings of the misconception task.")
    products: ProductsConfig | None = Field(None, description="Settings of the products task.")
    tutor: TutorConfig | None = Field(None, description="Settings of the tutor task.")
    settings: dict[str, Any] | None = Field(None, description="Settings of a task registered outside mathtune.")
    augment: AugmentConfig | None = Field(None, description="Augment rare classes of the training split (never validation).")
    ensemble: EnsembleConfig | None = Field(None, description="Members and how their probabilities are combined (trainer ensemble).")
    embedding: EmbeddingConfig | None = Field(None, description="The linear head on frozen sentence vectors (trainer embedding; the encoder is `model.name`).")
    extensions: dict[str, Any] = Field(default_factory=dict, description="Sections of plugin trainers and tasks (register_section), validated by their own models; written in a recipe as top-level sections.")

    def section(self, name: str):
        """A section by name: a built-in one or a plugin's (``None`` when the recipe has none)."""
        return self.extensions.get(name) if name in plugin_sections() else getattr(self, name, None)

    @model_validator(mode="before")
    @classmethod
    def _plugin_sections(cls, raw: Any) -> Any:
        """Plugin sections move into ``extensions``, each validated by its model (its defaults when the recipe's
        trainer or task reads it and the recipe leaves it out)."""
        if not isinstance(raw, dict):
            return raw
        raw, extensions = dict(raw), dict(raw.get("extensions") or {})
        task, trainer = raw.get("task", "topic"), raw.get("trainer", "finetune")
        for name, section in plugin_sections().items():
            value = raw.pop(name, extensions.get(name))
            if value is None and not section.read_by(task, trainer):
                extensions.pop(name, None)
                continue
            extensions[name] = value if isinstance(value, section.model) else section.model.model_validate(value or {})
        raw["extensions"] = extensions
        return raw

    @model_validator(mode="after")
    def _task_defaults(self) -> Recipe:
        """Fill the sections this recipe's task and trainer read (and only those) with their defaults."""
        for name, section in SECTIONS.items():
            if section.builtin and section.filled and section.read_by(self.task, self.trainer) and \
                    getattr(self, name) is None:
                setattr(self, name, section.model())
        if self.model is not None and self.model.name is None:
            self.model.name = DEFAULT_MODELS.get(self.task, "bundled:minilm")
        if self.trainer == "ensemble":
            if self.ensemble is None:
                raise ValueError("trainer ensemble needs an `ensemble:` section with its members")
            if self.ensemble.weights is not None and (len(self.ensemble.weights) != len(self.ensemble.members)
                                                      or min(self.ensemble.weights) < 0 or sum(self.ensemble.weights) <= 0):
                raise ValueError(f"ensemble.weights: one non-negative weight per member ({len(self.ensemble.members)}), "
                                 f"not all zero; got {self.ensemble.weights}")
        return self

    @field_validator("tracking", mode="before")
    @classmethod
    def _tracking_shorthand(cls, value: Any) -> Any:
        # `tracking: none` and `tracking: mlflow` are accepted as shorthands.
        if isinstance(value, str) or value is None:
            return {"backend": value or "none"}
        return value


# --------------------------------------------------------------------------- loading


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        for annotation in (field.annotation, *typing.get_args(field.annotation)):  # X and X | None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                keys.extend(_known_keys(annotation, prefix + name + "."))
    return keys


def _format_validation_error(err: ValidationError, source: str, section: str | None = None) -> str:
    known = _known_keys(Recipe) + [k for name, s in plugin_sections().items() for k in _known_keys(s.model, name + ".")]
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in ((section,) if section else ()) + tuple(item["loc"]))
        if item["type"] == "extra_forbidden":
            guess = difflib.get_close_matches(key, known, n=1) if len(key) < 200 else []
            hint = f" (did you mean '{guess[0]}'?)" if guess else ""
            lines.append(f"unknown key '{key[:80]}'{hint}")
        elif item["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            lines.append(f"key '{key[:80]}': {problem_text(item)} (got {_short(item.get('input'))})")
    if len(lines) > 10:
        lines = lines[:10] + [f"and {len(lines) - 10} more"]
    return f"recipe {source}: " + "; ".join(lines)


def set_key(raw: dict, assignment: str) -> None:
    """Apply one ``a.b=c`` override; the value is parsed as YAML (so 3, 1e-4, true, [a, b] work)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected key=value, e.g. --set train.epochs=2")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or isinstance(child, str):
            child = {} if child is None else {"backend": child}
            node[part] = child
        if not isinstance(child, dict):
            raise RecipeError(f"--set {key}: '{part}' is not a section of the recipe")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value != "" else None


MAX_RECIPE_NODES = 20_000  # a real recipe has under 200 values; aliases must not expand past this
MAX_RECIPE_BYTES = 1_000_000


def check_size(raw: Any, source: str, limit: int = MAX_RECIPE_NODES) -> None:
    """Refuse a YAML alias bomb: count values as they would be expanded (shared aliases counted every time they
    are used) and stop at ``limit``, so a 700-byte file cannot turn into gigabytes of messages or parameters."""
    count, stack = 0, [raw]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            raise RecipeError(f"recipe {source}: more than {limit} values once YAML aliases are expanded; "
                              f"write the recipe out without anchors and aliases (&name / *name)")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def _short(value: Any, limit: int = 120) -> str:
    """repr() of a value for a message, built piece by piece and cut at ``limit`` characters."""
    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = limit, limit, 6, 6, 3
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path}: file not found")
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe {path}: {size} bytes; a recipe is a short YAML file (under {MAX_RECIPE_BYTES} bytes)")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path}: not valid YAML: {_short(str(exc), 400)}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"recipe {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except RecursionError:
        raise RecipeError(f"recipe {path}: nested too deeply to be a recipe") from None
    check_size(raw, str(path))
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path}: the top level must be a mapping of keys")
    return recipe_from_dict(raw, overrides, source=str(path))


def check_sections(raw: dict, source: str) -> None:
    """A section that belongs to another task or trainer is an error that names it (never silently ignored)."""
    task, trainer = raw.get("task", "topic"), raw.get("trainer", "finetune")
    for key, value in raw.items():
        section = SECTIONS.get(key)
        if value is None or section is None or section.read_by(task, trainer):
            continue
        change = f"set task: {section.tasks[0]}" if section.tasks else "change the trainer"
        raise RecipeError(f"recipe {source}: section '{key}' is read by {section.reader}, and this recipe's task is "
                          f"{task} and trainer {trainer}; remove the section (or {change})")
    if raw.get("settings") is not None and task_section(task) != "settings":
        raise RecipeError(f"recipe {source}: section 'settings' is for tasks registered outside mathtune; the "
                          f"{task} task reads section '{task_section(task)}'")


def recipe_from_dict(raw: dict, overrides: list[str] | None = None, source: str = "<dict>") -> Recipe:
    check_size(raw, source)
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy, plain types
    for assignment in overrides or []:
        set_key(raw, assignment)
    check_size(raw, source)
    check_sections(raw, source)
    for name, section in plugin_sections().items():  # checked here so that an error names the section's keys
        try:
            if raw.get(name) is not None:
                section.model.model_validate(raw[name])
        except ValidationError as err:
            raise RecipeError(_format_validation_error(err, source, name)) from None
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(_format_validation_error(err, source)) from None


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe, without the sections it does not use (plugin sections at the top level, as written)."""
    dumped = {k: v for k, v in recipe.model_dump(mode="json").items() if v is not None or k in ("labels",)}
    dumped.update(dumped.pop("extensions", None) or {})
    return yaml.safe_dump(dumped, sort_keys=False)


def flatten(recipe: Recipe) -> dict[str, Any]:
    """Flat ``a.b -> value`` view, for tracking parameters."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    dumped = recipe.model_dump(mode="json")
    dumped.update(dumped.pop("extensions", None) or {})
    walk(dumped, "")
    return out


def member_recipes(recipe: Recipe, source: str = "<recipe>") -> list[tuple[str, Recipe]]:
    """The members of an ensemble recipe as recipes of their own: each member's own sections on top of the
    ensemble's task, data and labels (one split for all), without tracking (the ensemble is what is logged).
    A member's error names the member."""
    if recipe.ensemble is None:
        raise RecipeError(f"recipe {source}: trainer ensemble needs an `ensemble:` section")
    shared = {"task": recipe.task, "data": recipe.data.model_dump(mode="json"), "labels": recipe.labels,
              "tracking": {"backend": "none"}}
    members, names = [], set()
    for i, raw in enumerate(recipe.ensemble.members):
        raw = dict(raw)
        name = str(raw.pop("name", "") or f"member{i + 1}")
        where = f"{source} ensemble.members[{i}] ({name})"
        if not all(c.isalnum() or c in "-_." for c in name) or name in names:
            raise RecipeError(f"recipe {where}: a member's name must be unique and made of letters, digits, '-', '_' and '.'")
        names.add(name)
        for key in ("task", "data", "labels", "tracking"):
            if key in raw:
                raise RecipeError(f"recipe {where}: '{key}' comes from the ensemble recipe; remove it from the member")
        if raw.get("trainer") in (None, "ensemble"):
            raise RecipeError(f"recipe {where}: a member needs a trainer (tfidf, finetune, ...), and cannot be an ensemble")
        own = task_section(recipe.task)
        if own not in raw and getattr(recipe, own, None) is not None:  # the task's settings, unless the member has its own
            value = getattr(recipe, own)
            raw[own] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        train = {**recipe.train.model_dump(mode="json"), **(raw.pop("train", None) or {})}
        members.append((name, recipe_from_dict({**shared, **raw, "train": train}, source=where)))
    return members
