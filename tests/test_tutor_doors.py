"""#47: the tutor's doors (the API, `mathtune ask`, `mathtune evaluate`) ask the same service with the same settings,
so the same question gets the same answer through each."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mathtune.cli import app
from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings

QUESTION = "what is 3 plus 3?"


@pytest.mark.parametrize("solve", [["mode=cot"], ["mode=vote", "samples=3", "tiebreak=none"]])
def test_the_api_ask_and_evaluate_give_the_same_answer(tutor_dir, tmp_path, solve):
    settings = dict(item.split("=") for item in solve)
    client = TestClient(create_app([tutor_dir], ServeSettings()))
    body = {"question": QUESTION, "retrieval": False, **{k: (int(v) if v.isdigit() else v) for k, v in settings.items()}}
    api = client.post("/v1/tutor", json=body).json()
    assert api["answer"] and api["method"].startswith(settings["mode"])

    flags = [arg for item in solve for arg in ("--solve", item)]
    asked = CliRunner().invoke(app, ["ask", tutor_dir, QUESTION, "--backend", "transformers", *flags])
    assert asked.exit_code == 0, asked.output
    assert f"final answer: {api['final_answer'] or '(none)'} ({api['method']}" in asked.output

    (tmp_path / "q.jsonl").write_text(json.dumps({"question": QUESTION, "answer": "3 + 3 = 6\n#### 6"}) + "\n")
    evaluated = CliRunner().invoke(app, ["evaluate", tutor_dir, "--data", str(tmp_path / "q.jsonl"), "--json",
                                         str(tmp_path / "e.json"), *flags])
    assert evaluated.exit_code == 0, evaluated.output
    [problem] = json.loads((tmp_path / "e.json").read_text())["problems"]
    assert (problem["final_answer"], problem["answer"]) == (api["final_answer"], api["answer"])
