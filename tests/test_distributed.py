"""Training under `accelerate launch`: two CPU processes (gloo), the same loop as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import REPO, write_recipe


def _launch(workdir: Path, recipe: Path, output: str, *extra: str) -> subprocess.CompletedProcess:
    paths = [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(REPO / "deploy" / "accelerate" / "cpu-2proc.yaml"), "-m", "mathtune.cli", "train",
                           str(recipe), "--output", output, *extra], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="cpu-2proc.yaml is the CPU-only (gloo) launch; a GPU machine uses ddp.yaml")
def test_two_process_ddp_training_writes_one_model(workdir, topic_csv, tiny_bert):
    recipe = write_recipe(workdir, f"""
task: topic
trainer: finetune
data: {{train: topics.csv}}
model: {{name: {tiny_bert}, peft: lora, max_length: 32, lora: {{r: 4, alpha: 8, target_modules: [query, value]}}}}
train: {{epochs: 2, batch_size: 8, learning_rate: 0.01, checkpoint_every_steps: 2}}
tracking: none
""")
    proc = _launch(workdir, recipe, "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((workdir / "ddp" / "metrics.json").read_text())
    assert metrics["summary"]["processes"] == 2
    assert len(metrics["history"]) == 2 and "f1_micro" in metrics["history"][-1]
    # 49 training rows (80% of 61), batch 8 per process: 4 steps an epoch with 2 processes (7 with one)
    assert metrics["history"][0]["step"] == 4
    assert (workdir / "ddp" / "model" / "model.safetensors").exists()
    assert not (workdir / "ddp.partial").exists()


def test_accelerate_configs_are_valid_yaml():
    for name in ("ddp.yaml", "fsdp.yaml", "cpu-2proc.yaml"):
        config = yaml.safe_load((REPO / "deploy" / "accelerate" / name).read_text())
        assert config["distributed_type"] in ("MULTI_GPU", "FSDP") and config["num_processes"] >= 2
