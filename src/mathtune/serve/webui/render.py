"""Math in text, rendered right: ``$$...$$``, ``\\(...\\)`` and ``\\[...\\]`` are always math; a single ``$...$`` only
when it reads as math by the usual rule (the opening ``$`` followed by a non-space, the closing ``$`` preceded by a
non-space and not followed by a digit). Money stays money: "a pen costs $2 and a book costs $5" is text.

The browser's KaTeX (bundled in Gradio's front end) is told only the unambiguous delimiters (``LATEX``); single-dollar
math is rewritten to ``\\(...\\)`` here, on the server, so every message (questions, answers, the user's own) follows
one rule.
"""

from __future__ import annotations

import re

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "\\[", "right": "\\]", "display": True},
         {"left": "\\(", "right": "\\)", "display": False}]

# $$...$$ and code (fenced blocks, inline `code`) pass through untouched: a program's "$" is Python, not money
_DISPLAY = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`|\$\$.+?\$\$", re.S)
# $ not escaped and not part of $$; then a non-space; ...; a non-space; a closing $ not followed by a digit or $
_INLINE = re.compile(r"(?<![\\$])\$(?=[^\s$])((?:\\\$|[^$\n])*?[^\s\\$])\$(?![\d$])")


def math_markdown(text: str) -> str:
    """``text`` with single-dollar math as ``\\(...\\)`` and every other ``$`` escaped as a literal dollar sign."""
    out, last = [], 0
    for block in _DISPLAY.finditer(text):  # $$...$$ and code pass through untouched
        out.append(_inline(text[last:block.start()]))
        out.append(block.group(0))
        last = block.end()
    out.append(_inline(text[last:]))
    return "".join(out)


def answer_markdown(answer: str) -> str:
    """A final answer as the page shows it: a bare LaTeX answer (``\\frac{\\pi}{4}``, read from ``\\boxed{}`` or a
    program's sympy result) is math; anything else goes through ``math_markdown``."""
    bare = "$" not in answer and "\\(" not in answer and "\\[" not in answer
    return f"\\({answer}\\)" if bare and re.search(r"\\[A-Za-z]|[\^_]", answer) else math_markdown(answer)


def _inline(text: str) -> str:
    pieces, last = [], 0
    for match in _INLINE.finditer(text):
        pieces.append(_literal(text[last:match.start()]))
        pieces.append("\\(" + match.group(1) + "\\)")
        last = match.end()
    pieces.append(_literal(text[last:]))
    return "".join(pieces)


def _literal(text: str) -> str:
    return re.sub(r"(?<!\\)\$", r"\\$", text)


_OPENERS = (("\\[", "\\]"), ("\\(", "\\)"))


def settled(text: str) -> str:
    """What of a half-streamed answer can be drawn: up to a math span that is still open (``\\[`` without its
    ``\\]``, ``\\(`` without ``\\)``, an odd ``$$``), which is held back until it closes, so the page never shows
    raw LaTeX that renders a moment later."""
    cut = len(text)
    for opener, closer in _OPENERS:
        at = text.rfind(opener)
        if at >= 0 and text.find(closer, at + len(opener)) < 0:
            cut = min(cut, at)
    if text.count("$$") % 2:
        cut = min(cut, text.rfind("$$"))
    return text[:cut].rstrip()


_UNIT_AFTER = r"(?:%|percent|km/h|mph|km|cm|mm|m|kg|g|hours?|minutes?|seconds?|days?|weeks?|years?|cents?|dollars?)"


def with_unit(final: str, answer: str) -> str:
    """A bare number as the steps write it: "16" is "$16" when the steps write "$16", "80" is "80 km/h" when they
    write "80 km/h" (money first, then the last unit used); anything else as it is."""
    if not re.fullmatch(r"-?\d[\d,]*(?:\.\d+)?", final.strip()):
        return final
    number = re.escape(final.strip())
    mentions = list(re.finditer(rf"(\\?\$\s?)?(?<![\d.,]){number}(?![\d.,]\d)(\s?{_UNIT_AFTER}\b)?", answer))
    if not mentions:
        return final
    if any(m.group(1) for m in mentions):
        return f"${final.strip()}"
    units = [m.group(2) for m in mentions if m.group(2)]
    return final.strip() + units[-1] if units else final
