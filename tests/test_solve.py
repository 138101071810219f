"""Solving modes and the program sandbox: programs that loop, allocate, import os, open files, reach for
sockets or print megabytes are stopped and reported; cot / program / vote over a scripted generator."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from mathtune.config import SolveConfig
from mathtune.errors import MathtuneError
from mathtune.models.solving.prompts import PROGRAM_STOPS, PROGRAM_SYSTEM
from mathtune.models.solving.reading import extract_program
from mathtune.models.solving.settings import MODES, TIEBREAKS, VOTE_TIEBREAK, overridden
from mathtune.models.solving.solve import solve as solve_as
from mathtune.sandbox import check_program, run_program
from mathtune.tasks.tutor import DEFAULT_PROMPT
from solving_helpers import solve_in as solve
from solving_helpers import streamed_text


def test_a_clean_program_runs_with_fractions_and_sympy():
    result = run_program("from fractions import Fraction\nimport sympy as sp\nx = sp.symbols('x')\n"
                         "print(Fraction(1, 3) + Fraction(1, 6), sp.solve(x**2 - 4, x))")
    assert result.ok and result.output.strip() == "1/2 [-2, 2]", result


@pytest.mark.parametrize("code,needle", [
    ("import os\nos.system('touch {m}')", "import of 'os' is not allowed"),
    ("import subprocess\nsubprocess.run(['touch', '{m}'])", "import of 'subprocess'"),
    ("open('{m}', 'w').write('x')", "'open' is not allowed"),
    ("print(().__class__.__bases__[0].__subclasses__())", "is not allowed in a program"),
    ("__import__('os').system('touch {m}')", "'__import__' is not allowed"),
    ("eval(\"1+1\")", "'eval' is not allowed"),
    ("import statistics\nstatistics.sys.modules['os'].system('touch {m}')", "blocked by the sandbox: os.system"),
    ("import statistics\nstatistics.sys.modules['builtins'].open('{m}', 'w')", "blocked by the sandbox: writing files"),
    ("import statistics\nstatistics.sys.modules['os'].remove('{m}')", "blocked by the sandbox: os.remove"),
    ("while True:\n    pass", "CPU time limit"),
    ("a = []\nwhile True:\n    a.append('x' * 10**7)", "MemoryError"),
    ("while True:\n    print('x' * 1000)", "printed more than"),
    ("def f(:\n", "syntax error"),
])
def test_hostile_programs_are_stopped_and_reported(tmp_path, code, needle):
    marker = tmp_path / "ran"
    result = run_program(code.format(m=marker), cpu_seconds=2, wall_seconds=15)
    # an allocation loop on a busy machine may reach the CPU-time limit before the memory limit: stopped either way
    allowed = (needle, "CPU time limit") if needle == "MemoryError" else (needle,)
    assert not result.ok and any(n in (result.error or "") for n in allowed), result
    assert not marker.exists()


def test_static_check_names_the_line():
    assert check_program("x = 1\nimport socket\n") == ("line 2: import of 'socket' is not allowed; the program may use "
                                                       "only cmath, collections, decimal, fractions, functools, itertools, "
                                                       "math, numbers, operator, re, statistics, string, sympy")


class Scripted:
    """A generator that answers from a script: one reply per call, in order."""

    backend = "scripted"
    tutor_prompt = DEFAULT_PROMPT
    parallel = False

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    def sample(self, question, k, max_new_tokens=256, context=None, system=None, temperature=0.7, seed=None,
               stops=(), prefix=None):
        return self.generate([question] * k, max_new_tokens, [context] * k, system=system, temperature=temperature,
                             seed=seed, stops=stops, prefix=prefix)

    def continue_answer(self, question, prefix, max_new_tokens=256, context=None, system=None, stops=(),
                        temperature=0.0, seed=None):
        self.calls.append({"prefix": prefix})
        from mathtune.models.generate import Generation

        return Generation(self.replies.pop(0), 10, 0.01)

    def generate(self, questions, max_new_tokens=256, contexts=None, ignore_eos=False, system=None,
                 temperature=0.0, seed=None, stops=(), prefix=None, cancel=None):
        from mathtune.models.generate import Generation

        self.calls.append({"system": system, "temperature": temperature, "seed": seed, "stops": stops,
                           "questions": list(questions), "contexts": list(contexts or [])})
        if cancel is not None:
            self.calls[-1]["cancel"] = cancel
        if prefix is not None:
            self.calls[-1]["prefix"] = prefix
        return [Generation(self.replies.pop(0), 10, 0.01) for _ in questions]


def test_cot_reads_the_final_answer():
    [s] = solve(Scripted(["48 / 2 = 24\n48 + 24 = 72\nThe answer is 72."]), ["q"], "cot")
    assert s.final_answer == "72" and s.method == "cot" and s.program is None and s.steps[-1] == "The answer is 72."


def test_program_mode_runs_the_program_and_shows_it():
    reply = "Add April and May.\n```python\nprint(48 + 48 // 2)\n```\n```output\n99\n```"
    generator = Scripted([reply])
    [s] = solve(generator, ["q"], "program")
    assert generator.calls[0]["system"] == PROGRAM_SYSTEM
    assert s.final_answer == "72" and s.program_ok and s.program == "print(48 + 48 // 2)"
    assert "Output: 72" in s.answer and "99" not in s.answer  # a made-up output block is never shown
    assert generator.calls[0]["stops"] == PROGRAM_STOPS and generator.calls[0]["questions"] == ["q"]


@pytest.mark.parametrize("program, shown", [("import sympy\nprint(sympy.Integer(1) / 0)", "zoo"),
                                            ("print(float('nan'))", "nan"), ("def f():\n    pass\nprint(f())", "None")])
def test_a_program_that_prints_no_value_is_corrected(program, shown):
    generator = Scripted([f"```python\n{program}\n```", "```python\nprint(72)\n```"])
    [s] = solve(generator, ["q"], "program")
    assert s.final_answer == "72" and s.attempts == 2  # shown the reason and corrected
    assert f"the program printed {shown}, which is not a value" in generator.calls[1]["questions"][0]
    [s] = solve(Scripted([f"```python\n{program}\n```"]), ["q"], "program", repairs=0)
    assert s.final_answer is None and not s.program_ok  # never counted as an answer (nor in a vote)


def test_program_mode_shows_only_what_came_before_the_program():
    reply = "Half of 48 is 24.\n```python\nprint(48 + 24)\n```\nSo the answer is \\boxed{99}."
    [s] = solve(Scripted([reply]), ["q"], "program")
    assert s.final_answer == "72" and "Half of 48" in s.answer and "99" not in s.answer


def test_program_mode_without_a_program_says_the_answer_came_from_prose():
    [s] = solve(Scripted(["48 + 24 = 72. The answer is 72."]), ["q"], "program")
    assert s.method == "cot" and s.final_answer == "72" and s.program is None and s.program_ok is False
    assert s.program_error == "the model wrote no program"


def test_program_mode_reports_a_failed_program():
    bad = "```python\nimport os\nprint(os.getcwd())\n```"
    [s] = solve(Scripted([bad]), ["q"], "program", repairs=0)
    assert s.program_ok is False and s.final_answer is None and "not allowed" in s.program_error
    assert "The program failed" in s.answer and s.attempts == 1
    generator = Scripted([bad, "Still no program."])  # the correction writes no program: the failure stands
    [s] = solve(generator, ["q"], "program")
    assert s.program_ok is False and s.final_answer is None and s.attempts == 2 and s.new_tokens == 20


def test_a_failed_program_is_shown_its_error_and_corrected():
    first = "Add them.\n```python\nprint(total + 24)\n```"
    generator = Scripted([first, "```python\ntotal = 48\nprint(total + 24)\n```"])
    [s] = solve(generator, ["What is 48 + 24?"], "program", contexts=["[1] notes"])
    assert s.program_ok and s.final_answer == "72" and s.attempts == 2 and s.new_tokens == 20
    assert "NameError" in s.answer and s.answer.index("NameError") < s.answer.index("Output: 72")  # both attempts shown
    retry = generator.calls[1]
    assert retry["system"] == PROGRAM_SYSTEM and retry["stops"] == PROGRAM_STOPS
    assert retry["questions"][0].startswith("The program failed: NameError")
    history = retry["contexts"][0]  # the same conversation: the question and the failed reply came before
    assert history.pairs == (("What is 48 + 24?", first),) and history.passages == "[1] notes"
    voted = solve(Scripted([first, "```python\nprint(72)\n```"] * 3), ["q"], "vote", k=3, base="program")[0]
    assert voted.final_answer == "72" and voted.confidence == 1.0  # every sample corrected, then voted
    # a program that runs but prints nothing (cut off at the token limit before its print) has failed, and is corrected
    silent = "Compute it.\n```python\ntotal = 48 + 24\n```"
    [s] = solve(Scripted([silent, "```python\nprint(48 + 24)\n```"]), ["q"], "program")
    assert s.program_ok and s.final_answer == "72" and s.attempts == 2 and "printed nothing" in s.answer
    [s] = solve(Scripted([silent, silent]), ["q"], "program")
    assert not s.program_ok and s.final_answer is None and "printed nothing" in s.program_error


def test_vote_takes_the_majority_of_equivalent_answers():
    replies = ["The answer is 0.5.", "The answer is 1/2.", "The answer is 3.", "The answer is \\frac{1}{2}.",
               "no idea"]
    generator = Scripted(replies)
    [s] = solve(generator, ["q"], "vote", k=5, temperature=0.8, seed=7, early_stop=False)
    assert s.method == "vote(cot)" and s.samples == 5 and s.confidence == pytest.approx(3 / 5)
    assert s.final_answer in ("0.5", "1/2", "\\frac{1}{2}") and sum(s.votes.values()) == 4
    assert [c["seed"] for c in generator.calls] == [7, 8, 9, 10, 11] and all(c["temperature"] == 0.8 for c in generator.calls)


def test_vote_stops_when_the_rest_cannot_change_the_majority():
    replies = ["The answer is 0.5.", "The answer is 1/2.", "The answer is 3.", "The answer is \\frac{1}{2}.",
               "no idea"]
    generator = Scripted(replies)
    [s] = solve(generator, ["q"], "vote", k=5, seed=7)  # after 4 samples: 3 votes against 1 with 1 to come
    assert s.samples == 4 and len(generator.calls) == 4 and s.final_answer == "0.5"
    assert s.confidence == pytest.approx(3 / 4) and s.votes == {"0.5": 3, "3": 1}
    agreeing = Scripted(["The answer is 7."] * 5)
    assert solve(agreeing, ["q"], "vote", k=5)[0].samples == 3 and len(agreeing.calls) == 3  # 3 of 5 is a majority
    split = Scripted(["The answer is 1.", "The answer is 2.", "The answer is 2.", "The answer is 1.", "The answer is 1."])
    [s] = solve(split, ["q"], "vote", k=5)  # undecided until the last sample
    assert s.samples == 5 and s.final_answer == "1" and s.votes == {"1": 3, "2": 2}
    tie = Scripted(["The answer is 1.", "The answer is 2.", "no idea", "no idea"])
    [s] = solve(tie, ["q"], "vote", k=4, tiebreak="none")  # a tie goes to the answer seen first, as with every sample drawn
    assert s.samples == 4 and s.final_answer == "1" and s.confidence == pytest.approx(1 / 4)


def test_a_split_vote_is_decided_by_a_greedy_program_when_asked():
    split = ["The answer is 1.", "The answer is 2.", "The answer is 3.", "no idea", "The answer is 5."]
    generator = Scripted(split + ["Add them.\n```python\nprint(2 + 2)\n```"])
    [s] = solve(generator, ["q"], "vote", k=5, tiebreak="program")
    assert s.method == "vote(cot)+program" and s.final_answer == "4" and s.program_ok
    assert s.samples == 5 and s.confidence == pytest.approx(1 / 5) and s.votes == {"1": 1, "2": 1, "3": 1, "5": 1}
    decider = generator.calls[-1]
    assert decider["system"] == PROGRAM_SYSTEM and decider["temperature"] == 0.0  # one greedy program
    agreeing = Scripted(["The answer is 7.", "The answer is 7.", "The answer is 7."])
    [s] = solve(agreeing, ["q"], "vote", k=5, tiebreak="program")  # a decided vote needs no tie-break
    assert s.method == "vote(cot)" and len(agreeing.calls) == 3
    prose = Scripted(split + ["2 + 2 = 4. The answer is 4."])
    [s] = solve(prose, ["q"], "vote", k=5, tiebreak="program")  # prose instead of a program: the vote stands
    assert s.method == "vote(cot)" and s.final_answer == "1" and len(prose.calls) == 6
    assert solve(Scripted(split + ["The answer is 4."]), ["q"], "vote", k=5, tiebreak="cot")[0].method == "vote(cot)+cot"
    silent = Scripted(split + ["I can only help with math questions."])
    [s] = solve(silent, ["q"], "vote", k=5, tiebreak="program")  # a tie-break that gives no answer changes nothing
    assert s.method == "vote(cot)" and s.final_answer == "1" and s.new_tokens == 6 * 10  # its tokens still count
    with pytest.raises(ValueError, match="tiebreak"):
        solve(Scripted([]), ["q"], "vote", tiebreak="poem")


def test_program_answers_read_as_people_write_them():
    from mathtune.models.solving.reading import _program_answer

    assert [_program_answer(f"x\n{v}\n") for v in ("72.0", "816.9999999999999", "7499.999999999998",
                                                     "0.30000000000000004", "2.5", "1/2", "x = 3", "1e-20")] == \
        ["72", "817", "7500", "0.3", "2.5", "1/2", "x = 3", "1e-20"]
    assert _program_answer("  \n") is None


def test_extract_program_takes_the_last_python_block_or_an_unclosed_one():
    assert extract_program("a\n```python\nprint(1)\n```\nb\n```python\nprint(2)\n```") == "print(2)"
    assert extract_program("cut at the limit\n```python\nprint(3)") == "print(3)"
    assert extract_program("no code here") is None


def test_the_tutor_page_says_how_an_answer_was_checked():
    from mathtune.models.solving.values import Method, Solution
    from mathtune.serve.webui.tutor import how_checked

    assert how_checked(Solution("", "72", "program", program_ok=True)) == \
        "Worked out by a small computer program that ran without errors."
    assert "after it was corrected" in how_checked(Solution("", "72", "program", program_ok=True, attempts=2))
    assert "not checked" in how_checked(Solution("", None, "program", program_ok=False, attempts=2))
    assert "not checked by a program" in how_checked(Solution("", "72", "cot", program_ok=False))
    early = how_checked(Solution("", "72", "vote(cot)", confidence=1.0, samples=3, k=5, voted_over="cot"))
    assert early.startswith("Solved 3 times: 3 gave this answer.") and "stopped after 3 of up to 5 tries" in early
    assert "stopped" not in how_checked(Solution("", "72", "vote(cot)", confidence=0.6, samples=5, k=5, voted_over="cot"))
    split = how_checked(Solution("", "72", "vote(cot)+program", program_ok=True, confidence=0.2, samples=5, k=5,
                                 voted_over="cot", decided_by=Method.PROGRAM))
    assert split.startswith("Solved 5 times: 1 gave") and "a program that ran without errors decided" in split
    measured = {"vote_right_by_agreeing": {"1": 0.36, "2": 0.67, "3": 0.93}}
    sure = how_checked(Solution("", "72", "vote(cot)", confidence=1.0, samples=3, k=5, voted_over="cot"), measured)
    assert "When 3 tries agree, this tutor was right about 9 times in 10" in sure and not sure.endswith("steps.")
    unsure = how_checked(Solution("", "72", "vote(cot)", confidence=0.4, samples=5, k=5, voted_over="cot"), measured)
    assert "When 2 tries agree, this tutor was right about 7 times in 10" in unsure and unsure.endswith("Check the steps.")
    other_k = how_checked(Solution("", "72", "vote(cot)", confidence=1.0, samples=2, k=3, voted_over="cot"), measured)
    assert "was right" not in other_k  # measured with k = 5 only
    over_programs = how_checked(Solution("", "72", "vote(program)", confidence=1.0, samples=3, k=5, voted_over="program"),
                                measured)
    assert "was right" not in over_programs and over_programs.endswith("Check the steps.")  # measured over cot only
    for word in ("sample", "Vote:", "%"):  # a teacher's words, not a developer's
        assert word not in sure + unsure + split + early


def test_the_benchmark_composes_the_tiebreak_as_solve_does():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tutor_modes", Path(__file__).parents[1] / "bench" / "tutor_modes.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    split = ["The answer is 1.", "The answer is 2.", "The answer is 3.", "no idea", "The answer is 5."]
    program = "Add them.\n```python\nprint(2 + 2)\n```"
    direct = solve(Scripted(split + [program]), ["q"], "vote", k=5)[0]
    [composed] = bench.with_tiebreak(solve(Scripted(split), ["q"], "vote", k=5, tiebreak="none"),
                                     solve(Scripted([program]), ["q"], "program"))
    fields = ("final_answer", "method", "samples", "k", "confidence", "new_tokens")
    assert [getattr(composed, f) for f in fields] == [getattr(direct, f) for f in fields]
    decided = ["The answer is 7."] * 3
    [kept] = bench.with_tiebreak(solve(Scripted(decided), ["q"], "vote", k=5), solve(Scripted([program]), ["q"], "program"))
    assert kept.final_answer == "7" and kept.method == "vote(cot)" and kept.new_tokens == 30  # no tie-break was run


def test_solving_settings_from_a_recipe_with_overrides():
    assert MODES == ("cot", "program", "code", "vote") and TIEBREAKS == ("program", "code", "cot", "none")
    assert SolveConfig().tiebreak == VOTE_TIEBREAK and SolveConfig().mode == "cot"
    saved = SolveConfig(mode="vote", samples=3, vote_over="program")
    asked = overridden(saved, mode=None, samples=4, tiebreak=None)  # None: not given, the saved setting stays
    assert (asked.mode, asked.samples, asked.vote_over, asked.tiebreak) == ("vote", 4, "program", "program")
    assert saved.samples == 3
    with pytest.raises(MathtuneError, match="samples: Input should be less than or equal to 9"):
        overridden(saved, samples=12)
    with pytest.raises(MathtuneError, match="vote_over"):
        overridden(saved, vote_over="vote")
    # a vote over programs: two that ran and agree decide a vote of three
    generator = Scripted(["```python\nprint(70 + 2)\n```", "```python\nprint(72)\n```"])
    [s] = solve_as(generator, ["q"], saved)
    assert s.method == "vote(program)" and s.final_answer == "72" and s.samples == 2 and s.k == 3
    assert all(c["system"] == PROGRAM_SYSTEM and c["temperature"] == 0.7 for c in generator.calls)


def test_a_sympy_result_is_read_as_latex_in_the_sandbox(tmp_path):
    from mathtune.metrics.answers import answers_match
    from mathtune.models.solving.reading import _program_answer

    assert _program_answer("pi/4\n") == "\\frac{\\pi}{4}" and answers_match(_program_answer("pi/4"), "\\frac{\\pi}{4}")
    assert answers_match(_program_answer("(3, pi/2)"), "\\left( 3, \\frac{\\pi}{2} \\right)")
    assert answers_match(_program_answer("x**2 + 1"), "x^2+1") and not answers_match("x**2 + 1", "x^2+1")
    assert answers_match(_program_answer("-2 + 7*I"), "-2 + 7i")  # sympy writes "7 i"
    assert _program_answer("[-2, 2]") == "-2, 2"  # sympy.solve's list, written as MATH writes several answers
    assert _program_answer("72.0") == "72" and _program_answer("3 apples") == "3 apples"
    # what a program printed is converted in the sandbox: printed code runs no further than the program did
    marker = tmp_path / "ran"
    hostile = f"__import__('os').system('touch {marker}') * pi"
    assert _program_answer(hostile) == hostile and not marker.exists()
    [s] = solve(Scripted(["```python\nimport sympy\nprint(sympy.pi / 4)\n```"]), ["q"], "program")
    assert s.final_answer == "\\frac{\\pi}{4}" and s.steps[-1] == "The answer is \\(\\frac{\\pi}{4}\\)."


class Streamed(Scripted):
    """A scripted generator that also streams: each reply in two pieces; records each stream's prefix."""

    def stream(self, question, max_new_tokens=256, context=None, cancel=None, temperature=0.0, seed=None, info=None,
               prefix=None, stops=(), system=None):
        reply = self.replies.pop(0)
        self.calls.append({"prefix": prefix, "stops": stops, "system": system})
        yield reply[: len(reply) // 2]
        yield reply[len(reply) // 2:]
        if info is not None:
            info.update(new_tokens=10, truncated=False)


def test_a_streamed_cot_answer_runs_its_program_and_goes_on_from_the_real_output():

    generator = Streamed(["Compute it.\n```python\nprint(6 * 7)\n```", "So the answer is 42."])
    info: dict = {}
    text = "".join(streamed_text(generator, "What is 6 times 7?", 100, info=info))
    assert "```output\n42\n```" in text and text.endswith("So the answer is 42.")
    assert generator.calls[0]["prefix"] is None and generator.calls[1]["prefix"].endswith("```output\n42\n```\n")
    assert generator.calls[0]["stops"] == PROGRAM_STOPS  # the model stops where it would invent the output
    assert info["new_tokens"] == 20 and info["truncated"] is False and text.count("```output") == 1


def test_a_cot_answer_without_a_program_streams_once():

    generator = Streamed(["6 times 7 is 42. The answer is 42."])
    assert "".join(streamed_text(generator, "q", 100)) == "6 times 7 is 42. The answer is 42."
    assert len(generator.calls) == 1


def test_tool_calls_stop_at_the_limit_and_a_failing_block_shows_its_error():
    from mathtune.models.solving.running import TOOL_CALLS

    loop = "```python\nprint(undefined_name)\n```"
    generator = Streamed([loop] * (TOOL_CALLS + 1))
    info: dict = {}
    text = "".join(streamed_text(generator, "q", 1000, info=info))
    assert text.count("```output") == TOOL_CALLS and len(generator.calls) == TOOL_CALLS + 1
    assert "```output\nError:" in text and "NameError" in text


class Batched(Scripted):
    """A parallel generator: a batch's samples finish one after another (in script order) and the batch stops
    early once ``cancel`` is set, as llama.cpp's does."""

    parallel = True

    def __init__(self, replies, programs=()):
        super().__init__(replies)
        self.programs = list(programs)  # program-mode replies (batches of two modes run side by side)

    def sample(self, question, k, max_new_tokens=256, context=None, system=None, temperature=0.7, seed=None,
               stops=(), cancel=None, on_finish=None, prefix=None):
        from mathtune.models.generate import Generation

        self.calls.append({"k": k, "system": system} | ({"prefix": prefix} if prefix else {}))
        replies = self.programs if system == PROGRAM_SYSTEM else self.replies
        done = []
        for i in range(k):
            if cancel is not None and cancel.is_set():
                replies.pop(0)  # cut off before it finished
                continue
            done.append(Generation(replies.pop(0), 10, 0.01))
            if on_finish is not None:
                on_finish(i, done[-1])
        return done


def test_a_batched_vote_stops_once_the_finished_samples_decide_it():
    generator = Batched(["The answer is 72."] * 3 + ["The answer is 5.", "The answer is 6."])
    [s] = solve(generator, ["q"], "vote", k=5, tiebreak="none")
    assert s.final_answer == "72" and s.samples == 3 and s.k == 5 and s.confidence == 1.0
    assert generator.calls == [{"k": 5, "system": None}]  # one batch of five, cut short after three
    generator = Batched(["The answer is 72."] * 3 + ["The answer is 5.", "The answer is 6."])
    [s] = solve(generator, ["q"], "vote", k=5, tiebreak="none", early_stop=False)
    assert s.samples == 5 and s.confidence == 0.6


def test_a_batched_mixed_vote_counts_programs_that_ran():
    program = "```python\nprint(70 + 2)\n```"
    generator = Batched(["The answer is 72.", "The answer is 71.", "The answer is 72."], [program, program])
    [s] = solve(generator, ["q"], "vote", k=5, base="mixed", tiebreak="none", early_stop=False)
    assert s.final_answer == "72" and s.votes == {"72": 4, "71": 1} and s.method == "vote(mixed)"
    assert sorted(c["k"] for c in generator.calls) == [2, 3]
    assert {c["system"] for c in generator.calls} == {None, PROGRAM_SYSTEM}


def _prints(value) -> str:
    return f"```python\nprint({value})\n```"


def test_adaptive_vote_ends_when_the_first_round_agrees():
    generator = Scripted([_prints(72), _prints("70 + 2")])
    [s] = solve(generator, ["q"], "vote", k=5, base="program", agree_first=2)
    assert s.final_answer == "72" and s.samples == 2 and s.k == 5 and s.confidence == 1.0
    assert [c["temperature"] for c in generator.calls] == [0.0, 0.7]  # the greedy answer, then one sample


def test_adaptive_vote_draws_the_rest_when_the_first_round_disagrees_and_a_tie_goes_to_greedy():
    generator = Scripted([_prints(72), _prints(71), _prints(72), _prints(70), _prints(71)])
    [s] = solve(generator, ["q"], "vote", k=5, base="program", agree_first=2, early_stop=False)
    assert s.samples == 5 and s.votes == {"72": 2, "71": 2, "70": 1} and s.final_answer == "72"
    assert s.method == "vote(program)" and len(generator.calls) == 5


def test_adaptive_vote_on_a_parallel_generator_draws_two_batches_and_reuses_greedy_as_tiebreak():
    generator = Batched([_prints(72)], [_prints(71), _prints(70), _prints(69), _prints(68)])
    [s] = solve(generator, ["q"], "vote", k=5, base="program", agree_first=2)
    assert s.samples == 5 and s.final_answer == "72" and s.method == "vote(program)+program"
    greedy = [c for c in generator.calls if "temperature" in c]
    assert len(greedy) == 1 and greedy[0]["temperature"] == 0.0  # the tie-break was not asked again
    assert sorted(c["k"] for c in generator.calls if "k" in c) == [1, 3]
    generator = Batched([_prints(72)], [_prints(72)])
    [s] = solve(generator, ["q"], "vote", k=5, base="program", agree_first=2)
    assert s.samples == 2 and s.final_answer == "72" and [c.get("k") for c in generator.calls if "k" in c] == [1]


@pytest.mark.parametrize("first", [1, -1, 10])
def test_agree_first_must_fit_the_samples(first):
    with pytest.raises(MathtuneError, match="agree_first"):
        SolveConfig.checked({"mode": "vote", "samples": 5, "agree_first": first}, "solving settings: {problems}")


def test_code_mode_continues_the_programs_opening_and_runs_it():
    from mathtune.models.solving.prompts import CODE_PREFIX, CODE_SYSTEM

    generator = Scripted(["# April's clips and half as many in May\nprint(48 + 48 // 2)\n```"])
    [s] = solve(generator, ["q"], "code")
    assert s.final_answer == "72" and s.method == "program" and s.program_ok and not s.refused
    assert s.program.startswith("# April's clips") and s.answer.startswith("```python\n# April's clips")
    assert generator.calls[0]["prefix"] == CODE_PREFIX and generator.calls[0]["system"] == CODE_SYSTEM
    assert generator.calls[0]["stops"] == PROGRAM_STOPS


def test_a_code_answer_that_fails_is_corrected_in_code_mode_and_one_that_declines_is_a_refusal():
    from mathtune.models.solving.prompts import CODE_PREFIX

    generator = Scripted(["print(totl)\n```", "total = 72\nprint(total)\n```"])
    [s] = solve(generator, ["q"], "code")
    assert s.final_answer == "72" and s.attempts == 2 and "NameError" in s.answer
    assert [c.get("prefix") for c in generator.calls] == [CODE_PREFIX, CODE_PREFIX]  # the repair is code too
    [s] = solve(Scripted(['print("I can only help with math questions.")\n```']), ["What is the capital of France?"],
                "code")
    assert s.refused and s.final_answer is None and s.answer == "I can only help with math questions."


def test_a_streamed_code_answer_shows_the_programs_opening_first():
    from mathtune.models.solving.prompts import CODE_PREFIX, CODE_SYSTEM

    generator = Streamed(["# six sevens\nprint(6 * 7)\n```"])
    info: dict = {}
    pieces = list(streamed_text(generator, "What is 6 times 7?", 100, info=info, mode="code"))
    assert pieces[0] == CODE_PREFIX and "".join(pieces) == CODE_PREFIX + "# six sevens\nprint(6 * 7)\n```"
    assert generator.calls[0]["prefix"] == CODE_PREFIX and generator.calls[0]["system"] == CODE_SYSTEM
    assert info["solution"].final_answer == "42" and info["solution"].program_ok


def test_adaptive_vote_over_code_samples_from_the_opening_and_reuses_greedy_as_tiebreak():
    from mathtune.models.solving.prompts import CODE_PREFIX

    generator = Batched(["print(71)\n```", "print(70)\n```", "print(69)\n```", "print(68)\n```"])
    generator.replies.insert(0, "print(72)\n```")  # the greedy answer (generate), then the samples
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, tiebreak="code")
    assert s.samples == 5 and s.final_answer == "72" and s.method == "vote(code)+program"
    assert all(c.get("prefix") == CODE_PREFIX for c in generator.calls)
    assert len([c for c in generator.calls if "temperature" in c]) == 1  # greedy asked once



def test_a_first_round_of_three_ends_the_vote_when_two_agree():
    from mathtune.models.solving.prompts import CODE_SYSTEM
    from mathtune.models.solving.vote import stopped_because

    generator = Batched(["print(72)\n```", "print(72)\n```", "print(71)\n```"])
    [s] = solve(generator, ["q"], "vote", k=7, base="code", agree_first=2, first_round=3, tiebreak="code")
    assert s.final_answer == "72" and s.samples == 3 and s.k == 7 and s.votes == {"72": 2, "71": 1}
    assert s.first_round_ended and stopped_because(s) == "2 of the first 3 agreed"
    assert [(c["k"], c["system"]) for c in generator.calls if "k" in c] == [(2, CODE_SYSTEM)]
    # no two of the first three agree: four more are drawn (cut off once decided) and all vote
    generator = Batched(["print(72)\n```", "print(71)\n```", "print(70)\n```",
                         "print(71)\n```", "print(71)\n```", "print(69)\n```", "print(68)\n```"])
    [s] = solve(generator, ["q"], "vote", k=7, base="code", agree_first=2, first_round=3, tiebreak="code")
    assert s.final_answer == "71" and s.samples == 6 and not s.first_round_ended
    assert stopped_because(s) == "the rest could not change the answer"
    assert [c["k"] for c in generator.calls if "k" in c] == [2, 4]


class Slow(Batched):
    """A parallel generator whose samples each take ``delay`` seconds to finish (greedy answers come at once)."""

    def __init__(self, replies, delay):
        super().__init__(replies)
        self.delay = delay

    def sample(self, question, k, max_new_tokens=256, context=None, system=None, temperature=0.7, seed=None,
               stops=(), cancel=None, on_finish=None, prefix=None):
        from mathtune.models.generate import Generation

        self.calls.append({"k": k, "system": system})
        done = []
        for i in range(k):
            if cancel is None or not cancel.is_set():
                time.sleep(self.delay)
            if cancel is not None and cancel.is_set():
                self.replies.pop(0)  # cut off before it finished
                continue
            done.append(Generation(self.replies.pop(0), 10, self.delay))
            if on_finish is not None:
                on_finish(i, done[-1])
        return done


def test_a_time_budget_cuts_the_second_round_and_the_finished_samples_vote():
    from mathtune.models.solving.vote import stopped_because

    replies = ["print(72)\n```", "print(71)\n```", "print(70)\n```",  # round one disagrees
               "print(71)\n```", "print(1 / 0)\n```", "print(69)\n```", "print(68)\n```"]
    start = time.perf_counter()
    [s] = solve(Slow(list(replies), 0.5), ["q"], "vote", k=7, base="code", agree_first=2, first_round=3,
                tiebreak="code", time_budget=1.9)
    # round one's two samples take 1 s and its three programs run in the sandbox, round two's first 0.5 s more; the
    # budget runs out during its second (a quarter second of margin either way for the programs' time)
    assert s.out_of_time and s.samples == 4 and s.k == 7 and stopped_because(s) == "the time budget ran out"
    assert s.final_answer == "71" and s.votes == {"72": 1, "71": 2, "70": 1}
    assert time.perf_counter() - start < 2.9  # not the 3 s round two would take on top of round one's 1
    # without a budget all of round two is drawn, the failed program corrected (from the replies left)
    [s] = solve(Slow(list(replies) + ["print(71)\n```"], 0.01), ["q"], "vote", k=7, base="code", agree_first=2,
                first_round=3, tiebreak="code", early_stop=False)
    assert not s.out_of_time and s.samples == 7 and s.votes == {"72": 1, "71": 3, "70": 1, "69": 1, "68": 1}


def test_a_first_round_that_spends_the_budget_stops_its_samples_and_begins_no_second():
    # the greedy answer is in at once; the budget runs out while the first sample decodes: it and the next stop
    generator = Slow(["print(72)\n```", "print(71)\n```", "print(70)\n```", "print(71)\n```"], 0.3)
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, first_round=3, tiebreak="code",
                time_budget=0.2)
    assert s.out_of_time and s.samples == 1 and s.final_answer == "72"
    assert [c["k"] for c in generator.calls if "k" in c] == [2]  # round two never asked for
    # one sample in before the budget, the other cut: the two answers in disagree, the split goes to greedy
    generator = Slow(["print(72)\n```", "print(71)\n```", "print(70)\n```", "print(71)\n```"], 0.3)
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, first_round=3, tiebreak="code",
                time_budget=0.45)
    assert s.out_of_time and s.samples == 2 and s.votes == {"72": 1, "71": 1} and s.final_answer == "72"
    # two that agree still end the vote, as they would have in time
    generator = Slow(["print(72)\n```", "print(72)\n```", "print(70)\n```"], 0.3)
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, first_round=3, tiebreak="code",
                time_budget=0.45)
    assert s.first_round_ended and s.samples == 2 and s.final_answer == "72"
    # with no budget the whole round is drawn
    generator = Slow(["print(72)\n```", "print(71)\n```", "print(71)\n```"], 0.05)
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, first_round=3, tiebreak="code")
    assert not s.out_of_time and s.samples == 3 and s.final_answer == "71"


