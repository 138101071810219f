"""End-to-end training on tiny models built in the test: outputs, resume, atomic model folders."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mathtune.config import recipe_from_dict
from mathtune.errors import DataError, MathtuneError, ModelError
from mathtune.models.saved import load_predictor
from mathtune.train.finetune import batch_order, class_weight_tensor
from mathtune.train.run import train_from_recipe


def _recipe(trainer="finetune", model=None, **train):
    raw = {
        "task": "topic",
        "trainer": trainer,
        "data": {"train": "topics.csv", "val_size": 0.25},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "checkpoint_every_steps": 2, **train},
        "tracking": "none",
    }
    if model:
        raw["model"] = model
    return recipe_from_dict(raw)


def test_tfidf_trains_and_saves_without_pickle(topic_csv):
    result = train_from_recipe(_recipe("tfidf"), "runs/tfidf")
    folder = result.output
    assert result.metrics["f1_micro"] > 0.9
    for name in ("mathtune.json", "metrics.json", "recipe.yaml", "confusion_matrix.png", "per_class.csv", "tfidf.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.joblib"))
    manifest = json.loads((folder / "mathtune.json").read_text())
    assert manifest["labels"]["names"][4] == "Number Theory"
    predictor = load_predictor(folder)
    idx, prob = predictor.topk(["Find the remainder when 7^5 is divided by 3."], k=2)
    assert idx.shape == (1, 2) and prob[0, 0] >= prob[0, 1]


def test_lora_encoder_trains_end_to_end(topic_csv, tiny_bert):
    recipe = _recipe(model={"name": str(tiny_bert), "peft": "lora", "max_length": 64})
    result = train_from_recipe(recipe, "runs/bert")
    metrics = json.loads((result.output / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    assert (result.output / "model" / "model.safetensors").is_file()
    assert (result.output / "training_curve.png").is_file()
    assert not (result.output / "checkpoints").exists()
    predictor = load_predictor(result.output)
    assert predictor.kind == "transformer"
    idx, _ = predictor.topk(["Solve for x: 3x + 1 = 7."])
    assert 0 <= idx[0, 0] < 8


def test_decoder_with_classification_head_full_finetune(topic_csv, tiny_llama):
    recipe = _recipe(model={"name": str(tiny_llama), "peft": "none", "max_length": 64}, epochs=1, class_weights=True)
    result = train_from_recipe(recipe, "runs/llama")
    predictor = load_predictor(result.output)
    assert type(predictor._model).__name__ == "LlamaForSequenceClassification"


class _KillAfter:
    """A reporter that interrupts training after some batches, like a killed process."""

    def __init__(self, batches: int) -> None:
        self.left = batches

    def start(self, stage, total):
        pass

    def epoch_end(self, epoch, metrics):
        pass

    def advance(self, n=1, **info):
        if "loss" in info:
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt


def test_killed_run_resumes_from_last_checkpoint(topic_csv, tiny_bert):
    recipe = _recipe(model={"name": str(tiny_bert), "peft": "lora", "max_length": 64}, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train_from_recipe(recipe, "runs/resume", reporter=_KillAfter(5))
    assert not (topic_csv.parent / "runs" / "resume").exists()
    assert (topic_csv.parent / "runs" / "resume.partial" / "checkpoints" / "last.pt").is_file()
    result = train_from_recipe(recipe, "runs/resume")
    assert result.resumed_from_step == 4  # checkpoint_every_steps=2: the last one before the kill
    assert len(result.history) == 2
    assert not (topic_csv.parent / "runs" / "resume.partial").exists()


def test_bad_data_leaves_no_model_folder(workdir, tiny_bert):
    (workdir / "topics.csv").write_text("Question,label\nWhat is 1+1?,0\n,1\nWhat is 2+2?,0\nWhat?,1\n")
    with pytest.raises(DataError, match="data row 2"):
        train_from_recipe(_recipe("tfidf"), "runs/bad")
    assert not (workdir / "runs" / "bad").exists() and not (workdir / "runs" / "bad.partial").exists()


def test_existing_output_needs_overwrite_and_survives_failure(topic_csv):
    first = train_from_recipe(_recipe("tfidf"), "runs/m")
    with pytest.raises(MathtuneError, match="--overwrite"):
        train_from_recipe(_recipe("tfidf"), "runs/m")
    # no CUDA here: QLoRA stops before loading; with a GPU, the model "x" cannot be loaded
    with pytest.raises(ModelError, match="CUDA" if not torch.cuda.is_available() else "model x"):
        train_from_recipe(_recipe(model={"name": "x", "peft": "qlora"}), "runs/m", overwrite=True)
    assert (first.output / "mathtune.json").is_file()  # the old model is untouched
    train_from_recipe(_recipe("tfidf"), "runs/m", overwrite=True)
    assert (first.output / "mathtune.json").is_file()


def test_length_grouped_batches_reduce_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=2000)
    def padding(batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    grouped = batch_order(lengths, 16, seed=0, group_by_length=True)
    plain = batch_order(lengths, 16, seed=0, group_by_length=False)
    assert sorted(np.concatenate(grouped)) == list(range(2000))
    assert padding(grouped) < 0.2 * padding(plain)


def test_balanced_class_weights():
    weights = class_weight_tensor([0, 0, 0, 1], 3)
    assert weights.tolist() == pytest.approx([4 / 6, 2.0, 1.0])


@pytest.mark.slow
def test_sigkill_then_same_command_resumes(topic_csv, tiny_bert, workdir):
    """A real process killed with SIGKILL mid-training: the same command resumes from its last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import write_recipe

    recipe = write_recipe(workdir, f"""# mathtune train recipe.yaml
task: topic
trainer: finetune
data: {{train: topics.csv, val_size: 0.25}}
model: {{name: "{tiny_bert}", peft: lora, max_length: 64}}
train: {{epochs: 20, max_steps: 60, batch_size: 4, checkpoint_every_steps: 1, early_stopping_patience: null}}
tracking: none
""")
    cmd = [sys.executable, "-m", "mathtune.cli", "train", str(recipe), "--output", "runs/killed"]
    checkpoint = workdir / "runs" / "killed.partial" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (workdir / "runs" / "killed").exists()
    again = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from optimizer step" in again.stdout
    assert (workdir / "runs" / "killed" / "mathtune.json").is_file()
    assert not (workdir / "runs" / "killed.partial").exists()


