"""Documents to index: GSM8K and MATH solutions, CHAMP concepts and hints, plain text, Markdown and JSONL files.

Each document carries a ``source`` (where it came from, shown to the user) and metadata used to judge relevance
in evaluation (MATH: ``subject``; CHAMP: ``champ_id`` of the concept or hint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..tasks.tutor import WORKED_EXAMPLE


@dataclass
class Document:
    text: str
    source: str
    meta: dict = field(default_factory=dict)


def champ_documents() -> list[Document]:
    """CHAMP's 89 concepts and 456 hints (``demo:champ``)."""
    from ..data.demo import champ_json

    data = champ_json()
    docs = []
    for cid, c in data["concepts"].items():
        title = f"{c.get('name')}: " if c.get("name") else ""
        docs.append(Document(f"{title}{c['_text']}", f"champ concept {cid}",
                             {"champ_id": cid, "kind": "concept", "category": c.get("category")}))
    for hid, h in data["hints"].items():
        docs.append(Document(h["_text"], f"champ hint {hid}", {"champ_id": hid, "kind": "hint"}))
    return docs


def _jsonl_documents(path: Path) -> list[Document]:
    docs = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {line_no}: not valid JSON ({exc.msg}); fix or remove the line") from None
            question = row.get("question") or row.get("problem") or row.get("title") or ""
            body = row.get("answer") if "question" in row else row.get("solution") or row.get("text") or row.get("content")
            if not body:
                raise DataError(f"{path}, line {line_no}: no text field (answer, solution, text or content)")
            text = WORKED_EXAMPLE.format(question=question, solution=body) if question else str(body)
            meta = {k: row[k] for k in ("type", "subject", "level", "unique_id") if k in row}
            if "type" in meta and "subject" not in meta:
                meta["subject"] = meta.pop("type")
            docs.append(Document(text, f"{path.name}:{line_no}", meta))
    return docs


def read_corpus(ref: str) -> list[Document]:
    """``demo:champ`` or a file (.jsonl, .txt, .md) or a folder of them."""
    if ref == "demo:champ":
        return champ_documents()
    from ..paths import resolve_data_path

    path = resolve_data_path(ref)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".txt", ".md"))
        if not files:
            raise DataError(f"{path}: no .jsonl, .txt or .md files to index")
        return [d for f in files for d in read_corpus(str(f))]
    if path.suffix == ".jsonl":
        return _jsonl_documents(path)
    if path.suffix in (".txt", ".md"):
        try:
            return [Document(path.read_text(encoding="utf-8"), path.name, {})]
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from None
    raise DataError(f"{path}: cannot index {path.suffix or 'this'} files; use .jsonl, .txt, .md or demo:champ")
