"""Experiment tracking. The only module that imports mlflow.

Default store: ``sqlite:///mlflow.db`` in the working folder (embedded, offline). ``MLFLOW_TRACKING_URI``
sends runs to a server instead; ``tracking: none`` in a recipe turns tracking off.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from .config import Recipe, TrackingConfig, flatten

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cfg: TrackingConfig | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the recipe's, else DEFAULT_URI; a relative sqlite path is made absolute against the
    working folder now. MLflow caches a store by its URI, so a relative one kept writing to the folder where the
    process first used it (a notebook that changes folder; a test worker's second test ran against the first's
    store)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (cfg.uri if cfg and cfg.uri else DEFAULT_URI)
    relative = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and relative and not relative.startswith("/") and ":memory:" not in relative:
        uri = "sqlite:///" + str(Path(relative).resolve())
    return uri


class NullTracker:
    run_id: str | None = None
    info: dict = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def log_model(self, model_dir: Path, registered_name: str | None) -> dict:
        return {}

    def end(self, status: str = "FINISHED") -> None:
        pass


_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")


def tracker_metric_name(name: str) -> str:
    """The one mapping from our metric names to names every tracker accepts (MLflow allows letters, digits and
    ``_ - . : / space``): ``map@3`` -> ``map_at_3``. metrics.json, the CLI and the API keep the original names."""
    return _METRIC_NAME.sub("_", name.replace("@", "_at_"))


class TrackingFailed(Exception):
    """Logging or registering failed; the trained model is complete and can be logged again with `mathtune log`."""


class MlflowTracker(NullTracker):
    def __init__(self, recipe: Recipe, run_name: str, default_experiment: str, run_id: str | None = None) -> None:
        import mlflow

        self._mlflow = mlflow
        cfg = recipe.tracking
        self.uri = tracking_uri(cfg)
        mlflow.set_tracking_uri(self.uri)
        experiment = cfg.experiment or default_experiment
        mlflow.set_experiment(experiment)
        # A resumed training run continues its MLflow run.
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
        self.run_id = run.info.run_id
        self.info = {"tracking_uri": self.uri, "experiment": experiment, "experiment_id": run.info.experiment_id,
                     "run_id": self.run_id, "run_name": run_name}
        if not run_id:
            params = {k: ("" if v is None else str(v)[:500]) for k, v in flatten(recipe).items()}
            mlflow.log_params(params)
        mlflow.set_tags({"mathtune.task": recipe.task, "mathtune.trainer": recipe.trainer})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {tracker_metric_name(k): float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
        self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_model(self, model_dir: Path, registered_name: str | None) -> dict:
        """Log the model folder as an MLflow pyfunc model that carries mathtune's code and names only the packages
        its kind needs (model_env.py), and register a new version."""
        from .model_env import code_path, requirements

        signature, example = model_signature(model_dir)
        info = self._mlflow.pyfunc.log_model(
            name="model",
            python_model=_make_pyfunc_instance(),
            artifacts={"model_dir": str(model_dir)},
            registered_model_name=registered_name,
            pip_requirements=requirements(model_dir),  # UnresolvableRequirement names a package before logging
            code_paths=[code_path()],
            signature=signature,
            input_example=example,
        )
        out = {"model_uri": info.model_uri}
        if registered_name:
            out["registered_name"] = registered_name
            out["registered_version"] = int(info.registered_model_version)
            out["registry_uri"] = f"models:/{registered_name}/{info.registered_model_version}"
        return out

    def end(self, status: str = "FINISHED") -> None:
        self._mlflow.end_run(status=status)


def model_signature(model_dir: Path):
    """The logged model's signature and input example: the task's input columns (strings) in; the label column
    first out, then the task's typed outputs and ``reason`` (models/outputs.py). Without a signature
    ``mlflow.pyfunc.spark_udf`` returns the first numeric column (a probability) instead of the label."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from .models.outputs import input_columns, input_example, output_columns

    inputs = Schema([ColSpec("string", name, required=False) for name in input_columns(model_dir)])
    outputs = Schema([ColSpec(kind, name, required=False) for name, kind in output_columns(model_dir)])
    return ModelSignature(inputs=inputs, outputs=outputs), input_example(model_dir)


