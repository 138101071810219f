"""What the Tutor tab says, in a teacher's words: the example questions, how to solve, how often the tutor is
right (and, behind "How was this measured?", the figures), each answer with its final answer set apart or said to
be unsure, and how the answer was checked."""

from __future__ import annotations

from ...models.solving.presets import DEFAULT_PRESET, PRESETS
from ...models.solving.values import Method
from ...tasks.scope import REFUSAL
from .common import MEASURED, percent
from .render import answer_markdown, math_markdown, settled, with_unit
from .turns import Turn

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
    """The Tutor page's choices of how to solve, in a teacher's words (the vote's size is the tutor's own)."""
    return [("Step by step", "cot"), ("Write and run a program", "program"),
            ("A short program with comments (faster)", "code"),
            (f"Solve it several times and compare (slower, surer: up to {solving.samples} tries)", "vote")]


def times_in_ten(share: float) -> str:
    return f"about {round(share * 10)} times in 10"


def model_line(model) -> str:
    """What a teacher needs to know of the tutor: how often it is right, in words; ``measured_line`` has the
    details behind "How was this measured?"."""
    measured = MEASURED.get(model.source)
    default = DEFAULT_PRESET.get(model.source)
    if measured and default in measured.get("gsm8k", {}):
        return (f"The tutor is right {times_in_ten(measured['gsm8k'][default])} on grade-school word problems when it "
                "solves them several times and compares. Check its steps before you use an answer.")
    accuracy = (model.manifest.get("validation") or {}).get("answer_accuracy")
    if accuracy is None:
        return "How often this tutor is right has not been measured: check every step."
    return f"The tutor was right {times_in_ten(float(accuracy))} on its practice problems: check its steps."


MODEL_LINE_FIGURES = 4  # how many measured ways of solving the details name


def measured_line(model) -> str:
    """The measurement behind ``model_line``: the model, each way of solving's accuracy, and where it was measured."""
    measured = MEASURED.get(model.source)
    name = model.source if model.source.startswith("bundled:") else (model.manifest.get("base_model") or model.source)
    if not measured:
        accuracy = (model.manifest.get("validation") or {}).get("answer_accuracy")
        return (f"Model: {name}. " + ("No accuracy was measured for it." if accuracy is None else
                                      f"Answer accuracy on its validation problems: {percent(float(accuracy))}."))
    names = {key: preset.label for key, preset in PRESETS.items()}
    sizes = measured.get("n", {})
    solid = [(m, v) for m, v in measured["gsm8k"].items() if sizes.get(f"gsm8k {m}", 0) >= 100]
    shown = sorted(solid or measured["gsm8k"].items(), key=lambda mv: -mv[1])[:MODEL_LINE_FIGURES]
    figures = "; ".join(f"{names.get(m, m)}: {percent(v)}" for m, v in shown)
    where = "100 to 200 held-out GSM8K problems each (bench/tutor_modes.py, docs/benchmarks.md)" if solid else \
        measured["where"]
    return f"Model: {name}. Share of grade-school problems answered correctly, by way of solving: {figures}; on {where}."


def found_answers(solution) -> list[tuple[str, int]]:
    """The answers a vote's tries gave, the most given first."""
    return sorted(((str(a), n) for a, n in solution.votes.items() if a is not None), key=lambda an: -an[1])


def unsure_line(turn: Turn) -> str:
    answer = turn.answer or ""
    doubts = " ".join(turn.doubts)
    if doubts and turn.final:
        return f"**Not sure: perhaps {answer_markdown(with_unit(turn.final, answer))}.** {doubts}"
    if len(turn.found) > 1:
        listed = ", ".join(f"{answer_markdown(with_unit(a, answer))} ({n} of {turn.tries or n} tries)"
                           for a, n in turn.found)
        return f"**Not sure.** The tries gave different answers: {listed}. Check the steps before using one."
    if turn.final:
        return (f"**Not sure: perhaps {answer_markdown(with_unit(turn.final, answer))}.** It could not check "
                "this answer. Check the steps before using it.")
    return "**Not sure.** No answer could be checked. Check the steps."


