"""Which signal tells a question unlike the topic training questions (issue #48 item 8)? On math-topics train.csv
split 70/15/15 (train / validation for the 99th-percentile limit / held out), each signal's area under the ROC curve
separating GSM8K questions (grade-school word problems, the last 800 of gsm8k/train.jsonl) from the held-out
math-topics questions, and the share of each set past the validation limit: the unknown-word share (what the Topics
tab uses), the distance from the training centroid, TF-IDF nearest neighbours (words, characters), and MiniLM
nearest neighbours (k = 1, 5, 20).

    python bench/experiments/familiarity_signals.py    # writes bench/results/familiarity_signals.json (~5 min)
"""
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from mathtune.metrics.drift import SignalExtractor  # noqa: E402
from mathtune.paths import data_dir  # noqa: E402

root = data_dir()
with open(root / "math-topics" / "train.csv", encoding="utf-8", newline="") as handle:
    rows = list(csv.DictReader(handle))
texts, y = [r["Question"] for r in rows], [int(r["label"]) for r in rows]
train, rest, _, y_rest = train_test_split(texts, y, test_size=0.3, stratify=y, random_state=0)
val, held = train_test_split(rest, test_size=0.5, stratify=y_rest, random_state=0)
gsm = [json.loads(line)["question"] for line in (root / "gsm8k" / "train.jsonl").read_text().splitlines()[-800:]]
sets = {"validation": val, "held_out": held, "gsm8k": gsm}
out = {"rows": {name: len(v) for name, v in {"train": train, **sets}.items()}, "signals": {}}


def report(name, score):  # higher: less like the training questions
    s = {k: np.asarray(score(v)) for k, v in sets.items()}
    limit = np.quantile(s["validation"], 0.99)
    auc = roc_auc_score([0] * len(s["held_out"]) + [1] * len(s["gsm8k"]), np.r_[s["held_out"], s["gsm8k"]])
    out["signals"][name] = {"auc_gsm8k_vs_held_out": round(float(auc), 3),
                            "past_limit_held_out": round(float(np.mean(s["held_out"] > limit)), 3),
                            "past_limit_gsm8k": round(float(np.mean(s["gsm8k"] > limit)), 3)}
    print(name, out["signals"][name], flush=True)


extractor = SignalExtractor.fit(train)
report("unknown_word_share", lambda t: extractor.signals(t)["unknown_word_share"])
report("centroid_distance", lambda t: extractor.signals(t)["centroid_distance"])
for kind, settings in (("words", {"ngram_range": (1, 2)}), ("characters", {"analyzer": "char_wb", "ngram_range": (3, 5)})):
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, **settings).fit(train)
    matrix = vectorizer.transform(train)
    for k in (1, 10):
        report(f"tfidf_{kind}_nearest_{k}",
               lambda t, k=k, v=vectorizer, m=matrix: 1 - np.sort((v.transform(t) @ m.T).toarray(), axis=1)[:, -k:].mean(axis=1))

from sentence_transformers import SentenceTransformer  # noqa: E402

from mathtune.models.registry import resolve  # noqa: E402

encoder = SentenceTransformer(resolve("bundled:minilm").path, device="cpu")
encoder.max_seq_length = 256
vectors = {name: encoder.encode(v, batch_size=64, normalize_embeddings=True) for name, v in {"train": train, **sets}.items()}
lookup = {id(v): vectors[name] for name, v in sets.items()}
for k in (1, 5, 20):
    report(f"minilm_nearest_{k}", lambda t, k=k: 1 - np.sort(lookup[id(t)] @ vectors["train"].T, axis=1)[:, -k:].mean(axis=1))
path = Path(__file__).resolve().parents[1] / "results" / "familiarity_signals.json"
path.write_text(json.dumps(out, indent=1) + "\n")
