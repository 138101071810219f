"""The Models tab, for a teacher first: per task, which model answers, what it was trained on, its score on held-out
data and when it was trained; engineer details (MLflow run, registry version, paths) folded away. Drift: the recent
requests against the training data, as plots, with no alarm before ``drift_min_requests`` requests."""

from __future__ import annotations

import html
from pathlib import Path

import yaml

from ...paths import DEMO_PREFIX
from ..describe import public_description
from .tutor_words import model_line, times_in_ten

TASK_TITLES = {"topic": "Topics", "misconception": "Misconceptions", "products": "Products", "tutor": "Tutor"}
METRIC_NAMES = {"f1_micro": "F1-micro", "f1_macro": "F1-macro", "map_at_3": "MAP@3", "map@3": "MAP@3",
                "accuracy": "accuracy", "perplexity": "perplexity", "answer_accuracy": "answer accuracy"}
KIND_TEXT = {"tfidf": "word and character patterns (TF-IDF) with a linear model",
             "transformer": "a fine-tuned language model", "sklearn": "a scikit-learn pipeline (text and numbers)",
             "generator": "a language model that writes step-by-step solutions",
             "embedding": "a sentence encoder's vectors with a linear model",
             "ensemble": "several models whose answers are averaged"}
SIGNAL_TITLES = {"text_length": "Text length", "unknown_word_share": "Share of unknown words",
                 "centroid_distance": "Distance from the training texts", "confidence": "Model confidence",
                 "predicted_class": "Predicted classes"}


def trained_on(model) -> str:
    manifest = model.manifest
    data = (manifest.get("data") or {}).get("train")
    folder = model.folder
    if not data and folder and (Path(folder) / "recipe.yaml").is_file():
        try:
            data = (yaml.safe_load((Path(folder) / "recipe.yaml").read_text(encoding="utf-8")) or {}).get("data", {}).get("train")
        except yaml.YAMLError:
            data = None
    return str(data) if data else "not recorded"


def data_words(data: str) -> str:
    """A training file as a teacher reads it: the demo's built-in questions, or the file's name (the path is an
    engineer detail)."""
    if data.startswith(DEMO_PREFIX):
        return "the built-in demo questions (CHAMP, a public set of competition math problems)"
    return "not recorded" if data == "not recorded" else f"the file {Path(data).name}"


def how_often_right(name: str, model) -> str:
    """The model's held-out score in a teacher's words: how often its answer is right; the metrics themselves are in
    the engineer details."""
    if name == "tutor":
        return model_line(model)
    validation = model.manifest.get("validation") or {}
    n = validation.get("n")
    on = f" on {n} questions it never trained on" if n else " on questions it never trained on"
    share = next((validation[k] for k in ("accuracy", "f1_micro") if validation.get(k) is not None), None)
    if share is not None:
        return f"Its answer was right {times_in_ten(float(share))}{on}."
    top3 = validation.get("map_at_3", validation.get("map@3"))
    if top3 is not None:
        return (f"It scores {float(top3):.2f} of 1{on} by MAP@3: the right answer among its first three guesses, "
                "counting more the nearer the top (1: always its first guess).")
    return "How often it is right has not been measured."


def sure_sentence(model) -> str | None:
    """How often it was right when it said it was sure, on the questions it was checked on (None: not measured)."""
    sure = (model.manifest.get("validation") or {}).get("when_sure")
    if not isinstance(sure, dict) or not sure.get("threshold"):
        return None
    threshold, rows, right = f"{float(sure['threshold']):.0%}", int(sure.get("rows", 0)), int(sure.get("right", 0))
    if not rows:
        return f"It was never {threshold} sure or more on the questions it was checked on."
    return (f"When it said it was {threshold} sure or more ({rows} question{'s' if rows != 1 else ''}), it was right {right} "
            f"time{'s' if right != 1 else ''}.")


def teacher_card(name: str, model) -> str:
    manifest = model.manifest
    lines = [f"### {TASK_TITLES.get(name, name)}",
             f"**How it works:** {KIND_TEXT.get(manifest.get('kind'), manifest.get('kind', 'a model'))}.",
             f"**How often it is right:** {how_often_right(name, model)}"
             + (f" {sure}" if (sure := sure_sentence(model)) and name != "tutor" else ""),
             f"**Trained on:** {html.escape(data_words(trained_on(model)))}"
             + (f", on {manifest['created'][:10]}" if manifest.get("created") else "") + "."]
    return "\n\n".join(lines)


def drift_summary(report: dict) -> str:
    if not report.get("available"):
        return f"Drift: not available ({report.get('reason', 'no reference')})."
    n, need = report["window_size"], report["min_samples"]
    if not report["enough_data"]:
        return f"Drift: {n} of {need} requests so far; too few to judge. No alarm until there are {need}."
    if report["drifted_signals"]:
        names = ", ".join(SIGNAL_TITLES.get(s, s) for s in report["drifted_signals"])
        return f"Drift: **recent requests differ from the training data** in {names} (last {n} requests). Consider retraining."
    return f"Drift: none; the last {n} requests look like the training data."


def drift_figure(monitor):
    """Reference vs recent-window proportions over the reference's quantile bins, one panel per signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = monitor.histograms()
    # two panels a row (a row of five was a strip a phone could not read)
    cols = min(2, len(hist))
    rows = -(-len(hist) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4, 2.3 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (name, (ref, cur)) in zip(flat, hist.items()):
        x = range(len(ref))
        ax.bar([i - 0.2 for i in x], ref, width=0.4, label="training", color="#1a56b0")
        if cur:
            ax.bar([i + 0.2 for i in x], cur, width=0.4, label="recent", color="#c05a00")
        ax.set_title(SIGNAL_TITLES.get(name, name), fontsize=10)
        ax.set_xticks([])
        ax.tick_params(labelsize=8)
        ax.set_ylabel("share of rows", fontsize=8)
    for ax in flat[len(hist):]:
        ax.set_visible(False)
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    plt.close(fig)
    return fig


def models_tab(gr, state) -> None:
    if not state.models:
        gr.Markdown("No model is loaded.")
        return
    for name, model in state.models.items():
        with gr.Group():
            gr.Markdown(teacher_card(name, model), elem_classes="mt-note")
            info = public_description(name, model, state.settings)
            if info.get("plots"):
                gr.HTML("".join(f'<img src="{html.escape(p)}" alt="{html.escape(Path(p).stem.replace("_", " "))} of the '
                                f'{html.escape(name)} model" style="max-width:100%;height:auto;margin:4px">' for p in info["plots"]))
            if getattr(model, "drift", None) is not None:
                gr.Markdown(f"**Recent requests against the training data ({TASK_TITLES.get(name, name)})**")
                summary = gr.Markdown(elem_id=f"drift-{name}")
                # no label on the plot: Gradio draws it over the figure's top left, on the first titles
                plot = gr.Plot(show_label=False, elem_id=f"drift-plot-{name}")
                refresh = gr.Button("Refresh drift", size="sm", elem_id=f"drift-refresh-{name}")

                def update(monitor=model.drift):
                    return drift_summary(monitor.report()), drift_figure(monitor)

                refresh.click(update, None, [summary, plot])
                state.on_load.append((update, None, [summary, plot]))
            with gr.Accordion("Engineer details", open=False):
                gr.JSON(info, label="Model description (/v1/models)")
