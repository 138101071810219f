"""The app: assembles settings, models, monitoring and routers. Run it with `mathtune serve`."""

from __future__ import annotations

import time
from types import SimpleNamespace

from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import mathtune

from ..errors import ModelError
from .access import ApiKeyMiddleware, WrongKeys
from .batching import MicroBatcher
from .describe import public_description
from .guards import RequestGuard, error_body, install_error_handlers
from .models import Served, load_models, load_pretrained_tutor
from .monitoring import Metrics, MonitoringMiddleware
from .openai_errors import OpenAIErrors
from .routes import build_router
from .routes.openai import build_openai_router
from .routes.tutor import build_tutor_router
from .settings import ServeSettings
from .shutdown import EndCutAnswers, Stopping
from .ui import mount_ui


def create_app(models: dict[str, Served] | list[str], settings: ServeSettings | None = None,
               backend: str = "torch") -> FastAPI:
    settings = settings or ServeSettings()
    if isinstance(models, list):
        models = load_models(models, backend, settings)
    if settings.tutor:
        if "tutor" in models:
            raise ModelError(f"--tutor {settings.tutor}: a tutor model is already served ({models['tutor'].source})")
        models["tutor"] = load_pretrained_tutor(settings.tutor, settings)
    metrics = Metrics()
    batchers = {name: MicroBatcher(model, settings.batch_rows, settings.batch_wait_ms)  # type: ignore[arg-type]
                for name, model in models.items() if name != "tutor"} if settings.micro_batching else {}
    state = SimpleNamespace(settings=settings, models=models, metrics=metrics, batchers=batchers,
                            wrong_keys=WrongKeys(settings.wrong_keys_per_minute), stopping=Stopping(),
                            started=time.time())
    gate = getattr(models.get("tutor"), "gate", None)
    if gate is not None:
        metrics.watch_tutor_line(gate)
    for name, model in models.items():
        metrics.model_load.labels(model=name).set(model.load_seconds)
        metrics.model_ready.labels(model=name).set(1 if model.ready else 0)

    app = FastAPI(title="mathtune", version=mathtune.__version__,
                  description="Topic classification, misconception diagnosis, a step-by-step math tutor and product categories, "
                              "with Prometheus metrics and drift monitoring.")
    app.state.mathtune = state
    install_error_handlers(app)
    # outermost last: monitoring -> CORS (preflights carry no key) -> API key -> body guard -> routes
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(ApiKeyMiddleware, settings=settings, wrong_keys=state.wrong_keys)
    app.add_middleware(OpenAIErrors)  # the OpenAI routes' errors, whichever layer made them, in OpenAI's shape
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(MonitoringMiddleware, metrics=metrics)
    app.add_middleware(EndCutAnswers)  # outermost: a request the shutdown cancels still ends as JSON or an event
    app.include_router(build_router(state))
    app.include_router(build_tutor_router(state))
    app.include_router(build_openai_router(state))

    mount_ui(app, state)

    def close_models() -> None:
        for model in models.values():
            model.close()

    app.router.on_shutdown.append(close_models)

    @app.get("/livez", summary="Liveness: the process answers")
    async def livez() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: every model is loaded and answered its warm-up request (and a remote "
                                "engine answers)")
    async def readyz():
        return await readiness(models)

    def drift_reports() -> dict:
        reports = {name: m.drift.report() for name, m in models.items() if m.drift is not None}
        for name, report in reports.items():
            metrics.update_drift(name, report)
        return reports

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        await run_in_threadpool(drift_reports)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/drift", summary="Drift of recent inputs and predictions against the training reference (PSI, KS, JS)")
    async def drift() -> dict:
        return await run_in_threadpool(drift_reports)

    @app.get("/v1/mathtune/models", summary="The served models with mathtune's details: validation metrics, "
                                            "solving settings, time budget, sandbox, plots")
    async def list_models() -> dict:
        return {name: public_description(name, m, settings) for name, m in models.items()}

    return app


async def readiness(models: dict):
    """/readyz's answer: each model loaded and warmed up, and a tutor's remote engine reachable (with why not)."""
    states = {n: await run_in_threadpool(m.readiness) if hasattr(m, "readiness") else (m.ready, "")
              for n, m in models.items()}
    ready = bool(models) and all(ok for ok, _ in states.values())
    body = {"ready": ready, "models": {n: {"source": models[n].source, "ready": ok, **({"why": why} if why else {})}
                                      for n, (ok, why) in states.items()}}
    if not ready:
        why = "no model loaded" if not models else "; ".join(f"{n}: {w or 'still loading'}"
                                                              for n, (ok, w) in states.items() if not ok)
        return error_body(503, f"not ready: {why}", body)
    return body
