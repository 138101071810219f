"""The pieces behind the teacher's app, without a browser: the math rendering rule, the tutor's scope rule,
the misconception verdict, the conversation carried by follow-ups, and the server's refusal through the API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mathtune.config import SolveConfig
from mathtune.serve.app import create_app
from mathtune.serve.settings import ServeSettings
from mathtune.serve.webui.classify import format_diagnosis, verdict_of
from mathtune.serve.webui.render import answer_markdown, math_markdown
from mathtune.serve.webui.turns import MAX_TURNS, Turn, stored, turns_from
from mathtune.serve.webui.tutor import history_pairs, render
from mathtune.tasks.scope import REFUSAL, in_scope, is_math_question, with_history
from mathtune.tasks.tutor import DEFAULT_PROMPT, OFF_TOPIC


@pytest.mark.parametrize("text, expected", [
    ("A pen costs $2 and a book costs $5", "A pen costs \\$2 and a book costs \\$5"),
    ("Solve $x^2 = 4$ now", "Solve \\(x^2 = 4\\) now"),
    ("Pay $3.50 for $x$ items", "Pay \\$3.50 for \\(x\\) items"),
    ("$$\\frac{1}{2}$$ and $y$", "$$\\frac{1}{2}$$ and \\(y\\)"),
    ("costs $ 5 and $6$7", "costs \\$ 5 and \\$6\\$7"),      # a space after the opening $, a digit after the closing $
    ("\\(a+b\\) and \\[c\\]", "\\(a+b\\) and \\[c\\]"),          # always math, untouched
    ("between $5 and $10 dollars", "between \\$5 and \\$10 dollars"),
    ("already escaped \\$5", "already escaped \\$5"),
    ("Cost $2:\n```python\nprint(f\"${x}\")\n```\nand `a$b`", "Cost \\$2:\n```python\nprint(f\"${x}\")\n```\nand `a$b`"),
])
def test_single_dollar_is_math_only_by_the_rule(text, expected):
    assert math_markdown(text) == expected


def test_a_bare_latex_final_answer_is_shown_as_math():
    assert answer_markdown("\\frac{\\pi}{4}") == "\\(\\frac{\\pi}{4}\\)"  # a program's sympy result, a \\boxed{} answer
    assert answer_markdown("x^{2} + 1") == "\\(x^{2} + 1\\)"
    assert answer_markdown("72") == "72" and answer_markdown("$5") == "\\$5"  # numbers and money stay text
    assert answer_markdown("\\(\\sqrt{2}\\)") == "\\(\\sqrt{2}\\)"  # already delimited: untouched


@pytest.mark.parametrize("text", [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell?",
    "Find all real $x$ such that $x^2 - 5x + 6 = 0$.", "What is the derivative of sin(x)?", "Compute $\\dbinom{8}{4}$.",
    "John eats a bag of chips for dinner and then eats twice as many after dinner. How many bags of chips did he eat?",
    "Determine the number of ways to arrange the letters of the word TOOT.", "What is 15% of 80?",
])
def test_math_questions_are_in_scope(text):
    assert is_math_question(text)


@pytest.mark.parametrize("text", [*OFF_TOPIC[:10], "Write a poem about autumn.", "What is the capital of France?",
                                  "What is the difference between a virus and a bacterium?"])
def test_other_requests_are_out_of_scope(text):
    assert not is_math_question(text)


def test_follow_ups_stay_in_scope_in_a_math_conversation():
    assert in_scope("Why is that?", ["What is 3 + 4?"])
    assert in_scope("Can you explain step 2?", ["What is 3 + 4?"])
    assert not in_scope("Why is that?", [])  # no conversation to follow up on
    assert not in_scope("Write a poem about autumn.", ["What is 3 + 4?"])  # a new request, not a follow-up


def test_follow_ups_carry_the_last_turns_within_the_budget():
    history = [(f"question {i}", f"answer {i}") for i in range(50)]
    prompt, dropped = with_history("and then?", history, budget_chars=120)
    assert "The student now asks: and then?" in prompt and "question 49" in prompt and "question 0" not in prompt
    assert "keep every other quantity" in prompt and dropped == 50 - prompt.count("Student:")
    assert with_history("What is 2 + 2?", []) == ("What is 2 + 2?", 0)
    turns = [Turn(question="poem?", answer=REFUSAL), Turn(question="2+2?", answer="4. The answer is 4.", final="4")]
    assert history_pairs(turns) == [("2+2?", "4")]  # refusals are not carried


def test_the_final_answer_stands_apart_and_a_cut_answer_says_so():
    messages = render([Turn(question="Cost of $3 and $x$?", answer="It is 3.", final="3", note="checked",
                            truncated=True)])
    assert messages[0] == {"role": "user", "content": "Cost of \\$3 and \\(x\\)?"}
    assert "**Final answer: 3**" in messages[1]["content"] and "cut at the length limit" in messages[1]["content"]


def test_the_verdict_comes_first_and_the_list_agrees_with_it():
    labels = ["False_Misconception:Additive", "True_Correct:NA", "False_Misconception:Wrong_fraction", "False_Neither:NA"]
    verdict, consistent = verdict_of(labels, [0.4, 0.3, 0.2, 0.1])
    assert verdict == "incorrect" and [label for label, _ in consistent] == [labels[0], labels[2]]
    text = format_diagnosis(labels, [0.4, 0.3, 0.2, 0.1])
    assert text.startswith("### The explanation shows a **misconception**") and "Correct" not in text.split("\n", 1)[1]
    assert "not one of the questions" not in text
    unseen = format_diagnosis(labels, [0.4, 0.3, 0.2, 0.1], unseen_question="99999")
    assert unseen.startswith("### The explanation shows") and "Question id 99999 is not one of the questions" in unseen


def test_the_api_refuses_non_math_without_asking_the_model(tutor_dir):  # noqa: F811
    client = TestClient(create_app([tutor_dir], ServeSettings(tutor_max_new_tokens=4)))
    body = client.post("/v1/tutor", json={"question": "Write a poem about the sea."}).json()
    assert body["refused"] and body["method"] == "scope" and body["answer"] == REFUSAL and body["new_tokens"] == 0
    stream = client.post("/v1/tutor", json={"question": "Who painted the Mona Lisa?", "stream": True}).text
    assert "event: done" in stream and '"method": "scope"' in stream
    answered = client.post("/v1/tutor", json={"question": "What is 3 + 4?"}).json()
    assert answered["method"] == "cot" and not answered["refused"] and answered["truncated"]  # 4 tokens: cut
    off = TestClient(create_app([tutor_dir], ServeSettings(tutor_max_new_tokens=4, tutor_scope=False)))
    assert off.post("/v1/tutor", json={"question": "Write a poem about the sea."}).json()["method"] == "cot"


def test_a_tutor_answer_that_takes_too_long_ends_with_a_message():
    import asyncio
    import threading
    import time

    from mathtune.serve.admission import TutorGate
    from mathtune.serve.settings import ServeSettings
    from mathtune.serve.tutor_service import TutorAsk, TutorService
    from mathtune.serve.webui.tutor import answer_events

    cancelled = threading.Event()

    class SlowGenerator:  # like the real ones: generation runs on its own thread and checks the cancel event
        def stream(self, question, budget, context, cancel, temperature=0.0, seed=None, info=None, **kwargs):
            import queue

            pieces: queue.Queue = queue.Queue()

            def generate():
                for i in range(100):
                    if cancel.is_set():
                        cancelled.set()
                        break
                    time.sleep(0.05)
                    pieces.put(f"step {i} ")
                pieces.put(None)

            threading.Thread(target=generate, daemon=True).start()
            while (piece := pieces.get()) is not None:
                yield piece

    class Model:
        manifest, generator = {"max_new_tokens": 64}, SlowGenerator()
        generator.solving, generator.tutor_prompt = SolveConfig(), DEFAULT_PROMPT
        gate = TutorGate(1, 0)

        async def run(self, fn, *args):
            return fn(*args)

        def retrieve(self, question, k=None):
            return None, []

    tutor = TutorService(Model(), ServeSettings(tutor_max_new_tokens=64))

    async def consume():
        async for _ in answer_events(tutor, TutorAsk("What is 2 + 2?", stream=True), 0.3):
            pass

    with pytest.raises(TimeoutError, match="took too long"):
        asyncio.run(consume())
    time.sleep(0.2)
    assert cancelled.is_set() and tutor.gate.active == 0  # generation was told to stop, its place given back


def test_a_streamed_answer_holds_back_math_until_it_closes():
    from mathtune.serve.webui.render import settled

    assert settled("Step 1: add.\n\\[ 3 \\times 2") == "Step 1: add."
    assert settled("Step 1: \\( x \\) and \\[ y \\]") == "Step 1: \\( x \\) and \\[ y \\]"
    assert settled("so $$ 2 +") == "so" and settled("$$a$$ then") == "$$a$$ then"
    turn = Turn(question="q", answer="First.\n\\[ 6 \\times", streaming=True)
    assert "\\times" not in render([turn])[1]["content"]
    assert "\\times" in render([turn.model_copy(update={"streaming": False})])[1]["content"]


def test_the_final_answer_keeps_the_unit_the_steps_use():
    from mathtune.serve.webui.render import with_unit

    assert with_unit("16", "3 pens cost $6 and 2 notebooks $10, so $6 + $10 = $16.\nThe answer is 16.") == "$16"
    assert with_unit("80", "speed = 60 / 0.75 = 80 km/h") == "80 km/h"
    assert with_unit("16", "16 apples") == "16" and with_unit("x + 1", "x + 1") == "x + 1"
    assert with_unit("6", "$16 in all, 6 left") == "6"  # another number's dollar sign is not this one's
    shown = render([Turn(question="q", answer="So $6 + $10 = $16.", final="16")])[1]["content"]
    assert "Final answer: \\$16" in shown and "---" not in shown


def test_stop_is_pressable_while_an_answer_runs_and_not_after():
    import asyncio

    import gradio as gr

    from mathtune.serve.webui.tutor import WORKING, with_stop

    async def answer():
        for i in range(3):
            yield (i,)

    async def collect():
        return [u async for u in with_stop(gr, answer)()]

    updates = asyncio.run(collect())
    assert [u[0] for u in updates[:3]] == [0, 1, 2]  # each update at once; then only Stop changes
    assert updates[3][0] == gr.skip()
    assert [u[1]["interactive"] for u in updates] == [True, True, True, False]
    assert [u[1]["variant"] for u in updates] == ["stop", "stop", "stop", "secondary"]
    # before its first words, an answer shows the working line under the question, whatever the mode
    shown = render([Turn(question="What is 2 + 2?", answer="", streaming=True)])
    assert shown[0]["content"] == "What is 2 + 2?" and shown[1]["content"] == WORKING


def test_the_tutor_page_names_the_ways_of_solving_and_why_a_vote_stopped_in_a_teachers_words():
    from mathtune.config import SolveConfig
    from mathtune.models.solving.values import Solution
    from mathtune.serve.webui.tutor import how_checked, modes

    labels = {value: label for label, value in modes(SolveConfig(vote_over="code", samples=7, agree_first=2,
                                                                 first_round=3, time_budget=60))}
    assert labels["vote"] == "Solve it several times and compare (slower, surer: up to 7 tries)"
    assert not any(word in " ".join(labels.values()) for word in ("Vote of", "samples", "within 60 s"))
    agreed = Solution("x", "72", "vote(program)", confidence=1.0, samples=2, k=5, voted_over="program")
    assert "It stopped after 2 of up to 5 tries: they all agreed." in how_checked(agreed, None)
    two_of_three = Solution("x", "72", "vote(code)", confidence=2 / 3, samples=3, k=7, voted_over="code",
                            first_round_ended=True)
    assert "It stopped after 3 of up to 7 tries: 2 of the first 3 agreed." in how_checked(two_of_three, None)
    cut = Solution("x", "72", "vote(code)", confidence=2 / 4, samples=4, k=7, voted_over="code", out_of_time=True)
    assert "It stopped after 4 of up to 7 tries: the time limit ran out." in how_checked(cut, None)


def test_an_answer_the_tutor_is_unsure_of_is_not_shown_as_final():
    """#48 item 1: "Final answer: 8" in bold under a vote in which 1 of 3 agreed."""
    from mathtune.models.solving.values import Solution
    from mathtune.serve.webui.tutor import found_answers

    split = Solution("4 pens cost $8.", "8", "vote(code)", confidence=1 / 3, samples=3, k=7, voted_over="code",
                     out_of_time=True, votes={"8": 1, "18": 1, "16": 1})
    assert split.unsure
    turn = Turn(question="What if she buys 4 pens?", answer=split.answer, final="8", unsure=True,
                found=found_answers(split), tries=3)
    shown = render([turn])[1]["content"]
    assert "**Final answer" not in shown and "Not sure" in shown
    assert "$8 (1 of 3 tries)" in shown and "18 (1 of 3 tries)" in shown
    agreed = Solution("x", "18", "vote(code)", confidence=1.0, samples=3, k=7, voted_over="code", votes={"18": 3})
    assert not agreed.unsure and not Solution("x", "18", "program", program_ok=True).unsure
    assert Solution("x", None, "program", program_ok=False).unsure


