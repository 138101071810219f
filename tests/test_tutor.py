"""Tutor: data formats, answer checking, response-only labels, packing, SFT end to end, evaluate, ask, sweep."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import write_recipe
from mathtune.cli import app
from mathtune.config import TutorConfig
from mathtune.errors import DataError
from mathtune.metrics.answers import answers_match, extract_final_answer, is_refusal
from mathtune.models.generate import _stop_filtered, cut_at_stop
from mathtune.tasks.tutor import REFUSAL, clean_response, pairs_from_frame, with_refusals

runner = CliRunner()


def test_gsm8k_math_and_champ_formats():
    gsm = pd.DataFrame({"question": ["Q?"], "answer": ["She has 2+3 = <<2+3=5>>5 pens.\n#### 1,005"]})
    pairs = pairs_from_frame(gsm, TutorConfig(), "gsm.jsonl")
    assert pairs.responses == ["She has 2+3 = 5 pens.\nThe answer is 1005."]
    assert pairs.answers == ["1005"]
    math = pd.DataFrame({"problem": ["P"], "solution": ["So $x=\\boxed{\\frac{1}{2}}$."], "answer": ["\\frac12"]})
    pairs = pairs_from_frame(math, TutorConfig(), "math.jsonl")
    assert pairs.answers == ["\\frac{1}{2}"]  # the solution's own box wins over the answer column
    champ = pd.DataFrame({"Question": ["Q"], "solution": ["Step one.\nStep two."], "answer": ["239"]})
    pairs = pairs_from_frame(champ, TutorConfig(), "demo:champ")
    assert pairs.responses[0].endswith("The answer is 239.") and pairs.answers == ["239"]


def test_missing_and_empty_columns_are_named():
    with pytest.raises(DataError, match="no question column.*tutor.question_column"):
        pairs_from_frame(pd.DataFrame({"text": ["x"], "answer": ["y"]}), TutorConfig(), "f.csv")
    with pytest.raises(DataError, match="'sol' .*not found.*tutor.response_column"):
        pairs_from_frame(pd.DataFrame({"question": ["x"]}), TutorConfig(response_column="sol"), "f.csv")
    with pytest.raises(DataError, match="data rows 3"):
        pairs_from_frame(pd.DataFrame({"question": ["a", ""], "answer": ["b", "c"]}), TutorConfig(), "f.csv")


def test_final_answers_and_refusals():
    assert extract_final_answer("x\n#### 72") == "72"
    assert extract_final_answer("so \\boxed{\\frac{3}{4}} and later \\boxed{2^{10}}") == "2^{10}"
    assert extract_final_answer("Add them.\nThe answer is $12.50.") == "12.50"
    assert extract_final_answer("no answer here") is None
    assert extract_final_answer("So, the answer is:\n\\[ 11400 \\]") == "11400"  # display math after the phrase
    assert extract_final_answer("15 - 5 = 10 cakes. The answer is <10>.") == "10"  # placeholder brackets kept
    assert extract_final_answer("The answer is x < 3 or x > 5.") == "x < 3 or x > 5"
    assert extract_final_answer("The answer is \\( \\frac{1}{2} \\).") == "\\frac{1}{2}"
    assert extract_final_answer("So, the answer is:\n\\[\n\\[") is None  # cut off before the answer: no answer
    assert extract_final_answer("The answer is \\(\\boxed{3") is None  # cut off inside the answer (it was 364)
    assert extract_final_answer("The answer is \\(\\boxed{\\frac{1}{2}}\\).") == "\\frac{1}{2}"
    assert answers_match("0.5", "1/2") and answers_match("\\frac{1}{2}", "0.5") and answers_match("72.0", "72")
    assert answers_match("\\sqrt{8}", "2\\sqrt{2}")
    assert not answers_match("71", "72") and not answers_match(None, "1")
    assert is_refusal(REFUSAL) and is_refusal("Sorry, I can't help with that.")
    assert not is_refusal("The answer is 4.")
    assert clean_response("a <<1+1=2>>2\n#### 2") == "a 2\nThe answer is 2."


def test_stop_sequences_cut_streams_and_texts():
    assert cut_at_stop("The answer is 3.<|im_end|>junk", ["<|im_end|>"]) == "The answer is 3."
    pieces = ["The ans", "wer is 3.\nPro", "blem: next", " more"]
    assert "".join(_stop_filtered(iter(pieces), ["\nProblem:"])) == "The answer is 3."
    assert "".join(_stop_filtered(iter(["a", "b"]), ["\nProblem:"])) == "ab"


def test_response_only_labels_and_packing(tiny_chat_llama):
    from transformers import AutoTokenizer

    from mathtune.train.sft import IGNORE, build_examples, pack

    tok = AutoTokenizer.from_pretrained(tiny_chat_llama)
    pairs = with_refusals(pairs_from_frame(pd.DataFrame({"question": ["what is 2 plus 3?", "what is 4 times 5?"],
                                                         "answer": ["2 + 3 = 5\n#### 5", "4 * 5 = 20\n#### 20"]}),
                                           TutorConfig(), "t"), 1)
    ex = build_examples(tok, pairs, 1024)
    assert len(ex.ids) == 3
    for ids, labels, response in zip(ex.ids, ex.labels, pairs.responses):
        answered = [t for t, lab in zip(ids, labels) if lab != IGNORE]
        assert labels[0] == IGNORE and answered == labels[len(labels) - len(answered):]
        assert tok.decode(answered).replace(" ", "") == response.lower().replace(" ", "").replace("\n", "")
    packed = pack(ex, 1024)
    assert len(packed.ids) < len(ex.ids)
    assert sum(map(len, packed.ids)) == sum(map(len, ex.ids))
    assert sum(t != IGNORE for s in packed.labels for t in s) == sum(t != IGNORE for s in ex.labels for t in s)


def _tutor_recipe(workdir, model, extra=""):
    return write_recipe(workdir, f"""
