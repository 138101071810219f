"""Where a model runs and in which precision: shared by training (train/) and scoring (models/, serve/)."""

from __future__ import annotations

import contextlib

import torch


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    return precision == "bf16" or (precision == "auto" and bf16_supported(device))


def autocast_context(precision: str, device: torch.device):
    if uses_bf16(precision, device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def pick_device(model) -> torch.device:
    """Where ``model`` is: its inputs go there."""
    try:
        return next(model.parameters()).device if torch.cuda.is_available() else torch.device("cpu")
    except StopIteration:
        return torch.device("cpu")


def training_device(model) -> torch.device:
    """Where to train ``model``: the GPU it was put on (a 4-bit model is loaded there), else the first GPU when
    there is one, else the CPU."""
    current = pick_device(model)
    if current.type == "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return current


def place(model):
    """A loaded model, moved to the first GPU when there is one, to generate or score there (a model that
    transformers already placed, such as a 4-bit one, stays where it is)."""
    if torch.cuda.is_available() and not getattr(model, "hf_device_map", None):
        model.to(training_device(model))
    return model
