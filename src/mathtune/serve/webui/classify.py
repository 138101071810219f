"""The classifier tabs: Topics, Misconceptions, Products. Each calls the same in-process services as the JSON
routes (serve/routes), shows its error beside the input that caused it, keeps the input, and clears the old
result when a request fails."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pandas as pd

from ...io import spreadsheet_safe_frame
from ...tasks.misconception import describe_label
from ..routes.misconception import diagnose
from ..routes.products import classify_products
from ..routes.topic import classify_topics
from ..schemas import MisconceptionItem
from .common import error_update, percent, plain_error, uploaded_file
from .models_tab import trained_on
from .render import LATEX, math_markdown


def not_served(task: str, recipe: str) -> str:
    return (f"No {task} model is loaded on this server. Whoever runs it can train one with "
            f"`mathtune train recipes/{recipe} --output runs/{task}` and start the server with `--model runs/{task}`.")


def read_questions(text: str, file, column: str, limit: int, max_bytes: int) -> tuple[list[str], list[str]]:
    """The questions from a CSV (if given) or the text box (one per line), and where each came from."""
    if file:
        path = uploaded_file(file, max_bytes)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"{path.name} could not be read as CSV ({str(exc).splitlines()[0]}). Save it as CSV "
                             "(UTF-8) and choose it again.") from None
        found = next((c for c in (column, "Question", "question", "text") if c in frame.columns), None)
        if found is None:
            raise ValueError(f"{path.name} has no '{column}' column (its columns: {', '.join(frame.columns[:10])}). "
                             f"Name the column with the questions '{column}'.")
        questions, where = frame[found].tolist(), [f"{path.name} row {i + 2}" for i in range(len(frame))]
    else:
        questions = [line.strip() for line in (text or "").splitlines() if line.strip()]
        where = [f"Line {i + 1}" for i in range(len(questions))]
    if not questions:
        raise ValueError("Type a question (or several, one per line), or choose a CSV file.")
    for q, w in zip(questions, where):
        if not str(q).strip():
            raise ValueError(f"{w} is empty. Fill it in or remove it.")
        if len(str(q)) > limit:
            raise ValueError(f"{w} has {len(str(q))} characters; the limit is {limit}. Shorten it.")
    return [str(q) for q in questions], where


def topics_tab(gr, state, served) -> None:
    model = state.models.get("topic")
    if model is None:
        gr.Markdown(not_served("topic", "topic-tfidf.yaml"))
        return
    labels = model.predictor.labels
    gr.Markdown(f"This model knows **{len(labels.names)} topics**: {', '.join(labels.names)}. "
                f"It was trained on *{Path(trained_on(model)).name}*; questions on other topics get the nearest of these.",
                elem_classes="mt-note")
    text = gr.Textbox(label="Math questions, one per line", lines=4, elem_id="topics-input",
                      placeholder="Find the derivative of x^2 sin x.")
    file = gr.File(label="Or a CSV file with a Question column", file_types=[".csv"], elem_id="topics-file", height=140)
    run = gr.Button("Find the topics", variant="primary", elem_id="topics-submit")
    error = gr.HTML(visible=False, elem_id="topics-error")
    label = gr.Label(label="Topics of the first question, most likely first", num_top_classes=len(labels.names),
                     elem_id="topics-label", visible=False)
    table = gr.Dataframe(label="Every question", wrap=True, visible=False, elem_id="topics-table",
                         column_widths=["60%", "28%", "12%"], datatype=["markdown", "str", "number"],
                         latex_delimiters=LATEX)  # the question as Markdown: its math rendered, its money as typed
    download = gr.DownloadButton("Download the results (CSV)", visible=False, elem_id="topics-download")
    column = model.predictor.manifest.get("text_column", "Question")

    async def classify(text, file, progress=gr.Progress()):
        try:
            questions, _ = read_questions(text, file, column, state.settings.max_text_chars,
                                          state.settings.max_upload_bytes)
            rows, step = [], state.settings.max_batch
            for start in range(0, len(questions), step):
                progress(start / len(questions), desc=f"{start} of {len(questions)} questions")
                chunk = questions[start:start + step]
                answer = await asyncio.wait_for(classify_topics(served, state.settings, chunk), state.settings.ui_timeout_s)
                rows += [(q, p.topic, round(p.probability, 4), p.probabilities) for q, p in zip(chunk, answer.predictions)]
        except Exception as exc:  # noqa: BLE001 - shown beside the input, in plain words
            return (error_update(plain_error(exc)), gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None), gr.update(visible=False))
        frame = pd.DataFrame([r[:3] for r in rows], columns=["question", "topic", "probability"])
        out = Path(tempfile.mkdtemp(prefix="mathtune-topics-")) / "topics.csv"
        spreadsheet_safe_frame(frame).to_csv(out, index=False)
        shown = frame.assign(question=frame["question"].map(math_markdown))
        return (error_update(None), gr.update(visible=True, value=rows[0][3]), gr.update(visible=True, value=shown),
                gr.update(visible=True, value=str(out)))

    gr.on([run.click, text.submit], classify, [text, file], [error, label, table, download])


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


def format_diagnosis(labels: list[str], probs: list[float]) -> str:
    verdict, consistent = verdict_of(labels, probs)
    lines = [f"### {VERDICT_TEXT[verdict]}", ""]
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
            _, idx, prob = await asyncio.wait_for(diagnose(served, state.settings, [item], len(labels.values)),
                                                  state.settings.ui_timeout_s)
        except Exception as exc:  # noqa: BLE001
            return error_update(plain_error(exc)), ""
        return error_update(None), format_diagnosis([labels.values[i] for i in idx[0]], [float(p) for p in prob[0]])

    gr.on([run.click, explanation.submit], run_diagnosis, [question, answer, explanation, qid], [error, result])


def products_tab(gr, state, served) -> None:
    model = state.models.get("products")
    if model is None:
        gr.Markdown(not_served("products", "products-rf.yaml"))
        return
    fields = model.task.feature_columns()
    labels = model.predictor.labels
    gr.Markdown(f"Sorts a product listing into one of **{len(labels.values)} categories**, from its text and numbers. "
                f"Trained on *{Path(trained_on(model)).name}*.", elem_classes="mt-note")
    boxes = [gr.Textbox(label=f.replace("_", " ").capitalize(), elem_id=f"product-{f}") for f in fields]
    file = gr.File(label="Or a CSV file of products (the same columns)", file_types=[".csv"], elem_id="products-file", height=140)
    run = gr.Button("Find the category", variant="primary", elem_id="products-submit")
    error = gr.HTML(visible=False, elem_id="products-error")
    label = gr.Label(label="Category, most likely first", num_top_classes=5, elem_id="products-label",
                     visible=False)
    table = gr.Dataframe(label="Every product", wrap=True, visible=False, elem_id="products-table")
    download = gr.DownloadButton("Download the results (CSV)", visible=False, elem_id="products-download")

    async def classify(file, *values, progress=gr.Progress()):
        try:
            records = _product_records(file, fields, values, state.settings.max_upload_bytes)
            preds = []
            for start in range(0, len(records), state.settings.max_batch):
                progress(start / len(records), desc=f"{start} of {len(records)} products")
                chunk = records[start:start + state.settings.max_batch]
                preds += (await asyncio.wait_for(classify_products(served, state.settings, chunk),
                                                 state.settings.ui_timeout_s)).predictions
        except Exception as exc:  # noqa: BLE001
            return (error_update(plain_error(exc)), gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None), gr.update(visible=False))
        frame = pd.DataFrame(records).assign(category=[p.label for p in preds],
                                             probability=[round(p.probability, 4) for p in preds])
        out = Path(tempfile.mkdtemp(prefix="mathtune-products-")) / "products.csv"
        spreadsheet_safe_frame(frame).to_csv(out, index=False)
        return (error_update(None), gr.update(visible=True, value=preds[0].probabilities),
                gr.update(visible=len(records) > 1, value=frame),
                gr.update(visible=True, value=str(out)))

    run.click(classify, [file, *boxes], [error, label, table, download])


def _product_records(file, fields: list[str], values, max_bytes: int) -> list[dict]:
    if file:
        path = uploaded_file(file, max_bytes)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"{path.name} could not be read as CSV ({str(exc).splitlines()[0]}).") from None
        missing = [f for f in fields if f not in frame.columns]
        if missing:
            raise ValueError(f"{path.name} lacks the column(s) {', '.join(missing)}; the model reads {', '.join(fields)}.")
        return frame[fields].to_dict("records")
    record = dict(zip(fields, (v or "" for v in values)))
    if not any(str(v).strip() for v in record.values()):
        raise ValueError("Fill in the product's fields (at least its name), or choose a CSV file.")
    return [record]
