"""Load any HF encoder or decoder with a sequence-classification head, with LoRA or QLoRA on top."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import ModelError
from .registry import ModelSource, resolve

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: ModelSource
    trainable_params: int
    total_params: int


def cuda_available() -> bool:
    return torch.cuda.is_available()


def _quantization_config(cfg: ModelConfig):
    if cfg.peft != "qlora":
        return None
    if not cuda_available():
        raise ModelError(
            "model.peft: qlora loads the base model in 4-bit NF4 with bitsandbytes, which needs a CUDA GPU; "
            "this machine has none. Use --set model.peft=lora (or none) to train on the CPU."
        )
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ModelError("model.peft: qlora needs bitsandbytes: pip install 'mathtune[gpu]'") from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
    )


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - missing or damaged tokenizer files
        raise ModelError(f"model {source.label}: cannot load its tokenizer ({exc}). "
                         "Check the name, or that the machine is online for hub ids.") from None
    if tokenizer.pad_token is None:
        # Decoders often ship without a pad token; the classification head reads the last non-pad token.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def pretrained_kwargs(source: ModelSource, quant, **extra) -> dict[str, Any]:
    """from_pretrained arguments: the GGUF file to dequantize, or the 4-bit config on the first GPU."""
    kwargs: dict[str, Any] = dict(extra)
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": 0}
    return kwargs


def load_classifier(cfg: ModelConfig, num_labels: int, id2label: dict[int, str],
                    dtype: torch.dtype | None = None) -> LoadedModel:
    from transformers import AutoModelForSequenceClassification

    source = resolve(cfg.name, cfg.gguf_file)
    quant = _quantization_config(cfg)
    tokenizer = load_tokenizer(source)
    kwargs = pretrained_kwargs(source, quant, num_labels=num_labels, id2label=id2label,
                               label2id={v: k for k, v in id2label.items()},
                               **({"dtype": dtype} if dtype is not None else {}))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source.path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - missing/truncated weights, a config with wrong types
        raise ModelError(f"model {source.label}: cannot load it as a sequence classifier ({exc})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return prepare_loaded(model, tokenizer, source, cfg, quant, "SEQ_CLS")


def prepare_loaded(model, tokenizer, source: ModelSource, cfg: ModelConfig, quant, task_type: str) -> LoadedModel:
    """After from_pretrained: drop the GGUF marker, add LoRA, gradient checkpointing, count parameters."""
    if source.gguf_file:
        forget_gguf_origin(model)
    if cfg.peft in ("lora", "qlora"):
        model = _add_lora(model, cfg, quantized=quant is not None, task_type=task_type)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("loaded %s: %.1fM parameters, %.2f%% trainable", source.label, total / 1e6, 100 * trainable / total)
    return LoadedModel(model, tokenizer, source, trainable, total)


def forget_gguf_origin(model) -> None:
    """transformers dequantizes GGUF weights on load but keeps a 'gguf quantizer' marker that makes
    save_pretrained refuse; the weights are plain tensors, so the marker is dropped."""
    if getattr(model, "hf_quantizer", None) is not None and "gguf" in type(model.hf_quantizer).__name__.lower():
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        for attr in ("is_quantized", "quantization_method"):
            if hasattr(model, attr):
                try:
                    setattr(model, attr, False if attr == "is_quantized" else None)
                except AttributeError:
                    pass


def _top_layers(model, top: int | None) -> list[int] | None:
    """The indices of the top ``top`` transformer layers (None: all layers)."""
    if not top:
        return None
    total = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    if not total:
        raise ModelError("model.lora.top_layers: this model's config does not say how many layers it has; leave it empty")
    return list(range(max(total - top, 0), total))


def _add_lora(model, cfg: ModelConfig, quantized: bool, task_type: str = "SEQ_CLS"):
    from peft import LoraConfig, TaskType, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    lora = LoraConfig(
        task_type=getattr(TaskType, task_type),
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        layers_to_transform=_top_layers(model, cfg.lora.top_layers),
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise ModelError(f"model.lora.target_modules: {exc}. Name the attention projections of this model "
                         "(e.g. [query, value] for BERT, [q_proj, v_proj] for Llama/Qwen).") from None


def merge_for_saving(model, cfg: ModelConfig | None = None):
    """A plain transformers model with the LoRA weights merged in (so serving needs no peft). A QLoRA model is
    merged into a 16-bit copy of its base (`merge_quantized`): saved as is, it would need bitsandbytes and a GPU
    to serve."""
    if not hasattr(model, "merge_and_unload"):
        return model
    if is_quantized_peft(model):
        if cfg is None:
            raise ModelError("merging a QLoRA adapter needs the model config to reload the 16-bit base")
        config = model.config
        dtype = torch.bfloat16 if cuda_available() and torch.cuda.is_bf16_supported() else torch.float32
        plain = cfg.model_copy(update={"peft": "lora", "gradient_checkpointing": False})
        fresh = load_classifier(plain, config.num_labels, {int(k): v for k, v in config.id2label.items()},
                                dtype=dtype).model
        return merge_quantized(model, fresh)
    return model.merge_and_unload()


def is_quantized_peft(model) -> bool:
    """A peft model on a 4-bit (bitsandbytes) base."""
    if getattr(model, "is_loaded_in_4bit", False):
        return True
    inner = getattr(getattr(model, "base_model", None), "model", None)
    return bool(getattr(inner, "is_loaded_in_4bit", False))


def merge_quantized(trained, fresh):
    """Merge a QLoRA model's adapters into ``fresh``: the same model with the same LoRA layers on an unquantized
    base. The adapters were trained against the 4-bit (NF4) base, so ``fresh`` first takes that base's weights,
    dequantized, in place of the original ones: the merged model computes what the trained one did (up to the
    16-bit rounding), where merging into the original weights would shift every layer by the quantization error."""
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    device = next(p.device for p in trained.parameters() if p.device.type != "meta")
    fresh.to(device)
    targets = dict(fresh.named_modules())
    copied = 0
    for name, module in trained.named_modules():
        state = getattr(module.weight, "quant_state", None) if isinstance(module, Linear4bit) else None
        if state is None or name not in targets:
            continue
        weight = targets[name].weight
        weight.data.copy_(dequantize_4bit(module.weight.data, state).to(weight.dtype).reshape(weight.shape))
        copied += 1
    if not copied:
        raise ModelError("merging a QLoRA adapter: no 4-bit layer of the trained model matched the 16-bit copy; "
                         "nothing was saved")
    log.info("QLoRA merge: %d dequantized 4-bit layers copied into the 16-bit base", copied)
    set_peft_model_state_dict(fresh, get_peft_model_state_dict(trained))
    return fresh.merge_and_unload()
