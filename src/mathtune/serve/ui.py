"""The web UI: one small HTML/JS app served by the API itself (no CDN, no build step; KaTeX is vendored in
static/vendor). Pages: Topics, Misconceptions, Tutor, Models. It calls the same /v1 routes as any client.

Why not Gradio: it would add a large dependency tree to the server, a second app with its own routing, and it
would bypass the API's limits, auth and metrics; the four pages here are ~400 lines of plain JS.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "ui" / "static"
PLOTS = ("confusion_matrix.png", "training_curve.png", "feature_importance.png", "cv_confusion_matrix.png")


def mount_ui(app, app_state) -> None:
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root():
        return RedirectResponse("/ui/")

    @router.get("/ui")
    @router.get("/ui/")
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @router.get("/v1/models/{name}/plots/{file}")
    async def plot(name: str, file: str):
        model = app_state.models.get(name)
        if model is None or file not in PLOTS:
            raise HTTPException(status_code=404, detail=f"no plot {file} for a model named {name}")
        path = Path(model.describe()["folder"]) / file
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"{name} has no {file}")
        return FileResponse(path, media_type="image/png")

    app.include_router(router)
