"""Topic classification of math questions (seed 000; Kaggle "Classification of Math Problems by Kasut Academy")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..data.readers import check_nonempty, clean_texts, require_columns

TOPIC_NAMES = [
    "Algebra",
    "Geometry and Trigonometry",
    "Calculus and Analysis",
    "Probability and Statistics",
    "Number Theory",
    "Combinatorics and Discrete Math",
    "Linear Algebra",
    "Abstract Algebra and Topology",
]


@dataclass
class TopicTask:
    name: str = "topic"
    primary_metric: str = "f1_micro"
    default_label_names: tuple[str, ...] = tuple(TOPIC_NAMES)
    registered_name: str = "math-topics"
    top_k: int = 1

    def inputs(self, frame: pd.DataFrame, text_column: str, path: str | Path) -> list[str]:
        """Model inputs: the question text, with bytes-literal rows decoded."""
        require_columns(frame, [text_column], path, hint="Set data.text_column (or --text-column) to the question column.")
        texts = clean_texts(frame[text_column].astype(str).tolist())
        check_nonempty(texts, text_column, path)
        return texts

    def submission(self, ids: list[str], top_values: list[list[str]]) -> pd.DataFrame:
        """The competition's format: ``id,label``."""
        return pd.DataFrame({"id": ids, "label": [v[0] for v in top_values]})
