"""A persistent semantic index: chunks (recursive character splitter), MiniLM embeddings (sentence-transformers,
normalized, so inner product = cosine), a FAISS flat inner-product index, and chunk metadata as JSONL.

Folder layout: ``index.faiss``, ``chunks.jsonl`` (text, source, meta, sha1), ``index.json`` (model, splitter
settings, counts). ``add`` appends and skips chunks whose text was indexed before. Every file is written to a
temporary name and renamed, the metadata last, so an interrupted write leaves the previous index usable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError
from .corpus import Document

INDEX_FILE, CHUNKS_FILE, META_FILE = "index.faiss", "chunks.jsonl", "index.json"
DEFAULT_EMBEDDER = "bundled:minilm"


@dataclass
class Chunk:
    text: str
    source: str
    meta: dict
    sha1: str


def split_documents(docs: Sequence[Document], chunk_size: int = 500, chunk_overlap: int = 50) -> list[Chunk]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                              separators=["\n\n", "\n", ". ", " ", ""])
    chunks = []
    for doc in docs:
        for piece in splitter.split_text(doc.text):
            piece = piece.strip()
            if piece:
                chunks.append(Chunk(piece, doc.source, doc.meta, hashlib.sha1(piece.encode("utf-8"), usedforsecurity=False).hexdigest()))
    return chunks


class Embedder:
    def __init__(self, name: str = DEFAULT_EMBEDDER, threads: int | None = None):
        from sentence_transformers import SentenceTransformer

        from ..models.registry import resolve

        self.name = name
        source = resolve(name)
        try:
            self.model = SentenceTransformer(source.path, device="cpu")
        except (OSError, ValueError) as exc:
            raise ModelError(f"embedding model {name}: cannot load it ({exc})") from None
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = get_dim()

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size * 4):
            part = list(texts[start:start + batch_size * 4])
            out[start:start + len(part)] = self.model.encode(part, batch_size=batch_size, normalize_embeddings=True,
                                                             convert_to_numpy=True, show_progress_bar=False)
            if progress:
                progress(len(part))
        return out


def new_faiss_index(kind: str, dim: int):
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 64
        return index
    raise DataError(f"index kind {kind!r}: choose flat (exact) or hnsw (approximate, faster at 100k+ chunks)")


def search(index, vectors: np.ndarray, k: int):
    """FAISS search; one query runs on one OpenMP thread (with two, a 100k flat search took 40 ms instead of 11)."""
    import faiss

    if len(vectors) == 1:
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(vectors, k)
        finally:
            faiss.omp_set_num_threads(previous)
    return index.search(vectors, k)


class Index:
    def __init__(self, folder: Path, faiss_index, chunks: list[Chunk], settings: dict):
        self.folder, self.faiss, self.chunks, self.settings = folder, faiss_index, chunks, settings
        self._seen = {c.sha1 for c in chunks}

    def __len__(self) -> int:
        return len(self.chunks)

    @classmethod
    def create(cls, folder: str | os.PathLike, embedder: str = DEFAULT_EMBEDDER, chunk_size: int = 500,
               chunk_overlap: int = 50, dim: int = 384, kind: str = "flat") -> Index:
        """kind: flat (exact) or hnsw (approximate graph search: sub-millisecond queries at 100k chunks)."""
        folder = Path(folder)
        if (folder / META_FILE).exists():
            raise DataError(f"{folder}: an index already exists; use `mathtune index add` to extend it, or remove it")
        settings = {"embedder": embedder, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "dim": dim,
                    "kind": kind, "metric": "cosine (inner product of normalized vectors)"}
        return cls(folder, new_faiss_index(kind, dim), [], settings)

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Index:
        import faiss

        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise DataError(f"{folder}: not an index folder (no {META_FILE}); build one with `mathtune index build`")
        settings = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        # one JSON object per "\n"-terminated line; str.splitlines would also split at characters such as
        # \x0c or \u2028 that json.dumps(ensure_ascii=False) leaves inside strings (LaTeX "\f" typos, for one)
        with (folder / CHUNKS_FILE).open(encoding="utf-8", newline="\n") as handle:
            chunks = [Chunk(**json.loads(line)) for line in handle if line.strip()]
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(chunks):
            raise DataError(f"{folder}: {index.ntotal} vectors but {len(chunks)} chunks; rebuild the index")
        return cls(folder, index, chunks, settings)

    def add(self, chunks: Sequence[Chunk], embedder: Embedder, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Embed and append chunks not indexed before; returns (added, skipped duplicates)."""
        fresh, skipped = [], 0
        for chunk in chunks:
            if chunk.sha1 in self._seen:
                skipped += 1
                continue
            self._seen.add(chunk.sha1)
            fresh.append(chunk)
        if fresh:
            vectors = embedder.encode([c.text for c in fresh], progress=progress)
            self.faiss.add(vectors)
            self.chunks.extend(fresh)
        return len(fresh), skipped

    def vectors(self) -> np.ndarray:
        return self.faiss.reconstruct_n(0, self.faiss.ntotal)

    def vector(self, i: int) -> np.ndarray:
        return self.faiss.reconstruct(int(i))

    def save(self) -> None:
        import faiss

        self.folder.mkdir(parents=True, exist_ok=True)
        tmp_index = self.folder / f".{INDEX_FILE}.tmp"
        faiss.write_index(self.faiss, str(tmp_index))
        tmp_chunks = self.folder / f".{CHUNKS_FILE}.tmp"
        with tmp_chunks.open("w", encoding="utf-8") as handle:
            for c in self.chunks:
                handle.write(json.dumps(c.__dict__, ensure_ascii=False) + "\n")
        os.replace(tmp_index, self.folder / INDEX_FILE)
        os.replace(tmp_chunks, self.folder / CHUNKS_FILE)
        from ..io import write_json

        write_json(self.folder / META_FILE, {**self.settings, "chunks": len(self.chunks)})
