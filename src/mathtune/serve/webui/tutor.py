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
from ...models.solving.presets import PRESETS
from ...models.solving.values import PROGRAM_MODES, Method, Piece
from ...models.solving.vote import stopped_because
from ...tasks.scope import REFUSAL
from ..tutor_service import QuestionError, TutorAsk, TutorService
from .common import MEASURED, SHOW_CHAT_JS, error_update, percent, plain_error
from .render import LATEX, answer_markdown, math_markdown, settled, with_unit

EXAMPLES = ["A train travels 60 km in 45 minutes. What is its speed in km/h?",
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?",
            "Solve 2x + 3 = 11 for x.",
            "What is the sum of the first 20 positive even numbers?"]
# What every answer shows until its first words arrive, whichever the mode (the question stays in view above it).
WORKING = "*Working on it… (press **Stop** to end it)*"
COT_NOTE = "Step-by-step reasoning, not checked by a program: check the steps."
# Said beside an answer another request had already asked for (serve/shared.py): the same answer, not a new one
REUSED = {"cache": " This problem was asked here before, in the same words and mode: this is the answer given then.",
          "joined": " Someone else asked this problem at the same moment: you share one answer."}


def modes(solving) -> list[tuple[str, str]]:
    """The Tutor page's choices of how to solve (the vote's size is the tutor's own)."""
    what = "programs" if solving.vote_over in PROGRAM_MODES else "answers"
    first = max(solving.agree_first, solving.first_round)
    rounds = "" if not 2 <= solving.agree_first or first >= solving.samples else \
        f", more only when the first {first} disagree" if first == solving.agree_first else \
        f", more only when fewer than {solving.agree_first} of the first {first} agree"
    return [("Step by step", "cot"), ("Write and run a program", "program"),
            ("A program alone, explained in comments (faster)", "code"),
            (f"Vote of up to {solving.samples} {what}{rounds}"
             + (f", within {solving.time_budget:g} s" if solving.time_budget else ""), "vote")]


MODEL_LINE_FIGURES = 4  # how many measured modes the line above the chat names


def model_line(model) -> str:
    """Which model answers, and how often it is right (bench/tutor_modes.py, or the tutor's own validation)."""
    measured = MEASURED.get(model.source)
    name = model.source if model.source.startswith("bundled:") else (model.manifest.get("base_model") or model.source)
    if measured:
        names = {name: preset.label for name, preset in PRESETS.items()}
        # the figures measured on enough problems to mean something (100 or more), the best first: a few, not all
        sizes = measured.get("n", {})
        solid = [(m, v) for m, v in measured["gsm8k"].items() if sizes.get(f"gsm8k {m}", 0) >= 100]
        shown = sorted(solid or measured["gsm8k"].items(), key=lambda mv: -mv[1])[:MODEL_LINE_FIGURES]
        modes = ", ".join(f"{percent(v)} {names.get(m, m)}" for m, v in shown)
        return (f"Answering: **{name}**. It answers about {modes} of grade-school problems correctly "
                f"({'bench/tutor_modes.py, 100-200 held-out GSM8K problems each' if solid else measured['where']}): "
                f"check the steps.")
    accuracy = (model.manifest.get("validation") or {}).get("answer_accuracy")
    if accuracy is None:
        return f"Answering: **{name}**. Its accuracy has not been measured: check every step."
    return (f"Answering: **{name}**. It answers about **{percent(float(accuracy))}** of its validation problems "
            f"correctly: check the steps.")


def render(turns: list[dict]) -> list[dict]:
    """The chat view of the turns: each question as the user wrote it, each answer with its final answer set apart."""
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": math_markdown(turn["q"])})
        if turn.get("a") is None:
            continue
        # open math waits until it closes; trailing blank lines would leave a gap above the final answer
        text = (settled(turn["a"]) if turn.get("streaming") else turn["a"]).rstrip()
        parts = [math_markdown(text) or (WORKING if turn.get("streaming") else "…")]
        if turn.get("final"):
            parts.append(f"**Final answer: {answer_markdown(with_unit(turn['final'], turn['a']))}**")
        if turn.get("note"):
            parts.append(f"*{turn['note']}*")
        if turn.get("truncated"):
            parts.append("*This answer was cut at the length limit: press **Continue** for the rest.*")
        messages.append({"role": "assistant", "content": "\n\n".join(parts)})
    return messages


