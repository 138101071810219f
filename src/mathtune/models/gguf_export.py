"""Write a fine-tuned Llama-family model as GGUF, so the llama.cpp backend can run it.

The tokenizer and architecture metadata are copied from the base model's GGUF (fine-tuning changes neither);
the tensors come from the fine-tuned weights, named with gguf's tensor-name map and with the q/k projections
permuted the way llama.cpp's own converter does (transformers undoes that permutation when it loads a GGUF).
For other architectures use llama.cpp's ``convert_hf_to_gguf.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError

FILE_TYPES = {"f16": 1, "q8_0": 7, "f32": 0}


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def export_gguf(model, base_gguf: str | os.PathLike, output: str | os.PathLike, kind: str = "f16") -> Path:
    import gguf

    if kind not in FILE_TYPES:
        raise ModelError(f"GGUF type {kind!r}: choose one of {', '.join(FILE_TYPES)}")
    reader = gguf.GGUFReader(str(base_gguf))
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise ModelError(f"GGUF export supports Llama-family models (this base is {arch!r}); "
                         "use llama.cpp's convert_hf_to_gguf.py for others")
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    n_kv = int(reader.fields[f"{arch}.attention.head_count_kv"].contents())
    n_blocks = int(reader.fields[f"{arch}.block_count"].contents())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    state = {k: v.detach().to(torch.float32).cpu().numpy() for k, v in model.state_dict().items()}
    by_gguf = {}
    for hf_name, tensor in state.items():
        mapped = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            continue
        if hf_name.endswith("q_proj.weight"):
            tensor = _permute(tensor, n_head)
        elif hf_name.endswith("k_proj.weight"):
            tensor = _permute(tensor, n_kv)
        by_gguf[mapped] = tensor

    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type", "general.quantization_version"):
            continue
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, fld.contents(), vtype, sub_type=sub)
    writer.add_file_type(FILE_TYPES[kind])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    missing = []
    for tensor in reader.tensors:
        if tensor.name not in by_gguf:
            missing.append(tensor.name)
            continue
        data = by_gguf[tensor.name]
        if data.ndim == 1 or kind == "f32":
            writer.add_tensor(tensor.name, data.astype(np.float32))
        elif kind == "f16":
            writer.add_tensor(tensor.name, data.astype(np.float16))
        else:
            quant = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(tensor.name, gguf.quants.quantize(data, quant), raw_dtype=quant)
    if missing:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"GGUF export: the fine-tuned model has no weights for {', '.join(missing[:5])}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, output)
    return output


def export_tutor_gguf(folder: str | os.PathLike, kind: str = "f16") -> Path:
    """Write ``model.gguf`` into a tutor folder and record it in the manifest."""
    from ..config import ModelConfig
    from ..io import write_json
    from .causal import load_causal_lm
    from .registry import resolve
    from .saved import HF_SUBDIR, MANIFEST, read_manifest

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest["task"] != "tutor":
        raise ModelError(f"{folder}: GGUF export is for tutor models; classifiers export with --onnx")
    source = resolve(manifest["base_model"], manifest.get("base_gguf_file"))
    if not source.gguf_file:
        raise ModelError(f"{folder}: its base {manifest['base_model']} was not loaded from GGUF, so there is no "
                         "tokenizer metadata to copy; use llama.cpp's convert_hf_to_gguf.py")
    model = load_causal_lm(ModelConfig(name=str(folder / HF_SUBDIR), peft="none")).model
    path = export_gguf(model, Path(source.path) / source.gguf_file, folder / "model.gguf", kind)
    manifest["gguf"] = path.name
    manifest["gguf_type"] = kind
    write_json(folder / MANIFEST, manifest)
    return path
