"""The parts of a training pipeline that every task shares: the result type, reading a data reference, the
``OUTPUT.partial`` work folder, and the MLflow run around it (train/run.py for classifiers, train/tutor_run.py for
the tutor)."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import tracking
from ..config import Recipe, recipe_to_yaml
from ..data.demo import load_demo
from ..data.readers import read_table
from ..errors import MathtuneError
from ..io import write_json, write_text
from ..models.saved import MANIFEST
from ..paths import is_demo, resolve_data_path

log = logging.getLogger(__name__)


@dataclass
class Split:
    frame: pd.DataFrame
    texts: list[str]
    raw_labels: list[str]
    source: str


@dataclass
class TrainResult:
    output: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)
    tracking: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    samples_per_second: float | None = None
    resumed_from_step: int = 0
    notes: list[str] = field(default_factory=list)


def load_frame(ref: str, fmt: str = "auto", encoding: str = "utf-8") -> tuple[pd.DataFrame, str]:
    if is_demo(ref):
        return load_demo(ref), ref
    path = resolve_data_path(ref)
    return read_table(path, fmt, encoding), str(path)


def _prepare_work_dir(output: Path, recipe_yaml: str, overwrite: bool, resume: bool) -> Path:
    if output.exists() and not overwrite:
        raise MathtuneError(f"{output} already exists; pass --overwrite to replace it (it is kept until the new model is complete)")
    if output.exists() and not (output / MANIFEST).exists() and any(output.iterdir()):
        raise MathtuneError(f"{output} exists and is not a mathtune model folder; choose another --output")
    work = output.with_name(output.name + ".partial")
    if work.exists():
        previous = work / "recipe.yaml"
        if resume and previous.exists() and previous.read_text(encoding="utf-8") == recipe_yaml:
            log.info("resuming the interrupted run in %s", work)
            return work
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_text(work / "recipe.yaml", recipe_yaml)
    return work


def prepare_work(recipe: Recipe, output: Path, overwrite: bool, resume: bool, dist) -> tuple[Path, str | None]:
    """The partial folder (made by the main process; the others wait for it) and the MLflow run to continue."""
    work = output.with_name(output.name + ".partial")
    if dist.is_main:
        work = _prepare_work_dir(output, recipe_to_yaml(recipe), overwrite, resume)
    dist.barrier()
    run_file = work / "run.json"
    return work, (json.loads(run_file.read_text()).get("run_id") if run_file.exists() else None)


def start_tracker(recipe: Recipe, output: Path, work: Path, prior_run_id: str | None, dist):
    """The MLflow run (main process only), remembered in run.json so a resumed run continues it."""
    if not dist.is_main:
        return None
    tracker = tracking.start(recipe, run_name=output.name, default_experiment=f"mathtune-{recipe.task}",
                             run_id=prior_run_id)
    write_json(work / "run.json", tracker.info)
    return tracker


@contextlib.contextmanager
def tracked_run(recipe: Recipe, output: Path, work: Path, prior_run_id: str | None, dist):
    """The MLflow run around a training pipeline: a bad input ends it FAILED and removes the partial folder
    (unless it holds checkpoints to resume from); anything else (a kill, a crash) ends it KILLED and keeps the
    folder, so the same command resumes."""
    tracker = None
    try:
        tracker = start_tracker(recipe, output, work, prior_run_id, dist)
        yield tracker
    except MathtuneError:
        if tracker:
            tracker.end("FAILED")
        if dist.is_main and not (work / "checkpoints").exists():
            shutil.rmtree(work, ignore_errors=True)
        raise
    except BaseException:
        if tracker:
            tracker.end("KILLED")
        raise
