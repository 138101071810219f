"""Static checks that keep the hostile-trial fixes in place: bandit finds nothing of high severity in src/, and
no loader in src/ unpickles (torch.load without weights_only=True, pickle, allow_pickle=True, trusted= lists
taken from a file)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from helpers import REPO


def test_bandit_finds_no_high_severity_issue():
    run = subprocess.run([sys.executable, "-m", "bandit", "-q", "-r", str(REPO / "src"), "-lll", "-f", "json"],
                         capture_output=True, text=True)
    report = json.loads(run.stdout)
    high = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]
            if r["issue_severity"] == "HIGH"]
    assert not high, high


def test_no_unpickling_loaders_in_src():
    offenders = []
    for path in (REPO / "src").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"torch\.load\(", code) and "weights_only=True" not in code:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
            if re.search(r"\bpickle\.loads?\(|allow_pickle=True|trusted=untrusted|joblib\.load", code):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, offenders
