"""The retrieval index verbs: index build, add, query, eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import app, handle_errors, out, plain_metrics_table, progress_reporter

index_app = typer.Typer(help="Build, extend, search and evaluate a retrieval index for the tutor.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _index_corpus(corpora: list[str], folder: Path, create: bool, chunk_size: int, chunk_overlap: int,
                  kind: str = "flat", embedder_name: str = "bundled:minilm") -> None:
    from ..rag.corpus import read_corpus
    from ..rag.index import Embedder, Index, split_documents

    if create:
        embedder = Embedder(embedder_name)
        index = Index.create(folder, embedder=embedder_name, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                             dim=embedder.dim, kind=kind)
    else:
        index = Index.open(folder)
        embedder = Embedder(index.settings["embedder"])
    docs = [d for ref in corpora for d in read_corpus(ref)]
    chunks = split_documents(docs, index.settings["chunk_size"], index.settings["chunk_overlap"])
    with progress_reporter() as reporter:
        reporter.start(f"embed {len(chunks)} chunks from {len(docs)} documents", len(chunks))
        added, skipped = index.add(chunks, embedder, progress=reporter.advance)
    index.save()
    out.print(f"{folder}: {added} chunks added, {skipped} duplicates skipped, {len(index)} in all")


WHOLE_DOCUMENT_CHARS = 1_000_000  # the splitter's chunk size that keeps any worked example in one piece


@index_app.command("build")
@handle_errors
def index_build(
    corpus: Annotated[list[str], typer.Argument(help="demo:champ, .jsonl (GSM8K, MATH, text/content rows), .txt, .md, or folders of them.")],
    index: Annotated[Path, typer.Option("--index", help="Index folder to create.")],
    chunk_size: Annotated[int, typer.Option(help="Characters per chunk (recursive splitter).")] = 500,
    chunk_overlap: Annotated[int, typer.Option(help="Characters shared by neighbouring chunks.")] = 50,
    kind: Annotated[str, typer.Option(help="flat (exact search) or hnsw (approximate; sub-millisecond at 100k chunks).")] = "flat",
    embedder: Annotated[str, typer.Option(help="Sentence encoder: bundled:minilm, bundled:mpnet, a folder or a hub id.")] = "bundled:minilm",
    whole_documents: Annotated[bool, typer.Option("--whole-documents", help="Keep each document whole (no splitting): a GSM8K or MATH problem with its solution is one chunk, which the tutor uses as a few-shot worked example.")] = False,
) -> None:
    """Split, embed (bundled MiniLM unless --embedder says otherwise) and index documents with FAISS.

    Example: mathtune index build demo:champ gsm8k/train.jsonl --index runs/index
    Worked examples for few-shot retrieval: mathtune index build gsm8k/train.jsonl --index runs/examples --whole-documents
    """
    if whole_documents:
        chunk_size, chunk_overlap = WHOLE_DOCUMENT_CHARS, 0
    _index_corpus(corpus, index, True, chunk_size, chunk_overlap, kind, embedder)


@index_app.command("add")
@handle_errors
def index_add(
    corpus: Annotated[list[str], typer.Argument(help="More documents (same formats as build).")],
    index: Annotated[Path, typer.Option("--index", help="An existing index folder.")],
) -> None:
    """Append documents to an index without rebuilding it; chunks already indexed are skipped.

    Example: mathtune index add notes/fractions.md --index runs/index
    """
    _index_corpus(corpus, index, False, 0, 0)


@index_app.command("query")
@handle_errors
def index_query(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    question: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("-k", help="Chunks to return.")] = 5,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="Mix in BM25 keyword scores.")] = False,
    mmr: Annotated[bool, typer.Option("--mmr", help="Maximal-marginal-relevance re-ranking.")] = False,
) -> None:
    """Top-k chunks with scores and sources.

    Example: mathtune index query runs/index "sum of an arithmetic sequence" -k 5 --hybrid
    """
    from ..rag.retrieve import Retriever

    hits = Retriever.open(index).search(question, k, hybrid=hybrid, mmr=mmr)
    table = Table(title=f"top {k} for: {question}")
    for col in ("#", "score", "source", "text"):
        table.add_column(col, justify="right" if col in ("#", "score") else "left")
    for n, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        table.add_row(str(n), f"{hit.score:.3f}", hit.source, text[:160] + ("…" if len(text) > 160 else ""))
    out.print(table)


@index_app.command("eval")
@handle_errors
def index_eval(
    index: Annotated[Path, typer.Argument(help="Index folder built from demo:champ (concepts and hints).")],
    k: Annotated[int, typer.Option("-k", help="Cut-off.")] = 5,
    hybrid: Annotated[bool, typer.Option("--hybrid")] = False,
    mmr: Annotated[bool, typer.Option("--mmr")] = False,
) -> None:
    """recall@k, hit@k and MRR of CHAMP problems against the concepts and hints each one needs.

    Example: mathtune index build demo:champ --index runs/champ-index && mathtune index eval runs/champ-index
    """
    from ..rag.evaluate import champ_queries, evaluate_queries
    from ..rag.retrieve import Retriever

    metrics = evaluate_queries(Retriever.open(index), champ_queries(), k, hybrid=hybrid, mmr=mmr)
    out.print(plain_metrics_table(metrics, f"CHAMP retrieval ({'hybrid' if hybrid else 'semantic'}{', mmr' if mmr else ''})"))
