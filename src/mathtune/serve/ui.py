"""The web UI's routes around the Gradio app (serve/webui): the key page, the plots of each model, and the
redirect from /. The app itself is mounted at /ui by ``mount_ui``."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from .access import SESSION_COOKIE, SESSION_SECONDS, client_of, key_matches, new_session
from .describe import PLOTS, plot_file


def mount_ui(app, app_state) -> None:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root():
        return RedirectResponse("/ui/")

    @router.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)  # no icon; browsers ask for one anyway

    @router.get("/ui/login")
    async def login_page():
        return HTMLResponse(_LOGIN.format(message=""), headers={"Cache-Control": "no-store"})

    @router.post("/ui/login")
    async def login(request: Request):
        """The web UI's key: checked, then kept in an HttpOnly, SameSite=Strict cookie for this server only."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        settings, client = app_state.settings, client_of(request.scope)
        wait = app_state.wrong_keys.retry_after(client) if settings.api_key else None
        if wait is not None:
            return HTMLResponse(_LOGIN.format(message=f'<p role="alert" class="error">Too many wrong keys from here; '
                                                      f'try again in {wait} seconds.</p>'), status_code=429,
                                headers={"Retry-After": str(wait)})
        if settings.api_key and not key_matches(key, settings.api_key):
            app_state.wrong_keys.failed(client)
            return HTMLResponse(_LOGIN.format(message='<p role="alert" class="error">That key is not right; ask the '
                                                      'person who runs this server for it.</p>'), status_code=401)
        response = RedirectResponse("/ui/", status_code=303)
        if settings.api_key:  # a signed session, never the key itself
            response.set_cookie(SESSION_COOKIE, new_session(settings.api_key), max_age=SESSION_SECONDS,
                                httponly=True, samesite="strict", path="/")
        return response

    @router.get("/v1/mathtune/models/{name}/plots/{file}")
    async def plot(name: str, file: str):
        model = app_state.models.get(name)
        if model is None or file not in PLOTS:
            raise HTTPException(status_code=404, detail=f"no plot {file} for a model named {name}")
        path = plot_file(model.describe()["folder"], file)
        if path is None:
            raise HTTPException(status_code=404, detail=f"{name} has no {file}")
        return FileResponse(path, media_type="image/png")

    app.include_router(router)
    from .webui import mount_gradio

    mount_gradio(app, app_state)


_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mathtune: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a}}
input{{width:100%;padding:.5rem;border:1px solid #595959;border-radius:4px;font-size:1rem;box-sizing:border-box}}
button{{margin-top:1rem;padding:.5rem 1rem;font-size:1rem;background:#1a56b0;color:#fff;border:0;border-radius:4px}}
.error{{color:#a40000}}</style></head>
<body><main><h1>mathtune</h1><p>This server needs its API key.</p>{message}
<form method="post" action="/ui/login"><label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>
"""