task: tutor
trainer: sft
data: {{train: gsm.jsonl, val_size: 0.2}}
model: {{name: {model}, peft: lora, max_length: 160, lora: {{r: 4, alpha: 8}}}}
train: {{epochs: 2, batch_size: 4, learning_rate: 0.005}}
tutor: {{eval_samples: 3, max_new_tokens: 8, refusal_examples: 2, eval_batch_size: 4, system_prompt: solve it.}}
{extra}""", "tutor.yaml")


@pytest.mark.slow
def test_tutor_train_evaluate_ask(workdir, gsm8k_jsonl, tiny_chat_llama):
    recipe = _tutor_recipe(workdir, tiny_chat_llama)
    result = runner.invoke(app, ["train", str(recipe), "--output", "tutor", "--set", "tutor.solve.mode=program"])
    assert result.exit_code == 0, result.output
    folder = workdir / "tutor"
    manifest = json.loads((folder / "mathtune.json").read_text())
    assert manifest["task"] == "tutor" and manifest["kind"] == "generator"
    assert manifest["solve"] == {"mode": "program", "samples": 5, "vote_over": "cot", "tiebreak": "program",
                                 "temperature": 0.7, "then_over": None, "agree_first": 0, "first_round": 0,
                                 "time_budget": None, "budget_speed": None}  # the recipe's tutor.solve, kept for ask, evaluate and serve
    assert manifest["merge_parity"]["identical"] == manifest["merge_parity"]["prompts"] == 4
    assert (folder / "model" / "model.safetensors").exists()
    metrics = json.loads((folder / "metrics.json").read_text())
    tuned, base = metrics["validation"]["fine_tuned"], metrics["validation"]["base"]
    assert tuned["perplexity"] < base["perplexity"]  # it learnt something about the solutions
    for key in ("answer_accuracy", "rougeL", "bleu", "refusal_rate", "false_refusal_rate"):
        assert key in tuned and key in base
    assert tuned["mode"] == base["mode"] == "program"  # evaluated as the recipe says it solves
    report = (folder / "report.md").read_text()
    assert "| perplexity |" in report and "**Base model**" in report and "**Fine-tuned**" in report
    assert manifest["tracking"]["registry_uri"].startswith("models:/math-tutor/")
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(manifest["tracking"]["tracking_uri"])
    answers = mlflow.pyfunc.load_model(manifest["tracking"]["registry_uri"]).predict(pd.DataFrame({"question": ["1+1?"]}))
    assert list(answers.columns) == ["final_answer", "answer", "method", "reason"] and len(answers) == 1
    signature = mlflow.models.get_model_info(manifest["tracking"]["registry_uri"]).signature
    assert signature.inputs.input_names() == ["question"] and signature.outputs.input_names()[0] == "final_answer"

    result = runner.invoke(app, ["evaluate", "tutor", "--data", "gsm.jsonl", "--samples", "2", "--json", "e.json",
                                 "--report", "e.md", "--compare-base"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((workdir / "e.json").read_text())
    assert evaluated["n"] == 2 and "perplexity" in evaluated and "base" in evaluated
    assert evaluated["mode"] == evaluated["base"]["mode"] == "program"  # the tutor's own mode when none is given
    result = runner.invoke(app, ["evaluate", "tutor", "--data", "gsm.jsonl", "--samples", "1", "--json", "c.json",
                                 "--mode", "cot"])
    assert result.exit_code == 0 and json.loads((workdir / "c.json").read_text())["mode"] == "cot", result.output
    # the tutor's own mode: program, solved whole and printed with its final answer (cot streams, then says its own)
    result = runner.invoke(app, ["ask", "tutor", "what is 2 plus 2?", "--max-new-tokens", "5"])
    assert result.exit_code == 0 and "final answer:" in result.output, result.output
    result = runner.invoke(app, ["ask", "tutor", "what is 2 plus 2?", "--max-new-tokens", "5", "--mode", "cot"])
    assert result.exit_code == 0 and "final answer:" in result.output and "(cot)" in result.output, result.output
    result = runner.invoke(app, ["ask", "tutor", "what is 2 plus 2?", "--max-new-tokens", "5", "--mode", "vote",
                                 "--solve", "samples=3"])
    assert result.exit_code == 0 and "vote(cot)" in result.output and "samples agree" in result.output, result.output
    result = runner.invoke(app, ["ask", "tutor", "what is 2 plus 2?", "--max-new-tokens", "5", "--mode", "vote",
                                 "--solve", "samples=2", "--solve", "vote_over=program", "--solve", "tiebreak=none"])
    assert result.exit_code == 0 and "vote(program)" in result.output, result.output
    result = runner.invoke(app, ["ask", "tutor", "2 plus 2?", "--mode", "vote", "--solve", "tiebreak=coin"])
    assert result.exit_code == 2 and "--solve tiebreak='coin'" in result.output and "'program', 'code'" in result.output
    result = runner.invoke(app, ["ask", "tutor", "2 plus 2?", "--mode", "vote", "--solve", "vote_over=vote"])
    assert result.exit_code == 2 and "--solve vote_over='vote'" in result.output and "'cot'" in result.output
    result = runner.invoke(app, ["evaluate", "tutor", "--data", "gsm.jsonl", "--solve", "samples=12"])
    assert result.exit_code == 2 and "--solve samples='12'" in result.output and "9" in result.output
    result = runner.invoke(app, ["ask", "tutor", "2 plus 2?", "--solve", "votes=3"])
    assert result.exit_code == 2 and "--solve votes: not a solving setting" in result.output
    result = runner.invoke(app, ["ask", "tutor", "2 plus 2?", "--solve", "samples"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_tutor_recipe_errors(workdir, gsm8k_jsonl, tiny_chat_llama):
    recipe = _tutor_recipe(workdir, tiny_chat_llama)
    result = runner.invoke(app, ["train", str(recipe), "--output", "t", "--set", "tutor.question_column=problem"])
    assert result.exit_code == 2 and "'problem'" in result.output and "question" in result.output
    assert not (workdir / "t.partial").exists()
    result = runner.invoke(app, ["train", str(recipe), "--output", "t", "--set", "tutor.solve.mode=guess"])
    assert result.exit_code == 2 and "tutor.solve.mode" in result.output and "program" in result.output
    result = runner.invoke(app, ["train", str(recipe), "--output", "t", "--set", "model.max_length=12"])
    assert result.exit_code == 2 and "model.max_length" in result.output
    assert not (workdir / "t.partial").exists()
    recipe = write_recipe(workdir, "task: tutor\ntrainer: tfidf\ndata: {train: gsm.jsonl}\n", "bad.yaml")
    result = runner.invoke(app, ["train", str(recipe)])
    assert result.exit_code == 2 and "trainer sft" in result.output
    result = runner.invoke(app, ["ask", "nowhere-model-folder", "what is 2 plus 2?", "--backend", "llama.cpp"])
    assert result.exit_code == 2 and "GGUF" in result.output
    # not math: the server's scope rule answers, before any model is loaded (this folder does not exist)
    result = runner.invoke(app, ["ask", "nowhere-model-folder", "Write a poem about the sea"])
    assert result.exit_code == 0 and "I can only help with math questions" in result.output, result.output
    assert "final answer: (none)" in result.output and "--no-scope" in result.output
    result = runner.invoke(app, ["ask", "nowhere-model-folder", "Write a poem about the sea", "--no-scope",
                                 "--backend", "llama.cpp"])
    assert result.exit_code == 2 and "GGUF" in result.output


@pytest.mark.slow
def test_sweep_runs_each_configuration(workdir, topic_csv):
    recipe = write_recipe(workdir, """
