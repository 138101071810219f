"""The Misconceptions tab: one student's explanation diagnosed (the verdict first, then the likely misconceptions),
or a class set of answers from a CSV file, every input column kept in the results' file."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pandas as pd

from ...io import spreadsheet_safe_frame
from ...tasks.misconception import describe_label
from ..routes.misconception import diagnose
from ..schemas import MisconceptionItem
from .common import error_update, not_served, percent, plain_error, read_table
from .models_tab import trained_on
from .render import LATEX


def verdict_of(labels: list[str], probs: list[float]) -> tuple[str, list[tuple[str, float]]]:
    """The verdict (correct / incorrect / neither) with most probability, then the labels consistent with it."""
    groups = {"Correct": "correct", "Misconception": "incorrect", "Neither": "neither"}
    mass = {name: 0.0 for name in groups.values()}
    for label, p in zip(labels, probs):
        category = label.partition(":")[0].split("_")[-1]
        mass[groups.get(category, "neither")] += p
    verdict = max(mass, key=lambda name: mass[name])
    consistent = [(label, p) for label, p in zip(labels, probs)
                  if groups.get(label.partition(":")[0].split("_")[-1], "neither") == verdict]
    return verdict, consistent


VERDICT_TEXT = {"correct": "The explanation is **correct**.",
                "incorrect": "The explanation shows a **misconception** (the reasoning is wrong).",
                "neither": "The explanation is **neither** clearly correct nor a known misconception (vague or off-topic)."}


def format_diagnosis(labels: list[str], probs: list[float], unseen_question: str | None = None) -> str:
    """The verdict, then the labels consistent with it; ``unseen_question``: a dataset question id the model never
    learned from (its labels could not be narrowed to that question's, so the diagnosis is less sure)."""
    verdict, consistent = verdict_of(labels, probs)
    lines = [f"### {VERDICT_TEXT[verdict]}", ""]
    if unseen_question:
        lines += [f"*Question id {unseen_question} is not one of the questions this model learned from, so every "
                  "diagnosis was considered, not only that question's: a less sure result.*", ""]
    if verdict == "incorrect":
        lines.append("Most likely misconceptions:")
    shown = [(label, p) for label, p in consistent[:3] if p >= 0.01] or consistent[:1]  # no 0% rows
    for label, p in shown:
        name = label.partition(":")[2].replace("_", " ")
        title = name if name and name != "NA" else label.partition(":")[0].replace("_", " ")
        lines.append(f"- **{title}** ({percent(p)}): {describe_label(label)}")
    return "\n".join(lines)


def misconceptions_tab(gr, state, served) -> None:
    model = state.models.get("misconception")
    if model is None:
        gr.Markdown(not_served("misconception", "misconception-tfidf.yaml"))
        return
    gr.Markdown(f"Diagnoses a student's written explanation of a multiple-choice answer. Trained on *{Path(trained_on(model)).name}* "
                "(Eedi's diagnostic questions); it reads best on similar maths questions.", elem_classes="mt-note")
    question = gr.Textbox(label="The question", lines=2, elem_id="mis-question",
                          value="What fraction of the shape is not shaded? (3 of 9 equal triangles are not shaded)")
    answer = gr.Textbox(label="The student's answer", elem_id="mis-answer", value="1/3")
    explanation = gr.Textbox(label="The student's explanation", lines=3, elem_id="mis-explanation",
                             value="3 of the 9 triangles are not shaded so it is 3 over 9 which is one third")
    qid = gr.Textbox(label="Dataset question id (optional)", elem_id="mis-qid",
                     info="Only for questions from the training data: ranks only that question's labels.")
    run = gr.Button("Diagnose", variant="primary", elem_id="mis-submit")
    error = gr.HTML(visible=False, elem_id="mis-error")
    result = gr.Markdown(elem_id="mis-result", latex_delimiters=LATEX)

    async def run_diagnosis(question, answer, explanation, qid):
        try:
            if not (explanation or "").strip():
                raise ValueError("Type the student's explanation: that is what the model reads.")
            item = MisconceptionItem(question_text=question or "", mc_answer=answer or "",
                                     student_explanation=explanation, question_id=(qid or "").strip() or None)
            labels = model.predictor.labels
            response, idx, prob = await asyncio.wait_for(diagnose(served, state.settings, [item], len(labels.values)),
                                                         state.settings.ui_timeout_s)
        except Exception as exc:  # noqa: BLE001
            return error_update(plain_error(exc)), ""
        # the API's note names the unseen id (the free-text form sends at most one)
        unseen = item.question_id if item.question_id and any(item.question_id in n for n in response.notes) else None
        return error_update(None), format_diagnosis([labels.values[i] for i in idx[0]], [float(p) for p in prob[0]],
                                                    unseen)

    gr.on([run.click, explanation.submit], run_diagnosis, [question, answer, explanation, qid], [error, result])

    gr.Markdown("**A class set of answers**: a CSV file with the columns QuestionText, MC_Answer and "
                "StudentExplanation (QuestionId optional), one row a student, as Eedi's data has them.",
                elem_classes="mt-note")
    file = gr.File(label="CSV file of students' answers", file_types=[".csv"], elem_id="mis-file", height=140)
    run_file = gr.Button("Diagnose every answer", elem_id="mis-file-submit")
    file_error = gr.HTML(visible=False, elem_id="mis-file-error")
    # two columns, the diagnosis in one sentence: four (explanation, verdict, most likely, chance) broke "correct",
    # "chance" and "100%" across lines on a 390 px phone
    table = gr.Dataframe(label="Every answer", wrap=True, visible=False, elem_id="mis-table",
                         column_widths=["45%", "55%"])
    download = gr.DownloadButton("Download the results (CSV)", visible=False, elem_id="mis-download")

    async def run_file_diagnosis(file, progress=gr.Progress()):
        try:
            frame, items = class_answers(file, state.settings.max_upload_bytes)
            labels, rows = model.predictor.labels, []
            for start in range(0, len(items), state.settings.max_batch):
                progress(start / len(items), desc=f"{start} of {len(items)} answers")
                chunk = items[start:start + state.settings.max_batch]
                _, idx, prob = await asyncio.wait_for(diagnose(served, state.settings, chunk, 3),
                                                      state.settings.ui_timeout_s)
                rows += [[(labels.values[i], float(p)) for i, p in zip(r[:3], q[:3])] for r, q in zip(idx, prob)]
        except Exception as exc:  # noqa: BLE001
            return error_update(plain_error(exc)), gr.update(visible=False, value=None), gr.update(visible=False)
        verdicts = [verdict_of([label for label, _ in row], [p for _, p in row])[0] for row in rows]
        out = frame.assign(verdict=verdicts, **{f"misconception_{n + 1}": [row[n][0] for row in rows] for n in range(3)},
                           **{f"probability_{n + 1}": [round(row[n][1], 4) for row in rows] for n in range(3)})
        path = Path(tempfile.mkdtemp(prefix="mathtune-misconceptions-")) / "misconceptions.csv"
        spreadsheet_safe_frame(out).to_csv(path, index=False)
        shown = pd.DataFrame({"explanation": frame["StudentExplanation"],
                              "diagnosis": [f"{verdict}: {describe_label(row[0][0])} ({percent(row[0][1])})"
                                            for verdict, row in zip(verdicts, rows)]})
        return error_update(None), gr.update(visible=True, value=shown), gr.update(visible=True, value=str(path))

    run_file.click(run_file_diagnosis, [file], [file_error, table, download])


# The columns of a class set of answers (Eedi's names, and the API's)
COLUMNS = {"QuestionText": ("QuestionText", "question_text"), "MC_Answer": ("MC_Answer", "mc_answer"),
           "StudentExplanation": ("StudentExplanation", "student_explanation")}


def class_answers(file, max_bytes: int) -> tuple[pd.DataFrame, list[MisconceptionItem]]:
    """A CSV of students' answers as its table (every column kept, named as Eedi names them) and the items to
    diagnose; ValueError naming a missing column or an empty row."""
    frame, name = read_table(file, max_bytes)
    for wanted, names in COLUMNS.items():
        found = next((c for c in names if c in frame.columns), None)
        if found is None:
            raise ValueError(f"{name} has no {wanted} column (its columns: {', '.join(frame.columns[:10])}); "
                             "it needs QuestionText, MC_Answer and StudentExplanation.")
        frame = frame.rename(columns={found: wanted})
    if frame.empty:
        raise ValueError(f"{name} has a header but no rows: add one row a student.")
    qid = next((c for c in ("QuestionId", "question_id") if c in frame.columns), None)
    items = []
    for i, row in frame.iterrows():
        if not str(row["StudentExplanation"]).strip():
            raise ValueError(f"{name} row {int(i) + 2}: the student's explanation is empty; fill it in or remove the row.")
        items.append(MisconceptionItem(question_text=row["QuestionText"], mc_answer=row["MC_Answer"],
                                       student_explanation=row["StudentExplanation"],
                                       question_id=(str(row[qid]).strip() or None) if qid else None))
    return frame, items