def test_scoring_pads_to_shape_buckets_within_the_position_limit():
    from mathtune.train.finetune import collate

    ids = [[5] * 7, [5] * 40]
    input_ids, mask = collate(ids, [0, 1], 0, torch.device("cpu"), multiple=32)
    assert input_ids.shape == (2, 64) and int(mask.sum()) == 47
    input_ids, _ = collate(ids, [0, 1], 0, torch.device("cpu"), multiple=32, limit=48)
    assert input_ids.shape == (2, 48)
    input_ids, _ = collate(ids, [0], 0, torch.device("cpu"))
    assert input_ids.shape == (1, 7)


def test_linear_svc_probabilities_are_calibrated_by_a_temperature(topic_csv, labelled_eval_csv):
    """The SVM's margins are not probabilities: a temperature fitted on out-of-fold margins makes the softmax
    honest (lower log-loss on held-out rows) without changing which label ranks first."""
    from mathtune.config import TfidfConfig
    from mathtune.models.tfidf import class_probabilities, load, save
    from mathtune.train.classical import fit_tfidf

    train = pd.read_csv(topic_csv, dtype=str)
    held = pd.read_csv(labelled_eval_csv, dtype=str)
    y = train["label"].astype(int).to_numpy()
    y_held = held["label"].astype(int).to_numpy()
    raw = fit_tfidf(train["Question"].tolist(), y, TfidfConfig(calibrate=False))
    calibrated = fit_tfidf(train["Question"].tolist(), y, TfidfConfig(calibrate=True))
    assert raw.temperature == 1.0 and calibrated.temperature != 1.0
    p_raw = class_probabilities(raw, held["Question"].tolist(), 5)
    p_cal = class_probabilities(calibrated, held["Question"].tolist(), 5)
    assert (p_raw.argmax(1) == p_cal.argmax(1)).all()
    nll = lambda p: -np.log(np.maximum(p[np.arange(len(y_held)), y_held], 1e-12)).mean()  # noqa: E731
    assert nll(p_cal) < nll(p_raw)
    save(calibrated, Path("saved-tfidf"))
    assert load(Path("saved-tfidf")).temperature == pytest.approx(calibrated.temperature)