def test_a_first_round_past_the_budget_waits_for_its_first_answer():
    # nothing in at the deadline: the first answer of the round to come in (here a sample) ends the round
    class SlowGreedy(Slow):
        def generate(self, *args, **kwargs):
            time.sleep(0.5)
            return super().generate(*args, **kwargs)

    generator = SlowGreedy(["print(71)\n```", "print(70)\n```", "print(72)\n```"], 0.3)
    start = time.perf_counter()
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, first_round=3, tiebreak="code",
                time_budget=0.1)
    # the first sample is in at 0.3 s, past the budget: the second stops; the greedy answer still completes
    assert s.out_of_time and s.samples == 2 and time.perf_counter() - start < 0.8


class Stalling(Batched):
    """A parallel generator whose greedy answers (a tie-break, a correction) take ``delay`` seconds unless cancelled
    first; its samples come at once."""

    def __init__(self, replies, delay):
        super().__init__(replies)
        self.delay = delay

    def generate(self, questions, *args, cancel=None, **kwargs):
        end = time.perf_counter() + self.delay  # a token every 10 ms, each checking cancel (only is_set is promised)
        while time.perf_counter() < end and not (cancel is not None and cancel.is_set()):
            time.sleep(0.01)
        return super().generate(questions, *args, cancel=cancel, **kwargs)