def test_a_stopped_answer_keeps_its_question_for_retry_and_continue():
    """#48 item 2: Retry after Stop asked the question before the stopped one again."""
    kept = Turn(question="A school trip...", answer="First, 3 buses", streaming=True).as_stopped()
    assert kept.stopped and kept.truncated and not kept.streaming
    shown = render([kept])[1]["content"]
    assert "Stopped." in shown and "Retry" in shown and "Continue" in shown and "length limit" not in shown
    assert not Turn(question="q", answer="").as_stopped().truncated  # nothing written: only Retry


def test_the_turns_a_browser_sends_back_are_read_through_the_model():
    """A page can store anything in its BrowserState: what is not a turn is left out; the first release's keys read."""
    raw = [{"q": "2+2?", "a": "4", "final": "4"}, {"question": "3+3?"}, {"answer": "no question"}, "text", None,
           {"question": "x", "truncated": "not a flag"}, {"question": "y", "found": [["4", 2]], "extra": 1}]
    turns = turns_from(raw)
    assert [t.question for t in turns] == ["2+2?", "3+3?", "y"] and turns[0].final == "4" and turns[2].found == [("4", 2)]
    assert turns_from("not a list") == [] and turns_from(None) == []
    assert turns_from(stored(turns)) == turns and "extra" not in stored(turns)[2]
    assert len(turns_from([{"question": str(i)} for i in range(MAX_TURNS + 5)])) == MAX_TURNS


