"""A vote: k sampled answers, the one most agree on (math-verify equivalence), with the agreement as a confidence.

Rounds (adaptive consistency): the greedy answer and a few samples first, the rest only when they disagree. Early
stop: sampling ends once the samples still to come could not change the majority. A time budget (budget.py:
seconds, stretched on a slower engine): past it, the samples still drawing stop and those finished vote. A
tie-break: when no two samples agree, one greedy answer decides (a program only when it ran).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ...config import SolveConfig
from ..generation import Generator
from .budget import budget_seconds
from .greedy import generate_in, greedy, repaired
from .reading import solution_from_text
from .rounds import Both, Tally, answer_groups, decides, drawn, ending, expiring, sample_modes
from .values import PROGRAM_MODES, Method, Solution, vote_label


def vote(generator: Generator, question: str, context, settings: SolveConfig, max_new_tokens: int, seed: int = 0,
         stop: threading.Event | None = None, repairs: int = 1, early_stop: bool = True, progress=None) -> Solution:
    """Up to ``settings.samples`` samples of ``settings.vote_over`` voted (SolveConfig says what each setting
    does): a parallel generator draws them together, a sequential one in turn; with ``early_stop`` drawing stops
    once the rest could not change the majority (the same answer all would give: sample i always has seed + i).
    ``method`` says how it ended (``vote(code,program)+program``), ``samples`` how many were drawn, ``out_of_time``
    whether the time budget cut it. Setting ``stop`` (the client is gone) ends the sampling at the next token,
    begins no further round and asks no tie-break. ``progress`` sees a Progress as each answer comes in."""
    k, base, temperature = settings.samples, str(settings.vote_over), settings.temperature
    agree_first = settings.agree_first
    first = max(settings.first_round, agree_first)  # the first round's answers
    adaptive = 2 <= agree_first and first < k
    then_over = str(settings.then_over) if settings.then_over not in (None, base) and adaptive else None
    tiebreak = None if settings.tiebreak == "none" else str(settings.tiebreak)
    start = time.perf_counter()
    seconds = budget_seconds(settings, generator)
    deadline = start + seconds if seconds else None
    tally = Tally(k, progress) if progress is not None else None
    with expiring(deadline) as expired:  # set at the deadline: a correction or tie-break under way stops
        greedy_first, ended, late = None, False, False
        if adaptive:
            samples, late = _first_round(generator, question, context, max_new_tokens, first, base, temperature, seed,
                                         repairs, stop, deadline, expired, tally)
            greedy_first = samples[0]
            if _agreeing(samples) >= agree_first:
                then_over, ended = None, True  # no second round: its mode is not named
            elif stop is not None and stop.is_set():
                then_over = None  # nobody is waiting for a second round
            elif deadline is not None and time.perf_counter() >= deadline:
                then_over, late = None, True  # the first round took the whole budget: no second round is begun
            else:
                second = then_over or base
                more, late = drawn(generator, question, context, max_new_tokens, k - first, second, temperature,
                                   seed + first, repairs, early_stop, prior=samples,
                                   modes=sample_modes(second, k)[first:], deadline=deadline, stop=stop, expired=expired,
                                   tally=tally)
                samples += more
        else:
            samples, late = drawn(generator, question, context, max_new_tokens, k, base, temperature, seed, repairs,
                                  early_stop, deadline=deadline, stop=stop, expired=expired, tally=tally)
            if not samples:  # stopped before any sample finished: there is no answer, and nobody to give it to
                return Solution("", None, vote_label(base), voted_over=base, samples=0, k=k,
                                seconds=time.perf_counter() - start)
        groups = answer_groups(samples)
        top = max((len(g) for g in groups), default=0)
        chosen = max(groups, key=len)[0] if groups else samples[0]
        decided_by, tokens = None, sum(s.new_tokens for s in samples)
        if tiebreak and top <= 1 and len(samples) > 1:
            decider: Solution | None
            if greedy_first is not None and sample_modes(base, 1)[0] == tiebreak:
                decider = greedy_first  # the first round's greedy answer is the tie-break's answer: not asked again
            else:
                decider, spent = _tiebreak_answer(generator, question, context, max_new_tokens, tiebreak, repairs,
                                                  ending(expired, stop))
                tokens += spent
            if decider is not None and decides(decider, tiebreak):
                chosen, decided_by = decider, Method.PROGRAM if tiebreak in PROGRAM_MODES else Method(tiebreak)
        late = late or expired.is_set() and not ended  # the deadline came while it still drew or corrected answers
        chosen.method, chosen.voted_over, chosen.decided_by = vote_label(base, decided_by, then_over), base, decided_by
        chosen.samples, chosen.k, chosen.first_round_ended, chosen.out_of_time = len(samples), k, ended, late
        chosen.new_tokens, chosen.seconds = tokens, time.perf_counter() - start
        chosen.confidence = top / len(samples)
        chosen.votes = {group[0].final_answer: len(group) for group in groups}
        chosen.truncated = False
        return chosen


def _first_round(generator, question: str, context, max_new_tokens: int, n: int, base: str, temperature: float,
                 seed: int, repairs: int, stop: threading.Event | None = None,
                 deadline: float | None = None, expired: threading.Event | None = None,
                 tally: Tally | None = None) -> tuple[list[Solution], bool]:
    """The greedy answer (in the base's first mode) and n - 1 samples of the next modes, drawn together on a
    parallel generator; the greedy answer comes first. ``stop`` ends the samples (not the greedy answer, which is
    bounded by the token budget). At ``deadline`` the samples still decoding stop as soon as one answer of the
    round is in (the greedy one always completes, but a correction of its program stops once ``expired``, the
    vote's deadline event, is set); returns the answers and whether the deadline cut any off."""
    modes = sample_modes(base, n)
    greedy_done = threading.Event()
    # the samples stop when the client is gone, or past the deadline once the greedy answer is in (once one of them
    # is in, drawn's own deadline stops the others)
    samples_end = ending(stop, Both(expired, greedy_done) if expired is not None else None)

    def greedy_answer() -> Solution:
        try:
            start = time.perf_counter()
            [g] = generate_in(generator, [question], modes[0], max_new_tokens, [context])
            answer = solution_from_text(g.text, modes[0], generator.tutor_prompt, g.new_tokens,
                                        time.perf_counter() - start)
            answer = repaired(generator, question, context, g.text, answer, max_new_tokens, repairs, modes[0],
                              cancel=ending(expired, stop))
            if tally is not None:
                tally.add(answer)
            return answer
        finally:
            greedy_done.set()

    def sampled() -> list[Solution]:
        return drawn(generator, question, context, max_new_tokens, n - 1, base, temperature, seed, repairs, False,
                     modes=modes[1:], stop=samples_end, deadline=deadline, tally=tally)[0]

    if not generator.parallel:  # one sequence at a time
        answers = [greedy_answer(), *sampled()]
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(greedy_answer)
            rest = sampled()
            answers = [first.result(), *rest]
    late = deadline is not None and time.perf_counter() >= deadline
    return answers, len(answers) < n and late and not (stop is not None and stop.is_set())


def _agreeing(samples: list[Solution]) -> int:
    """How many samples give the most common answer."""
    return max((len(g) for g in answer_groups(samples)), default=0)


def _tiebreak_answer(generator, question: str, context, max_new_tokens: int, tiebreak: str, repairs: int,
                     halt) -> tuple[Solution | None, int]:
    """The greedy answer in ``tiebreak``'s mode that decides a vote in which no two samples agree, and its tokens;
    None when ``halt`` (the vote's deadline, or its client gone) is set before or while it is made."""
    if halt is not None and halt.is_set():
        return None, 0  # out of time (or nobody waiting): the first answer drawn stands
    [decider] = greedy(generator, [question], tiebreak, [context], max_new_tokens, repairs=repairs, stop=halt)
    return (None if halt is not None and halt.is_set() else decider), decider.new_tokens


def stopped_because(solution: Solution) -> str:
    """Why a vote drew fewer samples than asked: an adaptive first round that agreed, or a decided majority."""
    if solution.out_of_time:
        return "the time budget ran out"
    if solution.agreeing == solution.samples:
        return "they all agreed"
    if solution.first_round_ended:
        return f"{solution.agreeing} of the first {solution.samples} agreed"
    return "the rest could not change the answer"
