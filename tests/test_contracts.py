"""The contracts: a task registered from outside the package trains, predicts and serves with no file under
src/ touched; the package has no import cycles and no lower layer imports a higher one; no function grows past
80 lines."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from helpers import REPO
from mathtune.cli import app
from mathtune.config import recipe_from_dict
from mathtune.errors import RecipeError
from mathtune.serve.app import create_app
from mathtune.tasks import TASKS, register_task
from mathtune.tasks.base import column_labels, id_label_submission, label_confusion, text_column_inputs
from mathtune.train.run import train_from_recipe

# --------------------------------------------------------------------------- a toy task, from outside src/


class WordProblemTask:
    """Binary: is this question a word problem (a story about things) or a bare exercise?"""

    name = "word_problem"
    settings_key = None
    settings_model = None
    primary_metric = "f1_macro"
    metric_order = ("f1_macro", "accuracy")
    trainers = ("tfidf", "lean-tfidf")
    registered_name = "word-problems"
    route = "word-problems"
    default_label_names = ("exercise", "word problem")
    top_k = 1
    submission_columns = ("id", "label")

    def __init__(self, settings=None) -> None:
        self.settings = None

    def settings_dict(self) -> dict:
        return {}

    def inputs(self, frame, text_column, path):
        return text_column_inputs(frame, text_column, path)

    def raw_labels(self, frame, label_column, path):
        return column_labels(frame, label_column, path)

    def clean(self, frame, label_column, path):
        return frame

    def structure(self, frame, raw_labels, labels):
        return None

    def candidate_masks(self, frame, structure, labels, switches=None):
        return None, []

    def metrics(self, y_true, top_idx, labels, probs=None):
        from mathtune.metrics.classification import classification_metrics

        return classification_metrics(y_true, top_idx[:, 0], labels.names)

    def submission(self, ids, top_values):
        return id_label_submission(ids, top_values, self.submission_columns)

    def confusion(self, metrics, labels):
        return label_confusion(metrics, labels)

    def example_frame(self, manifest):
        return pd.DataFrame([{manifest.get("text_column", "Question"): "Tom has 3 apples."}])


def _word_rows(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        if i % 2:
            text = rng.choice([f"Tom has {a} apples and buys {b} more. How many apples does he have?",
                               f"A train travels {a} km in {b} hours. What is its speed?",
                               f"Sara reads {a} pages a day. How many pages in {b} days?"])
        else:
            text = rng.choice([f"Solve {a}x + {b} = 0.", f"Compute {a} * {b}.", f"Factor x^2 + {a}x + {b}."])
        rows.append({"id": str(i), "Question": text, "label": str(i % 2)})
    return pd.DataFrame(rows)


@pytest.fixture
def word_task():
    register_task(WordProblemTask)
    yield WordProblemTask
    TASKS.pop(WordProblemTask.name, None)


def test_a_task_registered_outside_src_trains_predicts_and_serves(word_task, workdir):
    _word_rows(80, 1)[["Question", "label"]].to_csv(workdir / "words.csv", index=False)
    _word_rows(10, 2)[["id", "Question"]].to_csv(workdir / "test.csv", index=False)
    recipe = recipe_from_dict({"task": "word_problem", "trainer": "tfidf", "data": {"train": "words.csv"},
                               "tfidf": {"min_df": 1}, "tracking": "none"})
    result = train_from_recipe(recipe, "runs/words")
    assert result.metrics["f1_macro"] > 0.9
    assert result.metrics["n_train"] + result.metrics["n_validation"] == 80

    predicted = CliRunner().invoke(app, ["predict", "runs/words", "--data", "test.csv", "--output", "pred.csv"])
    assert predicted.exit_code == 0, predicted.output
    submission = pd.read_csv(workdir / "pred.csv", dtype=str)
    assert list(submission.columns) == ["id", "label"] and len(submission) == 10

    client = TestClient(create_app([str(result.output)]))
    response = client.post("/v1/word-problems", json={"rows": [{"Question": "Ann has 4 pens and buys 5 more. How many?"},
                                                              {"Question": "Solve 3x + 1 = 0."}]})
    assert response.status_code == 200, response.text
    assert [p["labels"][0] for p in response.json()["predictions"]] == ["1", "0"]
    assert client.get("/readyz").json()["models"]["word_problem"]["ready"] is True
    client.post("/v1/word-problems", json={"rows": [{"Question": "x"}]})
    assert 'route="/v1/word-problems"' in client.get("/metrics").text


class LeanSettings(BaseModel):
    """The plugin trainer's own recipe section, `lean:`."""

    model_config = ConfigDict(extra="forbid")
    C: float = Field(0.5, gt=0)
    words_only: bool = True