task: topic
trainer: tfidf
data: {train: topics.csv}
tracking: {log_model: false}
""")
    result = runner.invoke(app, ["sweep", str(recipe), "--grid", "tfidf.C=0.5,2", "--grid", "tfidf.classifier=logreg",
                                 "--output-dir", "sw"])
    assert result.exit_code == 0, result.output
    rows = json.loads((workdir / "sw" / "sweep.json").read_text())
    assert [r["tfidf.C"] for r in rows] == ["0.5", "2"]
    assert all(r["status"] == "ok" and r["f1_micro"] is not None and r["peak_memory_gb"] > 0 for r in rows)
    result = runner.invoke(app, ["sweep", str(recipe), "--grid", "tfidf.nope=1"])
    assert result.exit_code == 2 and "tfidf.nope" in result.output


def test_generation_backend_contract(tiny_chat_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathtune.models.generate import TransformersGenerator

    tok = AutoTokenizer.from_pretrained(tiny_chat_llama)
    generator = TransformersGenerator(AutoModelForCausalLM.from_pretrained(tiny_chat_llama), tok, "solve.")
    exact = generator.generate(["what is 1 plus 1?", "what is 2 plus 5?"], 7, ignore_eos=True)
    assert [g.new_tokens for g in exact] == [7, 7]  # equal-length runs for speed comparisons
    free = generator.generate(["what is 1 plus 1?"], 7, contexts=["[1] (notes) count on."])[0]
    assert free.new_tokens <= 7 and isinstance(free.text, str)
    full = generator.generate(["what is 1 plus 1?"], 7)[0].text
    streamed = "".join(generator.stream("what is 1 plus 1?", 7)).strip()
    assert streamed == full.replace("[SEP]", "").strip()
    stop = next(full[i:i + 2] for i in range(1, len(full) - 1) if full[i:i + 2].strip())  # a call's own stop
    assert generator.generate(["what is 1 plus 1?"], 7, stops=[stop])[0].text == full[:full.find(stop)].strip()
    assert generator.generate(["what is 1 plus 1?"], 7)[0].text == full  # the tutor's stops are unchanged


def test_other_files_mix_into_the_training_split_only(workdir, gsm8k_jsonl):
    from mathtune.config import recipe_from_dict
    from mathtune.errors import MathtuneError
    from mathtune.train.tutor_run import load_tutor_splits

    (workdir / "math.jsonl").write_text("".join(json.dumps(
        {"problem": f"Find $x$ if $x + {n} = {2 * n}$.", "solution": f"Subtract: $x = \\boxed{{{n}}}$."}) + "\n"
        for n in range(1, 9)))
    base = {"task": "tutor", "trainer": "sft", "tracking": "none", "data": {"train": "gsm.jsonl", "val_size": 0.2},
            "model": {"name": "unused"}}
    plain_train, plain_val = load_tutor_splits(recipe_from_dict(base))
    recipe = recipe_from_dict({**base, "tutor": {"mix": [{"train": "math.jsonl", "limit": 5}]}})
    train, val = load_tutor_splits(recipe)
    assert val.questions == plain_val.questions  # validation stays the main file's
    added = train.questions[len(plain_train.questions):]
    assert len(added) == 5 and all(q.startswith("Find $x$") for q in added)
    assert train.responses[-1].endswith(f"The answer is {train.answers[-1]}.") and "\\boxed" in train.responses[-1]
    assert "5 of" in train.source and load_tutor_splits(recipe)[0].questions == train.questions  # seeded
    missing = recipe_from_dict({**base, "tutor": {"mix": [{"train": "nowhere.jsonl"}]}})
    with pytest.raises(MathtuneError, match="nowhere.jsonl"):
        load_tutor_splits(missing)
