"""On a CUDA GPU: the training paths a GPU user runs (LoRA and full fine-tuning in bf16, QLoRA on a 4-bit
bitsandbytes base), each saved model loaded back and served. Skipped where there is no GPU (CI has none); on a
GPU machine `pytest -m gpu` runs them, and the rest of the suite must pass there too."""

import json

import pytest
import torch

from mathtune.config import recipe_from_dict
from mathtune.models.saved import load_predictor
from mathtune.train.run import train_from_recipe

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

QUESTIONS = ["Solve for x: 3x + 1 = 7.", "A triangle has sides 3, 4 and 5. Find its area.",
             "Find the remainder when 7^5 is divided by 3."]


def _topic(model: dict, **train) -> object:
    return recipe_from_dict({
        "task": "topic", "trainer": "finetune", "tracking": "none",
        "data": {"train": "topics.csv", "val_size": 0.25},
        "model": {"max_length": 64, **model},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "precision": "auto", **train},
    })


@pytest.fixture(autouse=True)
def trained_on(monkeypatch) -> list[str]:
    """The device each training run's model was prepared on (classifiers and the tutor share prepare_model)."""
    from mathtune.train import finetune, loop, sft

    seen, real = [], loop.prepare_model

    def spy(model, cfg, dist):
        out = real(model, cfg, dist)
        seen.append(f"{out[0].type}/{next(model.parameters()).device.type}")
        return out

    monkeypatch.setattr(finetune, "prepare_model", spy)
    monkeypatch.setattr(sft, "prepare_model", spy)
    return seen


def _used_gpu(trained_on) -> None:
    assert trained_on and set(trained_on) == {"cuda/cuda"}, f"trained on {trained_on}, not on the GPU"


def _served(folder) -> None:
    predictor = load_predictor(folder)
    idx, prob = predictor.topk(QUESTIONS, k=2)
    assert idx.shape == (3, 2) and (prob[:, 0] >= prob[:, 1]).all()
    assert next(predictor._model.parameters()).device.type == "cuda"  # served on the GPU too


def test_lora_encoder_in_bf16(topic_csv, tiny_bert, trained_on):
    result = train_from_recipe(_topic({"name": str(tiny_bert), "peft": "lora"}), "runs/bert")
    _used_gpu(trained_on)
    assert len(result.history) == 2 and all(h["train_loss"] == h["train_loss"] for h in result.history)  # no NaN
    _served(result.output)


def test_full_decoder_with_class_weights(topic_csv, tiny_llama, trained_on):
    result = train_from_recipe(_topic({"name": str(tiny_llama), "peft": "none"}, epochs=1, class_weights=True),
                               "runs/llama")
    _used_gpu(trained_on)
    _served(result.output)


def test_qlora_classifier_saves_a_16_bit_model(topic_csv, tiny_llama, trained_on):
    pytest.importorskip("bitsandbytes")
    recipe = _topic({"name": str(tiny_llama), "peft": "qlora",
                     "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}})
    result = train_from_recipe(recipe, "runs/qlora")
    _used_gpu(trained_on)
    config = json.loads((result.output / "model" / "config.json").read_text())
    assert "quantization_config" not in config  # served without bitsandbytes, on a CPU too
    _served(result.output)
    # the saved model scores as the trained one did: its validation figures come from the merged model
    metrics = json.loads((result.output / "metrics.json").read_text())
    best = max(h["f1_micro"] for h in metrics["history"])
    assert abs(metrics["validation"]["f1_micro"] - best) <= 0.1, (metrics["validation"]["f1_micro"], best)


def test_qlora_tutor_merges_with_parity(workdir, gsm8k_jsonl, tiny_chat_llama, trained_on):
    pytest.importorskip("bitsandbytes")
    recipe = recipe_from_dict({
        "task": "tutor", "trainer": "sft", "tracking": "none",
        "data": {"train": "gsm.jsonl", "val_size": 0.2},
        "model": {"name": str(tiny_chat_llama), "peft": "qlora", "max_length": 160, "lora": {"r": 4, "alpha": 8}},
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 0.005},
        "tutor": {"eval_samples": 3, "max_new_tokens": 8, "refusal_examples": 2, "eval_batch_size": 4,
                  "system_prompt": "solve it."},
    })
    result = train_from_recipe(recipe, "tutor")
    _used_gpu(trained_on)
    manifest = json.loads((result.output / "mathtune.json").read_text())
    assert manifest["merge_parity"]["identical"] == manifest["merge_parity"]["prompts"]
    config = json.loads((result.output / "model" / "config.json").read_text())
    assert "quantization_config" not in config
    metrics = json.loads((result.output / "metrics.json").read_text())
    assert metrics["validation"]["fine_tuned"]["perplexity"] < metrics["validation"]["base"]["perplexity"]


def test_lora_tutor_in_bf16(workdir, gsm8k_jsonl, tiny_chat_llama, trained_on):
    recipe = recipe_from_dict({
        "task": "tutor", "trainer": "sft", "tracking": "none",
        "data": {"train": "gsm.jsonl", "val_size": 0.2},
        "model": {"name": str(tiny_chat_llama), "peft": "lora", "max_length": 160, "lora": {"r": 4, "alpha": 8}},
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 0.005, "precision": "bf16"},
        "tutor": {"eval_samples": 3, "max_new_tokens": 8, "refusal_examples": 2, "eval_batch_size": 4,
                  "system_prompt": "solve it."},
    })
    result = train_from_recipe(recipe, "tutor")
    _used_gpu(trained_on)
    metrics = json.loads((result.output / "metrics.json").read_text())
    assert metrics["validation"]["fine_tuned"]["perplexity"] < metrics["validation"]["base"]["perplexity"]
    from mathtune.models.generate import load_tutor

    tutor = load_tutor(result.output, backend="transformers")
    assert tutor.device.type == "cuda"
    answers = tutor.generate(["Tom has 2 apples and gets 3 more. How many apples?"], max_new_tokens=4)
    assert len(answers) == 1 and isinstance(answers[0].text, str)