class LeanTfidfTrainer:
    """A trainer from outside src/: word n-grams only, its settings from its own section, saved as a tfidf model."""

    name, kind, section, pipeline = "lean-tfidf", "tfidf", "lean", None
    settings_model = LeanSettings
    seen: list = []

    def fit(self, ctx):
        from mathtune.config import TfidfConfig
        from mathtune.models.tfidf import save, tfidf_topk_variants
        from mathtune.train.classical import fit_tfidf
        from mathtune.train.trainers import Fitted, final_metrics

        settings = ctx.recipe.section(self.section)
        self.seen.append(settings)
        cfg = TfidfConfig(C=settings.C, char_ngrams=(1, 1) if settings.words_only else (1, 5), min_df=1)
        model = fit_tfidf(ctx.train.texts, ctx.y_train, cfg, ctx.recipe.train.seed)
        save(model, ctx.work)
        outputs = tfidf_topk_variants(model, ctx.val.texts, len(ctx.labels), ctx.task.top_k, ctx.masks)
        metrics, ablation = final_metrics(ctx.task, ctx.y_val, outputs, ctx.labels)
        return Fitted(metrics, [{"epoch": 1, "step": 1}], 0.1, outputs["final"], ablation=ablation)


@pytest.fixture
def lean_trainer():
    from mathtune.train.trainers import register_trainer, unregister_trainer

    trainer = register_trainer(LeanTfidfTrainer())
    yield trainer
    unregister_trainer(trainer.name)


def test_a_plugin_trainer_brings_its_own_recipe_section_and_trains(word_task, lean_trainer, workdir):
    _word_rows(80, 1)[["Question", "label"]].to_csv(workdir / "words.csv", index=False)
    recipe = recipe_from_dict({"task": "word_problem", "trainer": "lean-tfidf", "data": {"train": "words.csv"},
                               "lean": {"C": 2.0}, "tracking": "none"})
    assert recipe.section("lean") == LeanSettings(C=2.0)
    result = train_from_recipe(recipe, "runs/lean")
    assert lean_trainer.seen[-1].C == 2.0 and result.metrics["f1_macro"] > 0.8
    assert "lean:\n  C: 2.0" in (workdir / "runs/lean/recipe.yaml").read_text()  # saved as it was written
    defaults = recipe_from_dict({"task": "word_problem", "trainer": "lean-tfidf", "data": {"train": "words.csv"}})
    assert defaults.section("lean") == LeanSettings()  # left out: the section's defaults
    with pytest.raises(RecipeError, match="unknown key 'lean.c'.*did you mean 'lean.C'"):
        recipe_from_dict({"task": "word_problem", "trainer": "lean-tfidf", "data": {"train": "x"}, "lean": {"c": 1}})
    with pytest.raises(RecipeError, match="section 'lean' is read by trainer lean-tfidf"):
        recipe_from_dict({"task": "word_problem", "trainer": "tfidf", "data": {"train": "x"}, "lean": {"C": 1}})


def test_registering_a_name_twice_raises(word_task, lean_trainer):
    from mathtune.config import register_section
    from mathtune.train.trainers import register_trainer

    with pytest.raises(RecipeError, match="trainer 'lean-tfidf' is already registered"):
        register_trainer(LeanTfidfTrainer())
    with pytest.raises(RecipeError, match="trainer 'tfidf' is already registered"):
        register_trainer(type("Other", (), {"name": "tfidf", "section": None})())
    with pytest.raises(RecipeError, match="task 'word_problem' is already registered"):
        register_task(WordProblemTask)
    with pytest.raises(RecipeError, match="recipe section 'lean' is already registered .by trainer lean-tfidf."):
        register_section("lean", LeanSettings, trainer="another")
    with pytest.raises(RecipeError, match="recipe section 'tfidf' is already registered .by mathtune."):
        register_section("tfidf", LeanSettings, trainer="another")


def test_unknown_task_and_wrong_trainer_are_recipe_errors(workdir):
    from mathtune.errors import RecipeError

    with pytest.raises(RecipeError, match="unknown task 'nope'.*topic"):
        train_from_recipe(recipe_from_dict({"task": "nope", "trainer": "tfidf", "data": {"train": "x.csv"}}), "r")
    with pytest.raises(RecipeError, match="trains with trainer sklearn, not tfidf"):
        train_from_recipe(recipe_from_dict({"task": "products", "trainer": "tfidf", "data": {"train": "x.csv"}}), "r")


# --------------------------------------------------------------------------- layers

# Lowest first. A module may import modules of its own layer or of lower layers, never of a higher one; imports
# inside functions count too (they hide cycles, they do not remove them).
LAYERS = [
    {"mathtune", "errors", "io", "paths", "sandbox", "catalog", "choices"},
    {"config"},
    {"data", "metrics"},
    {"tasks"},
    {"models"},
    {"rag", "tracking", "model_env"},
    {"train"},
    {"inference", "sweep", "spark"},
    {"serve"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    root = REPO / "src" / "mathtune"
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(stem + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                while target and target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != mod and target.startswith("mathtune"):
                    edges[mod].add(target)
    return edges


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "mathtune"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module}: not in any layer; add it to LAYERS (and README's layout)")


def test_no_lower_layer_imports_a_higher_one():
    wrong = [f"{a} -> {b}" for a, targets in _imports(_modules()).items() for b in targets if _layer(b) > _layer(a)]
    assert not wrong, wrong


def test_no_import_cycles():
    edges = _imports(_modules())
    # modules importing their own package __init__ (mathtune.x -> mathtune for the version) are not cycles
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_function_over_80_lines():
    long = []
    for mod, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80 and not (mod.endswith(".cli") and node.name == "main"):
                    long.append(f"{mod}.{node.name}: {length} lines")
    assert not long, long