def test_the_budget_cuts_a_tiebreak_under_way_and_it_decides_nothing():
    replies = ["The answer is 5.", "The answer is 6.", "The answer is 7.", "```python\nprint(8)\n```"]
    start = time.perf_counter()
    [s] = solve(Stalling(list(replies), 5.0), ["q"], "vote", k=3, tiebreak="program", time_budget=0.3,
                early_stop=False)
    assert time.perf_counter() - start < 2.0  # not the tie-break's 5 s
    assert s.out_of_time and s.decided_by is None and s.final_answer == "5" and s.samples == 3
    # in time, the same tie-break decides
    [s] = solve(Stalling(list(replies), 0.05), ["q"], "vote", k=3, tiebreak="program", time_budget=30,
                early_stop=False)
    assert not s.out_of_time and s.final_answer == "8" and s.method == "vote(cot)+program"


def test_the_budget_cuts_a_correction_under_way_and_the_failed_program_stands():
    replies = ["print(1 / 0)\n```", "print(1 / 0)\n```", "print(71)\n```", "print(72)\n```"]
    start = time.perf_counter()
    [s] = solve(Stalling(list(replies), 5.0), ["q"], "vote", k=2, base="code", tiebreak="none", time_budget=0.3,
                early_stop=False)
    assert time.perf_counter() - start < 2.0  # not the corrections' 5 s
    assert s.final_answer is None and not s.program_ok and s.attempts == 1


