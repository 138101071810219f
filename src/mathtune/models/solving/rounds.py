"""Drawing a vote's samples: together as one batch on a parallel generator, in turn on a sequential one; stopped
once the answers in decide the vote, at the vote's deadline (once there is an answer), or when nobody waits; and
the events that say so (``Either``, ``Both``, ``expiring``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from ...metrics.answers import answers_match
from ..generation import Generation
from .greedy import generate_in, repaired, sample_in
from .reading import solution_from_text
from .running import ends_with_program
from .values import PROGRAM_MODES, Progress, Solution


def answer_groups(samples: list[Solution]) -> list[list[Solution]]:
    """Samples grouped by math-verify-equivalent final answers, in the order the answers first appeared."""
    groups: list[list[Solution]] = []
    for sample in samples:
        if sample.final_answer is None:
            continue
        for group in groups:
            if answers_match(sample.final_answer, group[0].final_answer):
                group.append(sample)
                break
        else:
            groups.append([sample])
    return groups


def decided(groups: list[list[Solution]], remaining: int) -> bool:
    """Whether the samples still to come can no longer change the majority: the leading answer has more votes than
    the runner-up could reach with all of them."""
    sizes = sorted((len(g) for g in groups), reverse=True) + [0, 0]
    return sizes[0] > sizes[1] + remaining


def decides(decider: Solution, tiebreak: str) -> bool:
    """Whether a tie-break answer settles a split vote: it has an answer, and in program mode its program ran."""
    return decider.final_answer is not None and not decider.refused and (tiebreak == "cot" or bool(decider.program_ok))


def sample_modes(base: str, k: int) -> list[str]:
    """The mode of each of k samples: all ``base``, or for mixed cot and program in turn (cot first)."""
    return [("cot", "program")[i % 2] if base == "mixed" else base for i in range(k)]


class Either:
    """Set when either event is (what a batch checks at each token: the vote decided, or the client gone)."""

    def __init__(self, *events):
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class Both:
    """Set when all the events are (past the deadline, and an answer in)."""

    def __init__(self, *events):
        self.events = events

    def is_set(self) -> bool:
        return all(e.is_set() for e in self.events)


@contextmanager
def expiring(deadline: float | None):
    """An event set at ``deadline`` (a ``time.perf_counter()`` reading; never without one)."""
    event = threading.Event()
    timer = threading.Timer(max(deadline - time.perf_counter(), 0.0), event.set) if deadline is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield event
    finally:
        if timer is not None:
            timer.cancel()


def ending(*events) -> Either | None:
    """Set once any of ``events`` (None: left out) is; None when there are none."""
    given = [e for e in events if e is not None]
    return Either(*given) if given else None


class Tally:
    """Counts a vote's answers as they come in, and reports each count (``report``: a Progress, from any thread)."""

    def __init__(self, k: int, report=None):
        self.k, self.report = k, report
        self.finals: list[str | None] = []
        self._lock = threading.Lock()

    def add(self, solution: Solution) -> None:
        if self.report is None:
            return
        with self._lock:
            self.finals.append(solution.final_answer)
            counts: dict[str, int] = {}
            for final in self.finals:
                if final is not None:
                    counts[final] = counts.get(final, 0) + 1
            progress = Progress(len(self.finals), self.k, tuple(sorted(counts.items(), key=lambda fc: -fc[1])))
        self.report(progress)


class _EarlyVote:
    """Decides a vote whose samples decode together as they finish: once the answers in can no longer be outvoted
    by the samples still decoding, ``cancel`` is set and those stop at their next token. A sample's answer here
    is its first reading (a cot answer that stopped at a Python block has none yet; a program that fails, none
    until it is corrected), kept so the program is not run twice."""

    def __init__(self, k: int, tutor_prompt, prior: Sequence[Solution] = (), early_stop: bool = True,
                 tally: Tally | None = None):
        self.k, self.tutor_prompt = k + len(prior), tutor_prompt  # prior: an earlier round's answers, counted too
        self.tally = tally
        self.early_stop = early_stop
        self.read: dict[tuple[str, str], Solution] = {}
        self.answers: list[Solution] = list(prior)
        self.cancel = threading.Event()
        self.out_of_time = False  # the time budget ran out: the next answer in (or one already in) ends the vote
        self._lock = threading.Lock()

    def time_is_up(self) -> None:
        """The vote's time budget is spent: the samples still decoding stop once there is an answer to give."""
        with self._lock:
            self.out_of_time = True
            if self.answers:
                self.cancel.set()

    def first_reading(self, mode: str, text: str, new_tokens: int) -> Solution:
        with self._lock:
            key = (mode, text)
            if key not in self.read:
                self.read[key] = solution_from_text(text, mode, self.tutor_prompt, new_tokens, 0.0)
            return self.read[key]

    def finished(self, mode: str, generation: Generation) -> None:
        reading = self.first_reading(mode, generation.text, generation.new_tokens)
        waiting = mode == "cot" and ends_with_program(generation.text)  # its block runs, then it goes on
        counted = reading if reading.program_ok is not False and not waiting else \
            Solution(generation.text, None, reading.method)
        if self.tally is not None:
            self.tally.add(counted)
        with self._lock:
            self.answers.append(counted)
            if self.out_of_time or \
                    self.early_stop and decided(answer_groups(self.answers), self.k - len(self.answers)):
                self.cancel.set()


