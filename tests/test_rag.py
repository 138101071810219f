"""Retrieval: build, add (duplicates skipped), query (semantic, hybrid, MMR), evaluation, bad input, tutor prompts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mathtune.cli import app
from mathtune.errors import DataError
from mathtune.rag.corpus import Document, read_corpus
from mathtune.rag.evaluate import evaluate_queries
from mathtune.rag.index import Embedder, Index, split_documents
from mathtune.rag.retrieve import CONTEXT_HEADER, Retriever

runner = CliRunner()
DOCS = [
    {"question": "A rectangle is 4 by 6. What is its area?", "answer": "Area = 4 * 6 = 24.\n#### 24"},
    {"question": "Find the sum of the first 10 positive integers.", "answer": "10 * 11 / 2 = 55.\n#### 55"},
    {"question": "What is the probability of rolling a six on a fair die?", "answer": "One of six faces: 1/6.\n#### 1/6"},
]


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture
def corpus(workdir):
    (workdir / "solutions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (workdir / "notes.md").write_text("# Arithmetic series\n\nThe sum 1 + 2 + ... + n equals n(n+1)/2.\n")
    return workdir


def test_build_query_add_and_duplicates(corpus):
    result = runner.invoke(app, ["index", "build", "solutions.jsonl", "notes.md", "--index", "idx", "--chunk-size", "200"])
    assert result.exit_code == 0, result.output
    assert "4 chunks added" in result.output
    for name in ("index.faiss", "chunks.jsonl", "index.json"):
        assert (corpus / "idx" / name).exists()
    hits = Retriever(Index.open(corpus / "idx")).search("How likely is a die to land on 6?", 2)
    assert hits[0].source == "solutions.jsonl:3" and hits[0].score > hits[1].score
    result = runner.invoke(app, ["index", "add", "solutions.jsonl", "--index", "idx"])
    assert result.exit_code == 0 and "0 chunks added, 3 duplicates skipped, 4 in all" in result.output
    (corpus / "more.txt").write_text("A prime number has exactly two divisors.")
    result = runner.invoke(app, ["index", "add", "more.txt", "--index", "idx"])
    assert "1 chunks added" in result.output and "5 in all" in result.output
    result = runner.invoke(app, ["index", "query", "idx", "sum of integers from 1 to n", "-k", "2", "--hybrid", "--mmr"])
    assert result.exit_code == 0 and "notes.md" in result.output


def test_hnsw_index(corpus):
    result = runner.invoke(app, ["index", "build", "solutions.jsonl", "--index", "hnsw", "--kind", "hnsw"])
    assert result.exit_code == 0, result.output
    index = Index.open(corpus / "hnsw")
    assert index.settings["kind"] == "hnsw" and type(index.faiss).__name__ == "IndexHNSWFlat"
    assert Retriever(index).search("probability of a six on a die", 1)[0].source == "solutions.jsonl:3"
    result = runner.invoke(app, ["index", "build", "solutions.jsonl", "--index", "bad", "--kind", "ivf"])
    assert result.exit_code == 2 and "flat" in result.output


def test_bad_input_is_named(corpus):
    (corpus / "broken.jsonl").write_text('{"question": "a", "answer": "b"}\n{oops\n')
    result = runner.invoke(app, ["index", "build", "broken.jsonl", "--index", "idx2"])
    assert result.exit_code == 2 and "broken.jsonl, line 2" in result.output
    assert not (corpus / "idx2" / "index.json").exists()
    result = runner.invoke(app, ["index", "query", "nowhere", "x"])
    assert result.exit_code == 2 and "not an index folder" in result.output
    result = runner.invoke(app, ["index", "build", "data.csv", "--index", "idx3"])
    assert result.exit_code == 2
    runner.invoke(app, ["index", "build", "notes.md", "--index", "idx4"])
    result = runner.invoke(app, ["index", "build", "notes.md", "--index", "idx4"])
    assert result.exit_code == 2 and "index add" in result.output
    with pytest.raises(DataError, match="cannot index"):
        read_corpus(str(corpus / "solutions.jsonl").replace(".jsonl", ".pdf"))


def test_chunks_with_unusual_line_breaks_round_trip(workdir, embedder):
    docs = [Document("form\x0cfeed and line\u2028separator, as in \x0crac{1}{2}", "odd.txt")]
    index = Index.create(workdir / "odd")
    index.add(split_documents(docs), embedder)
    index.save()
    assert Index.open(workdir / "odd").chunks[0].text == docs[0].text


def test_hybrid_mmr_and_relevance_metrics(workdir, embedder):
    docs = [Document("Pythagoras: a^2 + b^2 = c^2 for a right triangle.", "c1", {"champ_id": "C_pyth"}),
            Document("In a right triangle the squares of the legs add up to the square of the hypotenuse.", "c2",
                     {"champ_id": "C_pyth2"}),
            Document("The legs of a right triangle satisfy a^2 + b^2 = c^2.", "c3", {"champ_id": "C_pyth3"}),
            Document("Fermat's little theorem: a^p = a mod p for a prime p.", "c4", {"champ_id": "C_fermat"})]
    index = Index.create(workdir / "i")
    index.add(split_documents(docs), embedder)
    retriever = Retriever(index, embedder)
    plain = retriever.search("right triangle legs and hypotenuse", 2)
    diverse = retriever.search("right triangle legs and hypotenuse", 2, mmr=True, lambda_mult=0.3)
    assert len(plain) == len(diverse) == 2
    assert diverse[0].source == plain[0].source  # MMR keeps the most relevant first ...
    assert {h.source for h in retriever.search("Fermat little theorem prime", 1, hybrid=True)} == {"c4"}
    metrics = evaluate_queries(retriever, [("a^p mod p for prime p", {"C_fermat"}),
                                           ("right triangle sides", {"C_pyth", "C_pyth2", "C_pyth3"})], k=3)
    assert metrics["mrr"] == 1.0 and metrics["hit@3"] == 1.0 and 0 < metrics["recall@3"] <= 1
    context = Retriever.format_context(plain)
    assert context.startswith(CONTEXT_HEADER) and "[1] (" in context
    assert all("a^2" not in h.text for h in retriever.search("a^2 + b^2 = c^2", 4, exclude_text="a^2 + b^2 = c^2"))


def test_tutor_trains_with_retrieved_context(workdir, corpus, gsm8k_jsonl, tiny_chat_llama):
    runner.invoke(app, ["index", "build", "solutions.jsonl", "--index", "idx"])
    (workdir / "tutor.yaml").write_text(f"""
