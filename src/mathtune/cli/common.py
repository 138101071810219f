"""What every verb of the command line shares: the app, the consoles, error handling, progress and tables."""

from __future__ import annotations

import errno
import functools
import logging
import os
from pathlib import Path
from typing import Annotated

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

from ..errors import MathtuneError

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


def metrics_table(metrics: dict, title: str, task: str | None = None) -> Table:
    """Every scalar metric, the task's own order first (its primary metric on top), then the rest by name."""
    from ..tasks import TASKS

    order = list(getattr(TASKS.get(task), "metric_order", ()))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in [k for k in order if k in scalars] + sorted(k for k in scalars if k not in order):
        value = scalars[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def per_class_table(metrics: dict) -> Table | str:
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


def plain_metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


SOLVE_HELP = ("A solving setting on top of the model's own, KEY=VALUE, repeatable: mode, samples, vote_over, tiebreak, "
              "temperature, then_over, agree_first, first_round, time_budget, budget_speed (as a recipe's "
              "tutor.solve and the API's /v1/tutor name them; docs/tasks.md says what each does). Example: --solve "
              "mode=vote --solve samples=7")


def solve_overrides(mode: str | None, assignments: list[str] | None) -> dict:
    """The solving settings given on the command line: ``--mode`` and each ``--solve KEY=VALUE``, checked with a
    message naming the option (MathtuneError)."""
    from ..models.solving.settings import parse_assignments

    given = parse_assignments([*(assignments or []), *([f"mode={mode}"] if mode is not None else [])],
                              "--solve")
    if mode is not None and "mode" in given and given["mode"] != mode:
        given["mode"] = mode
    return given