def test_the_budget_cuts_a_correction_of_the_first_rounds_greedy_answer():
    class SlowRepairs(Slow):
        def generate(self, questions, *args, cancel=None, **kwargs):
            end = time.perf_counter() + (5.0 if cancel is not None else 0.0)
            while time.perf_counter() < end and not (cancel is not None and cancel.is_set()):
                time.sleep(0.01)  # a correction (the greedy answer is asked without cancel): 5 s unless cancelled
            return super().generate(questions, *args, cancel=cancel, **kwargs)

    replies = ["print(1 / 0)\n```", "print(72)\n```", "print(71)\n```", "print(70)\n```"]
    start = time.perf_counter()
    [s] = solve(SlowRepairs(replies, 0.1), ["q"], "vote", k=5, base="code", agree_first=2, first_round=3,
                tiebreak="code", time_budget=0.5)
    assert time.perf_counter() - start < 2.0  # not the correction's 5 s
    assert s.out_of_time and s.samples == 3 and s.final_answer == "72"  # the greedy answer's program failed


def test_stop_ends_a_greedy_answer_too():
    generator = Scripted(["The answer is 5."])
    stop = threading.Event()
    [s] = solve(generator, ["q"], "cot", stop=stop)
    assert s.final_answer == "5" and generator.calls[0]["cancel"] is stop  # handed to the generator