def test_continue_holds_the_turns_from_the_browser_to_the_checks_of_a_new_question():
    """#46: the app's Continue skipped the scope and length checks (an 840 KB question reached the tokenizer)."""
    import asyncio
    from types import SimpleNamespace

    import gradio as gr

    from mathtune.serve.admission import TutorGate
    from mathtune.serve.webui.tutor import _continue

    asked = []

    from mathtune.tasks.tutor import DEFAULT_PROMPT

    class Generator:
        tutor_prompt, solving = DEFAULT_PROMPT, SolveConfig()

        def stream(self, question, *args, **kwargs):
            asked.append(question)
            yield "84."

    class Model:
        manifest, generator = {"max_new_tokens": 64}, Generator()
        gate = TutorGate(1, 0)

        async def run(self, fn, *args):
            return fn(*args)

        def retrieve(self, question, k=None):
            return None, []

    settings = ServeSettings(tutor_max_new_tokens=64, ui_timeout_s=5, max_text_chars=2000, tutor_scope=True)
    cont = _continue(gr, SimpleNamespace(settings=settings), Model())

    async def errors(turns) -> str:
        shown = ""
        async for update in cont(turns):
            shown = str(update[3]) or shown
        return shown

    huge = [{"q": "What is 2 + 2? " + "x" * 840_000, "a": "It is", "truncated": True}]
    poem = [{"q": "Write a short poem about the ocean", "a": "Waves", "truncated": True}]
    carried = [{"q": "Write a poem about the sea", "a": "", "final": None}, {"q": "Go on please", "a": "x", "truncated": True}]
    assert "characters" in asyncio.run(errors(huge))
    for turns in (poem, carried):
        assert "math" in asyncio.run(errors(turns))
    assert asked == []  # nothing reached the model
    asyncio.run(errors([{"q": "What is 12 times 7?", "a": "12 times 7 is", "truncated": True}]))
    assert len(asked) == 1 and "12 times 7 is" in asked[0]  # a real continuation still goes on