def save_pyfunc(model_dir: Path, path: Path) -> str:
    """A mathtune model folder as a local MLflow pyfunc model (with its signature) at ``path``; its URI."""
    import mlflow.pyfunc

    from .model_env import code_path, requirements

    signature, example = model_signature(model_dir)
    mlflow.pyfunc.save_model(str(path), python_model=_make_pyfunc_instance(), artifacts={"model_dir": str(model_dir)},
                             pip_requirements=requirements(model_dir), code_paths=[code_path()],
                             signature=signature, input_example=example)
    return str(path)


def spark_udf(spark, model_uri: str, result_type: str, env_manager: str = "local"):
    """``mlflow.pyfunc.spark_udf`` for a pyfunc model URI: in the workers' own Python environment (``local``), or
    in one built from the model's own requirements (``uv``, ``virtualenv``: workers need no mathtune)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type, env_manager=env_manager)


def signature_of(model_uri: str):
    """The signature of a logged or saved pyfunc model (None when it has none)."""
    from mlflow.models import get_model_info

    return get_model_info(model_uri).signature


def _make_pyfunc_instance():
    import sys

    return sys.modules[__name__].MathtunePyfunc()


class SafeTracker(NullTracker):
    """Wraps a tracker so that a logging or registry failure after training never loses the model: the first
    failure is recorded (``error``), later calls are skipped, and the pipeline completes the model folder."""

    def __init__(self, inner: NullTracker) -> None:
        self.inner = inner
        self.error: str | None = None

    @property
    def run_id(self):
        return self.inner.run_id

    @property
    def info(self) -> dict:
        return {**self.inner.info, **({"error": self.error} if self.error else {})}

    def _call(self, what: str, fn, *args, default=None):
        if self.error:
            return default
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - any tracker failure: recorded, the model is still saved
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            self.error = f"{what} failed: {type(exc).__name__}: {first}"
            log.warning("tracking: %s", self.error, exc_info=True)
            return default

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._call("logging metrics", self.inner.log_metrics, metrics, step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._call(f"logging {Path(path).name}", self.inner.log_artifact, path, folder)

    def log_model(self, model_dir: Path, registered_name: str | None) -> dict:
        return self._call("logging and registering the model", self.inner.log_model, model_dir, registered_name,
                          default={})

    def end(self, status: str = "FINISHED") -> None:
        # always tried, even after a failure: an active run left behind would block the next one in this process
        try:
            self.inner.end("FAILED" if self.error and status == "FINISHED" else status)
        except Exception as exc:  # noqa: BLE001
            self.error = self.error or f"ending the run failed: {type(exc).__name__}: {str(exc)[:300]}"
            log.warning("tracking: could not end the run", exc_info=True)


def start(recipe: Recipe, run_name: str, default_experiment: str, run_id: str | None = None) -> NullTracker:
    if recipe.tracking.backend == "none":
        return NullTracker()
    try:
        tracker = MlflowTracker(recipe, run_name, default_experiment, run_id)
    except Exception as exc:  # noqa: BLE001 - before any training: stop with a clear message
        from .errors import MathtuneError

        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise MathtuneError(f"tracking: cannot start an MLflow run at {tracking_uri(recipe.tracking)} ({first}); "
                            f"fix MLFLOW_TRACKING_URI / tracking.uri, or train without tracking: --set tracking=none") from None
    return SafeTracker(tracker)


def _make_pyfunc_class() -> type:
    import mlflow.pyfunc

    class MathtunePyfunc(mlflow.pyfunc.PythonModel):
        """MLflow's view of a mathtune model folder: DataFrame of texts in, labels and probabilities out."""

        def load_context(self, context):
            from .models.saved import load_predictor, read_manifest

            folder = context.artifacts["model_dir"]
            self.generator = self.predictor = None
            if read_manifest(folder)["task"] == "tutor":
                from .models.generate import load_tutor

                self.generator = load_tutor(folder)
            else:
                self.predictor = load_predictor(folder)

        def predict(self, context, model_input, params=None):
            """Rows in (the signature's input columns, or a list of texts), the outputs of models/outputs.py out:
            the label column first, ``reason`` for a row that could not be scored."""
            import pandas as pd

            from .models.outputs import labelled_frame, tutor_frame

            if self.generator is not None:  # tutor: questions in, answers out, a few problems at a time
                if isinstance(model_input, pd.DataFrame):
                    column = next((c for c in ("question", "problem", "Question") if c in model_input.columns),
                                  model_input.columns[0])
                    questions = model_input[column].tolist()
                else:
                    questions = list(model_input)
                return tutor_frame(self.generator, questions)
            column = self.predictor.manifest.get("text_column", "Question")
            if isinstance(model_input, pd.DataFrame):
                frame = model_input
            else:
                frame = pd.DataFrame({column: [str(t) for t in model_input]})
            if self.predictor.task == "topic" and column not in frame.columns:
                frame = frame.rename(columns={frame.columns[0]: column})
            return labelled_frame(self.predictor, frame)

    MathtunePyfunc.__module__ = __name__
    MathtunePyfunc.__qualname__ = "MathtunePyfunc"
    return MathtunePyfunc


