"""Scoring a sequence classifier: tokenize, pad to bounded shapes, top-k under candidate-label masks.

Used by validation during training (train/finetune.py), by saved models (models/saved.py) and so by the server.
Under ``accelerate launch`` (``dist`` from train/distributed.py) each process scores its share of the rows and the
results are gathered; without it, one process scores everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .device import autocast_context, pick_device


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


# ----------------------------------------------------------------------------- scoring


def masked_topk(scores: torch.Tensor, mask: np.ndarray | None, k: int,
                temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids and probabilities of softmax(scores / temperature) over the allowed labels of each row."""
    if temperature != 1.0:
        scores = scores / temperature
    if mask is not None:
        scores = scores.masked_fill(~torch.as_tensor(mask, device=scores.device), float("-inf"))
    probs = scores.softmax(-1)
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return indices.cpu().numpy(), values.float().cpu().numpy()


def _batch_logits(model, ids: list[list[int]], rows: np.ndarray, pad_id: int, batch_size: int, precision: str):
    """(rows, float logits) for ``rows`` of ``ids`` in batches, longest first (so each batch pads little); the one
    forward loop of score_variants and logits_of. Call it under torch.no_grad()."""
    model.eval()
    device = pick_device(model)
    autocast = autocast_context(precision, device)
    order = rows[np.argsort([-len(ids[r]) for r in rows], kind="stable")]
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        input_ids, mask = collate(ids, batch, pad_id, device, SHAPE_MULTIPLE, positions)
        with autocast():
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        yield batch, logits  # outside autocast: the caller's softmax and loss run as before


@torch.no_grad()
def score_variants(model, ids: list[list[int]], pad_id: int, batch_size: int, k: int, precision: str = "auto",
                   labels: Sequence[int] | None = None, variants: dict[str, np.ndarray | None] | None = None,
                   reporter=None, dist=None, temperature: float = 1.0):
    """Top-k class ids and probabilities for each row (input order) under each candidate-label mask in
    ``variants`` (None: all labels), and the mean loss when labels are given. Probabilities are those of the
    logits divided by ``temperature`` (the model's calibration). Only k values per row and
    variant are kept, never the whole logits matrix. Under ``accelerate launch`` each process scores its share
    of the rows and the results are gathered, so every process returns the whole table."""
    world = getattr(dist, "world", 1)
    variants = variants or {"all": None}
    mine = np.arange(len(ids))[getattr(dist, "rank", 0)::world]
    n = len(ids)
    out = {name: (np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.float32)) for name in variants}
    loss_sum, loss_rows = 0.0, 0
    for rows, logits in _batch_logits(model, ids, mine, pad_id, batch_size, precision):
        if labels is not None:
            target = torch.tensor([labels[r] for r in rows], device=logits.device)
            known = target >= 0
            if known.any():
                loss_sum += F.cross_entropy(logits[known], target[known], reduction="sum").item()
                loss_rows += int(known.sum())
        for name, allowed in variants.items():
            idx, prob = masked_topk(logits, None if allowed is None else allowed[rows], k, temperature)
            out[name][0][rows, : idx.shape[1]] = idx
            out[name][1][rows, : prob.shape[1]] = prob
        if reporter:
            reporter.advance(len(rows))
    if world > 1:
        parts = dist.gather([(mine, {name: (v[0][mine], v[1][mine]) for name, v in out.items()})])
        for rows, tables in parts:
            for name, (idx, prob) in tables.items():
                out[name][0][rows], out[name][1][rows] = idx, prob
    if labels is None:
        mean_loss = None
    else:
        mean_loss = dist.mean(loss_sum, loss_rows) if world > 1 else loss_sum / max(loss_rows, 1)
    return out, mean_loss


@torch.no_grad()
def logits_of(model, ids: list[list[int]], pad_id: int, batch_size: int, precision: str = "auto",
              reporter=None) -> np.ndarray:
    """The whole logits matrix (rows in input order): for the validation split, where temperature scaling needs
    every class's score, not the top k."""
    out: np.ndarray | None = None
    for rows, logits in _batch_logits(model, ids, np.arange(len(ids)), pad_id, batch_size, precision):
        if out is None:
            out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
        out[rows] = logits.cpu().numpy()
        if reporter:
            reporter.advance(len(rows))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def score(model, ids: list[list[int]], pad_id: int, batch_size: int, k: int, precision: str = "auto",
          labels: Sequence[int] | None = None, reporter=None, allowed: np.ndarray | None = None,
          dist=None):
    """Top-k ids and probabilities (and mean loss) under one candidate mask."""
    out, loss = score_variants(model, ids, pad_id, batch_size, k, precision, labels, {"only": allowed}, reporter, dist)
    return out["only"][0], out["only"][1], loss