def test_a_teachers_checks_doubt_a_fraction_of_buses_and_an_answer_without_steps():
    """#48 item 3: "how many days for 150 pages" answered 12.5 (not rounded up), "The answer is 12" with no steps."""
    from mathtune.models.solving.checks import no_steps, not_whole, whole_number_asked
    from mathtune.models.solving.values import Solution
    from mathtune.serve.tutor_service import checked

    assert whole_number_asked("Tom reads 12 pages a day. How many days will 150 pages take?") == "days"
    assert whole_number_asked("How many buses are needed for 130 students?") == "buses"
    assert whole_number_asked("How many cups of flour for 25 cookies?") is None  # cups come in parts
    assert whole_number_asked("How much does it cost?") is None
    assert "whole number" in not_whole("How many days will 150 pages take?", "12.5")
    assert not_whole("How many days will 150 pages take?", "13") is None
    assert no_steps("The answer is 12.", "12") and no_steps("48 / 2 = 24\n48 + 24 = 72\nThe answer is 72.", "72") is None
    days = checked(Solution("150 / 12 = 12.5\nThe answer is 12.5.", "12.5", "cot"), "How many days for 150 pages?")
    assert days.unsure and "round up" in days.doubts[0]
    bare = checked(Solution("The answer is 12.", "12", "cot"), "Tom reads 12 pages a day; how long for 150 pages?")
    assert bare.unsure and "without its steps" in bare.doubts[0]
    fine = checked(Solution("150 / 12 = 12.5, so 13 days.\nThe answer is 13.", "13", "cot"), "How many days?")
    assert not fine.unsure and checked(fine, "How many days?").doubts == []
    shown = render([Turn(question="How many days?", answer=days.answer, final="12.5", unsure=True,
                         doubts=days.doubts)])
    assert "Not sure: perhaps 12.5" in shown[1]["content"] and "round up" in shown[1]["content"]


