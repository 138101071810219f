"""What the sandbox's wall costs a program (issue #46: at most 50 ms added at the median).

    python bench/sandbox.py            # writes bench/results/sandbox.json

The same programs run, interleaved, behind the kernel's wall (bubblewrap namespaces, nobody, seccomp, rlimits:
``MATHTUNE_SANDBOX=kernel``, the default) and behind the interpreter-only guard (a plain child process: what
mathtune did before the wall, ``MATHTUNE_SANDBOX=interpreter``). Two programs: one that prints a number (the fixed
cost of starting a child) and a typical tutor program (sympy solving an equation, as the code mode writes them).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.io import write_json  # noqa: E402
from mathtune.sandbox import run  # noqa: E402

PROGRAMS = {
    "print": "print(6 * 7)",
    "sympy": "import sympy as sp\nx = sp.symbols('x')\n# the width of the garden\nprint(sp.solve(x * (x + 3) - 40, x))",
}


def _with_policy(policy: str):
    os.environ["MATHTUNE_SANDBOX"] = policy  # each policy is probed once (run._probe is cached by policy)
    return run.current_boundary()


def measure(rounds: int) -> dict:
    seconds: dict[str, dict[str, list[float]]] = {p: {n: [] for n in PROGRAMS} for p in ("kernel", "interpreter")}
    walls = {p: _with_policy(p).as_dict() for p in ("kernel", "interpreter")}
    for _ in range(rounds):
        for policy in ("kernel", "interpreter"):  # interleaved: a noisy minute touches both alike
            _with_policy(policy)
            for name, code in PROGRAMS.items():
                result = run.run_program(code)
                assert result.ok, (policy, name, result)
                seconds[policy][name].append(result.seconds)
    out = {}
    for name in PROGRAMS:
        kernel, plain = seconds["kernel"][name], seconds["interpreter"][name]
        out[name] = {"kernel_median_ms": round(1000 * statistics.median(kernel), 1),
                     "interpreter_median_ms": round(1000 * statistics.median(plain), 1),
                     "added_median_ms": round(1000 * (statistics.median(kernel) - statistics.median(plain)), 1),
                     "kernel_p90_ms": round(1000 * sorted(kernel)[int(0.9 * len(kernel))], 1),
                     "ratio": round(statistics.median(kernel) / statistics.median(plain), 2)}
    return {"programs": out, "walls": walls, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "sandbox.json"))
    args = parser.parse_args()
    result = {**measure(args.rounds), "target_added_median_ms": 50, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count()}
    write_json(Path(args.out), result)
    for name, row in result["programs"].items():
        print(f"{name}: {row}")


if __name__ == "__main__":
    main()
