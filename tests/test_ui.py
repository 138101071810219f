"""The web UI in a real browser: Debian's chromium driven by playwright, against the app on loopback.

Each page loads, a submission shows its result, the tutor's retry/undo/clear work, an API error appears as a
message, and a screenshot of every page is saved under test-artifacts/ui/ (or $MATHTUNE_ARTIFACTS).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings

from test_serve import model_dirs  # noqa: F401  (module fixtures: trained topic, misconception, products models)
from test_serve_tutor import tutor_dir  # noqa: F401

CHROMIUM = os.environ.get("MATHTUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (apt-get install chromium)")
ARTIFACTS = Path(os.environ.get("MATHTUNE_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")) / "ui"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dirs, tutor_dir):  # noqa: F811
    import uvicorn

    app = create_app(model_dirs + [tutor_dir], ServeSettings(max_text_chars=300, tutor_max_new_tokens=6))
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    yield page
    context.close()
    assert not errors, errors  # no JavaScript errors, no asset that failed to load (nothing from a CDN)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_topics_page_classifies_and_downloads(server, page):
    page.goto(f"{server}/ui/#topics")
    page.fill("#topics-input", "Find the remainder when 7^5 is divided by 3.\nSolve for x: 2x + 1 = 9.")
    page.click("#topics-submit")
    page.wait_for_selector("#topics-table tbody tr:nth-child(2)")
    assert page.locator("#topics-table tbody tr").count() == 2
    assert page.locator(".bar").first.get_attribute("style").startswith("width:")
    with page.expect_download() as info:
        page.click("#topics-download")
    text = Path(info.value.path()).read_text()
    assert text.startswith("question,label,topic,probability") and "7^5" in text
    shot(page, "topics")


def test_topics_csv_upload_and_api_error(server, page, tmp_path):
    csv = tmp_path / "q.csv"
    csv.write_text('id,Question\n1,"Factor x^2 + 5x + 6, please."\n2,How many divisors does 36 have?\n')
    page.goto(f"{server}/ui/#topics")
    page.set_input_files("#topics-file", str(csv))
    page.click("#topics-submit")
    page.wait_for_selector("#topics-table tbody tr:nth-child(2)")
    assert "Factor x^2 + 5x + 6, please." in page.inner_text("#topics-table")
    page.set_input_files("#topics-file", [])
    page.fill("#topics-input", "x" * 400)  # over the server's 300-character limit
    page.click("#topics-submit")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert "The server said (422)" in message and "over the limit of 300" in message and "Traceback" not in message
    shot(page, "topics-error")


def test_misconceptions_page(server, page):
    page.goto(f"{server}/ui/#misconceptions")
    page.click("#mis-submit")
    page.wait_for_selector("#mis-results li")
    items = page.locator("#mis-results li strong")
    assert items.count() == 3 and ":" in items.first.inner_text()
    assert page.locator("#mis-results .desc").first.inner_text().strip()
    shot(page, "misconceptions")


def test_tutor_chat_retry_undo_clear(server, page):
    page.goto(f"{server}/ui/#tutor")
    assert page.locator("#tutor-examples button").count() >= 3
    page.click("#tutor-examples button >> nth=0")
    page.click("#tutor-send")
    page.wait_for_selector(".msg.assistant ol.steps, .msg.assistant .answer:not(:text('…'))")
    page.wait_for_function("document.querySelector('#tutor-send').disabled === false")
    assert page.locator(".msg.user").count() == 1
    page.click("#tutor-retry")
    page.wait_for_function("document.querySelector('#tutor-send').disabled === false")
    assert page.locator(".msg.user").count() == 1 and page.locator(".msg.assistant").count() == 1
    page.fill("#tutor-input", "what is 2 plus 2?")
    page.press("#tutor-input", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.user').length === 2 && !document.querySelector('#tutor-send').disabled")
    assert page.locator(".sources").count() >= 1  # the retrieved sources under each answer
    shot(page, "tutor")
    page.click("#tutor-undo")
    assert page.locator(".msg.user").count() == 1
    page.click("#tutor-clear")
    assert page.locator(".msg").count() == 0


def test_models_page_metrics_plots_and_drift(server, page):
    page.goto(f"{server}/ui/#models")
    page.wait_for_selector(".card.model[data-model='topic'] img")
    assert page.locator(".card.model").count() == 4
    page.wait_for_selector(".card.drift[data-model='topic'] svg")
    img_ok = page.evaluate("Array.from(document.querySelectorAll('.card.model img')).every(i => i.complete && i.naturalWidth > 0)")
    assert img_ok
    shot(page, "models")
