"""Fine-tune a sequence classifier: a flat loop, readable top to bottom (setup -> train -> save).

Why our own loop rather than ``transformers.Trainer``: on a laptop CPU the wins are in the data path
(tokenize once, length-grouped batches, padding only to the longest row of a batch) and in bf16 autocast;
the loop also writes its checkpoints atomically (a killed run resumes from the last one) and reports
progress to the CLI without printing from library code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from .distributed import Local, split_rows
from .loop import FitResult, NullReporter, Reporter, autocast_context, pick_device, prepare_model, train_loop
from .loop import batch_order, set_seed  # noqa: F401  (re-exported: bench/topic.py and tests import them from here)

log = logging.getLogger(__name__)


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


# Scoring pads each batch to a multiple of this many tokens. oneDNN keeps compiled kernels per input shape: with
# exact widths a server saw ever new shapes and its memory grew without end (1.1 -> 2.0 GB over 600 mixed
# requests); rounded to 32 it stayed at 0.98 GB, and the same requests ran 20% faster.
SHAPE_MULTIPLE = 32


def collate(ids: list[list[int]], rows: Sequence[int], pad_id: int, device: torch.device, multiple: int = 1,
            limit: int | None = None):
    """Right-padded ids and attention mask; the width rounded up to ``multiple`` (never past ``limit``, the
    model's position limit, nor below the longest row)."""
    longest = max(len(ids[r]) for r in rows)
    width = max(longest, min(-(-longest // multiple) * multiple, limit or 10**9))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        seq = ids[r]
        input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return input_ids.to(device), mask.to(device)


def class_weight_tensor(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """Balanced weights n / (k * count), as sklearn's compute_class_weight('balanced'); unseen classes get 1."""
    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(float)
    present = counts > 0
    weights = np.ones(num_labels)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


# ----------------------------------------------------------------------------- scoring


def masked_topk(scores: torch.Tensor, mask: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids and probabilities of softmax(scores) over the allowed labels of each row."""
    if mask is not None:
        scores = scores.masked_fill(~torch.as_tensor(mask, device=scores.device), float("-inf"))
    probs = scores.softmax(-1)
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return indices.cpu().numpy(), values.float().cpu().numpy()


@torch.no_grad()
def score_variants(model, ids: list[list[int]], pad_id: int, batch_size: int, k: int, precision: str = "auto",
                   labels: Sequence[int] | None = None, variants: dict[str, np.ndarray | None] | None = None,
                   reporter: Reporter | None = None, dist=None):
    """Top-k class ids and probabilities for each row (input order) under each candidate-label mask in
    ``variants`` (None: all labels), and the mean loss when labels are given. Only k values per row and
    variant are kept, never the whole logits matrix. Under ``accelerate launch`` each process scores its share
    of the rows and the results are gathered, so every process returns the whole table."""
    model.eval()
    dist = dist or Local()
    variants = variants or {"all": None}
    device = pick_device(model)
    autocast = autocast_context(precision, device)
    mine = split_rows(len(ids), dist)
    order = mine[np.argsort([-len(ids[r]) for r in mine], kind="stable")]
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    n = len(ids)
    out = {name: (np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.float32)) for name in variants}
    loss_sum, loss_rows = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask = collate(ids, rows, pad_id, device, SHAPE_MULTIPLE, positions)
        with autocast():
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        if labels is not None:
            target = torch.tensor([labels[r] for r in rows], device=device)
            known = target >= 0
            if known.any():
                loss_sum += F.cross_entropy(logits[known], target[known], reduction="sum").item()
                loss_rows += int(known.sum())
        for name, allowed in variants.items():
            idx, prob = masked_topk(logits, None if allowed is None else allowed[rows], k)
            out[name][0][rows, : idx.shape[1]] = idx
            out[name][1][rows, : prob.shape[1]] = prob
        if reporter:
            reporter.advance(len(rows))
    if dist.world > 1:
        parts = dist.gather([(mine, {name: (v[0][mine], v[1][mine]) for name, v in out.items()})])
        for rows, tables in parts:
            for name, (idx, prob) in tables.items():
                out[name][0][rows], out[name][1][rows] = idx, prob
    mean_loss = dist.mean(loss_sum, loss_rows) if labels is not None else None
    return out, mean_loss


def score(model, ids: list[list[int]], pad_id: int, batch_size: int, k: int, precision: str = "auto",
          labels: Sequence[int] | None = None, reporter: Reporter | None = None, allowed: np.ndarray | None = None,
          dist=None):
    """Top-k ids and probabilities (and mean loss) under one candidate mask."""
    out, loss = score_variants(model, ids, pad_id, batch_size, k, precision, labels, {"only": allowed}, reporter, dist)
    return out["only"][0], out["only"][1], loss


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
                        checkpoint_dir, greater_is_better=True, reporter=reporter, dist=dist)
    for param in cast_back:  # back to fp32 so the adapters merge in full precision
        param.data = param.data.to(torch.float32)
    return result
