"""The Tutor tab: a streamed chat with Stop, Copy, Retry (a new sample), Undo, Clear (with Restore), Continue for an
answer cut at the token limit, example questions that send on click, and history kept in the browser.

The conversation is a list of turns ``{"q", "a", "final", "note", "truncated"}`` kept in the browser
(``gr.BrowserState``); the chat view is drawn from it. The server's scope rule (tasks/scope.py) answers questions
that are not math with a short refusal, without asking the model.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

from ...errors import MathtuneError
from ...models.solving.values import Piece, Progress
from ...tasks.scope import REFUSAL
from ..tutor_service import QuestionError, TutorAsk, TutorService
from .common import MEASURED, SHOW_CHAT_JS, error_update, plain_error
from .render import LATEX
from .tutor_words import (
    COT_NOTE,
    EXAMPLES,
    REUSED,
    WORKING,
    found_answers,
    history_pairs,
    how_checked,
    measured_line,
    model_line,
    modes,
    progress_line,
    render,
)

# the words live in tutor_words.py; the page and the tests read them from here too
__all__ = ["COT_NOTE", "EXAMPLES", "REUSED", "WORKING", "how_checked", "history_pairs", "render", "tutor_tab"]


def tutor_tab(gr, state):
    model = state.models.get("tutor")
    if model is None:
        gr.Markdown("No tutor is loaded on this server. Whoever runs it can start it with "
                    "`mathtune serve --tutor bundled:qwen2.5-coder-1.5b` (after `make models`), "
                    "or with `--model` pointing at a trained tutor folder.")
        return None
    gr.Markdown(model_line(model), elem_id="tutor-model", elem_classes="mt-note")
    with gr.Accordion("How was this measured?", open=False, elem_id="tutor-measured"):
        gr.Markdown(measured_line(model))
    chat = gr.Chatbot(label="Conversation with the tutor", elem_id="tutor-chat", latex_delimiters=LATEX,
                      buttons=["copy", "copy_all"], height=480, autoscroll=True, feedback_options=None,
                      placeholder="Ask a math question below, or pick an example.")
    solving = TutorService(model, state.settings).solving  # the vote as it runs here: within the server's time cap
    mode = gr.Radio(modes(solving), value=solving.mode, label="How to solve", elem_id="tutor-mode")
    question = gr.Textbox(label="Your question", lines=1, max_lines=8, elem_id="tutor-input",
                          placeholder="Type a math problem; $...$ for math, $5 is money.")
    error = gr.HTML(visible=False, elem_id="tutor-error")
    with gr.Row(equal_height=True):
        send = gr.Button("Send", variant="primary", elem_id="tutor-send", min_width=80)
        stop = gr.Button("Stop", variant="secondary", interactive=False, elem_id="tutor-stop", min_width=80)
        cont = gr.Button("Continue", visible=False, elem_id="tutor-continue", min_width=80)
        retry = gr.Button("Retry", elem_id="tutor-retry", min_width=80)
        undo = gr.Button("Undo", elem_id="tutor-undo", min_width=80)
        clear = gr.Button("Clear", elem_id="tutor-clear", min_width=80)
        restore = gr.Button("Restore the cleared chat", visible=False, elem_id="tutor-restore", min_width=80)
    with gr.Row(elem_id="tutor-examples"):
        example_buttons = [gr.Button(text, size="sm", min_width=120) for text in EXAMPLES]
    turns = gr.BrowserState([], storage_key="mathtune-tutor-turns")
    cleared = gr.State([])
    answer = _answerer(gr, state, model)

    # One working state for every way an answer starts: the question and a "working" line in the chat at once, Stop
    # enabled (and red) only while an answer runs, no progress overlay or countdown over the conversation.
    outputs = [chat, turns, question, error, cont, stop]
    quiet = {"show_progress": "hidden"}
    send_event = gr.on([send.click, question.submit], with_stop(gr, answer), [question, turns, mode], outputs,
                       js=SHOW_CHAT_JS, **quiet)
    example_events = [b.click(with_stop(gr, answer), [gr.State(text), turns, mode], outputs, js=SHOW_CHAT_JS, **quiet)
                      for b, text in zip(example_buttons, EXAMPLES)]
    retry_event = retry.click(with_stop(gr, _retry(answer)), [turns, mode], outputs, js=SHOW_CHAT_JS, **quiet)
    cont_event = cont.click(with_stop(gr, _continue(gr, state, model)), [turns], outputs, js=SHOW_CHAT_JS, **quiet)
    # Stop ends the answer and draws the chat from the kept conversation: the question stays, marked stopped, with
    # Continue when part of an answer was written
    stop.click(lambda t: (stop_update(gr, False), render(t or []), gr.update(visible=bool(t and t[-1].get("truncated")))),
               [turns], [stop, chat, cont], cancels=[send_event, retry_event, cont_event, *example_events], **quiet)
    # Continue follows the conversation once an answer's event has ended (the answer's own last update sets it too,
    # but a browser that applied only the newest of several quick updates missed it: the button never showed)
    for event in (send_event, retry_event, cont_event, *example_events):
        event.then(lambda t: gr.update(visible=bool(t and t[-1].get("truncated"))), [turns], cont, **quiet)
    # Undo gives the question back to edit
    undo.click(lambda t: (render(t[:-1]), t[:-1], gr.update(visible=False), t[-1]["q"] if t else gr.update()),
               [turns], [chat, turns, cont, question])
    clear.click(lambda t: (render([]), [], t, gr.update(visible=bool(t))), [turns], [chat, turns, cleared, restore])
    restore.click(lambda c: (render(c), c, gr.update(visible=False)), [cleared], [chat, turns, restore])
    chat.clear(lambda t: ([], t, gr.update(visible=bool(t))), [turns], [turns, cleared, restore])
    gr.on([send.click, retry.click], lambda: gr.update(visible=False), None, restore)
    return turns, chat  # the page draws the chat from the browser's copy when it opens (history survives a reload)


def stop_update(gr, working: bool):
    """Stop as it should look: red and pressable while an answer runs, grey and disabled otherwise."""
    return gr.update(interactive=working, variant="stop" if working else "secondary")


def with_stop(gr, handler):
    """``handler``'s updates, each shown at once with Stop working (pressable from the first update, before the
    model's first token), then Stop idle and nothing else: the last update is not sent again, so it cannot undo what
    the teacher did after it arrived (an Undo pressed as the answer appears)."""
    async def run(*args, **kwargs):
        last = None
        async for update in handler(*args, **kwargs):
            last = update
            yield (*update, stop_update(gr, True))
        if last is not None:
            yield (*(gr.skip() for _ in last), stop_update(gr, False))
    return run


def _retry(answer):
    async def retry(turns, mode):
        if not turns:
            async for update in answer("", turns, mode):
                yield update
            return
        last = turns[-1]
        async for update in answer(last["q"], turns[:-1], mode, temperature=0.7, seed=random.randrange(1 << 30)):
            yield update
    return retry


async def answer_events(tutor: TutorService, ask: TutorAsk, timeout_s: float):
    """The service's answer to ``ask``: the ``Answering`` first (its checks done, its place in the line held), then its
    events; a page closed or Stop pressed ends generation at the next token, and past ``timeout_s`` it is stopped."""
    answering = await tutor.begin(ask)
    yield answering
    stop = threading.Event()
    events = answering.events(stop).__aiter__()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.__anext__(), max(deadline - time.monotonic(), 0.001))
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise TimeoutError("The tutor took too long and was stopped. Ask a shorter question, or try "
                                   "again.") from None
            yield event
    finally:
        stop.set()
        answering.release()


def stopped(turn: dict) -> dict:
    """``turn`` as it stands if the answer ends now: stopped, with Continue for what was written."""
    kept = {k: v for k, v in turn.items() if k != "streaming"}
    return {**kept, "stopped": True, "truncated": bool(kept.get("a"))}


def _continue(gr, state, model):
    tutor = TutorService(model, state.settings)

    async def cont(turns):
        if not turns or not turns[-1].get("truncated"):
            yield render(turns or []), turns, gr.update(), error_update(None), gr.update(visible=False)
            return
        last = dict(turns[-1])
        so_far = str(last.get("a", ""))
        question = str(last.get("q", ""))
        # the turns come from the browser: held to the same checks as a question sent anew
        ask = TutorAsk(question, history_pairs(turns[:-1]), {"mode": "cot"}, stream=True,
                       prompt=f"{question.strip()}\n\nYour answer so far was cut off:\n{so_far}\n\n"
                              "Continue it from exactly where it stops; do not repeat it.")
        try:
            if len(so_far) > state.settings.max_text_chars:
                raise QuestionError("the answer to continue is longer than this server takes; ask the question anew")
            events = answer_events(tutor, ask, state.settings.ui_timeout_s)
            answering = await events.__anext__()
            if answering.refusal is not None:
                raise QuestionError(REFUSAL)
        except MathtuneError as err:
            yield render(turns), turns, gr.update(), error_update(str(err)), gr.update(visible=False)
            return
        except Exception as exc:  # noqa: BLE001 - a full line, say: the message says when to come back
            yield render(turns), turns, gr.update(), error_update(plain_error(exc)), gr.update(visible=True)
            return
        try:
            async for event in events:
                if isinstance(event, Piece):
                    last.update(a=last["a"] + event.text, truncated=False, stopped=False)
                    yield render(turns[:-1] + [last]), turns, gr.update(), error_update(None), gr.update(visible=False)
                else:
                    last.update(truncated=event.solution.truncated, final=tutor.final_answer(last["a"]))
        except Exception as exc:  # noqa: BLE001
            yield render(turns), turns, gr.update(), error_update(plain_error(exc)), gr.update(visible=True)
            return
        new = turns[:-1] + [last]
        yield render(new), new, gr.update(), error_update(None), gr.update(visible=bool(last.get("truncated")))
    return cont


def _answerer(gr, state, model):
    settings = state.settings
    tutor = TutorService(model, settings)

    async def answer(text, turns, mode, temperature=0.0, seed=None):
        turns = list(turns or [])
        if not (text or "").strip():
            yield render(turns), turns, text, error_update("Type a question first."), gr.update()
            return
        ask = TutorAsk(text, history_pairs(turns), {"mode": mode}, stream=True, temperature=temperature, seed=seed)
        events = answer_events(tutor, ask, settings.ui_timeout_s)
        try:
            answering = await events.__anext__()
        except QuestionError as err:
            yield render(turns), turns, text, error_update(f"Your {err}."), gr.update()
            return
        except Exception as exc:  # noqa: BLE001 - a full line or a mode this host cannot run: said beside the box
            yield render(turns), turns, text, error_update(plain_error(exc)), gr.update()
            return
        q = answering.ask.question.strip()
        if answering.refusal is not None:
            await events.aclose()
            new = turns + [{"q": q, "a": REFUSAL, "final": None, "note": None}]
            yield render(new), new, "", error_update(None), gr.update(visible=False)
            return
        dropped = answering.dropped
        cut = (f" The {dropped} oldest question{'s' if dropped > 1 else ''} of this chat did not fit and "
               f"{'were' if dropped > 1 else 'was'} left out." if dropped else "")
        turn = {"q": q, "a": "", "final": None, "note": None, "streaming": True}
        # the conversation kept while the answer is written holds the question as stopped: if Stop ends the answer
        # here, that is what it was, and Retry asks it again (Continue goes on from what was written)
        yield render(turns + [turn]), turns + [stopped(turn)], "", error_update(None), gr.update(visible=False)
        try:
            async for event in events:
                if isinstance(event, Piece):  # a program's checked answer replaces what was written
                    turn.update(a=turn["a"] + event.text, streaming=True)
                    yield (render(turns + [turn]), turns + [stopped(turn)], "", error_update(None),
                           gr.update(visible=False))
                    continue
                if isinstance(event, Progress):  # a vote under way: how many tries are in, what they say
                    turn.update(progress=progress_line(event))
                    yield render(turns + [turn]), turns + [stopped(turn)], "", error_update(None), gr.update()
                    continue
                turn.pop("progress", None)
                solution = event.solution
                turn.pop("streaming", None)
                turn.update(a=solution.answer, final=solution.final_answer, truncated=solution.truncated,
                            unsure=solution.unsure, found=found_answers(solution), tries=solution.samples,
                            doubts=solution.doubts,
                            note=how_checked(solution, MEASURED.get(model.source)) + REUSED.get(str(event.reused), "")
                            + cut)
        except Exception as exc:  # noqa: BLE001 - the question goes back into the box, the message beside it
            yield render(turns), turns, text, error_update(plain_error(exc)), gr.update(visible=False)
            return
        new = turns + [turn]
        yield render(new), new, "", error_update(None), gr.update(visible=bool(turn.get("truncated")))
    return answer
