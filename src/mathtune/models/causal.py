"""Causal language models for the tutor: load (bundled GGUF, folder or hub id), add LoRA/QLoRA, merge for saving.

Merging: the adapter is merged into a 16-bit (bf16) copy of the base, and the merged model must give the same
greedy output as the unmerged one on fixed prompts before it is saved. Where bf16 rounding flips a near-tie,
an fp32 merge is checked and saved instead; if that also differs, saving stops with an error.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import ModelError
from .hf import (
    LoadedModel,
    _quantization_config,
    forget_gguf_origin,
    is_quantized_peft,
    load_tokenizer,
    merge_quantized,
    prepare_loaded,
    pretrained_kwargs,
)
from .registry import resolve

log = logging.getLogger(__name__)

PARITY_PROMPTS = [
    "What is 12 times 7?",
    "Solve for x: 3x + 5 = 20.",
    "A shop sells pencils at 3 for $1. How much do 12 pencils cost?",
    "What is the derivative of x^3?",
]


SMALL_GGUF_BYTES = 600 << 20


def dequantized_copy(source) -> Path | None:
    """A small GGUF model, dequantized once into a transformers folder in the cache. transformers reads a GGUF
    file three times (config, tokenizer, weights) with pure-Python readers: about 30 s for SmolLM2-135M on this
    CPU, against about 2 s for the saved folder. Large files (the 1.5B tutor: 6 GB in fp32) are not copied."""
    from transformers import AutoModelForCausalLM

    from .assemble import cache_dir

    gguf = Path(source.path) / source.gguf_file
    if not gguf.is_file() or gguf.stat().st_size > SMALL_GGUF_BYTES:
        return None
    stat = gguf.stat()
    folder = cache_dir() / "dequantized" / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (folder / "complete").is_file():
        return folder
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        tokenizer = load_tokenizer(source)
        model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
        forget_gguf_origin(model)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "complete").write_text(f"{gguf}\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        log.info("dequantized %s once into %s", gguf, folder)
        return folder
    except OSError as exc:  # a read-only or full cache: load from the GGUF file each time instead
        log.warning("could not keep a dequantized copy of %s in %s (%s); loading the GGUF file", gguf, folder, exc)
        shutil.rmtree(tmp, ignore_errors=True)
        return None


def load_causal_lm(cfg: ModelConfig, dtype: torch.dtype | None = None) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    source = resolve(cfg.name, cfg.gguf_file)
    quant = _quantization_config(cfg)
    local = dequantized_copy(source) if source.gguf_file and quant is None else None
    loading = dataclasses.replace(source, path=str(local), gguf_file=None) if local else source
    tokenizer = load_tokenizer(loading)
    kwargs = pretrained_kwargs(loading, quant, **({"dtype": dtype} if dtype is not None else {}))
    try:
        model = AutoModelForCausalLM.from_pretrained(loading.path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - missing/truncated weights, a config with wrong types
        raise ModelError(f"model {source.label}: cannot load it as a causal language model ({exc})") from None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return prepare_loaded(model, tokenizer, source, cfg, quant, "CAUSAL_LM")


@torch.no_grad()
def greedy_tokens(model, tokenizer, prompts: list[str], max_new_tokens: int = 24) -> list[list[int]]:
    from ..tasks.tutor import messages

    device = next(model.parameters()).device
    out = []
    model.eval()
    for prompt in prompts:
        text = tokenizer.apply_chat_template(messages(prompt), add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False, return_token_type_ids=False).to(device)
        generated = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
        out.append(generated[0, ids["input_ids"].shape[1]:].tolist())
    return out


@dataclass
class MergeReport:
    dtype: str
    prompts: int
    identical: int
    checked_dtypes: list[str] = field(default_factory=list)


def _merged_copy(model, dtype: torch.dtype, cfg: ModelConfig | None):
    if is_quantized_peft(model):
        # QLoRA: the base is 4-bit; merge into a freshly loaded 16-bit copy holding its dequantized weights
        if cfg is None:
            raise ModelError("merging a QLoRA adapter needs the model config to reload the 16-bit base")
        plain = cfg.model_copy(update={"peft": "lora", "gradient_checkpointing": False})
        return merge_quantized(model, load_causal_lm(plain, dtype=dtype).model)
    clone = copy.deepcopy(model).to(dtype)
    return clone.merge_and_unload() if hasattr(clone, "merge_and_unload") else clone


def merge_with_parity(model, tokenizer, cfg: ModelConfig | None = None, prompts: list[str] | None = None,
                      max_new_tokens: int = 24):
    """The merged model (a plain transformers model) and a report of the greedy-output check."""
    if not hasattr(model, "merge_and_unload"):
        return model, MergeReport("float32", 0, 0, [])
    prompts = prompts or PARITY_PROMPTS
    reference = greedy_tokens(model, tokenizer, prompts, max_new_tokens)
    checked = []
    for dtype in (torch.bfloat16, torch.float32):
        merged = _merged_copy(model, dtype, cfg)
        got = greedy_tokens(merged, tokenizer, prompts, max_new_tokens)
        same = sum(a == b for a, b in zip(reference, got))
        checked.append(f"{str(dtype).split('.')[-1]}: {same}/{len(prompts)}")
        if same == len(prompts):
            return merged, MergeReport(str(dtype).split(".")[-1], len(prompts), same, checked)
        log.info("merge parity in %s: %d/%d prompts identical; trying a wider type", dtype, same, len(prompts))
    raise ModelError(f"merged and unmerged models disagree on greedy output ({'; '.join(checked)}); "
                     "the adapter was not merged correctly, so nothing was saved")