def test_a_time_budget_keeps_one_answer_and_stops_a_vote_drawn_in_turn():
    # all samples at once: the budget is spent before any finishes, so the first one in ends the vote
    [s] = solve(Slow(["The answer is 5."] * 5, 0.3), ["q"], "vote", k=5, tiebreak="none", time_budget=0.1)
    assert s.out_of_time and s.samples == 1 and s.final_answer == "5"

    class SlowInTurn(Scripted):
        def generate(self, *args, **kwargs):
            time.sleep(0.3)
            return super().generate(*args, **kwargs)

    generator = SlowInTurn(["The answer is 5.", "The answer is 6.", "The answer is 5.", "The answer is 7."])
    [s] = solve(generator, ["q"], "vote", k=4, tiebreak="cot", time_budget=0.5)
    # two drawn (0.6 s), no third; no two agree, but out of time no tie-break is asked: the first answer stands
    assert s.out_of_time and s.samples == 2 and s.final_answer == "5" and len(generator.calls) == 2


def test_a_time_budget_stretches_on_a_slower_engine_and_not_past_its_limit():
    from mathtune.models.solving.budget import MAX_STRETCH, budget_seconds

    class Measured(SimpleNamespace):
        def speed(self) -> float:
            return self.tokens_per_second

    timed = SolveConfig(mode="vote", time_budget=60, budget_speed=20)
    assert budget_seconds(timed, Measured(tokens_per_second=10)) == 120  # half as fast: twice the seconds
    assert budget_seconds(timed, Measured(tokens_per_second=40)) == 60  # a faster host keeps the seconds
    assert budget_seconds(timed, Measured(tokens_per_second=1)) == 60 * MAX_STRETCH  # still a bound on the wait
    assert budget_seconds(timed, SimpleNamespace()) == 60  # an engine that cannot say its speed: plain seconds
    assert budget_seconds(timed.model_copy(update={"budget_speed": None}), Measured(tokens_per_second=1)) == 60
    assert budget_seconds(SolveConfig(mode="vote"), Measured(tokens_per_second=1)) is None

    # samples 0.1 s apart: a budget of 0.15 s cuts the vote at its second; on an engine a third of the budget's
    # speed it is 0.45 s, and three agreeing samples decide it first
    class SlowMeasured(Slow):
        def speed(self) -> float:
            return 10.0

    for speed, cut in ((None, True), (30.0, False)):
        settings = SolveConfig(mode="vote", samples=5, tiebreak="none", time_budget=0.15, budget_speed=speed)
        [s] = solve_as(SlowMeasured(["The answer is 5."] * 5, 0.1), ["q"], settings)
        assert s.out_of_time is cut and (s.samples < 3 if cut else s.samples == 3) and s.final_answer == "5"