def test_refit_trains_the_saved_model_on_train_plus_validation(topic_csv, workdir):
    import pandas as pd

    pd.DataFrame({"Question": [f"Compute the zzyzx number {i} of the graph." for i in range(8)],
                  "label": ["5"] * 8}).to_csv("val.csv", index=False)

    def fit(refit: bool, out: str):
        recipe = recipe_from_dict({"task": "topic", "trainer": "tfidf", "tracking": "none",
                                   "data": {"train": "topics.csv", "validation": "val.csv"},
                                   "tfidf": {"min_df": 1}, "train": {"refit": refit}})
        result = train_from_recipe(recipe, out)
        vocabulary = {t for v in json.loads((result.output / "tfidf.json").read_text())["vectorizers"]
                      for t in v["vocabulary"]}
        return json.loads((result.output / "metrics.json").read_text()), vocabulary

    plain, plain_vocab = fit(False, "runs/plain")
    refit, refit_vocab = fit(True, "runs/refit")
    assert "zzyzx" not in plain_vocab and "zzyzx" in refit_vocab  # the saved model has seen the validation rows
    n_train = plain["summary"]["n_train"]
    assert refit["summary"]["refit"] and refit["summary"]["refit_rows"] == n_train + 8
    assert refit["validation"]["f1_micro"] == plain["validation"]["f1_micro"]  # the first fit's figures stand


def test_refit_of_a_fine_tune_uses_the_best_epoch_count(topic_csv, tiny_bert):
    recipe = _recipe(model={"name": str(tiny_bert), "peft": "lora", "max_length": 64}, epochs=2, refit=True)
    result = train_from_recipe(recipe, "runs/bert-refit")
    metrics = json.loads((result.output / "metrics.json").read_text())
    assert metrics["summary"]["refit_epochs"] == metrics["validation"]["best_epoch"]
    assert metrics["summary"]["refit_rows"] == metrics["summary"]["n_train"] + metrics["summary"]["n_validation"]
    assert (result.output / "model" / "model.safetensors").is_file() and not (result.output / "checkpoints").exists()


def test_lora_on_the_top_layers_only(tiny_llama):
    from mathtune.config import ModelConfig
    from mathtune.models.causal import load_causal_lm

    loaded = load_causal_lm(ModelConfig(name=str(tiny_llama), peft="lora", lora={"top_layers": 1,
                                                                                 "target_modules": ["q_proj", "v_proj"]}))
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in loaded.model.named_parameters() if "lora_" in name}
    assert adapted == {"1"}  # the top one of 2 layers; the lower layer has no adapter, so backpropagation stops above it


def test_weights_stored_in_16_bits_train_in_fp32():
    """A bf16 checkpoint loads as bf16: its trainable weights are trained in fp32 (AdamW's small updates to bf16
    weights round away), frozen ones keep their type."""
    from mathtune.train.loop import trained_in_fp32

    trained, frozen = torch.nn.Linear(4, 4).to(torch.bfloat16), torch.nn.Linear(4, 4).to(torch.bfloat16)
    frozen.requires_grad_(False)
    assert trained_in_fp32([*trained.parameters(), *frozen.parameters()]) == 2
    assert trained.weight.dtype == trained.bias.dtype == torch.float32 and frozen.weight.dtype == torch.bfloat16
    weight = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
    weight.data -= 1e-4  # what AdamW's step does at learning rate 1e-4: lost in bf16
    assert weight.item() == 1.0
