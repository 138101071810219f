"""Augmentation: number substitution keeps text well-formed; rare classes first; train split only."""

import random
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from mathtune.cli import app
from mathtune.config import AugmentConfig, recipe_from_dict
from mathtune.data.augment import BackTranslator, augment_rows, substitute_numbers
from mathtune.errors import ModelError
from mathtune.train.run import train_from_recipe


def test_number_substitution_keeps_shapes():
    rng = random.Random(0)
    text = r"Compute $\frac{3}{4} + 0.25$ of 120. Let $x_1 = 7$ and 5/8 of -16."
    out = substitute_numbers(text, rng)
    assert out != text
    assert re.search(r"\\frac\{\d\}\{[1-9]\}", out)          # LaTeX fraction, non-zero denominator
    assert re.search(r"\+ \d\.\d\d\$", out)                  # decimal keeps its places
    assert re.search(r"of \d{3}\.", out)                      # integer keeps its digit count
    assert "x_1" in out                                       # subscripts are not numbers to change
    assert re.search(r"\d/[1-9] of -\d\d\.", out)             # plain fraction and a negative number
    assert substitute_numbers("Prove that every group of prime order is cyclic.", rng) == \
        "Prove that every group of prime order is cyclic."


def test_rare_classes_first_up_to_target_without_duplicates():
    texts = [f"Solve {i}x + {i + 1} = {2 * i}." for i in range(40)] + [f"A circle has radius {i} cm." for i in range(5)]
    labels = ["algebra"] * 40 + ["geometry"] * 5
    new_texts, new_labels, report = augment_rows(texts, labels, AugmentConfig(target_count=12, max_per_example=3))
    assert set(new_labels) == {"geometry"} and 0 < len(new_texts) <= 7
    assert report.added_per_label == {"geometry": len(new_texts)}
    assert len({t.lower() for t in new_texts + texts}) == len(new_texts) + len(texts)


def test_back_translation_needs_models():
    with pytest.raises(ModelError, match="forward_model"):
        augment_rows(["a 1"], ["x"], AugmentConfig(methods=["back_translation"], target_count=3))


@pytest.fixture(scope="module")
def tiny_translator(tmp_path_factory):
    """A tiny random BART built in the test: checks the plumbing, not the translation."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from helpers import _tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-bart")
    tokenizer = _tiny_tokenizer(folder)
    config = BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                        decoder_start_token_id=tokenizer.cls_token_id, forced_eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_back_translation_plumbing(tiny_translator):
    translator = BackTranslator(str(tiny_translator), str(tiny_translator), batch_size=2, max_new_tokens=8)
    out = translator(["solve x + 1 = 2", "find the area of the circle", "what is $x^2$ at 3"])
    assert len(out) == 3
    assert all(o is None or isinstance(o, str) for o in out)


def test_augment_runs_after_split_on_train_only(topic_csv, workdir):
    raw = {"trainer": "tfidf", "data": {"train": "topics.csv", "val_size": 0.25}, "tracking": "none",
           "augment": {"methods": ["numbers"], "target_count": 30}}
    plain = train_from_recipe(recipe_from_dict({**raw, "augment": None}), "runs/plain")
    augmented = train_from_recipe(recipe_from_dict(raw), "runs/aug")
    assert augmented.metrics["n_augmented"] > 0
    assert augmented.metrics["n_validation"] == plain.metrics["n_validation"]
    assert augmented.metrics["n_train"] == plain.metrics["n_train"] + augmented.metrics["n_augmented"]


def test_augment_cli(topic_csv, workdir):
    result = CliRunner().invoke(app, ["augment", str(topic_csv), "--output", "aug.csv", "--target-count", "30"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(workdir / "aug.csv")
    assert frame["augmented"].sum() > 0 and (~frame["augmented"]).sum() == 61
