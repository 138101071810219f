"""The Gradio web UI in a real browser: Debian's chromium driven by playwright, against the app on loopback, at
desktop (1280x800) and phone (390x844) widths.

Every tab: its flow end to end, no horizontal overflow, a title that names the task, an axe-core scan with no
serious or critical violation, and no request that leaves the machine (all non-local requests are blocked and
recorded). Errors show beside their input, the input is kept and the old result cleared. Screenshots of every tab
go to test-artifacts/ui/ (or $MATHTUNE_ARTIFACTS).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings

CHROMIUM = os.environ.get("MATHTUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,  # a browser, a served app and its models: minutes, not seconds
              pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium: run `make browser` as root (or apt-get install chromium)")]
ARTIFACTS = Path(os.environ.get("MATHTUNE_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")) / "ui"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
TABS = ("Topics", "Misconceptions", "Tutor", "Products", "Models")
# axe rules that fail inside Gradio's own markup and that its Python API cannot change, with the upstream issue
GRADIO_AXE_EXCEPTIONS: dict[str, str] = {}


APPS: dict = {}  # each served app by its URL: a test may put another generator behind its tutor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dirs, tutor_dir):  # noqa: F811
    import uvicorn

    app = create_app(model_dirs + [tutor_dir], ServeSettings(max_text_chars=300, tutor_max_new_tokens=6,
                                                             drift_min_requests=5))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    APPS[url] = app
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _open(browser, server, size: str):
    width, height = SIZES[size]
    context = browser.new_context(accept_downloads=True, viewport={"width": width, "height": height})
    outside: list[str] = []

    def block(route):  # offline: anything not on this machine is refused, and noted
        outside.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(("http://127.0.0.1", "data:", "blob:")), block)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/ui/")
    page.wait_for_selector("#tabs")
    return context, page, outside, errors


@pytest.fixture(params=list(SIZES))
def ui(request, browser, server):
    context, page, outside, errors = _open(browser, server, request.param)
    page.size = request.param
    yield page
    context.close()
    assert not errors, errors  # no JavaScript errors
    assert not outside, f"requests that left the machine: {outside}"


def open_tab(page, name: str, attempts: int = 4) -> None:
    """Open a tab and wait until the page says it is open (its title names the tab).

    Right after a load Gradio is still measuring which tabs fit; on a phone it then folds the
    last ones into a "More tabs" menu, so a click that lands mid-measure is retried."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        tab = page.get_by_role("tab", name=name)
        try:
            if tab.count() and tab.first.is_visible():
                tab.first.click(timeout=5000)
            else:  # on a phone Gradio folds the last tabs into a "More tabs" menu
                page.get_by_label("More tabs").click(timeout=5000)
                page.locator(".overflow-dropdown button", has_text=name).click(timeout=5000)
            page.wait_for_function("n => document.title.startsWith(n + ' ·')", arg=name, timeout=5000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")  # close a menu left open, then look again
            page.wait_for_timeout(500)
            continue
        page.wait_for_timeout(300)
        return
    raise AssertionError(f"tab {name!r} did not open after {attempts} tries")


def box(elem_id: str) -> str:
    """The text field of a Gradio Textbox (a textarea or an input)."""
    return f"#{elem_id} textarea, #{elem_id} input"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{page.size}.png"), full_page=True)


def no_overflow(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), \
        f"horizontal scrolling at {page.viewport_size['width']} px"


def test_every_tab_fits_is_titled_and_passes_axe(ui):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    for name in TABS:
        open_tab(ui, name)
        assert ui.title().startswith(f"{name} · mathtune")
        no_overflow(ui)
        results = axe.run(ui)
        serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")
                   and v["id"] not in GRADIO_AXE_EXCEPTIONS]
        assert not serious, [(v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in serious]
        shot(ui, name.lower())


def test_topics_one_question_every_class_and_download(ui):
    ui.fill(box("topics-input"), "Find the remainder when 7^5 is divided by 3.\nSolve for x: 2x + 1 = 9.")
    ui.click("#topics-submit")
    ui.wait_for_selector("#topics-table", state="visible")
    label_text = ui.inner_text("#topics-label")
    assert label_text.count("%") >= 3  # every topic with its probability, not only the top one
    # #48 item 10: on a phone the results started below the fold; they are brought into view
    ui.wait_for_function("document.getElementById('topics-label').getBoundingClientRect().top < window.innerHeight - 60")
    ui.wait_for_function("document.querySelector('#topics-table').innerText.includes('2x + 1 = 9')")
    assert "7^5" in ui.inner_text("#topics-table")
    with ui.expect_download() as info:
        ui.click("#topics-download")
    text = Path(info.value.path()).read_text()
    assert text.startswith("Question,topic,probability") and "7^5" in text
    assert "%" in ui.inner_text("#topics-table")  # the table says how likely as the chart does: a percentage
    assert not ui.is_visible("#topics-unsure")  # questions like those it learned from: no doubt said
    no_overflow(ui)


@pytest.mark.parametrize("ui", ["desktop"], indirect=True)  # the same at either size
def test_topics_a_question_unlike_its_training_is_said_to_be_a_guess(ui):
    """#48 item 8: a money word problem was labelled Combinatorics at 97%: the page sounded sure out of its depth."""
    ui.fill(box("topics-input"), "A pen costs $2 and a notebook costs $5. How much do 3 pens and 2 notebooks cost "
                                 "together at the shop?\nSolve for x: 2x + 1 = 9.")
    ui.click("#topics-submit")
    ui.wait_for_selector("#topics-unsure", state="visible")
    assert "1 of the 2 questions is unlike the questions this model learned from" in ui.inner_text("#topics-unsure")
    assert "a guess" in ui.inner_text("#topics-label")  # the chart of the first question says so too
    ui.wait_for_function("document.querySelector('#topics-table')?.innerText.includes('not sure')")
    assert ui.inner_text("#topics-table").count("%") == 1  # only the familiar question has a figure
    with ui.expect_download() as info:
        ui.click("#topics-download")
    assert "learned from" in Path(info.value.path()).read_text()  # the file says which are guesses


def test_topics_csv_and_an_error_beside_the_input(ui, tmp_path):
    csv = tmp_path / "q.csv"
    csv.write_text('id,Question\n1,"Factor x^2 + 5x + 6, please."\n2,How many divisors does 36 have?\n')
    ui.set_input_files("#topics-file input[type=file]", str(csv))
    ui.wait_for_timeout(500)
    ui.fill(box("topics-input"), "What is the probability of two heads in two coin tosses?")
    ui.click("#topics-submit")
    ui.wait_for_function("document.querySelector('#topics-table')?.innerText.includes('How many divisors')")
    assert "two heads" in ui.inner_text("#topics-table")  # typed questions and the file's, together
    with ui.expect_download() as info:
        ui.click("#topics-download")
    downloaded = Path(info.value.path()).read_text()
    assert downloaded.startswith("Question,id,topic,probability") and "\n,1," not in downloaded  # ids kept
    ui.click("#topics-file button[aria-label='Clear']")
    ui.fill(box("topics-input"), "")
    long = "x" * 400  # over the server's 300-character limit
    ui.fill(box("topics-input"), long)
    ui.click("#topics-submit")
    ui.wait_for_selector("#topics-error .error-box")
    message = ui.inner_text("#topics-error")
    assert "Line 1 has 400 characters; the limit is 300" in message and "Traceback" not in message
    assert ui.input_value(box("topics-input")) == long  # the input is kept
    assert not ui.is_visible("#topics-table")  # the old result is gone
    error_box = ui.locator("#topics-error").bounding_box()
    button = ui.locator("#topics-submit").bounding_box()
    assert abs(error_box["y"] - (button["y"] + button["height"])) < 80  # right under the button, not a far banner
    shot(ui, "topics-error")


def test_misconceptions_free_text_verdict_first(ui):
    open_tab(ui, "Misconceptions")
    ui.fill(box("mis-question"), "What is 1/2 + 1/4?")
    ui.fill(box("mis-answer"), "2/6")
    ui.fill(box("mis-explanation"), "I added the tops and added the bottoms.")
    ui.click("#mis-submit")
    ui.wait_for_selector("#mis-result li")
    text = ui.inner_text("#mis-result")
    assert text.startswith("The explanation")  # the verdict first
    verdict = "correct" if "is correct" in text else "misconception" if "misconception" in text else "neither"
    for line in ui.locator("#mis-result li").all_inner_texts():  # every label listed agrees with the verdict
        assert ("Correct" in line.split(":")[0]) == (verdict == "correct"), (verdict, line)
    # a dataset question id the model never learned from: said, as the API's note says it (it was dropped here)
    ui.fill(box("mis-qid"), "99999")
    ui.click("#mis-submit")
    ui.wait_for_function("document.querySelector('#mis-result')?.innerText.includes('Question id 99999 is not one')")
    ui.fill(box("mis-qid"), "")
    ui.fill(box("mis-explanation"), "")
    ui.click("#mis-submit")
    ui.wait_for_selector("#mis-error .error-box")
    assert "explanation" in ui.inner_text("#mis-error") and ui.inner_text("#mis-result").strip() == ""
    shot(ui, "misconceptions-result")


def test_misconceptions_a_class_set_from_a_csv(ui, tmp_path):
    """#48 item 7: a class set of answers is a CSV; the results keep every column."""
    open_tab(ui, "Misconceptions")
    answers = tmp_path / "class.csv"
    answers.write_text("student,QuestionText,MC_Answer,StudentExplanation\nAda,What is 1/2 + 1/4?,2/6,"
                       "I added the tops and the bottoms\nBo,What is 1/2 + 1/4?,3/4,A half is two quarters\n")
    ui.set_input_files("#mis-file input[type=file]", str(answers))
    ui.wait_for_timeout(500)
    ui.click("#mis-file-submit")
    ui.wait_for_function("document.querySelector('#mis-table')?.innerText.includes('two quarters')", timeout=30000)
    with ui.expect_download() as info:
        ui.click("#mis-download")
    text = Path(info.value.path()).read_text()
    assert text.startswith("student,QuestionText,MC_Answer,StudentExplanation,verdict,misconception_1") and "Ada" in text
    # what a person sees at 390 px: four columns broke "correct", "chance" and "100%" across lines
    assert re.search(r"^(correct|incorrect|neither): .+ \(\d+%\)$", ui.inner_text("#mis-table [role=gridcell][data-col='1']"))
    broken = ui.evaluate(WORDS_BROKEN, "#mis-table th, #mis-table [role=gridcell]")
    assert not broken, broken
    no_overflow(ui)


def test_a_table_shows_money_as_typed(ui):
    money = "A pen costs $2 and a notebook costs $5. How much do 3 pens cost?"
    ui.fill(box("topics-input"), f"{money}\nSolve $x^2 = 4$ for x.")
    ui.click("#topics-submit")
    ui.wait_for_function("document.querySelector('#topics-table')?.innerText.includes('notebook')")
    shown = ui.inner_text("#topics-table")
    assert "costs $2 and a notebook costs $5" in shown and "\\$" not in shown  # no Markdown escape leaks
    assert "x^2 = 4" not in shown.replace("\n", " ") or ui.locator("#topics-table .katex").count() >= 1


def test_products_form_and_probabilities(ui):
    open_tab(ui, "Products")
    ui.fill(box("product-title"), "Running shoes for men, breathable mesh")
    ui.fill(box("product-price"), "1299")
    ui.click("#products-submit")
    ui.wait_for_function("document.querySelector('#products-label')?.innerText.includes('%')")
    ui.wait_for_selector("#products-download", state="visible")
    no_overflow(ui)


def test_products_table_shows_the_category_first(ui, tmp_path):
    """A listing's long name filled the table's width and pushed the category (what was asked) out of sight."""
    rows = ["title,price", "\"Stainless steel non-stick frying pan with glass lid, induction ready, 28 cm, dishwasher "
            "safe, family size\",1499", "Running shoes for men,999"]
    (tmp_path / "listings.csv").write_text("\n".join(rows) + "\n")
    open_tab(ui, "Products")
    ui.set_input_files("#products-file input[type=file]", str(tmp_path / "listings.csv"))
    ui.click("#products-submit")
    ui.wait_for_function("document.querySelector('#products-table')?.innerText.includes('Running shoes')")
    ui.wait_for_timeout(500)
    headers = ui.locator("#products-table th").all_inner_texts()
    assert [h.strip() for h in headers] == ["category", "chance", "product"], headers  # every field is in the file
    box_ = ui.locator("#products-table .virtual-table-viewport").bounding_box()
    chance = ui.locator("#products-table [role=gridcell]", has_text="%").first.bounding_box()
    assert chance["x"] + chance["width"] <= box_["x"] + box_["width"] + 1  # in sight without scrolling sideways
    broken = ui.evaluate(WORDS_BROKEN, "#products-table th, #products-table [role=gridcell]")
    assert not broken, broken
    no_overflow(ui)


def chat_rows(page) -> int:
    return page.locator("#tutor-chat .message-row").count()


def wait_idle(page) -> None:
    """Until the tutor's answer is done: Stop is pressable only while one runs (and no progress overlay hides it)."""
    from playwright.sync_api import TimeoutError as NotSeen

    try:  # Stop becomes pressable with the event's first update (a fast event may be over before it is seen)
        page.wait_for_function("document.querySelector('#tutor-stop')?.disabled === false", timeout=3000)
    except NotSeen:
        pass
    page.wait_for_function("document.querySelector('#tutor-stop')?.disabled === true", timeout=60000)
    assert page.locator("#tab-tutor [data-testid=status-tracker]:not(.hide)").count() == 0  # no countdown overlay
    page.wait_for_timeout(400)


def test_tutor_money_math_refusal_and_chat_controls(ui):
    open_tab(ui, "Tutor")
    assert "check every step" in ui.inner_text("#tutor-model")  # how often it is right, in words
    assert ui.is_disabled("#tutor-stop")  # nothing to stop yet: grey, not red
    ui.fill(box("tutor-input"), "A pen costs $2 and a book costs $5. What is $x^2$ when the total is paid?")
    ui.click("#tutor-send")
    ui.wait_for_function("document.querySelectorAll('#tutor-chat .message-row').length >= 2")
    wait_idle(ui)
    user = ui.locator("#tutor-chat .message-row.user-row").first
    assert "costs $2 and a book costs $5" in user.inner_text()  # money stays money
    assert user.locator(".katex").count() == 1  # and $x^2$ is math
    assert "cut at the length limit" in ui.inner_text("#tutor-chat")  # 6 tokens: the answer says it was cut
    # the button comes with the answer's last update, which may land a moment after the chat's text on a busy machine
    ui.wait_for_selector("#tutor-continue", state="visible", timeout=15000)
    ui.click("#tutor-continue")
    wait_idle(ui)
    stored = "localStorage.getItem('mathtune-tutor-turns')"  # the conversation as Gradio keeps it (encrypted)
    ui.fill(box("tutor-input"), "Write a poem about autumn.")
    kept = ui.evaluate(stored)
    ui.press(box("tutor-input"), "Enter")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('I can only help with math')")
    assert chat_rows(ui) == 4
    # the browser state is written after the event ends, and to localStorage a moment later: on a busy machine a
    # reload before that reads an older chat, so each step waits until its own copy is written
    ui.wait_for_function(f"v => {stored} !== v", arg=kept, timeout=30000)
    kept = ui.evaluate(stored)
    ui.click("#tutor-undo")
    ui.wait_for_function("document.querySelectorAll('#tutor-chat .message-row').length === 2")
    wait_idle(ui)
    ui.wait_for_function(f"v => {stored} !== v", arg=kept, timeout=30000)
    ui.wait_for_timeout(500)
    ui.reload()  # the conversation is kept in the browser
    ui.wait_for_selector("#tabs")
    open_tab(ui, "Tutor")
    # the page draws the chat from the browser's copy once its load event has run; on a busy machine (the suite's
    # other worker) that came after the first look and the check timed out
    ui.wait_for_timeout(3000)
    restored = "document.querySelectorAll('#tutor-chat .message-row').length === 2"
    try:
        ui.wait_for_function(restored, timeout=20000)
    except Exception:  # noqa: BLE001 - under load the page's load event can run before Gradio has read the
        # browser's copy back; opening the tab again draws the chat from it (what a teacher would do)
        open_tab(ui, "Topics")
        open_tab(ui, "Tutor")
        ui.wait_for_function(restored, timeout=60000)
    ui.click("#tutor-retry")
    wait_idle(ui)
    assert chat_rows(ui) == 2
    ui.click("#tutor-clear")
    ui.wait_for_function("document.querySelectorAll('#tutor-chat .message-row').length === 0")
    ui.click("#tutor-restore")  # clearing can be undone
    ui.wait_for_function("document.querySelectorAll('#tutor-chat .message-row').length === 2")
    no_overflow(ui)
    shot(ui, "tutor-chat")


def test_tutor_vote_says_how_its_answer_was_checked(ui):
    open_tab(ui, "Tutor")
    ui.locator("#tutor-mode label", has_text="Solve it several times and compare").click()
    ui.fill(box("tutor-input"), "What is 2 plus 2?")
    ui.click("#tutor-send")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('Solved ')", timeout=60000)
    note = ui.inner_text("#tutor-chat")
    assert "gave this answer" in note and chat_rows(ui) == 2
    wait_idle(ui)
    checked = ui.locator("#tutor-mode input:checked")  # the mode stays chosen for the next question
    assert checked.count() == 1 and checked.get_attribute("value") == "vote"
    no_overflow(ui)


def test_tutor_examples_send_and_errors_keep_the_question(ui):
    open_tab(ui, "Tutor")
    ui.locator("#tutor-examples button").first.click()
    ui.wait_for_function("document.querySelectorAll('#tutor-chat .message-row').length >= 2")
    wait_idle(ui)
    ui.fill(box("tutor-input"), "y" * 400)
    ui.click("#tutor-send")
    # a loaded host once took over 30 s to answer this send (the full suite, 4 workers on 2 cores)
    ui.wait_for_selector("#tutor-error .error-box", timeout=60000)
    assert "over the limit of 300" in ui.inner_text("#tutor-error")
    assert ui.input_value(box("tutor-input")) == "y" * 400


def test_models_tab_for_a_teacher_with_drift(ui, server):
    import httpx

    for i in range(6):  # past the drift minimum (5 here): the window is judged and plotted
        httpx.post(f"{server}/v1/topics", json={"questions": [f"What is {i} + {i}?"]}, timeout=30)
    open_tab(ui, "Models")
    text = ui.inner_text("#tab-models")
    assert "Trained on:" in text and "How often it is right:" in text and "times in 10" in text
    # #48 item 6: words for developers ("F1-micro 0.868", "demo:champ", a folder path) are engineer details
    assert "F1-micro" not in text and "Trained on: the file " in text
    assert not re.search(r"/[A-Za-z_-]+/", text.split("Engineer details")[0])  # no folder path
    ui.wait_for_selector("#drift-topic p")
    assert "requests" in ui.inner_text("#drift-topic")
    ui.wait_for_selector("#drift-plot-topic img")
    # #48 item 9: at 390 px the chart was a thin strip; at 1280 the plot's label covered the first two titles
    chart = ui.locator("#drift-plot-topic img").first.bounding_box()
    assert chart["height"] >= 0.6 * chart["width"] and chart["height"] >= 200, chart
    labels = ui.locator("#drift-plot-topic [data-testid='block-label']")
    assert all(not labels.nth(i).is_visible() for i in range(labels.count()))  # nothing drawn over the titles
    assert not ui.is_visible("text=Model description (/v1/models)")  # engineer details are folded away
    # the training plots load (a route of the OpenAI door once took their paths: the page showed broken images)
    for plot in ("confusion matrix", "calibration"):  # the reliability plot too (#48 item 8: do its percentages hold?)
        ui.wait_for_function(f"[...document.querySelectorAll('#tab-models img[alt*=\"{plot}\"]')]"
                             ".some(i => i.complete && i.naturalWidth > 0)", timeout=15000)
    assert re.search(r"When it said it was 90% sure or more \(\d+ questions?\), it was right \d+ times?\.|never 90% sure",
                     text), text
    shot(ui, "models-drift")


def tab_to(page, condition: str, presses: int, what: str) -> None:
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(condition):
            return
    pytest.fail(f"Tab never reached {what}")


def test_keyboard_only(ui):
    """Tab reaches the question box and the button; Enter on the button classifies."""
    ui.locator("body").click(position={"x": 2, "y": 2})
    tab_to(ui, "document.activeElement.closest('#topics-input') !== null", 40, "the question box")
    ui.keyboard.type("Solve for x: 3x = 12.")
    tab_to(ui, "document.activeElement.id === 'topics-submit'", 10, "the button")
    ui.keyboard.press("Enter")
    ui.wait_for_function("document.querySelector('#topics-label')?.innerText.includes('%')")


def test_with_an_api_key_the_app_works_after_the_key_page(browser, model_dirs):  # noqa: F811
    import uvicorn

    app = create_app(model_dirs[:1], ServeSettings(api_key="teacher-key-123"))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/ui/")
        assert page.url.endswith("/ui/login")  # sent to the key page
        page.fill("#key", "teacher-key-123")
        page.click("button[type=submit]")
        page.wait_for_selector("#tabs")  # Gradio's config, API and queue calls carry the HttpOnly cookie
        page.fill(box("topics-input"), "Solve for x: 2x + 1 = 9.")
        page.click("#topics-submit")
        page.wait_for_function("document.querySelector('#topics-label')?.innerText.includes('%')")
        context.close()
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


class ScriptedTutor:
    """A generator put behind the served tutor for one test: each answer from ``replies`` in turn (a vote's tries
    that disagree), or a stream that writes slowly enough to be stopped."""

    backend, parallel = "scripted", False

    def __init__(self, generator, replies=(), piece_seconds=0.3):
        self.tutor_prompt, self.solving = generator.tutor_prompt, generator.solving
        self.replies, self.piece_seconds, self.asked = list(replies), piece_seconds, []

    def generate(self, questions, max_new_tokens=256, contexts=None, **kwargs):
        from mathtune.models.generation import Generation

        self.asked += list(questions)
        return [Generation(self.replies.pop(0) if self.replies else "no idea", 5, 0.01) for _ in questions]

    def stream(self, question, max_new_tokens=256, context=None, cancel=None, *args, **kwargs):
        self.asked.append(question)
        for i in range(200):
            if cancel is not None and cancel.is_set():
                return
            time.sleep(self.piece_seconds)
            yield f"step {i}. "


@pytest.fixture
def scripted(server):
    served = APPS[server].state.mathtune.models["tutor"]
    original = served.generator

    def put(**kwargs):
        served.generator = ScriptedTutor(original, **kwargs)
        return served.generator
    yield put
    served.generator = original


def test_tutor_an_unsure_vote_shows_the_answers_it_found_not_a_final_answer(ui, scripted):
    """#48 item 1: "Final answer: 8" in bold under a vote in which no two tries agreed."""
    scripted(replies=["So 4 pens cost $8. The answer is 8.", "4 pens and 2 notebooks cost $18. The answer is 18.",
                      "The total is $16. The answer is 16."] * 3)
    open_tab(ui, "Tutor")
    ui.locator("#tutor-mode label", has_text="Solve it several times and compare").click()
    ui.fill(box("tutor-input"), "A pen costs $2 and a notebook costs $5. What do 4 pens and 2 notebooks cost?")
    ui.click("#tutor-send")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('Solved ')", timeout=60000)
    wait_idle(ui)
    answer = ui.locator("#tutor-chat .message-row.bot-row").last
    assert "Not sure" in answer.inner_text() and "Final answer" not in answer.inner_text()
    assert answer.locator("strong", has_text="Final answer").count() == 0
    assert "different answers" in answer.inner_text() and "18 (" in answer.inner_text()  # the answers it found
    shot(ui, "tutor-unsure")


def test_tutor_retry_after_stop_asks_the_stopped_question_again(ui, scripted):
    """#48 item 2: Retry after Stop threw the stopped question away (and emptied a one-question chat)."""
    tutor = scripted(piece_seconds=0.3)
    open_tab(ui, "Tutor")
    ui.locator("#tutor-mode label", has_text="Step by step").click()
    ui.fill(box("tutor-input"), "A school trip needs buses for 130 students, 40 to a bus. How many buses?")
    ui.click("#tutor-send")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('step 2.')", timeout=30000)
    ui.click("#tutor-stop")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('Stopped.')", timeout=15000)
    assert chat_rows(ui) == 2
    ui.wait_for_selector("#tutor-continue", state="visible", timeout=15000)  # what was written can go on
    ui.wait_for_timeout(1000)  # the kept conversation reaches the browser's copy
    ui.click("#tutor-retry")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('step 1.')", timeout=30000)
    ui.click("#tutor-stop")
    assert "130 students" in tutor.asked[-1] and chat_rows(ui) == 2  # the stopped question, asked again
    assert "130 students" in ui.locator("#tutor-chat .message-row.user-row").last.inner_text()
    shot(ui, "tutor-stopped")



WORDS_BROKEN = """sel => {
  const broken = [];
  for (const cell of document.querySelectorAll(sel)) {
    if (cell.offsetParent === null) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      // a compound may break after its hyphen ("non-/stick"), as print does; a word or number never inside
      for (const m of node.textContent.matchAll(/[^\\s-]+-?/g)) {
        const range = document.createRange();
        range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
        const rects = [...range.getClientRects()].filter(r => r.width > 0);
        if (!rects.length || !node.parentElement.checkVisibility({visibilityProperty: true, opacityProperty: true})) continue;
        const tops = new Set(rects.map(r => Math.round(r.top)));
        // what a person sees of it: up to the nearest edge that clips (an element that hides its overflow, the cell,
        // the table's frame)
        let clip = Math.min(cell.getBoundingClientRect().right, (cell.closest('.table-wrap') || cell).getBoundingClientRect().right);
        for (let e = node.parentElement; e && e !== cell; e = e.parentElement) {
          if (getComputedStyle(e).overflowX !== 'visible') clip = Math.min(clip, e.getBoundingClientRect().right);
        }
        const box = {right: clip};
        const right = Math.max(...rects.map(r => r.right));
        if (tops.size > 1) broken.push(`"${m[0]}" on ${tops.size} lines`);
        else if (right > box.right + 1) broken.push(`"${m[0]}" cut at the cell's edge (${node.parentElement.tagName}.${node.parentElement.className} ${Math.round(right)} > ${Math.round(box.right)})`);
      }
    }
  }
  return broken;
}"""


def test_tables_never_break_a_word_or_a_number_across_lines(ui):
    """#48 item 9: at 390 px the Topics header read "pr/ob/ab/il/it/y" and numbers split ("0./99/01"); a test must
    fail on what a person sees: a word (or number) of a cell on more than one line, or cut at the cell's edge."""
    questions = ["A train travels 60 km in 45 minutes. What is its speed in km/h?", "Solve 2x + 3 = 11 for x.",
                 "What is the probability of two heads in two tosses?", "Find the derivative of x^2 sin x.",
                 "How many ways can 5 books be arranged on a shelf?",
                 # a topic with a long word: at 390 px a 28% column broke "Trigonometry" (and "Combinatorics") in two
                 "A triangle has sides 3, 4 and 5. Find its area."]
    ui.fill(box("topics-input"), "\n".join(questions))
    ui.click("#topics-submit")
    ui.wait_for_function("document.querySelector('#topics-table')?.innerText.includes('5 books')")
    ui.wait_for_timeout(500)
    shot(ui, "topics-table")
    broken = ui.evaluate(WORDS_BROKEN, "#topics-table th, #topics-table [role=gridcell]")
    assert not broken, broken
    viewport = ui.locator("#topics-table .table-wrap").bounding_box()
    last = ui.locator("#topics-table [role=gridcell]", has_text="5 books").last.bounding_box()
    assert last["y"] + last["height"] <= viewport["y"] + viewport["height"] + 1  # the 5th row is not hidden in the box
    no_overflow(ui)


def test_tutor_a_new_answer_in_a_long_chat_is_in_view(ui, scripted):
    """#48 item 5: on desktop, 9 s into a new answer the box still showed an older one (with a ↓ arrow)."""
    scripted(piece_seconds=0.02)
    open_tab(ui, "Tutor")
    ui.locator("#tutor-mode label", has_text="Step by step").click()
    for i in range(4):  # a long chat: each answer many lines
        ui.fill(box("tutor-input"), f"What is {i} plus {i}?")
        ui.click("#tutor-send")
        wait_idle(ui)
    ui.evaluate("document.querySelector('#tutor-chat .bubble-wrap').scrollTop = 0")  # read higher up
    scripted(piece_seconds=0.3)
    ui.fill(box("tutor-input"), "What is 40 plus 2?")
    ui.click("#tutor-send")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('40 plus 2')")
    ui.wait_for_timeout(3000)
    seen = ui.evaluate("""() => { const w = document.querySelector('#tutor-chat .bubble-wrap').getBoundingClientRect();
        const rows = document.querySelectorAll('#tutor-chat .message-row'); const last = rows[rows.length - 1].getBoundingClientRect();
        return last.top < w.bottom && last.bottom > w.top; }""")
    ui.click("#tutor-stop")
    assert seen, "the new answer is out of view"


@pytest.mark.parametrize("ui", ["desktop"], indirect=True)  # the same at either size
def test_tutor_copy_puts_plain_text_on_the_clipboard(ui, scripted):
    """#48 item 10: Copy put markdown on the clipboard ("```python … **Final answer: 8** *Vote: …*")."""
    scripted(replies=["Pens: $4 \\times 2 = 8$ dollars; **notebooks**: $2 \\times 5 = 10$. The answer is 18."] * 9)
    ui.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_tab(ui, "Tutor")
    ui.locator("#tutor-mode label", has_text="Solve it several times and compare").click()
    ui.fill(box("tutor-input"), "A pen costs $2 and a notebook $5. What do 4 pens and 2 notebooks cost?")
    ui.click("#tutor-send")
    ui.wait_for_function("document.querySelector('#tutor-chat').innerText.includes('Final answer')", timeout=60000)
    wait_idle(ui)
    ui.locator("#tutor-chat .message-row.bot-row").last.hover()
    ui.locator("#tutor-chat button[aria-label='Copy message']").last.click()  # the answer's (the last message's)
    ui.wait_for_timeout(500)
    copied = ui.evaluate("navigator.clipboard.readText()")
    assert "4 \\times 2 = 8" in copied and "notebooks" in copied and "Final answer: 18" in copied
    assert "**" not in copied and "$" not in copied and "Solved" not in copied  # nor the note on how it was checked
    ui.locator("#tutor-chat button[aria-label^='Copy conversation' i]").first.click()
    ui.wait_for_timeout(500)
    everything = ui.evaluate("navigator.clipboard.readText()")
    assert everything.startswith("A pen costs $2") and everything.endswith("Final answer: 18")