def test_topics_take_typed_questions_and_a_file_together_and_keep_every_input_column(tmp_path, monkeypatch):
    """#48 item 8: with both, the typed questions were silently ignored; the download dropped the file's id column."""
    from mathtune.serve.webui.classify import read_questions

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # files are read only from the app's upload folder

    sheet = tmp_path / "worksheet.csv"
    sheet.write_text("id,Question,class\n7,Solve 2x + 3 = 11.,8B\n9,What is 3/4 of 20?,8C\n")
    questions, where, inputs = read_questions("Find the derivative of x^2.\n", str(sheet), "Question", 500, 10**6)
    assert questions == ["Find the derivative of x^2.", "Solve 2x + 3 = 11.", "What is 3/4 of 20?"]
    assert where == ["Line 1", "worksheet.csv row 2", "worksheet.csv row 3"]
    assert list(inputs.columns) == ["Question", "id", "class"] and list(inputs["id"]) == ["", "7", "9"]


def test_a_class_set_of_answers_is_read_with_every_column_and_bad_rows_named(tmp_path, monkeypatch):
    """#48 item 7: the Misconceptions tab had no CSV upload or download."""
    from mathtune.serve.webui.misconceptions_tab import class_answers

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))

    answers = tmp_path / "class.csv"
    answers.write_text("student,QuestionText,MC_Answer,StudentExplanation\nAda,What is 1/2 + 1/4?,2/6,"
                       "I added the tops and the bottoms\nBo,What is 1/2 + 1/4?,3/4,Half is two quarters\n")
    frame, items = class_answers(str(answers), 10**6)
    assert list(frame["student"]) == ["Ada", "Bo"] and items[0].mc_answer == "2/6" and items[1].question_id is None
    (tmp_path / "bad.csv").write_text("QuestionText,MC_Answer\nq,a\n")
    with pytest.raises(ValueError, match="no StudentExplanation column"):
        class_answers(str(tmp_path / "bad.csv"), 10**6)
    (tmp_path / "empty.csv").write_text("QuestionText,MC_Answer,StudentExplanation\nq,a, \n")
    with pytest.raises(ValueError, match="row 2: the student's explanation is empty"):
        class_answers(str(tmp_path / "empty.csv"), 10**6)


def test_an_empty_tab_says_what_it_would_do_and_who_can_turn_it_on():
    from mathtune.serve.webui.common import not_served

    text = not_served("misconception", "misconception-tfidf.yaml")
    assert text.startswith("This tab reads a student's explanation") and "Whoever runs the server" in text


def test_the_models_tab_says_what_a_model_learned_from_and_how_often_it_is_right_in_words():
    """#48 item 6: the Models tab showed "F1-micro 0.868", "demo:champ" and a folder path."""
    from types import SimpleNamespace

    from mathtune.serve.webui.models_tab import data_words, how_often_right

    assert data_words("demo:champ").startswith("the built-in demo questions")
    assert data_words("/srv/data/topics/train.csv") == "the file train.csv"
    topic = SimpleNamespace(manifest={"validation": {"f1_micro": 0.868, "f1_macro": 0.8, "n": 68}})
    assert how_often_right("topic", topic) == "Its answer was right about 9 times in 10 on 68 questions it never trained on."
    diagnosis = SimpleNamespace(manifest={"validation": {"map_at_3": 0.71}})
    assert how_often_right("misconception", diagnosis).startswith("It scores 0.71 of 1 on questions it never")
    assert "not been measured" in how_often_right("products", SimpleNamespace(manifest={}))
