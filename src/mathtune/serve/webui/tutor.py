"""The Tutor tab: a streamed chat with Stop, Copy, Retry (a new sample), Undo, Clear (with Restore), Continue for an
answer cut at the token limit, example questions that send on click, and history kept in the browser.

The conversation is a list of ``Turn`` (turns.py) kept in the browser (``gr.BrowserState``); the chat view is drawn
from it, and what comes back from the browser is read through ``turns_from``. The server's scope rule (tasks/scope.py) answers questions
that are not math with a short refusal, without asking the model.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

from ...errors import MathtuneError
from ...models.solving.values import Finished, Piece, Progress
from ...tasks.scope import REFUSAL
from ..tutor_service import QuestionError, TutorAsk, TutorService
from .common import MEASURED, SHOW_CHAT_JS, error_update, plain_error
from .render import LATEX
from .turns import Turn, stored, turns_from
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
    stop.click(lambda t: (stop_update(gr, False), render(turns_from(t)), continuable(gr, turns_from(t))),
               [turns], [stop, chat, cont], cancels=[send_event, retry_event, cont_event, *example_events], **quiet)
    # Continue follows the conversation once an answer's event has ended (the answer's own last update sets it too,
    # but a browser that applied only the newest of several quick updates missed it: the button never showed)
    for event in (send_event, retry_event, cont_event, *example_events):
        event.then(lambda t: continuable(gr, turns_from(t)), [turns], cont, **quiet)
    undo.click(lambda t: _undo(gr, turns_from(t)), [turns], [chat, turns, cont, question])
    clear.click(lambda t: (render([]), [], t, gr.update(visible=bool(t))), [turns], [chat, turns, cleared, restore])
    restore.click(lambda c: (render(turns_from(c)), stored(turns_from(c)), gr.update(visible=False)), [cleared],
                  [chat, turns, restore])
    chat.clear(lambda t: ([], t, gr.update(visible=bool(t))), [turns], [turns, cleared, restore])
    gr.on([send.click, retry.click], lambda: gr.update(visible=False), None, restore)
    return turns, chat  # the page draws the chat from the browser's copy when it opens (history survives a reload)


def continuable(gr, turns: list[Turn]):
    """Continue, shown when the last answer was cut (at the length limit, or by Stop with some written)."""
    return gr.update(visible=bool(turns and turns[-1].truncated))


def _undo(gr, turns: list[Turn]):
    """The last question and its answer taken back: the question goes back into the box to edit."""
    if not turns:
        return render([]), [], gr.update(visible=False), gr.update()
    return render(turns[:-1]), stored(turns[:-1]), gr.update(visible=False), turns[-1].question


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
    async def retry(raw, mode):
        turns = turns_from(raw)
        if not turns:
            async for update in answer("", turns, mode):
                yield update
            return
        async for update in answer(turns[-1].question, turns[:-1], mode, temperature=0.7,
                                   seed=random.randrange(1 << 30)):
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


def _continue(gr, state, model):
    tutor = TutorService(model, state.settings)

    async def cont(raw):
        turns = turns_from(raw)
        if not turns or not turns[-1].truncated:
            yield render(turns), stored(turns), gr.update(), error_update(None), gr.update(visible=False)
            return
        last = turns[-1].model_copy()
        so_far, question = last.answer or "", last.question
        # the turns come from the browser: held to the same checks as a question sent anew
        ask = TutorAsk(question, history_pairs(turns[:-1]), {"mode": "cot"}, stream=True,
                       prompt=f"{question.strip()}\n\nYour answer so far was cut off:\n{so_far}\n\n"
                              "Continue it from exactly where it stops; do not repeat it.")
        kept = stored(turns)
        try:
            if len(so_far) > state.settings.max_text_chars:
                raise QuestionError("the answer to continue is longer than this server takes; ask the question anew")
            events = answer_events(tutor, ask, state.settings.ui_timeout_s)
            answering = await events.__anext__()
            if answering.refusal is not None:
                raise QuestionError(REFUSAL)
        except MathtuneError as err:
            yield render(turns), kept, gr.update(), error_update(str(err)), gr.update(visible=False)
            return
        except Exception as exc:  # noqa: BLE001 - a full line, say: the message says when to come back
            yield render(turns), kept, gr.update(), error_update(plain_error(exc)), gr.update(visible=True)
            return
        try:
            async for event in events:
                if isinstance(event, Piece):
                    last.answer, last.truncated, last.stopped = (last.answer or "") + event.text, False, False
                    yield render(turns[:-1] + [last]), kept, gr.update(), error_update(None), gr.update(visible=False)
                elif isinstance(event, Finished):
                    last.truncated, last.final = event.solution.truncated, tutor.final_answer(last.answer or "")
        except Exception as exc:  # noqa: BLE001
            yield render(turns), kept, gr.update(), error_update(plain_error(exc)), gr.update(visible=True)
            return
        new = turns[:-1] + [last]
        yield render(new), stored(new), gr.update(), error_update(None), gr.update(visible=last.truncated)
    return cont


def _answerer(gr, state, model):
    settings = state.settings
    tutor = TutorService(model, settings)

    async def answer(text, raw, mode, temperature=0.0, seed=None):
        turns = turns_from(raw)
        kept = stored(turns)
        if not (text or "").strip():
            yield render(turns), kept, text, error_update("Type a question first."), gr.update()
            return
        ask = TutorAsk(text, history_pairs(turns), {"mode": mode}, stream=True, temperature=temperature, seed=seed)
        events = answer_events(tutor, ask, settings.ui_timeout_s)
        try:
            answering = await events.__anext__()
        except QuestionError as err:
            yield render(turns), kept, text, error_update(f"Your {err}."), gr.update()
            return
        except Exception as exc:  # noqa: BLE001 - a full line or a mode this host cannot run: said beside the box
            yield render(turns), kept, text, error_update(plain_error(exc)), gr.update()
            return
        q = answering.ask.question.strip()
        if answering.refusal is not None:
            await events.aclose()
            new = turns + [Turn(question=q, answer=REFUSAL)]
            yield render(new), stored(new), "", error_update(None), gr.update(visible=False)
            return
        dropped = answering.dropped
        cut = (f" The {dropped} oldest question{'s' if dropped > 1 else ''} of this chat did not fit and "
               f"{'were' if dropped > 1 else 'was'} left out." if dropped else "")
        turn = Turn(question=q, answer="", streaming=True)

        def shown():  # the conversation kept while the answer is written holds the question as stopped: if Stop
            # ends the answer here, that is what it was, and Retry asks it again (Continue goes on from what was written)
            return render(turns + [turn]), stored(turns + [turn.as_stopped()]), "", error_update(None)

        yield *shown(), gr.update(visible=False)
        try:
            async for event in events:
                if isinstance(event, Piece):  # a program's checked answer replaces what was written
                    turn.answer = (turn.answer or "") + event.text
                    yield *shown(), gr.update(visible=False)
                elif isinstance(event, Progress):  # a vote under way: how many tries are in, what they say
                    turn.progress = progress_line(event)
                    yield *shown(), gr.update()
                elif isinstance(event, Finished):
                    solution = event.solution
                    turn = Turn(question=q, answer=solution.answer, final=solution.final_answer,
                                truncated=solution.truncated, unsure=solution.unsure, found=found_answers(solution),
                                tries=solution.samples, doubts=list(solution.doubts),
                                note=how_checked(solution, MEASURED.get(model.source))
                                + REUSED.get(str(event.reused), "") + cut)
        except Exception as exc:  # noqa: BLE001 - the question goes back into the box, the message beside it
            yield render(turns), kept, text, error_update(plain_error(exc)), gr.update(visible=False)
            return
        new = turns + [turn]
        yield render(new), stored(new), "", error_update(None), gr.update(visible=turn.truncated)
    return answer
