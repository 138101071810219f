"""Misconceptions: does fitting one TF-IDF model per question, or dropping the True_/False_ prefix, beat the
single model of misconception-tfidf? (issue: several Kaggle solutions did both.)

    python bench/experiments/misconception_structure.py     # writes bench/results/misconception_structure.json

Same split as the recipes (stratified 80/20, seed 0), same word (1-2) + char (2-5) TF-IDF and logistic regression
(C = 10) as recipes/misconception-tfidf.yaml. Every variant ranks only the labels seen for the row's question,
with the True_/False_ half set by whether the chosen answer is the question's right one (learnt from training rows):
- ``single``: one model over all rows, the full prompt (what misconception-tfidf trains);
- ``per_question``: one model per QuestionId over "answer | explanation" (the question is known, so its text adds
  nothing within a question);
- ``per_question_no_prefix``: the same with labels without their True_/False_ prefix (65 -> 37 labels), the prefix
  put back from the answer's correctness;
- ``single_no_prefix``: the single model with labels without the prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "misconception_structure.json")
    parser.add_argument("--variants", nargs="*", default=["single", "per_question", "per_question_no_prefix", "single_no_prefix"])
    args = parser.parse_args()
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from mathtune.config import load_recipe
    from mathtune.metrics.ranking import average_precision_at_k
    from mathtune.train.classical import TOKEN_PATTERN
    from mathtune.train.run import load_splits

    recipe = load_recipe(REPO / "recipes" / "misconception-tfidf.yaml")
    train, val = load_splits(recipe)
    tf, vf = train.frame, val.frame
    votes = defaultdict(Counter)
    for q, a, label in zip(tf.QuestionId, tf.MC_Answer, train.raw_labels):
        if label.startswith("True_"):
            votes[q][a] += 1
    right = {q: c.most_common(1)[0][0] for q, c in votes.items()}
    seen = defaultdict(set)
    for q, label in zip(tf.QuestionId, train.raw_labels):
        seen[q].add(label)
    truth = val.raw_labels

    def vectorizers():
        common = dict(min_df=2, sublinear_tf=True, dtype=np.float32)
        return [TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=TOKEN_PATTERN, **common),
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common)]

    def fit_predict(texts_a, labels_a, texts_b):
        if len(set(labels_a)) == 1:
            return np.array([labels_a[0]]), np.ones((len(texts_b), 1))
        vs = vectorizers()
        xa = hstack([v.fit_transform(texts_a) for v in vs]).tocsr()
        xb = hstack([v.transform(texts_b) for v in vs]).tocsr()
        clf = LogisticRegression(C=10.0, max_iter=3000, random_state=0).fit(xa, labels_a)
        return clf.classes_, clf.predict_proba(xb)

    def rank(rows, classes, probs, no_prefix):
        out = []
        for row, p in zip(rows, probs):
            q, a = vf.QuestionId.iloc[row], vf.MC_Answer.iloc[row]
            prefix = "True_" if right.get(q) == a else "False_"
            scores = defaultdict(float)
            for c, v in zip(classes, p):
                label = prefix + c if no_prefix else c
                if label.startswith(prefix) and label in seen[q]:
                    scores[label] += v
            out.append(sorted(scores, key=lambda k: -scores[k])[:3] or ["?"])
        return out

    short = lambda f: (f.MC_Answer.astype(str) + " | " + f.StudentExplanation.astype(str)).tolist()  # noqa: E731
    strip = lambda labels: [label.split("_", 1)[1] for label in labels]  # noqa: E731
    results = {"benchmark": "misconception_structure", "data": "map-misconceptions/train.csv, stratified 80/20, seed 0",
               "n_train": len(tf), "n_validation": len(vf), "variants": {}}
    for variant in args.variants:
        start = time.perf_counter()
        no_prefix = variant.endswith("no_prefix")
        ranked: list = [None] * len(vf)
        if variant.startswith("single"):
            labels = strip(train.raw_labels) if no_prefix else train.raw_labels
            classes, probs = fit_predict(train.texts, labels, val.texts)
            for i, r in enumerate(rank(range(len(vf)), classes, probs, no_prefix)):
                ranked[i] = r
        else:
            texts_a, texts_b = short(tf), short(vf)
            for q in sorted(set(tf.QuestionId)):
                a = np.where(tf.QuestionId == q)[0]
                b = np.where(vf.QuestionId == q)[0]
                if not len(b):
                    continue
                labels = [train.raw_labels[i] for i in a]
                classes, probs = fit_predict([texts_a[i] for i in a], strip(labels) if no_prefix else labels,
                                             [texts_b[i] for i in b])
                for row, r in zip(b, rank(b, classes, probs, no_prefix)):
                    ranked[row] = r
        names = sorted({label for r in ranked for label in r} | set(truth))
        index = {n: i for i, n in enumerate(names)}
        top = np.array([[index[x] for x in (r + r[-1:] * 3)[:3]] for r in ranked])
        y = np.array([index[t] for t in truth])
        entry = {"map@3": round(float(average_precision_at_k(y, top, 3).mean()), 4),
                 "top1_accuracy": round(float((top[:, 0] == y).mean()), 4), "seconds": round(time.perf_counter() - start, 1)}
        results["variants"][variant] = entry
        print(variant, json.dumps(entry), flush=True)
        write_json(args.out, results)


if __name__ == "__main__":
    main()
