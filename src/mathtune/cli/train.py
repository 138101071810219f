"""Verbs that train and score models: train, log, evaluate, predict, sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import MathtuneError
from .common import (
    SOLVE_HELP,
    app,
    console,
    handle_errors,
    metrics_table,
    out,
    per_class_table,
    progress_reporter,
    solve_overrides,
)


@app.command()
@handle_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/topic-lora.yaml.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.epochs=2 (repeatable).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Model folder to write (default runs/<recipe name>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model folder (kept until the new one is complete).")] = False,
    resume: Annotated[bool, typer.Option(help="Resume an interrupted run of the same recipe from its last checkpoint.")] = True,
) -> None:
    """Train a model from a recipe, evaluate it on the validation split, and log an MLflow run.

    Example: mathtune train recipes/topic-lora.yaml --set train.epochs=1 --output runs/topic-lora
    """
    from ..config import load_recipe
    from ..train.run import train_from_recipe

    parsed = load_recipe(recipe, set_ or [])
    output = output or Path("runs") / recipe.stem
    with progress_reporter() as reporter:
        result = train_from_recipe(parsed, output, overwrite=overwrite, resume=resume, reporter=reporter)
    out.print(metrics_table(result.metrics, f"validation metrics ({parsed.task}, {parsed.trainer})", parsed.task))
    out.print(per_class_table(result.metrics))
    if result.metrics.get("cross_validation"):
        out.print(metrics_table(result.metrics["cross_validation"], "cross-validated on the training split", parsed.task))
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
    from ..tasks import is_generative, task_class

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
    register_as: Annotated[str | None, typer.Option(help="Registered model name (default: the recipe's, else the task's).")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment (default: the recipe's, else mathtune-<task>).")] = None,
) -> None:
    """Log a finished model folder to MLflow as a new run and register it: after tracking failed, or was off.
    The store is MLFLOW_TRACKING_URI, else the recipe's tracking.uri, else sqlite:///mlflow.db.

    Example: mathtune log runs/misconception-tfidf --register-as math-misconceptions
    """
    from ..tracking import TrackingFailed, log_folder

    try:
        info = log_folder(model_dir, register_as, experiment)
    except TrackingFailed as exc:
        raise MathtuneError(f"tracking: {exc}; the model folder {model_dir} is unchanged apart from its manifest") from None
    _print_tracking(info, model_dir)


@app.command()
@handle_errors
def evaluate(
    model_dir: Annotated[str, typer.Argument(help="A model folder written by `mathtune train`; for a tutor also a pretrained model (bundled:qwen2.5-coder-1.5b, a .gguf file, a hub id) or an OpenAI-compatible engine (openai:http://HOST:PORT/v1).")],
    data: Annotated[Path, typer.Option("--data", help="Labelled CSV/JSONL/Parquet file.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write all metrics to this JSON file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the confusion matrix PNG here.")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column (default: the one the model was trained on).")] = None,
    label_column: Annotated[str, typer.Option(help="Label column (topics; misconceptions use Category and Misconception; tutors: the solution column).")] = "label",
    backend: Annotated[str, typer.Option(help="Tutors: transformers or llama.cpp (needs model.gguf).")] = "transformers",
    samples: Annotated[int | None, typer.Option(help="Tutors: answer only the first N problems.")] = None,
    compare_base: Annotated[bool, typer.Option("--compare-base", help="Tutors: also evaluate the base model, side by side.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Tutors: write the Markdown report here.")] = None,
    mode: Annotated[str | None, typer.Option(help="Tutors: cot, program, code or vote (default: a trained tutor's tutor.solve, else the model's own: a bundled model's measured best, else cot, as `serve` and `ask` use).")] = None,
    solve: Annotated[list[str] | None, typer.Option("--solve", help="Tutors, " + SOLVE_HELP)] = None,
) -> None:
    """Score a model on a labelled file. Classifiers: the task's metrics. Tutors: final-answer accuracy
    (math-verify), ROUGE, BLEU, perplexity, refusal rates.

    Example: mathtune evaluate runs/topic-tfidf --data val.csv --json metrics.json
    Example: mathtune evaluate runs/tutor-lora --data math-hendrycks/math500_test.jsonl --samples 50 --compare-base
    """
    from ..inference import evaluate_file
    from ..models.saved import read_manifest
    from ..models.solving.settings import overridden
    from ..tasks import is_generative, task_class

    overrides = solve_overrides(mode, solve)
    pretrained = model_dir.startswith(("bundled:", "openai:")) or model_dir.endswith(".gguf")
    if pretrained and not (Path(model_dir) / "mathtune.json").is_file():
        from ..models.generate import pretrained_solving
        from ..train.tutor_eval import evaluate_pretrained

        # the model's own default, as `serve` and `ask` use it (was cot here)
        solving = overridden(pretrained_solving(str(model_dir)), **overrides)
        with progress_reporter() as reporter:
            metrics = evaluate_pretrained(str(model_dir), data, "auto" if backend == "transformers" else backend,
                                          samples, solving, 512, text_column,
                                          None if label_column == "label" else label_column, json_out, reporter)
        out.print(metrics_table(metrics, f"{data} ({metrics['backend']}, {solving.mode})", "tutor"))
        return
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    task = manifest["task"]
    if is_generative(task_class(task)):
        from ..models.generate import saved_solving
        from ..models.solving.settings import runnable
        from ..train.tutor_eval import evaluate_tutor_file

        solving = overridden(runnable(saved_solving(model_dir, manifest), str(model_dir)), **overrides)
        with progress_reporter() as reporter:
            metrics = evaluate_tutor_file(model_dir, data, backend, samples, compare_base, text_column,
                                          None if label_column == "label" else label_column, json_out, report, reporter,
                                          solving)
        out.print(metrics_table({**metrics, **{f"base_{k}": v for k, v in metrics.get("base", {}).items()}},
                                 f"{data} ({metrics['backend']})", task))
        if report:
            out.print(f"report: [bold]{report}[/]")
        return
    with progress_reporter() as reporter:
        metrics = evaluate_file(model_dir, data, text_column, label_column, json_out, plot, reporter)
    out.print(metrics_table(metrics, f"{data}", task))
    out.print(per_class_table(metrics))
    for note in metrics.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")


@app.command()
@handle_errors
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `mathtune train`.")],
    data: Annotated[Path, typer.Option("--data", help="File to predict (e.g. the Kaggle test.csv).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission file to write.")],
    text_column: Annotated[str | None, typer.Option(help="Text column (default: the one the model was trained on).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Id column (default: id; row numbers when absent).")] = None,
) -> None:
    """Write predictions in the competition's submission format (id,label for topics; row_id,Category:Misconception
    with the top three labels for misconceptions).

    Example: mathtune predict runs/topic-lora --data math-topics/test.csv --output submission.csv
    """
    from ..inference import predict_file

    with progress_reporter() as reporter:
        rows, notes = predict_file(model_dir, data, output, text_column, id_column, reporter)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    out.print(f"wrote {rows} predictions to [bold]{output}[/]")




@app.command()
@handle_errors
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML to vary.")],
    grid: Annotated[list[str], typer.Option("--grid", help="key=v1,v2 (repeatable; every combination runs).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override applied to every run.")] = None,
    output_dir: Annotated[Path, typer.Option(help="Folder for the runs' model folders and sweep.json.")] = Path("runs/sweep"),
) -> None:
    """Hyperparameter experiments: each combination of the grid is trained as its own MLflow run; prints the
    comparison table (training time, peak memory, final train/validation loss, the task's metric).

    Example: mathtune sweep recipes/tutor-lora.yaml --grid train.learning_rate=1e-4,2e-4 --grid model.lora.r=16,32
    """
    from ..io import write_json
    from ..sweep import run_sweep, summary_rows

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