def how_checked(solution, measured: dict | None = None) -> str:
    """One line on how the answer was obtained, and for a vote, how often such votes were right (``measured``: the
    model's entry in MEASURED)."""
    if solution.method == Method.PROGRAM:
        if solution.program_ok:
            return ("Found by a Python program that ran cleanly." if solution.attempts == 1 else
                    f"Found by a Python program that ran cleanly after {solution.attempts - 1} correction(s) of a "
                    "failed one.")
        return "The program did not run cleanly, so this answer is unchecked: read the steps."
    if solution.voted_over is not None:
        agree = solution.agreeing
        stopped = stopped_because(solution)
        early = f" Sampling stopped after {solution.samples} of {solution.k}: {stopped}." \
            if solution.samples < solution.k else ""
        vote = f"Vote: {agree} of {solution.samples} samples agree ({percent(solution.confidence or 0)}).{early}"
        if solution.decided_by is not None:
            decider = "a Python program that ran cleanly" if solution.decided_by == Method.PROGRAM else \
                "one more step-by-step answer"
            vote += f" No two agreed, so {decider} decided."
        measured_votes = (measured or {}).get("vote_right_by_agreeing") or {}  # measured over cot with k = 5
        right = measured_votes.get(str(min(agree, 3))) if solution.k == 5 and solution.voted_over == "cot" else None
        if right is not None:
            vote += (f" On grade-school problems, this model's answers {'with' if agree <= 3 else 'with at least'} "
                     f"{min(agree, 3)} agreeing sample{'s' if agree > 1 else ''} were right {percent(right)} of the time.")
        return vote if right is not None and right >= 0.9 else f"{vote} Check the steps."
    return COT_NOTE


def history_pairs(turns: list[dict]) -> list[tuple[str, str]]:
    """Earlier questions with their answers (the final answer when there is one); refusals are left out."""
    return [(t["q"], t.get("final") or t["a"]) for t in turns if t.get("a") and t["a"] != REFUSAL]


def tutor_tab(gr, state):
    model = state.models.get("tutor")
    if model is None:
        gr.Markdown("No tutor is loaded on this server. Whoever runs it can start it with "
                    "`mathtune serve --tutor bundled:qwen2.5-coder-1.5b` (after `make models`), "
                    "or with `--model` pointing at a trained tutor folder.")
        return None
    gr.Markdown(model_line(model), elem_id="tutor-model", elem_classes="mt-note")
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
    stop.click(lambda: stop_update(gr, False), None, stop, cancels=[send_event, retry_event, cont_event, *example_events],
               **quiet)
    # Continue follows the conversation once an answer's event has ended (the answer's own last update sets it too,
    # but a browser that applied only the newest of several quick updates missed it: the button never showed)
    for event in (send_event, retry_event, cont_event, *example_events):
        event.then(lambda t: gr.update(visible=bool(t and t[-1].get("truncated"))), [turns], cont, **quiet)
    undo.click(lambda t: (render(t[:-1]), t[:-1], gr.update(visible=False)), [turns], [chat, turns, cont])
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
                    last.update(a=last["a"] + event.text, truncated=False)
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
        yield render(turns + [turn]), turns, "", error_update(None), gr.update(visible=False)
        try:
            async for event in events:
                if isinstance(event, Piece):  # a program's checked answer replaces what was written
                    turn.update(a=turn["a"] + event.text, streaming=True)
                    yield render(turns + [turn]), turns, "", error_update(None), gr.update(visible=False)
                    continue
                solution = event.solution
                turn.pop("streaming", None)
                turn.update(a=solution.answer, final=solution.final_answer, truncated=solution.truncated,
                            note=how_checked(solution, MEASURED.get(model.source)) + REUSED.get(str(event.reused), "")
                            + cut)
        except Exception as exc:  # noqa: BLE001 - the question goes back into the box, the message beside it
            yield render(turns), turns, text, error_update(plain_error(exc)), gr.update(visible=False)
            return
        new = turns + [turn]
        yield render(new), new, "", error_update(None), gr.update(visible=bool(turn.get("truncated")))
    return answer
