"""Misconception diagnosis (seed 001; Kaggle "MAP - Charting Student Math Misunderstandings").

Input: the question, the student's multiple-choice answer and their explanation, through one prompt template.
Target: the joint label ``Category:Misconception`` (e.g. ``False_Misconception:Incomplete``, ``True_Correct:NA``).
Scored by MAP@3 over the three ranked labels.

Two uses of the data's structure, each a switch measured in bench/misconception.py:
- restrict_to_question: each question has only 6-11 of the 65 labels in training; rank only those.
- derive_correctness: the True_/False_ half of Category says whether the chosen answer is right; the right
  answer of each question is learnt from training rows (the answer most often labelled True_).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import MisconceptionConfig
from ..data.readers import check_nonempty, require_columns
from ..errors import DataError
from ..metrics.classification import classification_metrics
from ..metrics.ranking import average_precision_at_k
from .base import parse_settings, register_task, settings_as_dict
from .labels import LabelMap

DEFAULT_PROMPT = """Analyze the student's reasoning for the following math problem.

### Question:
{QuestionText}

### Student's Answer Choice:
{MC_Answer}

### Student's Explanation:
{StudentExplanation}

### Analysis:"""

NO_MISCONCEPTION = "NA"


def category_of(label: str) -> str:
    return label.split(":", 1)[0]