def drawn_together(generator, question: str, context, max_new_tokens: int, k: int, base: str, temperature: float,
                    seed: int, repairs: int, early_stop: bool = True, prior: Sequence[Solution] = (),
                    modes: list[str] | None = None, deadline: float | None = None,
                    stop: threading.Event | None = None,
                    expired: threading.Event | None = None, tally: Tally | None = None) -> tuple[list[Solution], bool]:
    """The k samples at once: each mode's samples are one batch sharing its prompt, the modes' batches and the
    repairs of failed programs decode side by side; with ``early_stop`` the vote ends as soon as the finished
    samples (with the ``prior`` answers of an earlier round) decide it (the same answer all would give) and the
    others are cut off. At ``deadline`` (a ``time.perf_counter()`` reading) the samples still decoding are cut off
    too, once one answer is in (with the ``prior`` ones), and failed programs are no longer corrected (a correction
    under way stops once ``expired``, the vote's deadline event, is set); so are they all once ``stop`` is set (the
    client is gone). Returns the samples and whether the deadline cut any off."""
    modes = modes or sample_modes(base, k)
    wanted = {mode: modes.count(mode) for mode in dict.fromkeys(modes)}
    early = _EarlyVote(k, generator.tutor_prompt, prior, early_stop, tally)
    watched = early_stop or deadline is not None or stop is not None or tally is not None
    cancel = Either(early.cancel, stop) if stop is not None else early.cancel
    timer = threading.Timer(max(deadline - time.perf_counter(), 0.0), early.time_is_up) if deadline else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        with ThreadPoolExecutor(max_workers=k) as pool:
            batches = {mode: pool.submit(sample_in, generator, question, mode, n, max_new_tokens, context, temperature,
                                         seed + 100 * j, cancel if watched else None,
                                         (lambda _i, g, mode=mode: early.finished(mode, g)) if watched else None)
                       for j, (mode, n) in enumerate(wanted.items())}
            made = [(mode, g) for mode, batch in batches.items() for g in batch.result()]
            late = early.out_of_time
            gone = stop is not None and stop.is_set()
            samples = [pool.submit(_one_sample, generator, question, context, mode, g, max_new_tokens,
                                   0 if late or gone else repairs, temperature, seed + i, early.read.get((mode, g.text)),
                                   ending(expired, stop))
                       for i, (mode, g) in enumerate(made)]
            return [sample.result() for sample in samples], late and len(made) < k
    finally:
        if timer is not None:
            timer.cancel()


def _one_sample(generator, question, context, mode, generation, max_new_tokens, repairs, temperature, seed,
                read: Solution | None = None, cancel=None):
    sample = read if read is not None and read.new_tokens == generation.new_tokens else \
        solution_from_text(generation.text, mode, generator.tutor_prompt, generation.new_tokens, 0.0)
    return repaired(generator, question, context, generation.text, sample, max_new_tokens, repairs,
                    mode if mode in PROGRAM_MODES else "program", temperature=temperature, seed=seed, cancel=cancel)


def drawn_in_turn(generator, question: str, context, max_new_tokens: int, k: int, base: str, temperature: float,
                   seed: int, repairs: int, early_stop: bool, prior: Sequence[Solution] = (),
                   modes: list[str] | None = None, deadline: float | None = None,
                   stop: threading.Event | None = None,
                   expired: threading.Event | None = None, tally: Tally | None = None) -> tuple[list[Solution], bool]:
    """Samples one after another (a generator that decodes one sequence at a time), stopping once decided (with
    the ``prior`` answers of an earlier round), or at ``deadline`` once there is an answer; the samples, and
    whether the deadline stopped them."""
    samples: list[Solution] = []
    for i, mode in enumerate(modes or sample_modes(base, k)):
        if deadline is not None and time.perf_counter() >= deadline and (prior or samples):
            return samples, True
        if stop is not None and stop.is_set():
            break
        g = generate_in(generator, [question], mode, max_new_tokens, [context], temperature=temperature, seed=seed + i)[0]
        late = deadline is not None and time.perf_counter() >= deadline
        samples.append(_one_sample(generator, question, context, mode, g, max_new_tokens, 0 if late else repairs,
                                   temperature, seed + i, cancel=ending(expired, stop)))
        if tally is not None:
            tally.add(samples[-1])
        if early_stop and decided(answer_groups([*prior, *samples]), k - len(samples)):
            break
    return samples, False


def drawn(generator, *args, **kwargs) -> tuple[list[Solution], bool]:
    """Samples drawn together on a parallel generator, in turn on a sequential one (same arguments), and whether a
    deadline cut them short."""
    return (drawn_together if generator.parallel else drawn_in_turn)(generator, *args, **kwargs)