def test_a_time_budget_is_checked():
    with pytest.raises(MathtuneError, match="time_budget") as err:
        SolveConfig.checked({"mode": "vote", "time_budget": 0}, "solving settings: {problems}")
    assert "greater than 0" in str(err.value)


@pytest.mark.parametrize("settings, wrong", [({"agree_first": 3, "first_round": 2}, "at least agree_first"),
                                             ({"agree_first": 2, "first_round": 5}, "below samples"),
                                             ({"agree_first": 2, "first_round": 1}, "at least agree_first")])
def test_a_first_round_must_fit_between_agree_first_and_samples(settings, wrong):
    with pytest.raises(MathtuneError, match=f"first_round.*{wrong}") as err:
        SolveConfig.checked({"mode": "vote", "samples": 5, **settings}, "solving settings: {problems}")
    assert "Value error" not in str(err.value)  # the validator's own sentence, without pydantic's prefix


def test_a_vote_can_draw_its_second_round_in_another_mode():
    from mathtune.models.solving.prompts import CODE_SYSTEM

    # round one: a greedy code answer and a code sample that disagree; round two: program samples
    generator = Batched(["print(72)\n```", "print(71)\n```"], [_prints(72), _prints(72), _prints(70)])
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, then_over="program", tiebreak="program")
    assert s.final_answer == "72" and s.votes == {"72": 3, "71": 1} and s.method == "vote(code,program)"
    samples = [c for c in generator.calls if "k" in c]
    assert [(c["k"], c["system"]) for c in samples] == [(1, CODE_SYSTEM), (3, PROGRAM_SYSTEM)]
    generator = Batched(["print(72)\n```", "print(72)\n```"])
    [s] = solve(generator, ["q"], "vote", k=5, base="code", agree_first=2, then_over="program")
    assert s.samples == 2 and s.method == "vote(code)"  # agreed in round one: no second round, no second mode
    assert SolveConfig.model_validate({"mode": "vote", "vote_over": "code", "then_over": "program",
                                       "agree_first": 2}).then_over == "program"