task: tutor
trainer: sft
data: {{train: gsm.jsonl, val_size: 0.2}}
model: {{name: {tiny_chat_llama}, peft: lora, max_length: 500, lora: {{r: 4, alpha: 8}}}}
train: {{epochs: 1, batch_size: 4}}
tutor: {{eval_samples: 2, max_new_tokens: 4, compare_base: false, system_prompt: solve., retrieval: {{index: idx, k: 1}}}}
tracking: none
""")
    result = runner.invoke(app, ["train", "tutor.yaml", "--output", "t"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((workdir / "t" / "mathtune.json").read_text())
    assert manifest["retrieval"]["index"] == "idx" and manifest["retrieval"]["k"] == 1


def test_an_index_built_with_another_encoder_keeps_it(corpus, tiny_bert):
    result = runner.invoke(app, ["index", "build", "solutions.jsonl", "--index", "other", "--embedder", str(tiny_bert)])
    assert result.exit_code == 0, result.output
    index = Index.open(corpus / "other")
    assert index.settings["embedder"] == str(tiny_bert) and index.settings["dim"] == 32
    result = runner.invoke(app, ["index", "add", "notes.md", "--index", "other"])  # add embeds with the same encoder
    assert result.exit_code == 0, result.output
    assert len(Index.open(corpus / "other")) == 4


def test_whole_worked_examples_become_few_shot_turns(corpus, embedder):
    from mathtune.tasks.tutor import WorkedExamples, messages, worked_example

    result = runner.invoke(app, ["index", "build", "solutions.jsonl", "notes.md", "--index", "shots", "--whole-documents"])
    assert result.exit_code == 0, result.output
    retriever = Retriever(Index.open(corpus / "shots"), embedder)
    hits = retriever.search("What is the area of a 3 by 5 rectangle?", 4)
    shots = Retriever.render(hits, "examples")
    assert isinstance(shots, WorkedExamples) and len(shots.pairs) == 3
    question, solution = shots.pairs[-1]  # the most relevant example sits next to the problem
    assert question == DOCS[0]["question"]
    assert solution.endswith("The answer is 24.") and "####" not in solution
    assert shots.passages.startswith(CONTEXT_HEADER) and "n(n+1)/2" in shots.passages  # not a worked example
    turns = messages("What is the area of a 3 by 5 rectangle?", context=shots)
    assert [t["role"] for t in turns] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert turns[-1]["content"].endswith("Problem: What is the area of a 3 by 5 rectangle?")
    assert turns[-3]["content"] == DOCS[0]["question"]
    passages = Retriever.render(hits, "passages")  # the older style: every chunk before the problem
    assert isinstance(passages, str) and "Problem: A rectangle" in passages
    with pytest.raises(ValueError, match="examples or passages"):
        Retriever.render(hits, "shots")
    # a split document is a passage, never half a worked example
    split = runner.invoke(app, ["index", "build", "solutions.jsonl", "--index", "pieces", "--chunk-size", "40",
                                "--chunk-overlap", "0"])
    assert split.exit_code == 0, split.output
    pieces = Retriever(Index.open(corpus / "pieces"), embedder).search("area of a rectangle", 3)
    assert isinstance(Retriever.render(pieces, "examples"), str)
    # a crafted chunk (from a shared index folder) is read in linear time: a backtracking pattern took minutes here
    assert worked_example("Problem:" + " " * 300_000 + "x") is None
    assert worked_example("Problem: \nSolution: 4") is None and worked_example("Solution: 4") is None
    result = runner.invoke(app, ["ask", "nowhere", "1 + 1?", "--index", "shots", "--retrieval-style", "shots"])
    assert result.exit_code == 2 and "choose examples or passages" in result.output
