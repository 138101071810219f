"""Text-overlap metrics for generated solutions: ROUGE-1/2/L (rouge-score) and corpus BLEU (sacrebleu)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F-measure of ROUGE-1, ROUGE-2 and ROUGE-L (with stemming), as fractions."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    if not scores:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    return {key: float(np.mean([s[key].fmeasure for s in scores])) for key in ("rouge1", "rouge2", "rougeL")}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, 0-100) with one reference per prediction."""
    import sacrebleu

    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)
