"""What every tab shares: errors shown in place in plain words, the theme (system fonts: nothing from a CDN),
the small CSS Gradio lacks, and the tutor's measured accuracy."""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path

import pandas as pd
from fastapi import HTTPException

from ...errors import MathtuneError

# Accuracy measured by bench/tutor_modes.py (GSM8K: a fixed sample of train.jsonl; MATH-500: the first problems),
# llama.cpp on 2 CPU cores, written into measured.json by `make docs` (bench/report.py; tests/test_docs.py fails when
# it is stale). Shown on the Tutor tab so a teacher knows how far to trust an answer.
MEASURED = json.loads((Path(__file__).with_name("measured.json")).read_text(encoding="utf-8"))

# Gradio's default theme with system fonts (its default loads web fonts), and borders/links at WCAG AA contrast.
CSS = """
.gradio-container { max-width: 1100px !important; margin: 0 auto; }
.gradio-container input, .gradio-container textarea { border-color: #6b6b6b !important; }
.error-box { border-left: 4px solid #a40000; background: #fff3f3; color: #6d0000; padding: .5rem .75rem; border-radius: 4px; }
.error-box p { margin: 0; }
.final-answer { font-size: 1.05rem; }
.mt-note { color: #3d3d3d; }
#tutor-chat .message-row.user-row::before { content: "You"; font-weight: 600; font-size: .8rem; color: #333; display: block; }
#tutor-chat .message-row.bot-row::before { content: "Tutor"; font-weight: 600; font-size: .8rem; color: #333; display: block; }
/* phones: wide tables scroll inside their own box instead of widening the page */
.gradio-container .block, .gradio-container .column { min-width: 0 !important; max-width: 100%; }
#topics-table, #products-table, #mis-table { overflow-x: auto; max-width: calc(100vw - 24px) !important; }
#topics-table .table-wrap, #products-table .table-wrap, #mis-table .table-wrap { max-width: 100%; overflow-x: auto; }
@media (max-width: 500px) { .gradio-container { padding: 0 6px !important; } .tabs button { padding: 4px 8px; } }
/* tables: a header never breaks inside a word; body cells are divs, kept whole by their columns' widths
   (webui/classify.py word_width; the class-set table by shares), not by a rule here; a too wide table scrolls */
#topics-table td, #topics-table th, #products-table td, #products-table th, #mis-table td, #mis-table th,
#topics-table td *, #topics-table th *, #products-table td *, #products-table th *, #mis-table td *, #mis-table th * {
  word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }
/* code in an answer wraps inside its bubble instead of widening the page (a phone at 390 px) */
#tutor-chat pre, #tutor-chat code { white-space: pre-wrap !important; overflow-wrap: anywhere; max-width: 100%; }
/* the chat's label and its copy/clear icons get a band of their own: messages scroll below it, never under it */
#tutor-chat .bubble-wrap { margin-top: 2.6rem; height: calc(100% - 2.6rem); padding-top: var(--spacing-md); }
/* a copy button says it copied (the page's own copy, COPY_PLAIN_JS) */
#tutor-chat button.mt-copied { position: relative; outline: 2px solid var(--color-accent); }
#tutor-chat button.mt-copied::after { content: "Copied"; position: absolute; top: 110%; right: 0; font-size: 12px;
  background: var(--background-fill-primary); border: 1px solid var(--color-accent); padding: 1px 4px; }
/* phones: the conversation uses the screen's height, so the newest answer is read where it streams */
@media (max-width: 500px) { #tutor-chat { height: 70vh !important; max-height: 70vh !important; } }
"""

# Before an answer starts: bring the conversation into view (on a phone the page would stay at the input box);
# the values pass through unchanged to the server.
SHOW_CHAT_JS = """(...args) => {
  document.getElementById('tutor-chat')?.scrollIntoView({block: 'start'});
  // the newest turn in view: the chat's own box scrolls to its end as the question and the answer arrive (Gradio
  // follows only a box already at its end, so in a long chat read higher up the new answer stayed out of sight)
  const end = () => { const w = document.querySelector('#tutor-chat .bubble-wrap'); if (w) w.scrollTop = w.scrollHeight; };
  for (const ms of [0, 300, 1000, 2500]) setTimeout(end, ms);
  return args; }"""


# After a classifier's results arrive: bring the first of them into view when it is below the fold (a phone, where
# the input fills the screen and the results started out of sight). ``ids``: the result elements, first first.
def show_results_js(*ids: str) -> str:
    return ("() => { for (const id of " + json.dumps(list(ids)) + ") { const e = document.getElementById(id);"
            " if (!e || e.offsetParent === null) continue;"
            " if (e.getBoundingClientRect().top > window.innerHeight - 80) e.scrollIntoView({block: 'start'});"
            " return; } }")


