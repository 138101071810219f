"""ONNX export of encoder classifiers and an ONNX Runtime backend (optionally int8) for serving.

`mathtune export MODEL_DIR --onnx [--int8]` writes MODEL_DIR/onnx/model.onnx (and model.int8.onnx) after a parity
check: the ONNX model must give the same top-1 label as the PyTorch model on a fixed set of questions.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..io import write_json
from .folder import HF_SUBDIR, MANIFEST, load_classifier_files, read_manifest

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
PARITY_TEXTS = [
    "Find the remainder when 7^{100} is divided by 13.",
    "Solve for x: 3x^2 - 5x + 2 = 0.",
    "Compute the integral of sin(x) cos(x) from 0 to pi/2.",
    "A bag has 3 red and 5 blue balls. What is the probability of drawing two red balls without replacement?",
    "Prove that every group of prime order is cyclic.",
    "Find the eigenvalues of the matrix [[2, 1], [1, 2]].",
    "In triangle ABC, AB = 5, BC = 12 and angle B is a right angle. Find AC.",
    "How many ways can 8 rooks be placed on a chessboard so that no two attack each other?",
    "Let f(x) = x^3 - 3x. Find the local maxima of f.",
    "What is the greatest common divisor of 2024 and 1001?",
    "Simplify (a+b)^2 - (a-b)^2.",
    "Show that the sequence a_n = 1/n converges and find its limit.",
    "A fair die is rolled twice. Find the expected value of the sum.",
    "Find all integers n such that n^2 + 1 is divisible by n + 1.",
    "Compute the determinant of [[1, 2, 3], [4, 5, 6], [7, 8, 10]].",
    "Is the set of rational numbers with addition a group? Is it cyclic?",
]


def _export(model, sample, path: Path) -> None:
    import torch

    kwargs = dict(input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=18)
    try:
        dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
        torch.onnx.export(model, (sample["input_ids"], sample["attention_mask"]), str(path), dynamo=True,
                          dynamic_shapes=(dims, dims), **kwargs)
    except Exception as exc:  # older graphs: the TorchScript exporter still handles them
        log.info("dynamo export failed (%s); using the TorchScript exporter", exc)
        torch.onnx.export(model, (sample["input_ids"], sample["attention_mask"]), str(path), dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                        "logits": {0: "batch"}}, **kwargs)


def export_onnx(folder: str | Path, int8: bool = False, texts: Sequence[str] = PARITY_TEXTS) -> dict:
    """Export, check top-1 parity against PyTorch on ``texts``, and record the result in the manifest."""
    import torch

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest["kind"] != "transformer":
        raise ModelError(f"{folder}: ONNX export is for fine-tuned transformer classifiers, not {manifest['kind']} models")
    source = folder / HF_SUBDIR
    tokenizer, model = load_classifier_files(source, dtype=torch.float32)
    model.eval()
    if getattr(model.config, "is_decoder", False) or model.config.model_type in ("llama", "qwen2", "mistral", "gemma"):
        raise ModelError(f"{folder}: ONNX export is supported for encoder classifiers; serve decoders with the torch backend")
    max_length = manifest.get("max_length", 256)
    sample = tokenizer(list(texts[:2]), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    work = folder / f".{ONNX_DIR}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _export(model, sample, work / "model.onnx")
        files = {"fp32": "model.onnx"}
        if int8:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # the exporter's intermediate shape annotations are optional and trip the quantizer's shape inference
            graph = onnx.load(str(work / "model.onnx"))
            del graph.graph.value_info[:]
            onnx.save(graph, str(work / "model.stripped.onnx"))
            os.replace(work / "model.stripped.onnx", work / "model.onnx")
            quantize_dynamic(str(work / "model.onnx"), str(work / "model.int8.onnx"), weight_type=QuantType.QInt8)
            files["int8"] = "model.int8.onnx"
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            reference = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy().argmax(-1)
        parity = {}
        for name, file in files.items():
            logits = OnnxClassifier(work / file).logits(enc["input_ids"].numpy(), enc["attention_mask"].numpy())
            parity[name] = float((logits.argmax(-1) == reference).mean())
        if parity["fp32"] < 1.0:
            raise ModelError(f"{folder}: the ONNX model disagrees with PyTorch on {1 - parity['fp32']:.0%} of the parity set; not saved")
        target = folder / ONNX_DIR
        shutil.rmtree(target, ignore_errors=True)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest["onnx"] = {"files": {k: f"{ONNX_DIR}/{v}" for k, v in files.items()}, "parity_top1": parity,
                        "parity_set_size": len(texts)}
    write_json(folder / MANIFEST, manifest)
    return manifest["onnx"]


class OnnxClassifier:
    """An ONNX Runtime session that behaves like the classifier's forward pass (logits)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return self.session.run(["logits"], {k: v for k, v in feed.items() if k in self.inputs})[0]


def onnx_topk(session: OnnxClassifier, ids: list[list[int]], pad_id: int, batch_size: int, k: int,
              variants: dict, temperature: float = 1.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Top-k under each candidate mask, batching rows of similar length (as the torch path does); probabilities
    of the logits divided by ``temperature`` (the model's calibration)."""
    n = len(ids)
    order = np.argsort([-len(s) for s in ids], kind="stable")
    out = {name: (np.zeros((n, k), dtype=np.int64), np.zeros((n, k), dtype=np.float32)) for name in variants}
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        width = max(len(ids[r]) for r in rows)
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(ids[r])] = ids[r]
            mask[i, : len(ids[r])] = 1
        logits = session.logits(input_ids, mask).astype(np.float64) / temperature
        for name, allowed in variants.items():
            scores = logits if allowed is None else np.where(allowed[rows], logits, -np.inf)
            scores = scores - scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            out[name][0][rows] = top
            out[name][1][rows] = np.take_along_axis(probs, top, axis=1)
    return out
