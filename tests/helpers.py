"""What several test modules share that is not a fixture: the repository's path, recipes written for a test, the
small generated data sets (topics, misconceptions, products) and a working folder that is also the data directory.
conftest.py builds its fixtures from these; tests import them from here, never from conftest."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TOPICS = {
    "0": ["Solve for x: {a}x + {b} = {c}.", "Factor the polynomial x^2 + {a}x + {b}.", "Simplify ({a}x + {b})({c}x - 1)."],
    "1": ["A triangle has sides {a}, {b} and {c}. Find its area.", "Find the angle of a circle sector with radius {a}.",
          "Compute sin({a} degrees) + cos({b} degrees) for the triangle."],
    "4": ["Find the remainder when {a}^{b} is divided by {c}.", "How many divisors does {a}{b} have? Is it prime?",
          "Find the greatest common divisor of {a} and {c}."],
}


def _rows(n_per_class: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for label, templates in TOPICS.items():
        for _ in range(n_per_class):
            text = rng.choice(templates).format(a=rng.randint(2, 99), b=rng.randint(2, 99), c=rng.randint(2, 99))
            rows.append({"Question": text, "label": label})
    rng.shuffle(rows)
    for i, row in enumerate(rows):
        row["id"] = str(i)
    return rows


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@contextlib.contextmanager
def data_folder(folder: Path):
    """Work in ``folder`` with it as the data directory (a module fixture's own), then put both back."""
    old = os.getcwd()
    os.chdir(folder)
    os.environ["MATHTUNE_DATA_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.chdir(old)
        os.environ.pop("MATHTUNE_DATA_DIR", None)

QUESTIONS = {
    "101": ("What is 1/2 + 1/4?", "3/4", {"2/6": "Adding_across", "1/6": "Adding_across"}),
    "202": ("Which is bigger, 0.5 or 0.45?", "0.5", {"0.45": "Longer_is_bigger"}),
    "303": ("Simplify 6/8.", "3/4", {"6/4": "Denominator-only_change"}),
}
EXPLAIN = {
    "Correct": ["I added the fractions using a common denominator", "because a half is two quarters"],
    "Misconception": ["I added the tops and the bottoms", "the longer number is bigger", "only the bottom changes"],
    "Neither": ["I guessed", "not sure"],
}


def make_rows(n_per_q: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for qid, (text, right, wrongs) in QUESTIONS.items():
        for i in range(n_per_q):
            kind = rng.choice(["Correct", "Misconception", "Neither"])
            if kind == "Correct":
                answer, category, mis = right, "True_Correct", "NA"
            elif kind == "Misconception":
                answer = rng.choice(list(wrongs))
                category, mis = "False_Misconception", wrongs[answer]
            else:
                answer = rng.choice([right, *wrongs])
                category, mis = ("True_Neither" if answer == right else "False_Neither"), "NA"
            rows.append({"row_id": str(len(rows)), "QuestionId": qid, "QuestionText": text, "MC_Answer": answer,
                         "StudentExplanation": rng.choice(EXPLAIN[kind]) + f" {i}", "Category": category, "Misconception": mis})
    return pd.DataFrame(rows)


WORDS = {"shoes": ["running", "sneaker", "leather", "sole"], "kitchen": ["steel", "pan", "cooker", "knife"],
         "toys": ["lego", "puzzle", "doll", "blocks"]}


def records(n: dict, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for label, count in n.items():
        for i in range(count):
            rows.append({"title": " ".join(rng.choices(WORDS[label], k=3)), "description": f"{label} item {i}",
                         "brand": rng.choice(["acme", "zen", ""]), "price": f"₹{rng.randint(100, 9000):,}",
                         "also_buy": str([f"B{j}" for j in range(rng.randint(0, 4))]), "main_cat": label,
                         "link": f"https://x/{label}/{i}"})
    rows.append(dict(rows[0]))  # a duplicate link
    return pd.DataFrame(rows)


def _tiny_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("+-*/^=()?.,:'\\")
    words = sorted({w.strip(".,?:()").lower() for t in sum(TOPICS.values(), []) for w in t.split() if w.isalpha()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
    folder.mkdir(parents=True, exist_ok=True)
    words = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    # transformers 5 takes the vocabulary itself (a vocab_file argument is ignored and every token is [UNK])
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    return tokenizer


def fine_tuned_topics(tiny_bert: Path, peft: str = "lora", max_length: int = 64, epochs: int = 1,
                      val_size: float = 0.25, output: str = "runs/bert") -> Path:
    """A topic classifier fine-tuned from the tiny BERT on topics.csv in the working folder (seconds)."""
    from mathtune.config import recipe_from_dict
    from mathtune.train.run import train_from_recipe

    recipe = recipe_from_dict({"trainer": "finetune", "data": {"train": "topics.csv", "val_size": val_size},
                               "tracking": "none", "model": {"name": str(tiny_bert), "peft": peft, "max_length": max_length},
                               "train": {"epochs": epochs, "batch_size": 8, "learning_rate": 5e-3}})
    return train_from_recipe(recipe, output).output
