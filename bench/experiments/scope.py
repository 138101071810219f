"""The tutor's scope rule (tasks/scope.py): false refusals on every GSM8K and MATH problem in the data folder,
and refusals on non-math prompts (the tutor's OFF_TOPIC list and bench/data/non_math_prompts.txt).

    python bench/experiments/scope.py          # writes bench/results/scope.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402
from mathtune.paths import resolve_data_path  # noqa: E402
from mathtune.tasks.scope import is_math_question  # noqa: E402
from mathtune.tasks.tutor import OFF_TOPIC  # noqa: E402


def questions(name: str, field: str) -> list[str]:
    path = resolve_data_path(name)
    return [json.loads(line)[field] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    math_sets = {"gsm8k/train.jsonl": questions("gsm8k/train.jsonl", "question"),
                 "math-hendrycks/train.jsonl": questions("math-hendrycks/train.jsonl", "problem"),
                 "math-hendrycks/math500_test.jsonl": questions("math-hendrycks/math500_test.jsonl", "problem")}
    extra = (REPO / "bench" / "data" / "non_math_prompts.txt").read_text(encoding="utf-8").splitlines()
    non_math = sorted({p.strip() for p in [*OFF_TOPIC, *extra] if p.strip()})
    start = time.perf_counter()
    result = {"false_refusals": {}, "examples_refused": {}}
    for name, texts in math_sets.items():
        refused = [t for t in texts if not is_math_question(t)]
        result["false_refusals"][name] = {"n": len(texts), "refused": len(refused), "rate": round(len(refused) / len(texts), 4)}
        result["examples_refused"][name] = refused[:10]
    accepted = [p for p in non_math if is_math_question(p)]
    result["non_math"] = {"n": len(non_math), "refused": len(non_math) - len(accepted),
                          "rate": round(1 - len(accepted) / len(non_math), 4), "accepted": accepted}
    n = sum(len(t) for t in math_sets.values()) + len(non_math)
    result["microseconds_per_text"] = round((time.perf_counter() - start) / n * 1e6, 1)
    write_json(REPO / "bench" / "results" / "scope.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "examples_refused"}, indent=1))


if __name__ == "__main__":
    main()
