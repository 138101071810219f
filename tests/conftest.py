"""Shared fixtures: tiny random models built in the test, tiny data, an isolated working folder."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import REPO, TOPICS, _rows, _tiny_tokenizer, data_folder, make_rows, records, write_recipe  # noqa: E402,F401
from mathtune.config import recipe_from_dict  # noqa: E402 (after the offline switches)
from mathtune.train.run import train_from_recipe  # noqa: E402


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a temporary folder with its own MLflow store and data directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MATHTUNE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def topic_csv(workdir) -> Path:
    frame = pd.DataFrame(_rows(20, seed=1))[["Question", "label"]]
    # one row stored as a Python bytes literal, as in the Kaggle data
    frame.loc[len(frame)] = ["b'Solve 0 = -3*i - 91*i for i.\\n'", "0"]
    path = workdir / "topics.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def topic_test_csv(workdir) -> Path:
    frame = pd.DataFrame(_rows(4, seed=2))[["id", "Question"]]
    path = workdir / "test.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def labelled_eval_csv(workdir) -> Path:
    frame = pd.DataFrame(_rows(5, seed=3))[["Question", "label"]]
    path = workdir / "eval.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder with 32 hidden units and its tokenizer, saved as a local model folder."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = _tiny_tokenizer(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama decoder (for the decoder-with-classification-head path)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = _tiny_tokenizer(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_chat_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama causal LM whose tokenizer has a chat template (for the tutor)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-chat-llama")
    tokenizer = _tiny_tokenizer(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                         tie_word_embeddings=False)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def gsm8k_jsonl(workdir) -> Path:
    """GSM8K-format problems: question, and an answer with calculator notes and '#### final'."""
    import json

    rng = random.Random(5)
    lines = []
    for _ in range(30):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        lines.append(json.dumps({"question": f"Tom has {a} apples and gets {b} more. How many apples?",
                                 "answer": f"Tom has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}))
    path = workdir / "gsm.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- data and models several modules use


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):

    folder = tmp_path_factory.mktemp("served")
    with data_folder(folder):
        pd.DataFrame(_rows(20, seed=1))[["Question", "label"]].to_csv("topics.csv", index=False)
        make_rows(40).to_csv("map.csv", index=False)
        records({"shoes": 30, "kitchen": 30, "toys": 10}).to_csv("products.csv", index=False)
        topic = train_from_recipe(recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv"}, "tracking": "none"}), "topic")
        mis = train_from_recipe(recipe_from_dict({"task": "misconception", "trainer": "tfidf", "tracking": "none",
                                                  "data": {"train": "map.csv", "id_column": "row_id"},
                                                  "tfidf": {"classifier": "logreg", "min_df": 1}}), "mis")
        prod = train_from_recipe(recipe_from_dict({"task": "products", "trainer": "sklearn", "tracking": "none",
                                                   "data": {"train": "products.csv", "label_column": "main_cat"},
                                                   "products": {"text_fields": ["title"], "numeric_fields": ["price"],
                                                                "classifier": "linear", "cv_folds": 2}}), "prod")
    return [str(folder / p.output) for p in (topic, mis, prod)]


@pytest.fixture(scope="session")
def tutor_dir(tmp_path_factory, tiny_chat_llama):
    from mathtune.rag.corpus import Document
    from mathtune.rag.index import Embedder, Index, split_documents

    folder = tmp_path_factory.mktemp("tutor-served")
    with data_folder(folder):
        (folder / "gsm.jsonl").write_text("".join(
            json.dumps({"question": f"what is {a} plus {a}?", "answer": f"{a} + {a} = {2 * a}\n#### {2 * a}"}) + "\n"
            for a in range(2, 22)))
        index = Index.create(folder / "idx")
        index.add(split_documents([Document("to add two numbers, count on from the first.", "notes.md")]), Embedder())
        index.save()
        recipe = recipe_from_dict({
            "task": "tutor", "trainer": "sft", "tracking": "none", "data": {"train": "gsm.jsonl"},
            "model": {"name": str(tiny_chat_llama), "peft": "lora", "max_length": 300, "lora": {"r": 4, "alpha": 8}},
            "train": {"epochs": 1, "batch_size": 4},
            "tutor": {"eval_samples": 0, "compare_base": False, "system_prompt": "solve.", "max_new_tokens": 6,
                      "retrieval": {"index": str(folder / "idx"), "k": 1}}})
        result = train_from_recipe(recipe, "tutor")
    return str(folder / result.output)


@pytest.fixture(scope="session")
def tiny_topic_model(tmp_path_factory) -> Path:
    """A TF-IDF topic model trained on tiny generated questions (seconds), as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-topic")
    with data_folder(folder):
        pd.DataFrame(_rows(20, seed=1))[["Question", "label"]].to_csv("topics.csv", index=False)
        result = train_from_recipe(recipe_from_dict({"trainer": "tfidf", "data": {"train": "topics.csv"},
                                                     "tracking": "none"}), "topic")
    return folder / result.output