# Copy puts plain text on the clipboard: the steps and the final answer as the page shows them (math as its TeX,
# without markdown's stars and fences, without the italic note on how it was checked); Gradio's own copy buttons
# would copy the markdown. Run once when the page loads; it answers the chat's copy buttons before Gradio does.
COPY_PLAIN_JS = r"""() => {
  const plain = (body) => {
    const copy = body.cloneNode(true);
    copy.querySelectorAll('button, svg, .message-buttons').forEach(e => e.remove());
    copy.querySelectorAll('.katex-display, .katex').forEach(k => {
      const tex = k.querySelector('annotation'); if (copy.contains(k)) k.replaceWith(tex ? tex.textContent : k.textContent); });
    copy.querySelectorAll('p').forEach(p => { const only = p.children.length === 1 && p.firstElementChild;
      if (only && only.tagName === 'EM' && p.textContent.trim() === only.textContent.trim()) p.remove(); });
    const holder = document.createElement('div');  // innerText needs a laid-out element: off screen for a moment
    holder.style.cssText = 'position:fixed;left:-10000px;top:0;width:600px';
    holder.appendChild(copy); document.body.appendChild(holder);
    const text = holder.innerText.replace(/\n{3,}/g, '\n\n').trim();
    holder.remove();
    return text;
  };
  window.addEventListener('click', (event) => {
    const button = event.target.closest && event.target.closest('#tutor-chat button');
    const label = ((button && (button.getAttribute('aria-label') || button.title)) || '').toLowerCase();
    if (!label.startsWith('copy')) return;
    // a message's copy button follows its message: the last message before the button
    const before = [...document.querySelectorAll('#tutor-chat .message-content')]
      .filter(m => m.compareDocumentPosition(button) & Node.DOCUMENT_POSITION_FOLLOWING);
    const bodies = label.includes('conversation') ? [...document.querySelectorAll('#tutor-chat .message-content')]
                                                  : before.slice(-1);
    if (!bodies.length || !navigator.clipboard) return;
    event.stopImmediatePropagation(); event.preventDefault();
    navigator.clipboard.writeText(bodies.map(plain).filter(Boolean).join('\n\n')).then(() => {
      button.classList.add('mt-copied'); setTimeout(() => button.classList.remove('mt-copied'), 1500); });
  }, true);
}"""


def theme():
    import gradio as gr

    system = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"]).set(
        input_border_color="#6b6b6b", input_border_color_dark="#9a9a9a", button_secondary_text_color="#1a1a1a",
        block_info_text_color="#3d3d3d", button_primary_background_fill="#1a56b0",
        button_primary_background_fill_hover="#15468f", button_primary_text_color="#ffffff",
        button_cancel_background_fill="#a40000", button_cancel_background_fill_hover="#7d0000",
        button_cancel_text_color="#ffffff", color_accent="#1a56b0", color_accent_soft="#e6eefb",
        body_text_color_subdued="#4a4a4a", block_label_text_color="#3d3d3d")


def plain_error(exc: BaseException) -> str:
    """An exception as a sentence for a teacher: the server's own message, never a traceback."""
    if isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "; ".join(
            str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in exc.detail)
        return detail[:1:].upper() + detail[1:]
    if isinstance(exc, (MathtuneError, ValueError)):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "This took too long and was stopped. Try a shorter text, or try again in a moment."
    return "Something went wrong on the server (it is logged). Try again; if it keeps happening, tell whoever runs it."


def error_update(message: str | None):
    """The error box beside an input: shown with the message, or hidden."""
    import gradio as gr

    if not message:
        return gr.update(value="", visible=False)
    return gr.update(value=f'<div class="error-box" role="alert"><p>{html.escape(message)}</p></div>', visible=True)


def percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def uploaded_file(file, max_bytes: int) -> Path:
    """The file a client uploaded to this app, or ValueError: a path sent in an API call is read only when it is a
    regular file inside Gradio's upload folder (never a server file named by a crafted request), and no larger
    than the server's upload limit."""
    import gradio.utils

    path = Path(file if isinstance(file, str) else getattr(file, "name", None) or file.get("path", ""))
    folder = Path(gradio.utils.get_upload_folder()).resolve()
    if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(folder):
        raise ValueError(f"{path.name or 'that file'} is not a file uploaded here; choose the CSV file again")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path.name} is larger than this server takes ({max_bytes:,} bytes); split it")
    return path


# What each tab does, for a teacher who finds it empty (no model of its kind is loaded)
WHAT_IT_DOES = {
    "topic": "finds the topic of each math question you type or upload (a class worksheet as a CSV file), so "
             "you can sort questions by topic",
    "misconception": "reads a student's explanation of a multiple-choice answer and names the misconception "
                     "behind it, for one student or a class set of answers in a CSV file",
    "products": "sorts product listings into categories, one listing or a CSV file of them",
}


def not_served(task: str, recipe: str) -> str:
    return (f"This tab {WHAT_IT_DOES[task]}. It is not turned on here: no {task} model is loaded on this server. "
            f"Whoever runs the server can turn it on: train one with `mathtune train recipes/{recipe} --output "
            f"runs/{task}` and start the server with `--model runs/{task}`.")


def read_table(file, max_bytes: int) -> tuple[pd.DataFrame, str]:
    """An uploaded CSV as text columns, and its name, or ValueError saying how to save it."""
    path = uploaded_file(file, max_bytes)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False), path.name
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path.name} could not be read as CSV ({str(exc).splitlines()[0]}). Save it as CSV "
                         "(UTF-8) and choose it again.") from None
