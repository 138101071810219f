"""Fine-tune a sequence classifier: a flat loop, readable top to bottom (setup -> train -> save).

Why our own loop rather than ``transformers.Trainer``: on a laptop CPU the wins are in the data path
(tokenize once, length-grouped batches, padding only to the longest row of a batch) and in bf16 autocast;
the loop also writes its checkpoints atomically (a killed run resumes from the last one) and reports
progress to the CLI without printing from library code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..models.scoring import SHAPE_MULTIPLE, collate, masked_topk, score, score_variants, tokenize  # noqa: F401
from .loop import FitResult, NullReporter, Reporter, batch_order, prepare_model, set_seed, train_loop  # noqa: F401  (re-exported: bench/topic.py and tests import them from here)

log = logging.getLogger(__name__)


def class_weight_tensor(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """Balanced weights n / (k * count), as sklearn's compute_class_weight('balanced'); unseen classes get 1."""
    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(float)
    present = counts > 0
    weights = np.ones(num_labels)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def fit(
    model,
    tokenizer,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    val_texts: Sequence[str],
    val_labels: Sequence[int],
    cfg: TrainConfig,
    max_length: int,
    num_labels: int,
    evaluate: Callable[[Sequence[int], np.ndarray], dict],
    primary_metric: str,
    checkpoint_dir: Path,
    top_k: int = 1,
    reporter: Reporter | None = None,
    dist=None,
    greater_is_better: bool = True,
) -> FitResult:
    """Train a sequence classifier, evaluate each epoch, keep the best epoch's weights in the model. Resumes
    from the last checkpoint in ``checkpoint_dir`` when it exists."""
    from .distributed import current

    reporter = reporter or NullReporter()
    dist = dist or current()
    device, autocast, cast_back = prepare_model(model, cfg, dist)
    pad_id = tokenizer.pad_token_id

    train_ids = tokenize(tokenizer, train_texts, max_length)
    val_ids = tokenize(tokenizer, val_texts, max_length)
    weights = class_weight_tensor(train_labels, num_labels).to(device) if cfg.class_weights else None

    def batch_loss(wrapped, rows):
        input_ids, mask = collate(train_ids, rows, pad_id, device)
        target = torch.tensor([train_labels[r] for r in rows], device=device)
        with autocast():
            logits = wrapped(input_ids=input_ids, attention_mask=mask).logits
        return F.cross_entropy(logits.float(), target, weight=weights)

    def validate(wrapped):
        reporter.start("validate", len(val_ids))
        top_idx, _, val_loss = score(wrapped, val_ids, pad_id, cfg.eval_batch_size, top_k, cfg.precision,
                                     labels=val_labels, reporter=reporter, dist=dist)
        return {"val_loss": val_loss, **evaluate(val_labels, top_idx)}

    result = train_loop(model, [len(s) for s in train_ids], batch_loss, validate, cfg, primary_metric,
                        checkpoint_dir, greater_is_better=greater_is_better, reporter=reporter, dist=dist)
    for param in cast_back:  # back to fp32 so the adapters merge in full precision
        param.data = param.data.to(torch.float32)
    return result
