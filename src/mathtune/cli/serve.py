"""Verbs that serve and ask: serve, ask."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MathtuneError
from .common import SOLVE_HELP, app, console, handle_errors, out, solve_overrides


def _is_tutor_folder(source: str) -> bool:
    manifest = Path(source) / "mathtune.json"
    try:
        return manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("task") == "tutor"
    except (OSError, ValueError):
        return False  # the server's own loading reports what is wrong with it


@app.command()
@handle_errors
def serve(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model folder or MLflow URI (models:/math-topics/3); repeat for more tasks.")] = None,
    tutor: Annotated[str | None, typer.Option(help="A pretrained model to serve as the tutor without training: bundled:qwen2.5-coder-1.5b, a .gguf file, a hub id.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    backend: Annotated[str, typer.Option(help="torch, onnx or onnx-int8 (encoder classifiers exported with `mathtune export --onnx`).")] = "torch",
    tutor_backend: Annotated[str, typer.Option(help="Tutor generation: auto, transformers or llama.cpp.")] = "auto",
    index: Annotated[str | None, typer.Option(help="Retrieval index for the tutor (default: its recipe's).")] = None,
    default_tutor: Annotated[bool, typer.Option(help="With no tutor given, serve the bundled Qwen2.5-Coder-1.5B tutor when it is installed (`make models`).")] = True,
) -> None:
    """Serve models over REST: /v1/topics, /v1/misconceptions, /v1/tutor, /v1/products, /invocations, /livez, /readyz, /metrics.
    Limits and the API key come from MATHTUNE_* environment variables (MATHTUNE_API_KEY, MATHTUNE_MAX_BATCH, ...).

    Example: mathtune serve --model runs/topic-lora --model runs/misconception-tfidf --port 8000
    """
    import uvicorn

    from ..serve.app import create_app

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
    from ..serve.settings import ServeSettings

    if not tutor and default_tutor and not any(_is_tutor_folder(m) for m in model or []):
        from ..models.assemble import QWEN_CODER_15B, available

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
    # and a request's headers must come within MATHTUNE_HEADER_TIMEOUT_S, a client holding at most
    # MATHTUNE_MAX_CONNECTIONS_PER_CLIENT connections (serve/connections.py), so slow headers cannot take every place
    from ..serve.connections import guarded_protocol
    from ..serve.shutdown import GracefulServer

    config = uvicorn.Config(application, host=host, port=port, log_level="warning",
                            timeout_keep_alive=settings.timeout_keep_alive, limit_concurrency=settings.limit_concurrency,
                            timeout_graceful_shutdown=settings.shutdown_grace_s,
                            http=guarded_protocol(settings.header_timeout_s, settings.max_connections_per_client))
    GracefulServer(config, application.state.mathtune.stopping).run()



@app.command()
@handle_errors
def ask(
    model_dir: Annotated[str, typer.Argument(help="A tutor folder, or a pretrained model: bundled:qwen2.5-coder-1.5b, bundled:smollm2, a .gguf file, a folder, a hub id.")],
    question: Annotated[str, typer.Argument(help="The problem to solve.")],
    backend: Annotated[str, typer.Option(help="auto (llama.cpp for GGUF models when installed), transformers or llama.cpp.")] = "auto",
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation budget (default: the tutor's own, as `serve` uses; 384 for a pretrained model).")] = None,
    index: Annotated[Path | None, typer.Option(help="Retrieval index folder: the top-k chunks go into the prompt.")] = None,
    k: Annotated[int, typer.Option(help="Chunks to retrieve.")] = 4,
    retrieval_style: Annotated[str, typer.Option(help="examples: whole worked examples become few-shot turns; passages: every chunk goes before the problem as context.")] = "examples",
    mode: Annotated[str | None, typer.Option(help="cot (steps, streamed), program (a Python program run in a sandbox), code (the program alone, its steps in comments) or vote; default: a trained tutor's tutor.solve, else the model's own (a bundled model's measured best, else cot), as `serve` uses.")] = None,
    solve: Annotated[list[str] | None, typer.Option("--solve", help="" + SOLVE_HELP)] = None,
    scope: Annotated[bool, typer.Option(help="A question that is not math gets the server's short refusal without asking the model (tasks/scope.py), as `mathtune serve` does; --no-scope asks the model anyway.")] = True,
) -> None:
    """Ask a tutor a question. cot streams the steps as they are made; program and vote print the solution, the
    final answer and how it was obtained.

    Example: mathtune ask bundled:qwen2.5-coder-1.5b "A pen costs $3. How much do 4 pens cost?" --mode program
    """
    import asyncio

    from ..models.generate import load_tutor
    from ..rag.retrieve import STYLES
    from ..serve.settings import ServeSettings
    from ..serve.tutor_service import TutorService

    overrides = solve_overrides(mode, solve)
    settings = ServeSettings(tutor_scope=scope, **({"tutor_max_new_tokens": max_new_tokens} if max_new_tokens else {}))
    if TutorService(None, settings).out_of_scope(question):  # the server's rule, before any model is loaded
        from ..tasks.scope import REFUSAL

        out.print(REFUSAL, highlight=False, soft_wrap=True)
        out.print("[bold]final answer:[/] (none) (scope: not a math question; --no-scope asks the model anyway)")
        return
    if retrieval_style not in STYLES:
        raise MathtuneError(f"--retrieval-style {retrieval_style!r}: choose {' or '.join(STYLES)}")
    generator = load_tutor(model_dir, backend)
    tutor = TutorService(local_tutor(model_dir, generator, index, k, retrieval_style), settings)
    asyncio.run(_ask(tutor, question, overrides, max_new_tokens))


def local_tutor(model_dir: str, generator, index: Path | None, k: int, style: str):
    """A tutor on this machine as the server holds one (serve/models.py ServedTutor), for the tutor service."""
    from ..models.saved import MANIFEST, read_manifest
    from ..serve.models import ServedTutor

    folder = Path(model_dir)
    manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else {"task": "tutor", "max_new_tokens": 384}
    retriever = None
    if index:
        from ..rag.retrieve import Retriever

        retriever = Retriever.open(index)
    return ServedTutor(str(model_dir), folder, manifest, generator, 0.0, retriever, k, style, ready=True)


async def _ask(tutor, question: str, overrides: dict, max_new_tokens: int | None) -> None:
    """The tutor service's answer in the terminal: cot streamed as it is written, other modes when done."""
    from ..models.solving.values import Piece, Progress
    from ..models.solving.vote import stopped_because
    from ..serve.tutor_service import TutorAsk

    answering = await tutor.begin(TutorAsk(question, overrides=overrides, max_new_tokens=max_new_tokens,
                                           stream=True))
    streamed = answering.streamed and answering.solving.mode == "cot"
    status = console.status(f"solving ({answering.solving.mode})") if not streamed else None
    if status is not None:
        status.start()
    try:
        async for event in answering.events():
            if isinstance(event, Piece):
                if streamed:
                    out.print(event.text, end="", highlight=False, soft_wrap=True)
                continue
            if isinstance(event, Progress) and status is not None:  # a vote: answers in so far
                found = ", ".join(f"{a} ({n})" for a, n in event.answers[:4])
                status.update(f"solving ({answering.solving.mode}): {event.drawn} of up to {event.k} answers"
                              + (f": {found}" if found else ""))
                continue
            solution = event.solution
    finally:
        if status is not None:
            status.stop()
    out.print() if streamed else out.print(solution.answer, highlight=False, soft_wrap=True)
    how = str(solution.method) \
        + (f", program {'ran' if solution.program_ok else 'failed'}" if solution.program_ok is not None else "") \
        + (f", {solution.confidence:.0%} of {solution.samples} samples agree" if solution.confidence is not None else "") \
        + (f" (stopped after {solution.samples} of {solution.k}: {stopped_because(solution)})"
           if solution.samples < solution.k else "") + (", not sure: check it" if solution.unsure else "")
    out.print(f"[bold]final answer:[/] {solution.final_answer or '(none)'} ({how})")
    for hit in answering.sources:
        console.print(f"[dim]source: {hit.source} (score {hit.score:.3f})[/]")
