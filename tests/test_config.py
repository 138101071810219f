from pathlib import Path

import pytest

from helpers import REPO
from mathtune.config import load_recipe, recipe_from_dict
from mathtune.errors import RecipeError

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"topic-tfidf", "topic-lora", "topic-llm-lora", "topic-qlora", "demo-topic", "misconception-tfidf",
            "misconception-lora", "misconception-llm-lora", "misconception-qlora", "products-rf", "products-linear"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads(path: Path):
    recipe = load_recipe(path)
    assert recipe.task
    # each recipe is headed by the command that runs it
    assert path.read_text().startswith("# mathtune ")


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"data": {"train": "x.csv"}, "train": {"epochz": 3}}, source="r.yaml")
    message = str(err.value)
    assert "r.yaml" in message and "train.epochz" in message and "train.epochs" in message


def test_unknown_top_level_key():
    with pytest.raises(RecipeError, match="unknown key 'optimizer'"):
        recipe_from_dict({"data": {"train": "x.csv"}, "optimizer": "adam"})


def test_set_overrides_nested_keys_with_yaml_values():
    recipe = recipe_from_dict({"data": {"train": "x.csv"}}, ["train.epochs=7", "train.learning_rate=1e-4",
                                                              "model.lora.target_modules=[q_proj, v_proj]"])
    assert recipe.train.epochs == 7
    assert recipe.train.learning_rate == pytest.approx(1e-4)
    assert recipe.model.lora.target_modules == ["q_proj", "v_proj"]


def test_set_unknown_key_is_an_error():
    with pytest.raises(RecipeError, match="train.nope"):
        recipe_from_dict({"data": {"train": "x.csv"}}, ["train.nope=1"])


def test_bad_value_names_key():
    with pytest.raises(RecipeError, match="train.epochs"):
        recipe_from_dict({"data": {"train": "x.csv"}, "train": {"epochs": "many"}})


def test_tracking_shorthand():
    assert recipe_from_dict({"data": {"train": "x"}, "tracking": "none"}).tracking.backend == "none"
    assert recipe_from_dict({"data": {"train": "x"}}, ["tracking=none"]).tracking.backend == "none"


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("key", ["data.split_seed", "train.lr", "model"])
def test_yaml_alias_bomb_is_refused_with_a_short_message(tmp_path, key):
    """A 700-byte recipe whose aliases would expand to 10^9 values: refused before anything expands them."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    section, _, leaf = key.rpartition(".")
    body = f"{section}:\n  {leaf}: *a9\n" if section else f"{leaf}: *a9\n"
    path = tmp_path / "bomb.yaml"
    path.write_text("task: topic\ntrainer: tfidf\nx-anchors:\n" + "\n".join("  " + line for line in lines) + "\n" + body)
    assert path.stat().st_size < 1500
    with pytest.raises(RecipeError, match="aliases") as err:
        load_recipe(path)
    assert len(str(err.value)) < 500


def test_long_bad_values_are_cut_in_messages(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("trainer: tfidf\ndata:\n  split_seed: [" + ", ".join(["'" + "x" * 50 + "'"] * 500) + "]\n")
    with pytest.raises(RecipeError, match="split_seed") as err:
        load_recipe(path)
    assert len(str(err.value)) < 600


@pytest.mark.parametrize("raw,needle", [
    ({"task": "topic", "trainer": "tfidf", "tutor": {"max_new_tokens": 5}}, "section 'tutor' is read by the tutor task"),
    ({"task": "topic", "trainer": "finetune", "tfidf": {"min_df": 2}}, "section 'tfidf' is read by trainer tfidf"),
    ({"task": "misconception", "trainer": "tfidf", "products": {"classifier": "linear"}}, "section 'products'"),
    ({"task": "topic", "trainer": "tfidf", "model": {"name": "x"}}, "section 'model' is read by trainer finetune or sft"),
    ({"task": "products", "trainer": "sklearn", "augment": {"target_count": 5}}, "section 'augment'"),
])
def test_misplaced_sections_are_errors(raw, needle):
    with pytest.raises(RecipeError, match=needle):
        recipe_from_dict({"data": {"train": "x.csv"}, **raw}, source="r.yaml")


def test_only_used_sections_are_filled_and_saved():
    from mathtune.config import recipe_to_yaml

    recipe = recipe_from_dict({"task": "misconception", "trainer": "tfidf", "data": {"train": "x.csv"}})
    assert recipe.misconception is not None and recipe.tfidf is not None
    assert recipe.tutor is None and recipe.products is None and recipe.model is None
    text = recipe_to_yaml(recipe)
    assert "tutor" not in text and "tfidf:" in text
    assert recipe_from_dict(__import__("yaml").safe_load(text)) == recipe


def test_built_in_and_plugin_sections_follow_one_table():
    from pydantic import BaseModel

    from mathtune.config import SECTIONS, register_section, unregister_section

    class Lean(BaseModel):
        depth: int = 2

    register_section("lean_table", Lean, trainer="lean")
    try:
        assert {"tfidf", "model", "tutor", "lean_table"} <= set(SECTIONS)
        recipe = recipe_from_dict({"task": "topic", "trainer": "lean", "data": {"train": "t.csv"}})
        assert recipe.section("lean_table").depth == 2 and recipe.tfidf is None and recipe.model is None
        for misplaced in ({"trainer": "tfidf", "lean_table": {"depth": 3}}, {"trainer": "lean", "tfidf": {}}):
            with pytest.raises(RecipeError, match=r"section '(lean_table|tfidf)' is read by trainer (lean|tfidf)"):
                recipe_from_dict({"task": "topic", "data": {"train": "t.csv"}, **misplaced})
    finally:
        unregister_section("lean_table")
    assert "lean_table" not in SECTIONS and "tfidf" in SECTIONS
    unregister_section("tfidf")  # built-in sections stay
    assert "tfidf" in SECTIONS
