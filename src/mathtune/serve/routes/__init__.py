"""Prediction routes: one module per task (topic, misconception, products; the tutor's is routes/tutor.py), a generic
route for any other registered task a served model has, and the MLflow / Azure ML scoring bodies (scoring.py)."""

from __future__ import annotations

from fastapi import APIRouter

from . import misconception, products, scoring, topic
from .common import Predictions
from .generic import add_generic_route

# Tasks with routes of their own (the tutor's are in routes/tutor.py); a served model of any other registered task
# gets the generic route: POST /v1/<task.route> with {"rows": [{column: value}, ...]}.
TASK_ROUTERS = {"topic": topic.build, "misconception": misconception.build, "products": products.build}
DEDICATED = frozenset({*TASK_ROUTERS, "tutor"})


def build_router(app_state) -> APIRouter:
    router = APIRouter()
    served = Predictions(app_state)
    for build in TASK_ROUTERS.values():
        router.include_router(build(served, app_state.settings))
    router.include_router(scoring.build(served, app_state.settings))
    for name, model in app_state.models.items():
        if name not in DEDICATED and not model.generates:
            add_generic_route(router, model, served.predict, app_state.settings)
    return router
