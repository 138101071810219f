"""The classifier tabs: Topics, Misconceptions, Products. Each calls the same in-process services as the JSON
routes (serve/routes), shows its error beside the input that caused it, keeps the input, and clears the old
result when a request fails."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pandas as pd

from ...io import spreadsheet_safe_frame
from ..routes.products import classify_products
from ..routes.topic import classify_topics
from .common import error_update, not_served, percent, plain_error, read_table, show_results_js
from .misconceptions_tab import format_diagnosis, misconceptions_tab, verdict_of
from .models_tab import trained_on
from .render import LATEX, math_markdown

__all__ = ["format_diagnosis", "misconceptions_tab", "products_tab", "topics_tab", "verdict_of"]


def read_questions(text: str, file, column: str, limit: int, max_bytes: int) -> tuple[list[str], list[str], pd.DataFrame]:
    """The questions typed (one per line) and then those of a CSV, where each came from, and the inputs as a table
    (every column of the file kept; a typed question fills only ``column``)."""
    typed = [line.strip() for line in (text or "").splitlines() if line.strip()]
    questions, where = list(typed), [f"Line {i + 1}" for i in range(len(typed))]
    inputs = pd.DataFrame({column: typed})
    if file:
        frame, name = read_table(file, max_bytes)
        found = next((c for c in (column, "Question", "question", "text") if c in frame.columns), None)
        if found is None:
            raise ValueError(f"{name} has no '{column}' column (its columns: {', '.join(frame.columns[:10])}). "
                             f"Name the column with the questions '{column}'.")
        questions += frame[found].tolist()
        where += [f"{name} row {i + 2}" for i in range(len(frame))]
        inputs = pd.concat([inputs, frame.rename(columns={found: column})], ignore_index=True).fillna("")
    if not questions:
        raise ValueError("Type a question (or several, one per line), or choose a CSV file.")
    for q, w in zip(questions, where):
        if not str(q).strip():
            raise ValueError(f"{w} is empty. Fill it in or remove it.")
        if len(str(q)) > limit:
            raise ValueError(f"{w} has {len(str(q))} characters; the limit is {limit}. Shorten it.")
    return [str(q) for q in questions], where, inputs


# Gradio sizes a table's columns by their headers alone ("auto" measured the question header 364 px wide on a 390 px
# phone) or by the widths given: at 390 px a 28% topic column broke "Combinatorics" in two. A column of labels gets
# the width of its longest word in the table's font (14 px monospace: CHAR_PX a character) and its cell padding; the
# question column a share that leaves them room on a 390 px phone (on a desktop the table is then narrower than
# the page, which breaks nothing).
CHAR_PX, CELL_PADDING_PX = 8.5, 20


def word_width(texts) -> int:
    """Pixels for a column whose longest word must fit on one line."""
    return round(CHAR_PX * max((len(word) for text in texts for word in str(text).split()), default=6)) + CELL_PADDING_PX


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
    note = gr.Markdown(visible=False, elem_id="topics-unsure", elem_classes="mt-note")
    label = gr.Label(label=FIRST_LABEL, num_top_classes=len(labels.names), elem_id="topics-label", visible=False)
    table = gr.Dataframe(label="Every question", wrap=True, visible=False, elem_id="topics-table",
                         column_widths=["35%", f"{word_width(['topic', *(f'{n}?' for n in labels.names)])}px", "72px"],
                         datatype=["markdown", "str", "str"], max_height=1000,
                         latex_delimiters=LATEX)  # the question as Markdown: its math rendered, its money as typed
    download = gr.DownloadButton("Download the results (CSV)", visible=False, elem_id="topics-download")
    column = model.predictor.manifest.get("text_column", "Question")

    async def classify(text, file, progress=gr.Progress()):
        try:
            questions, _, inputs = read_questions(text, file, column, state.settings.max_text_chars,
                                                  state.settings.max_upload_bytes)
            rows, step = [], state.settings.max_batch
            for start in range(0, len(questions), step):
                progress(start / len(questions), desc=f"{start} of {len(questions)} questions")
                chunk = questions[start:start + step]
                answer = await asyncio.wait_for(classify_topics(served, state.settings, chunk), state.settings.ui_timeout_s)
                rows += [(q, p.topic, round(p.probability, 4), p.probabilities, p.unfamiliar)
                         for q, p in zip(chunk, answer.predictions)]
        except Exception as exc:  # noqa: BLE001 - shown beside the input, in plain words
            return (error_update(plain_error(exc)), gr.update(visible=False), gr.update(visible=False, value=None),
                    gr.update(visible=False, value=None), gr.update(visible=False))
        # the file keeps every input column, the topic, its probability and whether it is a guess beside them
        frame = inputs.assign(topic=[r[1] for r in rows], probability=[r[2] for r in rows],
                              unfamiliar=[r[4] or "" for r in rows])
        out = Path(tempfile.mkdtemp(prefix="mathtune-topics-")) / "topics.csv"
        spreadsheet_safe_frame(frame).to_csv(out, index=False)
        # shown as the chart shows it: a percentage; a question unlike those it learned from gets no figure
        shown = pd.DataFrame({"question": [math_markdown(r[0]) for r in rows],
                              "topic": [f"{r[1]}?" if r[4] else r[1] for r in rows],
                              "chance": ["not sure" if r[4] else percent(r[2]) for r in rows]})
        return (error_update(None), unsure_note(gr, [r[4] for r in rows]),
                gr.update(visible=True, value=rows[0][3], label=UNSURE_FIRST_LABEL if rows[0][4] else FIRST_LABEL),
                gr.update(visible=True, value=shown), gr.update(visible=True, value=str(out)))

    shown = gr.on([run.click, text.submit], classify, [text, file], [error, note, label, table, download])
    shown.then(None, None, None, js=show_results_js("topics-unsure", "topics-label", "topics-table"))


FIRST_LABEL = "Topics of the first question, most likely first"
UNSURE_FIRST_LABEL = "Topics of the first question: a guess (it is unlike the questions this model learned from)"


def unsure_note(gr, reasons: list[str | None]):
    """Said above the results when some questions are unlike those the model learned from: their topics are guesses,
    however sure the figures look."""
    unsure = [r for r in reasons if r]
    if not unsure:
        return gr.update(visible=False, value="")
    which = "The first question" if len(reasons) == 1 else f"{len(unsure)} of the {len(reasons)} questions"
    return gr.update(visible=True, value=f"**Not sure:** {which} {'is' if len(unsure) == 1 else 'are'} unlike the "
                                          f"questions this model learned from ({unsure[0]}), so "
                                          f"{'its topic is' if len(unsure) == 1 else 'their topics are'} a guess "
                                          "(marked \"not sure\" in the table). Check them yourself.")


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
    # what was found first, then the listing's text (its name filled the table's width and pushed the category out of
    # sight); every field is in the downloaded file. Sized as the Topics table is, to fit a 390 px phone.
    text_fields = [f for f in fields if f in set(model.task.settings.text_fields)]
    table = gr.Dataframe(label="Every product", wrap=True, visible=False, elem_id="products-table",
                         column_widths=[f"{word_width(['category', *labels.names])}px", "72px", "42%"])
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
        shown = pd.DataFrame({"category": [p.label for p in preds], "chance": [percent(p.probability) for p in preds],
                              "product": [" · ".join(str(r[f]) for f in text_fields if str(r[f]).strip()) for r in records]})
        return (error_update(None), gr.update(visible=True, value=preds[0].probabilities),
                gr.update(visible=len(records) > 1, value=shown),
                gr.update(visible=True, value=str(out)))

    run.click(classify, [file, *boxes], [error, label, table, download]).then(
        None, None, None, js=show_results_js("products-label", "products-table"))


def _product_records(file, fields: list[str], values, max_bytes: int) -> list[dict]:
    if file:
        frame, name = read_table(file, max_bytes)
        missing = [f for f in fields if f not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {', '.join(missing)}; the model reads {', '.join(fields)}.")
        return frame[fields].to_dict("records")
    record = dict(zip(fields, (v or "" for v in values)))
    if not any(str(v).strip() for v in record.values()):
        raise ValueError("Fill in the product's fields (at least its name), or choose a CSV file.")
    return [record]
