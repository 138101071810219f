"""Retrieval for the tutor: split worked solutions and concepts into chunks, embed them with MiniLM
(sentence-transformers), keep a FAISS index with metadata on disk, and search it (semantic, hybrid with BM25,
MMR re-ranking)."""