def __getattr__(name: str):
    # Built on first use so that importing this module does not import mlflow (slow) when tracking is off;
    # registered as a module attribute so MLflow pickles it by reference.
    if name == "MathtunePyfunc":
        cls = _make_pyfunc_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def load_registered(uri: str) -> Path:
    """Download a registered model (``models:/name/version``) and return its mathtune model folder."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    candidates = [p.parent for p in local.rglob("mathtune.json")]
    if not candidates:
        from .errors import ModelError

        raise ModelError(f"{uri}: the MLflow model has no mathtune model folder")
    return candidates[0]


def log_folder(folder: str | Path, register_as: str | None = None, experiment: str | None = None) -> dict:
    """Log a finished model folder as a new MLflow run (its recipe as parameters, its metrics, reports and the
    model, registered under ``register_as`` or the recipe's name): the way back after tracking failed or was off.
    The folder's manifest is updated with the new run."""
    from .config import load_recipe
    from .errors import ModelError
    from .io import write_json

    folder = Path(folder)
    manifest_path = folder / "mathtune.json"
    if not manifest_path.is_file() or not (folder / "recipe.yaml").is_file():
        raise ModelError(f"{folder}: not a finished mathtune model folder (needs mathtune.json and recipe.yaml)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    recipe = load_recipe(folder / "recipe.yaml")
    if recipe.tracking.backend == "none":
        recipe = recipe.model_copy(update={"tracking": recipe.tracking.model_copy(update={"backend": "mlflow"})})
    if experiment:
        recipe.tracking.experiment = experiment
    tracker = start(recipe, run_name=folder.name, default_experiment=f"mathtune-{manifest['task']}")
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        saved = json.loads(metrics_file.read_text(encoding="utf-8"))
        for entry in saved.get("history", []):
            tracker.log_metrics({k: v for k, v in entry.items() if k not in ("epoch", "step")}, step=entry.get("epoch"))
        scalars = {**(saved.get("validation") or {}), **(saved.get("summary") or {}), **(saved.get("fine_tuned") or {})}
        tracker.log_metrics({k: v for k, v in scalars.items() if isinstance(v, (int, float)) and k != "n"})
    for path in sorted(folder.iterdir()):
        if path.suffix in (".png", ".csv", ".md") or path.name in ("metrics.json", "recipe.yaml"):
            tracker.log_artifact(path, "reports")
    from .tasks import task_class

    default_name = task_class(manifest["task"]).registered_name
    registered = tracker.log_model(folder, register_as or recipe.tracking.register_as or default_name)
    tracker.end("FINISHED")
    manifest["tracking"] = {**tracker.info, **registered}
    write_json(manifest_path, manifest)
    if getattr(tracker, "error", None):
        raise TrackingFailed(tracker.error)
    return manifest["tracking"]
