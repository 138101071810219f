"""The web UI: a Gradio app mounted in the API's own FastAPI app at /ui, one tab per task (Topics, Misconceptions,
Tutor, Products, Models). Every tab calls the same in-process services as the JSON API: no HTTP hop, one model in
memory, and the API's key, limits and metrics apply to it as to any route.

Offline by construction: analytics off, system fonts only (no web fonts), Gradio's front end and KaTeX are served
from the installed package.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

TITLE = "mathtune: math teaching tools"
TABS = [("topics", "Topics"), ("misconceptions", "Misconceptions"), ("tutor", "Tutor"), ("products", "Products"),
        ("models", "Models")]


def build_blocks(app_state):
    """The Gradio Blocks of the UI over ``app_state`` (settings, models, metrics)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from ..routes.common import Predictions
    from .classify import misconceptions_tab, products_tab, topics_tab
    from .models_tab import models_tab
    from .tutor import tutor_tab

    served = Predictions(app_state)
    ui = SimpleNamespace(settings=app_state.settings, models=app_state.models, on_load=[])
    with gr.Blocks(title=f"Topics · {TITLE}", analytics_enabled=False, fill_width=False) as blocks:
        gr.Markdown("# mathtune\nTools for math teachers: find a question's topic, diagnose a student's "
                    "misconception, solve problems step by step, sort products.", elem_id="page-header")
        with gr.Tabs(elem_id="tabs"):
            for key, title in TABS:
                with gr.Tab(title, id=key, elem_id=f"tab-{key}") as tab:
                    if key == "topics":
                        topics_tab(gr, ui, served)
                    elif key == "misconceptions":
                        misconceptions_tab(gr, ui, served)
                    elif key == "tutor":
                        found = tutor_tab(gr, ui)
                        if found:  # the conversation kept in the browser is drawn when the page or the tab opens
                            turns, chat = found
                            ui.on_load.append((_draw_history, [turns], [chat]))
                            tab.select(_draw_history, [turns], [chat])
                    elif key == "products":
                        products_tab(gr, ui, served)
                    else:
                        models_tab(gr, ui)
                # the document title names the app and the task of the open tab
                tab.select(None, None, None, js=f"() => {{ document.title = {title + ' · ' + TITLE!r}; }}")
        for fn, inputs, outputs in ui.on_load:
            blocks.load(fn, inputs, outputs)
    return blocks


def _draw_history(turns):
    from .turns import turns_from
    from .tutor import render

    return render(turns_from(turns))


def mount_gradio(app, app_state) -> None:
    import gradio as gr

    from .common import COPY_PLAIN_JS, CSS, theme

    blocks = build_blocks(app_state)
    # Gradio checks that a file sent to an event was uploaded by a client only once `launch()` has run; a mounted
    # app never launches, so without this a crafted call could name any file on the server (issue #46)
    blocks.has_launched = True
    blocks.queue(default_concurrency_limit=4)
    gr.mount_gradio_app(app, blocks, path="/ui", theme=theme(), css=CSS, ssr_mode=False, show_error=False, run_history=False,
                        footer_links=[], max_file_size=app_state.settings.max_upload_bytes, js=COPY_PLAIN_JS,
                        head='<meta name="description" content="mathtune: tools for math teachers">')
    # the app's own API answers errors as every other route does: {"error": ...}, not FastAPI's {"detail": ...}
    from gradio.route_utils import FnIndexInferError
    from starlette.routing import Mount

    from ..guards import error_body, install_error_handlers

    async def no_such_function(request, exc):
        return error_body(404, f"the app has no function {request.path_params.get('api_name', '')!r}")

    for route in app.routes:
        if isinstance(route, Mount) and route.path == "/ui":
            install_error_handlers(route.app, internal=False)
            route.app.add_exception_handler(FnIndexInferError, no_such_function)  # type: ignore[attr-defined]
