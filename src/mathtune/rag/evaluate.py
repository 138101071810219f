"""Retrieval quality where relevance is known.

- CHAMP: each problem names the concepts and hints it needs (``ch_list``); a retrieved chunk is relevant when it
  comes from one of them. recall@k = share of a problem's needed items found in the top k (averaged over
  problems), hit@k = share of problems with at least one, MRR = mean reciprocal rank of the first relevant chunk.
- MATH: each problem has a subject; a chunk is relevant when its source problem has the same subject
  (precision@k and MRR). A weak notion of relevance, but known for every problem.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import numpy as np


def _ranks(hits, relevant: set) -> list[int]:
    return [i for i, h in enumerate(hits) if h.meta.get("champ_id") in relevant or h.meta.get("subject") in relevant]


def champ_queries() -> list[tuple[str, set]]:
    from ..data.demo import champ_json

    out = []
    for p in champ_json()["problems"].values():
        needed = p.get("ch_list")
        needed = ast.literal_eval(needed) if isinstance(needed, str) else (needed or [])
        if needed:
            out.append((p["_text"], set(needed)))
    return out


def evaluate_queries(retriever, queries: Sequence[tuple[str, set]], k: int = 5, **options) -> dict:
    recalls, hits_any, reciprocal, precisions = [], [], [], []
    for question, relevant in queries:
        hits = retriever.search(question, k, **options)
        ranks = _ranks(hits, relevant)
        found = {h.meta.get("champ_id") for h in hits} & relevant
        recalls.append(len(found) / len(relevant))
        hits_any.append(bool(ranks))
        reciprocal.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
        precisions.append(len(ranks) / max(len(hits), 1))
    return {"queries": len(queries), "k": k, f"recall@{k}": float(np.mean(recalls)), f"hit@{k}": float(np.mean(hits_any)),
            "mrr": float(np.mean(reciprocal)), f"precision@{k}": float(np.mean(precisions))}
