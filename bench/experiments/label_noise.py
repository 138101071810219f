"""Label noise in the MAP misconception data: the same answer and explanation to the same question, labelled
differently. Counts exact duplicates and duplicates after normalising case and spacing.

    python bench/experiments/label_noise.py                  # writes bench/results/label_noise.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mathtune.paths import resolve_data_path  # noqa: E402


def main() -> None:
    path = resolve_data_path("map-misconceptions/train.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["label"] = frame["Category"] + ":" + frame["Misconception"].replace("", "NA")
    result = {"rows": len(frame)}
    for name, key in (("exact", frame["StudentExplanation"]),
                      ("normalised", frame["StudentExplanation"].map(lambda t: re.sub(r"\s+", " ", t.lower()).strip(" ."))
                       )):
        groups = frame.assign(key=key).groupby(["QuestionId", "MC_Answer", "key"])["label"]
        sizes, distinct = groups.size(), groups.nunique()
        duplicated = sizes[sizes > 1]
        conflicting = distinct[distinct > 1]
        rows_in_conflict = int(sizes[conflicting.index].sum())
        examples = []
        for idx in list(conflicting.index)[:5]:
            labels = frame.assign(key=key).set_index(["QuestionId", "MC_Answer", "key"]).loc[idx, "label"]
            examples.append({"question_id": idx[0], "answer": idx[1], "explanation": idx[2][:120],
                             "labels": labels.value_counts().to_dict()})
        result[name] = {"duplicate_groups": int(len(duplicated)), "rows_in_duplicate_groups": int(duplicated.sum()),
                        "groups_with_conflicting_labels": int(len(conflicting)),
                        "rows_in_conflicting_groups": rows_in_conflict,
                        "share_of_rows_in_conflict": round(rows_in_conflict / len(frame), 4), "examples": examples}
    out = REPO / "bench" / "results" / "label_noise.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: (v if not isinstance(v, dict) else {a: b for a, b in v.items() if a != "examples"})
                      for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