@register_task
class MisconceptionTask:
    name = "misconception"
    settings_key = "misconception"
    settings_model = MisconceptionConfig
    primary_metric = "map@3"
    metric_order = ("map@3", "accuracy", "top3_accuracy", "category_accuracy", "f1_macro")
    trainers = ("tfidf", "finetune", "embedding", "ensemble")
    registered_name = "math-misconceptions"
    route = "misconceptions"
    default_label_names: tuple[str, ...] = ()
    top_k = 3
    submission_columns = ("row_id", "Category:Misconception")

    def __init__(self, settings=None) -> None:
        self.settings = parse_settings(self.settings_model, settings)

    def settings_dict(self) -> dict:
        return settings_as_dict(self.settings)

    def clean(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> pd.DataFrame:
        return frame

    def example_frame(self, manifest: dict) -> pd.DataFrame:
        s = self.settings
        return pd.DataFrame([{s.question_column: "What is 1/2 + 1/4?", s.answer_column: "3/4",
                              s.explanation_column: "common denominator", s.question_id_column: "0"}])

    @property
    def template(self) -> str:
        return self.settings.prompt_template or DEFAULT_PROMPT

    def inputs(self, frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]:
        s = self.settings
        columns = [s.question_column, s.answer_column, s.explanation_column]
        require_columns(frame, columns, path, hint="Set misconception.question_column / answer_column / explanation_column.")
        for column in (s.question_column, s.answer_column):
            check_nonempty(frame[column].astype(str).tolist(), column, path)
        texts = []
        for q, a, e in zip(*(frame[c].astype(str) for c in columns)):
            texts.append(self.template.format(QuestionText=q.strip(), MC_Answer=a.strip(),
                                              StudentExplanation=e.strip() or "(no explanation)"))
        return texts

    def raw_labels(self, frame: pd.DataFrame, label_column: str, path: str | Path) -> list[str]:
        s = self.settings
        require_columns(frame, [s.category_column, s.misconception_column], path,
                        hint="Training and evaluation need both label columns.")
        categories = frame[s.category_column].astype(str).str.strip().tolist()
        misconceptions = [m.strip() or NO_MISCONCEPTION for m in frame[s.misconception_column].astype(str)]
        check_nonempty(categories, s.category_column, path)
        bad = [i + 1 for i, (c, m) in enumerate(zip(categories, misconceptions))
               if c.endswith("_Misconception") != (m != NO_MISCONCEPTION)]
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            raise DataError(
                f"{path}: {len(bad)} row(s) where {s.category_column} and {s.misconception_column} disagree "
                f"(a *_Misconception category needs a misconception, any other category needs {NO_MISCONCEPTION}): "
                f"data row {shown}. Fix those rows."
            )
        return [f"{c}:{m}" for c, m in zip(categories, misconceptions)]

    def metrics(self, y_true: Sequence[int], top_idx: np.ndarray, labels: LabelMap, probs: np.ndarray | None = None) -> dict:
        y = np.asarray(y_true)
        ap = average_precision_at_k(y, top_idx, 3)
        known = y >= 0
        categories = sorted({category_of(n) for n in labels.names})
        cat_index = {c: i for i, c in enumerate(categories)}
        true_cat = [cat_index[category_of(labels.names[i])] if i >= 0 else -1 for i in y]
        pred_cat = [cat_index[category_of(labels.names[i])] for i in top_idx[:, 0]]
        cat_metrics = classification_metrics([t for t, k in zip(true_cat, known) if k],
                                              [p for p, k in zip(pred_cat, known) if k], categories)
        per_category = []
        for c, i in cat_index.items():
            rows = np.array([t == i for t in true_cat])
            if rows.any():
                per_category.append({"category": c, "n": int(rows.sum()), "map@3": float(ap[rows].mean()),
                                     "top1_accuracy": float((top_idx[rows, 0] == y[rows]).mean()),
                                     "category_accuracy": float(np.mean([pred_cat[j] == i for j in np.where(rows)[0]]))})
        return {
            "map@3": float(ap.mean()) if len(ap) else 0.0,
            "accuracy": float((top_idx[:, 0] == y).mean()) if len(y) else 0.0,
            "top3_accuracy": float((top_idx[:, :3] == y[:, None]).any(axis=1).mean()) if len(y) else 0.0,
            "category_accuracy": cat_metrics["accuracy"],
            "f1_macro": classification_metrics(y[known], top_idx[known, 0], labels.names)["f1_macro"] if known.any() else 0.0,
            "n": int(len(y)),
            "n_unseen_labels": int((~known).sum()),
            "per_category": per_category,
            "category_confusion_matrix": cat_metrics["confusion_matrix"],
            "categories": categories,
        }

    def structure(self, frame: pd.DataFrame, raw_labels: list[str], labels: LabelMap) -> dict:
        s = self.settings
        qids = frame[s.question_id_column].astype(str).str.strip().tolist() if s.question_id_column in frame else []
        if not qids:
            return {"labels_by_question": {}, "correct_answer": {}}
        answers = frame[s.answer_column].astype(str).str.strip().tolist()
        by_question: dict[str, set[int]] = defaultdict(set)
        true_votes: dict[str, Counter] = defaultdict(Counter)
        for qid, answer, raw in zip(qids, answers, raw_labels):
            by_question[qid].add(labels.encode([raw])[0])
            if raw.startswith("True_"):
                true_votes[qid][answer] += 1
        return {
            "labels_by_question": {q: sorted(v) for q, v in by_question.items()},
            "correct_answer": {q: votes.most_common(1)[0][0] for q, votes in true_votes.items()},
        }

    def candidate_masks(self, frame: pd.DataFrame, structure: dict | None, labels: LabelMap,
                        switches: dict | None = None) -> tuple[np.ndarray | None, list[str]]:
        s = self.settings
        switches = switches or {"restrict_to_question": s.restrict_to_question, "derive_correctness": s.derive_correctness}
        if not structure or not any(switches.values()) or s.question_id_column not in frame:
            return None, []
        n, k = len(frame), len(labels)
        mask = np.ones((n, k), dtype=bool)
        is_true_label = np.array([name.startswith("True_") for name in labels.names])
        qids = frame[s.question_id_column].astype(str).str.strip().tolist()
        answers = frame[s.answer_column].astype(str).str.strip().tolist() if s.answer_column in frame else [""] * n
        unseen = set()
        for row, (qid, answer) in enumerate(zip(qids, answers)):
            allowed = np.ones(k, dtype=bool)
            if qid not in structure["labels_by_question"]:
                unseen.add(qid)
                continue
            if switches.get("restrict_to_question"):
                allowed[:] = False
                allowed[structure["labels_by_question"][qid]] = True
            correct = structure["correct_answer"].get(qid)
            if switches.get("derive_correctness") and correct is not None:
                narrowed = allowed & (is_true_label if answer == correct else ~is_true_label)
                allowed = narrowed if narrowed.any() else allowed
            mask[row] = allowed
        notes = []
        if unseen:
            count = sum(q in unseen for q in qids)
            notes.append(f"{count} row(s) have a {s.question_id_column} not seen in training "
                         f"({', '.join(sorted(unseen)[:10])}); they were ranked over all labels")
        return mask, notes

    def submission(self, ids: list[str], top_values: list[list[str]]) -> pd.DataFrame:
        return pd.DataFrame({"row_id": ids, "Category:Misconception": [" ".join(v) for v in top_values]})

    def confusion(self, metrics: dict, labels: LabelMap) -> tuple[list, list[str]]:
        return metrics["category_confusion_matrix"], metrics["categories"]


# One line per label, shown next to predictions (the API and the web UI). Category = answer correct? + reasoning.
CATEGORY_DESCRIPTIONS = {
    "True_Correct": "Right answer, sound explanation.",
    "True_Neither": "Right answer; the explanation shows neither clear understanding nor a known misconception.",
    "True_Misconception": "Right answer, but the explanation reveals a misconception.",
    "False_Correct": "Wrong answer, but the reasoning described is essentially correct (a slip).",
    "False_Neither": "Wrong answer without a recognisable misconception.",
    "False_Misconception": "Wrong answer caused by a misconception.",
}
MISCONCEPTION_DESCRIPTIONS = {
    "Incomplete": "Stops part-way: a correct first step but the reasoning or answer is left unfinished.",
    "Additive": "Uses addition or subtraction where the relationship is multiplicative (e.g. proportion).",
    "Duplication": "Doubles or repeats a quantity instead of applying the operation asked for.",
    "Subtraction": "Subtracts where another operation is needed, or subtracts in the wrong order.",
    "Positive": "Ignores signs: treats negative numbers or results as positive.",
    "Wrong_term": "Picks the wrong term of a pattern or sequence (e.g. position confused with value).",
    "Irrelevant": "Reasons with facts that do not bear on the question.",
    "Wrong_fraction": "Names or builds the wrong fraction (wrong part or wrong whole).",
    "Wrong_Fraction": "Names or builds the wrong fraction (wrong part or wrong whole).",
    "Inversion": "Inverts a relationship: swaps numerator and denominator, or the direction of a ratio.",
    "Mult": "Multiplies where another operation is needed.",
    "Denominator-only_change": "Changes only the denominator when converting or simplifying a fraction.",
    "Whole_numbers_larger": "Believes a number with more digits (or a larger whole part) is always larger.",
    "Adding_across": "Adds numerators and denominators straight across when adding fractions.",
    "WNB": "Whole-number bias: applies whole-number rules to fractions or decimals.",
    "Tacking": "Tacks digits or terms on (e.g. appends a zero) instead of operating.",
    "Unknowable": "Claims the answer cannot be determined from the information given.",
    "SwapDividend": "Swaps the dividend and the divisor.",
    "Scale": "Misreads or misapplies the scale of a diagram or axis.",
    "Not_variable": "Treats a letter as a label or an object rather than a variable.",
    "Firstterm": "Uses only the first term of an expression or sequence.",
    "Adding_terms": "Adds terms that should be combined otherwise (e.g. unlike terms).",
    "Multiplying_by_4": "Multiplies by 4 regardless of the shape or rule (e.g. perimeter of any shape).",
    "FlipChange": "Flips the wrong fraction, or changes the operation incorrectly, when dividing fractions.",
    "Division": "Divides where another operation is needed, or divides in the wrong order.",
    "Definition": "Misremembers a definition (of a term, shape or property).",
    "Interior": "Confuses interior and exterior angles.",
    "Longer_is_bigger": "Believes a longer decimal is a larger number.",
    "Shorter_is_bigger": "Believes a shorter decimal is a larger number.",
    "Ignores_zeroes": "Ignores zeros that hold place value.",
    "Base_rate": "Ignores the base rate or the whole when reasoning about proportion or probability.",
    "Inverse_operation": "Uses the inverse operation (e.g. subtracts to undo a subtraction).",
    "Certainty": "Confuses likely with certain in probability.",
    "Incorrect_equivalent_fraction_addition": "Makes equivalent fractions by adding the same number to top and bottom.",
    "Wrong_Operation": "Chooses the wrong operation for the situation.",
    "NA": "No misconception.",
}


def describe_label(label: str) -> str:
    """'False_Misconception:Additive' -> a one-line description of the category and the misconception."""
    category, _, misconception = label.partition(":")
    parts = [CATEGORY_DESCRIPTIONS.get(category, category)]
    if misconception and misconception != "NA":
        parts.append(MISCONCEPTION_DESCRIPTIONS.get(misconception, misconception.replace("_", " ")))
    return " ".join(parts)