def test_mathtune_ask_in_cot_runs_the_blocks_the_model_writes(monkeypatch):
    """#47: `mathtune ask --mode cot` streamed the raw generator, so a Python block was never run (unlike the API)."""
    from typer.testing import CliRunner

    from mathtune.cli import app
    from mathtune.config import SolveConfig
    from mathtune.models import generate

    generator = Streamed(["Compute it.\n```python\nprint(6 * 7)\n```", "So the answer is 42."])
    generator.solving = SolveConfig()
    monkeypatch.setattr(generate, "load_tutor", lambda *args, **kwargs: generator)
    result = CliRunner().invoke(app, ["ask", "tutor", "What is 6 times 7?", "--mode", "cot"])
    assert result.exit_code == 0, result.output
    expected = "42" if __import__("mathtune.sandbox", fromlist=["x"]).current_boundary().runs_programs else "not run"
    assert f"```output\n{expected}" in result.output and "final answer: 42" in result.output


def test_mathtune_evaluate_solves_a_pretrained_model_as_serve_and_ask_do(monkeypatch, tmp_path):
    """#47: `evaluate bundled:qwen2.5-coder-1.5b` solved in cot while `serve` and `ask` used its adaptive vote."""
    from typer.testing import CliRunner

    from mathtune.cli import app
    from mathtune.models.generate import pretrained_solving
    from mathtune.models.solving.presets import default_settings
    from mathtune.train import tutor_eval

    seen = {}

    def fake(model, data, backend, samples, solving, *args):
        seen["solving"] = solving
        return {"backend": "scripted", "accuracy": 1.0}
    monkeypatch.setattr(tutor_eval, "evaluate_pretrained", fake)
    (tmp_path / "q.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    result = CliRunner().invoke(app, ["evaluate", "bundled:qwen2.5-coder-1.5b", "--data", str(tmp_path / "q.jsonl")])
    assert result.exit_code == 0, result.output
    assert seen["solving"] == pretrained_solving("bundled:qwen2.5-coder-1.5b")
    if __import__("mathtune.sandbox", fromlist=["x"]).current_boundary().runs_programs:
        assert seen["solving"] == default_settings("bundled:qwen2.5-coder-1.5b")


def test_evaluation_says_how_many_votes_the_time_budget_cut():
    from mathtune.models.solving.values import Solution
    from mathtune.train.tutor_eval import solution_metrics

    class Pairs:
        questions, answers, responses = ["a", "b", "c"], ["1", "2", "3"], ["1", "2", "3"]

    solutions = [Solution("1", "1", "vote(code)", out_of_time=True, samples=3, k=7),
                 Solution("2", "2", "vote(code)", samples=3, k=7), Solution("4", "4", "vote(code)", out_of_time=True)]
    metrics = solution_metrics(solutions, Pairs(), [], "vote")
    assert metrics["cut_by_time_budget"] == 2 and metrics["cut_by_time_budget_rate"] == 2 / 3

    # and the budget as this engine ran it: stretched on one slower than the speed it was set for
    from mathtune.train.tutor_eval import evaluate_generator

    class Slower(Scripted):
        def speed(self) -> float:
            return 10.0

    settings = SolveConfig(mode="vote", samples=3, tiebreak="none", time_budget=30, budget_speed=20)
    evaluated = evaluate_generator(Slower(["The answer is 1."] * 20), Pairs(), solving=settings, off_topic=[])
    assert evaluated.metrics["time_budget_seconds"] == 60 and evaluated.metrics["engine_tokens_per_second"] == 10


def test_a_vote_reports_its_progress_as_each_answer_comes_in():
    """#48 item 4: 30-60 s of only "Working on it" while a vote ran."""
    from mathtune.models.solving.solve import solve as solve_with

    seen = []
    split = ["The answer is 1.", "The answer is 2.", "The answer is 2.", "The answer is 2."]
    [s] = solve_with(Scripted(split), ["q"], SolveConfig(mode="vote", samples=4, tiebreak="none"), progress=seen.append)
    assert [p.drawn for p in seen] == list(range(1, s.samples + 1)) and seen[0].k == 4
    assert seen[-1].answers[0] == ("2", 2) or seen[-1].answers[0][0] == "2"
