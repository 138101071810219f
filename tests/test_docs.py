"""The documentation says what the code and the benchmarks say: generated pages are current, links and files named
exist, the README fits on a page."""

from __future__ import annotations

import importlib.util
import re

from helpers import REPO


def _report():
    spec = importlib.util.spec_from_file_location("report", REPO / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_page_and_readme_figures_are_generated_from_the_json():
    report = _report()
    assert (REPO / "docs" / "benchmarks.md").read_text() == report.page(), "stale: run `make docs`"
    readme = (REPO / "README.md").read_text()
    assert readme == report.with_readme_figures(readme), "stale README figures: run `make docs`"
    measured = REPO / "src" / "mathtune" / "serve" / "webui" / "measured.json"
    assert measured.read_text() == report.measured_text(), "stale Tutor tab figures: run `make docs`"
    assert report.TIMES_FILE.read_text() == report.recipe_times_text(), "stale recipe times: run `make docs`"


def test_the_readme_fits_on_a_page_and_its_links_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    for page in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_makefile_names_only_files_that_exist():
    makefile = (REPO / "Makefile").read_text()
    for path in re.findall(r"(?<![\w./$-])((?:recipes|deploy|bench|docs|src|tests|\.github)/[\w./-]+)", makefile):
        assert (REPO / path.rstrip(".")).exists(), path


def test_every_recipe_is_listed_with_a_purpose():
    from mathtune.catalog import shipped

    entries = shipped()
    assert {e.name for e in entries} == {p.stem for p in (REPO / "recipes").glob("*.yaml")}
    assert all(e.purpose and e.command.startswith("mathtune ") for e in entries)
    assert next(e for e in entries if e.name == "topic-tfidf").time.endswith("s")  # measured by bench/topic.py


def test_the_bundled_tutors_default_mode_is_the_best_measured_within_the_time_bound():
    """The bundled tutor's default preset follows the benchmark: of the presets measured on at least 100 held-out
    GSM8K problems, the most accurate one whose seconds a problem (median, else mean) stay within
    DEFAULT_MODE_SECONDS."""
    import json

    from mathtune.models.solving.presets import DEFAULT_MODE_SECONDS, DEFAULT_PRESET, PRESETS, default_settings

    data = json.loads((REPO / "bench" / "results" / "tutor_serving.json").read_text())
    rows = [r for r in data["accuracy"] if r["data"] == "gsm8k" and r.get("answer_accuracy") is not None
            and r["mode"] in PRESETS and r["n"] >= 100]
    fast = [r for r in rows if (r.get("median_seconds_per_problem") or r["seconds_per_problem"]) <= DEFAULT_MODE_SECONDS]
    best = max(fast, key=lambda r: r["answer_accuracy"])
    assert DEFAULT_PRESET[data["tutor"]] == best["mode"], best
    default = default_settings(data["tutor"])
    assert default.model_copy(update={"time_budget": None, "budget_speed": None}) == PRESETS[best["mode"]].settings
    # its time budget is the one bench/time_budget.py measured on that mode, and it cost no GSM8K accuracy
    timed = json.loads((REPO / "bench" / "results" / "time_budget.json").read_text())
    assert timed["mode"] == best["mode"] and default.time_budget == timed["budget_seconds"]
    gsm8k = timed["sets"]["gsm8k"]
    assert gsm8k["with_budget"]["answer_accuracy"] >= gsm8k["without_budget"]["answer_accuracy"]
    assert gsm8k["with_budget"]["median_seconds"] <= DEFAULT_MODE_SECONDS
    # and its rule on a slower host is the one bench/slow_host.py measured against plain seconds
    slow = json.loads((REPO / "bench" / "results" / "slow_host.json").read_text())
    assert (slow["time_budget"], slow["budget_speed"]) == (default.time_budget, default.budget_speed)
    stretched, plain = slow["runs"]["slow, stretched"], slow["runs"]["slow, seconds"]
    assert stretched["cut_by_time_budget"] < plain["cut_by_time_budget"]
    assert stretched["answer_accuracy"] > plain["answer_accuracy"]
