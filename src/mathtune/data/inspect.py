"""`mathtune data FILE`: what is in a dataset and what is wrong with it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .readers import detect_format, is_bytes_literal, read_table

_MOJIBAKE = ("Ã©", "Ã¨", "Ã¶", "Ã¼", "â€", "Ã±", "\ufffd")


def _guess(frame: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in frame.columns}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def inspect_file(path: str | Path, text_column: str | None = None, label_column: str | None = None,
                 encoding: str = "utf-8") -> dict:
    path = Path(path)
    encoding_problem = None
    try:
        frame = read_table(path, encoding=encoding)
    except DataError as exc:
        if "not valid" not in str(exc) or detect_format(path) == "parquet":
            raise
        encoding_problem = str(exc)
        frame = read_table(path, encoding="latin-1")
    text_column = text_column or _guess(frame, ("Question", "text", "question", "problem", "StudentExplanation", "name"))
    label_column = label_column or _guess(frame, ("label", "Category", "category", "main_category", "type"))
    for col in (text_column, label_column):
        if col is not None and col not in frame.columns:
            raise DataError(f"{path}: no column {col!r} (the file has: {', '.join(frame.columns)})")
    report: dict = {
        "file": str(path),
        "rows": len(frame),
        "columns": list(map(str, frame.columns)),
        "text_column": text_column,
        "label_column": label_column,
        "encoding_problem": encoding_problem,
        "empty_cells": {c: int((frame[c].astype(str).str.strip() == "").sum()) for c in frame.columns},
        "duplicate_rows": int(frame.duplicated().sum()),
    }
    if text_column:
        texts = frame[text_column].astype(str)
        report["empty_text_rows"] = [int(i) + 1 for i in texts.index[texts.str.strip() == ""][:20]]
        report["duplicate_texts"] = int(texts.duplicated().sum())
        report["bytes_literal_rows"] = int(sum(is_bytes_literal(t) for t in texts))
        report["mojibake_rows"] = int(sum(any(m in t for m in _MOJIBAKE) for t in texts))
        lengths = texts.str.len()
        report["text_length"] = {"min": int(lengths.min()), "median": float(lengths.median()), "max": int(lengths.max())} if len(texts) else {}
    if label_column:
        counts = Counter(frame[label_column].astype(str))
        report["label_counts"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        report["single_member_labels"] = [k for k, v in counts.items() if v == 1]
    return report