def render(turns: list[Turn]) -> list[dict]:
    """The chat view of the turns: each question as the user wrote it, each answer with its final answer set apart
    (or said to be unsure), a stopped answer marked so."""
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": math_markdown(turn.question)})
        if turn.answer is None:
            continue
        # open math waits until it closes; trailing blank lines would leave a gap above the final answer
        text = (settled(turn.answer) if turn.streaming else turn.answer).rstrip()
        working = f"*{turn.progress}*" if turn.progress else WORKING
        parts = [math_markdown(text) or (working if turn.streaming else "…")]
        if turn.stopped:
            parts.append("*Stopped.* Press **Retry** to ask it again" +
                         (", or **Continue** for the rest." if turn.answer else "."))
        elif turn.unsure:
            parts.append(unsure_line(turn))
        elif turn.final:
            parts.append(f"**Final answer: {answer_markdown(with_unit(turn.final, turn.answer))}**")
        if turn.note:
            parts.append(f"*{turn.note}*")
        if turn.truncated and not turn.stopped:
            parts.append("*This answer was cut at the length limit: press **Continue** for the rest.*")
        messages.append({"role": "assistant", "content": "\n\n".join(parts)})
    return messages


def progress_line(progress) -> str:
    """A vote under way, in a teacher's words: how many tries are in, and what they say so far."""
    line = f"Working… {progress.drawn} of up to {progress.k} tries done"
    if progress.answers:
        line += ": " + ", ".join(f"{answer_markdown(a)} ({n})" for a, n in progress.answers[:4])
    return line + ". Press Stop to end it."


def _why_stopped(solution) -> str:
    if solution.out_of_time:
        return "the time limit ran out"
    if solution.agreeing == solution.samples:
        return "they all agreed"
    if solution.first_round_ended:
        return f"{solution.agreeing} of the first {solution.samples} agreed"
    return "more tries could not change the result"


def how_checked(solution, measured: dict | None = None) -> str:
    """One line on how the answer was checked, in a teacher's words; for a vote, how often such votes were right
    (``measured``: the model's entry in MEASURED)."""
    if solution.method == Method.PROGRAM:
        if solution.program_ok:
            return ("Worked out by a small computer program that ran without errors." if solution.attempts == 1 else
                    "Worked out by a small computer program that ran without errors after it was corrected.")
        return "The program did not run cleanly, so this answer is not checked: read the steps."
    if solution.voted_over is not None:
        agree, tries = solution.agreeing, solution.samples
        vote = f"Solved {tries} time{'s' if tries != 1 else ''}: {agree} gave this answer."
        if tries < solution.k:
            vote += f" It stopped after {tries} of up to {solution.k} tries: {_why_stopped(solution)}."
        if solution.decided_by is not None:
            decider = "a program that ran without errors" if solution.decided_by == Method.PROGRAM else \
                "one more step-by-step answer"
            vote += f" No two tries agreed, so {decider} decided."
        measured_votes = (measured or {}).get("vote_right_by_agreeing") or {}  # measured over cot with k = 5
        right = measured_votes.get(str(min(agree, 3))) if solution.k == 5 and solution.voted_over == "cot" else None
        if right is not None:
            vote += (f" When {min(agree, 3)}{' or more' if agree > 3 else ''} tries agree, this tutor was right "
                     f"{times_in_ten(right)} on grade-school problems.")
        return vote if right is not None and right >= 0.9 else f"{vote} Check the steps."
    return COT_NOTE


def history_pairs(turns: list[Turn]) -> list[tuple[str, str]]:
    """Earlier questions with their answers (the final answer when there is one); refusals are left out."""
    return [(t.question, t.final or t.answer) for t in turns if t.answer and t.answer != REFUSAL]
