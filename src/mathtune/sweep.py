"""`mathtune sweep`: a grid of recipe overrides, each trained as its own process and MLflow run, compared in
one table (training time, peak memory, final train and validation loss, the task's metric): the hyperparameter
table seed 002 kept by hand.

Each configuration runs in a fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import RecipeError


@dataclass
class SweepRun:
    name: str
    overrides: list[str]
    output: Path
    returncode: int
    seconds: float
    metrics: dict


def parse_grid(grid: list[str]) -> list[tuple[str, list[str]]]:
    axes = []
    for item in grid:
        if "=" not in item:
            raise RecipeError(f"--grid {item!r}: expected key=v1,v2 (e.g. --grid train.learning_rate=1e-4,2e-4)")
        key, values = item.split("=", 1)
        options = [v.strip() for v in values.split(",") if v.strip()]
        if not options:
            raise RecipeError(f"--grid {item!r}: no values after '='")
        axes.append((key.strip(), options))
    return axes


def configurations(grid: list[str]) -> list[list[str]]:
    axes = parse_grid(grid)
    keys = [k for k, _ in axes]
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(v for _, v in axes))]


def _name(overrides: list[str]) -> str:
    return "_".join(o.split(".")[-1].replace("=", "-") for o in overrides) or "base"


def run_sweep(recipe: Path, grid: list[str], output_dir: Path, extra: list[str] | None = None,
              on_start=None, on_done=None) -> list[SweepRun]:
    from .config import load_recipe

    configs = configurations(grid)
    for overrides in configs:  # fail fast on a bad key before any training starts
        load_recipe(recipe, (extra or []) + overrides)
    runs = []
    for i, overrides in enumerate(configs):
        name = f"{i + 1:02d}-{_name(overrides)}"
        output = output_dir / name
        if on_start:
            on_start(i, len(configs), name, overrides)
        command = [sys.executable, "-m", "mathtune.cli", "train", str(recipe), "--output", str(output), "--overwrite"]
        for o in (extra or []) + overrides + ["tracking.register_as=null"]:
            command += ["--set", o]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        metrics = {}
        if proc.returncode == 0 and (output / "metrics.json").exists():
            metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
        else:
            metrics = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
        run = SweepRun(name, overrides, output, proc.returncode, seconds, metrics)
        runs.append(run)
        if on_done:
            on_done(run)
    return runs


def summary_rows(runs: list[SweepRun]) -> list[dict]:
    rows = []
    for run in runs:
        m = run.metrics
        summary, history = m.get("summary", {}), m.get("history", [])
        validation = m.get("validation", {})
        tuned = validation.get("fine_tuned", validation)
        last = history[-1] if history else {}
        rows.append({
            "run": run.name,
            **{o.split("=", 1)[0]: o.split("=", 1)[1] for o in run.overrides},
            "status": "ok" if run.returncode == 0 else f"failed: {m.get('error', [''])[0]}",
            "train_minutes": round(summary.get("train_seconds", 0) / 60, 2) if summary else None,
            "peak_memory_gb": round(summary.get("peak_rss_mb", 0) / 1024, 2) if summary else None,
            "final_train_loss": last.get("train_loss"),
            "final_val_loss": last.get("val_loss"),
            "perplexity": tuned.get("perplexity"),
            "answer_accuracy": tuned.get("answer_accuracy"),
            "f1_micro": tuned.get("f1_micro"),
            "map@3": tuned.get("map@3"),
        })
    return rows
