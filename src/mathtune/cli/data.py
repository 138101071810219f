"""Verbs for data and model files: split, augment, data, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import MathtuneError, problem_text
from .common import app, console, handle_errors, out, progress_reporter


@app.command()
@handle_errors
def split(
    file: Annotated[Path, typer.Argument(help="Labelled data file.")],
    val_size: Annotated[float, typer.Option(help="Share held out for validation.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    label_column: Annotated[str, typer.Option(help="Column to stratify on.")] = "label",
    group_column: Annotated[str | None, typer.Option(help="Hold out whole groups instead (e.g. QuestionId).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where to write <name>_train and <name>_val.")] = Path("."),
) -> None:
    """Stratified train/validation split; classes with a single row stay in train. With --group-column,
    whole groups go to validation (how a model does on unseen questions).

    Example: mathtune split math-topics/train.csv --val-size 0.2 --seed 0 --output-dir splits
    """
    from ..data.readers import read_table, require_columns, write_table
    from ..data.split import stratified_split
    from ..paths import resolve_data_path
    from ..train.run import grouped_split

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
    method: Annotated[list[str] | None, typer.Option(help="numbers and/or back_translation (repeatable).")] = None,
    target_count: Annotated[int | None, typer.Option(help="Bring every class below this many rows up to it.")] = None,
    target_ratio: Annotated[float, typer.Option(help="Without --target-count: up to this share of the largest class.")] = 0.5,
    max_per_example: Annotated[int, typer.Option(help="New rows per original and method, at most.")] = 3,
    forward_model: Annotated[str | None, typer.Option(help="Translation model to the pivot language (back_translation).")] = None,
    backward_model: Annotated[str | None, typer.Option(help="Translation model back (back_translation).")] = None,
    text_column: Annotated[str, typer.Option(help="Text column.")] = "Question",
    label_column: Annotated[str, typer.Option(help="Label column.")] = "label",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Add rows to rare classes: number substitution and back-translation, near duplicates removed.

    Example: mathtune augment train_split.csv --output train_augmented.csv --target-count 400
    """
    import pandas as pd
    from pydantic import ValidationError

    from ..config import AugmentConfig, BackTranslationConfig
    from ..data.augment import augment_rows
    from ..data.readers import read_table, write_table
    from ..paths import resolve_data_path
    from ..tasks import TopicTask

    try:
        cfg = AugmentConfig(methods=method or ["numbers"], target_count=target_count, target_ratio=target_ratio,
                            max_per_example=max_per_example, seed=seed,
                            back_translation=BackTranslationConfig(forward_model=forward_model, backward_model=backward_model))
    except ValidationError as exc:
        raise MathtuneError(f"augment options: {exc.errors()[0]['loc'][0]}: {problem_text(exc.errors()[0])}") from None
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
    text_column: Annotated[str | None, typer.Option(help="Text column (guessed when omitted).")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column (guessed when omitted).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Inspect a dataset: rows, columns, label counts, empty or duplicate rows, encoding problems.

    Example: mathtune data math-topics/train.csv
    """
    from ..data.inspect import inspect_file
    from ..paths import resolve_data_path

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
    gguf: Annotated[str | None, typer.Option("--gguf", help="Tutors: write model.gguf (f16 or q8_0) for the llama.cpp backend.")] = None,
) -> None:
    """Export a model for faster serving; checks top-1 parity with PyTorch on a fixed question set first.

    Example: mathtune export runs/topic-lora --onnx --int8 && mathtune serve --model runs/topic-lora --backend onnx
    Example: mathtune export runs/tutor-lora --gguf q8_0 && mathtune ask runs/tutor-lora "What is 7*8?" --backend llama.cpp
    """
    if gguf:
        from ..models.gguf_export import export_tutor_gguf

        with console.status(f"writing {gguf} GGUF"):
            path = export_tutor_gguf(model_dir, gguf)
        out.print(f"wrote [bold]{path}[/] ({path.stat().st_size / 1e6:.0f} MB)")
        return
    if not onnx:
        raise MathtuneError("choose a format: --onnx (classifiers) or --gguf f16|q8_0 (tutors)")
    from ..models.onnx import export_onnx

    with console.status("exporting to ONNX and checking parity"):
        info = export_onnx(model_dir, int8=int8)
    for name, file in info["files"].items():
        out.print(f"{name}: {model_dir / file} (top-1 parity with PyTorch: {info['parity_top1'][name]:.0%} "
                  f"of {info['parity_set_size']} questions)")
