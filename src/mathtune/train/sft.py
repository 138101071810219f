"""Supervised fine-tuning of a causal LM on (problem, solution) chats: the loss is on response tokens only.

Each example is the model's chat template applied to [system, user, assistant]; the tokens of the prompt part
(system + user + the assistant header) get label -100. With packing, several examples share one sequence of up
to ``max_length`` tokens (each keeps its own label mask; attention spans the whole sequence, as in the usual
"naive" packing), which removes pad tokens on short GSM8K-style data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Recipe
from ..errors import DataError
from ..tasks.tutor import Pairs, messages
from .distributed import Local, split_rows
from .loop import FitResult, NullReporter, Reporter, autocast_context, pick_device, prepare_model, train_loop

log = logging.getLogger(__name__)
IGNORE = -100
LOGIT_BUDGET = 100_000_000  # floats of logits held at once when scoring


@dataclass
class Examples:
    ids: list[list[int]]
    labels: list[list[int]]
    truncated: int = 0
    dropped: int = 0


def build_examples(tokenizer, pairs: Pairs, max_length: int, system_prompt: str | None = None,
                   contexts: Sequence[str | None] | None = None) -> Examples:
    contexts = list(contexts) if contexts is not None else [None] * len(pairs.questions)
    out = Examples([], [])
    for question, response, context in zip(pairs.questions, pairs.responses, contexts):
        chat = messages(question, response, system_prompt, context)
        prompt = tokenizer.apply_chat_template(chat[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(chat, tokenize=False)
        if not full.startswith(prompt):
            raise DataError("the model's chat template renders the prompt differently inside the full chat; "
                            "response-only loss needs a template whose prompt is a prefix of the chat")
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full.rstrip("\n"), add_special_tokens=False)["input_ids"]
        if len(prompt_ids) >= max_length - 8:
            out.dropped += 1
            continue
        if len(full_ids) > max_length:
            out.truncated += 1
            full_ids = full_ids[:max_length]
        out.ids.append(full_ids)
        out.labels.append([IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids):])
    return out


def pack(examples: Examples, max_length: int) -> Examples:
    """Greedy first-fit packing of whole examples into sequences of at most ``max_length`` tokens."""
    order = np.argsort([-len(s) for s in examples.ids], kind="stable")
    bins: list[tuple[list[int], list[int]]] = []
    for i in order:
        ids, labels = examples.ids[i], examples.labels[i]
        for b in bins:
            if len(b[0]) + len(ids) <= max_length:
                b[0].extend(ids)
                b[1].extend(labels)
                break
        else:
            bins.append((list(ids), list(labels)))
    return Examples([b[0] for b in bins], [b[1] for b in bins], examples.truncated, examples.dropped)


def collate_lm(ids, labels, rows, pad_id: int, device):
    width = max(len(ids[r]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    target = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(ids[r])
        input_ids[i, :n] = torch.tensor(ids[r])
        target[i, :n] = torch.tensor(labels[r])
        mask[i, :n] = 1
    return input_ids.to(device), mask.to(device), target.to(device)


def token_loss(model, input_ids, mask, target) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over response tokens, and their count. The LM head (49k columns for
    SmolLM2) runs only from the first response position of the batch on: prompt positions need no logits."""
    answered = (target != IGNORE).any(dim=0).nonzero()
    first = int(answered[0]) if len(answered) else input_ids.shape[1] - 1
    keep = input_ids.shape[1] - max(first - 1, 0)
    logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep).logits[:, :-1].float()
    shifted = target[:, input_ids.shape[1] - keep + 1:]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((shifted != IGNORE).sum())


@torch.no_grad()
def response_nll(model, examples: Examples, pad_id: int, batch_size: int, precision: str = "auto",
                 dist=None, reporter: Reporter | None = None) -> dict:
    """Mean negative log-likelihood per response token and its perplexity (lower is better)."""
    model.eval()
    dist = dist or Local()
    device = pick_device(model)
    autocast = autocast_context(precision, device)
    mine = split_rows(len(examples.ids), dist)
    order = mine[np.argsort([-len(examples.ids[r]) for r in mine], kind="stable")]
    # the logits of a batch are rows x tokens x vocabulary floats (2.4 GB for 32 x 384 x 49k): cap the batch so
    # they stay near 400 MB; on a CPU the pass is compute-bound, so smaller batches cost little time
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 50_000)
    longest = max((len(examples.ids[r]) for r in order), default=1)
    batch_size = max(1, min(batch_size, LOGIT_BUDGET // (longest * vocab)))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = collate_lm(examples.ids, examples.labels, rows, pad_id, device)
        with autocast():
            loss, n = token_loss(model, *batch)
        total, count = total + loss.item(), count + n
        if reporter:
            reporter.advance(len(rows))
    nll = dist.mean(total, count)
    return {"val_loss": nll, "perplexity": float(math.exp(min(nll, 50.0)))}


def fit_sft(model, tokenizer, train: Examples, val: Examples, recipe: Recipe, checkpoint_dir: Path,
            reporter: Reporter | None = None, dist=None) -> FitResult:
    """Train with the shared loop; the best epoch is the one with the lowest validation perplexity."""
    from .distributed import current

    reporter = reporter or NullReporter()
    dist = dist or current()
    cfg = recipe.train
    device, autocast, cast_back = prepare_model(model, cfg, dist)
    pad_id = tokenizer.pad_token_id

    def batch_loss(wrapped, rows):
        batch = collate_lm(train.ids, train.labels, rows, pad_id, device)
        with autocast():
            loss, n = token_loss(wrapped, *batch)
        return loss / max(n, 1)

    def validate(wrapped):
        reporter.start("validate (perplexity)", len(val.ids))
        return response_nll(wrapped, val, pad_id, cfg.eval_batch_size, cfg.precision, dist, reporter)

    try:
        return train_loop(model, [len(s) for s in train.ids], batch_loss, validate, cfg, "perplexity",
                          checkpoint_dir, greater_is_better=False, reporter=reporter, dist=dist)
    finally:
        for param in cast_back:
            param.data = param.data.to(torch.float32)
