"""Search an index: semantic top-k (FAISS), optional hybrid scoring with BM25, optional maximal marginal
relevance re-ranking; and the fixed template that puts retrieved passages into the tutor's prompt."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..tasks.tutor import CONTEXT_HEADER, WorkedExamples, worked_example  # CONTEXT_HEADER re-exported
from .index import Embedder, Index
from .index import search as faiss_search

_TOKEN = re.compile(r"\w+|[^\w\s]")
# How retrieved chunks reach the tutor: "examples" turns whole worked examples into few-shot turns (other chunks
# stay passages); "passages" puts every chunk before the problem as context (how tutors trained with retrieval
# before this option were trained).
STYLES = ("examples", "passages")


@dataclass
class Hit:
    text: str
    source: str
    score: float
    meta: dict
    position: int


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class Retriever:
    _cache: dict = {}

    def __init__(self, index: Index, embedder: Embedder | None = None):
        self.index = index
        self.embedder = embedder or Embedder(index.settings["embedder"])
        self._bm25 = None

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Retriever:
        key = os.path.abspath(folder)
        if key not in cls._cache:
            cls._cache[key] = cls(Index.open(folder))
        return cls._cache[key]

    @property
    def bm25(self):
        if self._bm25 is None:
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([tokenize(c.text) for c in self.index.chunks])
        return self._bm25

    def search(self, query: str, k: int = 5, hybrid: bool = False, mmr: bool = False, alpha: float = 0.7,
               fetch: int | None = None, lambda_mult: float = 0.6, exclude_text: str | None = None) -> list[Hit]:
        """Top-k chunks for ``query``. hybrid: alpha * cosine + (1 - alpha) * max-normalized BM25 over the
        semantic candidates; mmr: pick k of the candidates trading relevance against similarity to those
        already picked (lambda_mult)."""
        if not len(self.index):
            return []
        vector = self.embedder.encode([query])
        pool = min(len(self.index), fetch or (k * 4 if (hybrid or mmr or exclude_text) else k))
        scores, ids = faiss_search(self.index.faiss, vector, pool)
        ids, scores = ids[0], scores[0].astype(np.float64)
        keep = ids >= 0
        ids, scores = ids[keep], scores[keep]
        if exclude_text:  # evaluation on an indexed corpus: never retrieve the question's own solution
            needle = exclude_text.strip()[:200]
            mask = np.array([needle not in self.index.chunks[i].text for i in ids], dtype=bool)
            ids, scores = ids[mask], scores[mask]
        if hybrid and len(ids):
            keyword = np.asarray(self.bm25.get_batch_scores(tokenize(query), [int(i) for i in ids]), dtype=np.float64)
            top = keyword.max()
            scores = alpha * scores + (1 - alpha) * (keyword / top if top > 0 else keyword)
            order = np.argsort(-scores, kind="stable")
            ids, scores = ids[order], scores[order]
        if mmr and len(ids) > k:
            chosen = self._mmr(vector[0], ids, scores, k, lambda_mult)
            ids, scores = ids[chosen], scores[chosen]
        return [Hit(self.index.chunks[i].text, self.index.chunks[i].source, float(s), self.index.chunks[i].meta, int(i))
                for i, s in zip(ids[:k], scores[:k])]

    def _mmr(self, query: np.ndarray, ids: np.ndarray, scores: np.ndarray, k: int, lambda_mult: float) -> list[int]:
        vectors = np.stack([self.index.vector(i) for i in ids])
        relevance = vectors @ query
        chosen: list[int] = []
        while len(chosen) < k:
            if chosen:
                redundancy = (vectors @ vectors[chosen].T).max(axis=1)
            else:
                redundancy = np.zeros(len(ids))
            value = lambda_mult * relevance - (1 - lambda_mult) * redundancy
            value[chosen] = -np.inf
            chosen.append(int(np.argmax(value)))
        return chosen

    @staticmethod
    def format_context(hits: list[Hit], header: str = CONTEXT_HEADER) -> str | None:
        if not hits:
            return None
        lines = [header]
        lines += [f"[{n}] ({h.source}) {h.text}" for n, h in enumerate(hits, 1)]
        return "\n".join(lines)

    @classmethod
    def format_examples(cls, hits: list[Hit], header: str = CONTEXT_HEADER) -> WorkedExamples | str | None:
        """Whole worked examples among ``hits`` as few-shot turns, the most relevant one last (next to the
        problem); the other hits as passages."""
        pairs, rest = [], []
        for hit in hits:
            pair = worked_example(hit.text)
            if pair:
                pairs.append(pair)
            else:
                rest.append(hit)
        if not pairs:
            return cls.format_context(rest, header)
        return WorkedExamples(tuple(reversed(pairs)), cls.format_context(rest, header))

    @classmethod
    def render(cls, hits: list[Hit], style: str = "passages", header: str = CONTEXT_HEADER):
        if style not in STYLES:
            raise ValueError(f"retrieval style {style!r}: choose {' or '.join(STYLES)}")
        return cls.format_examples(hits, header) if style == "examples" else cls.format_context(hits, header)

    def context(self, query: str, k: int = 4, style: str = "passages", **options):
        return self.render(self.search(query, k, **options), style)
