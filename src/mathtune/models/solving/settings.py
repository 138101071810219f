"""Solving settings as callers give them: the choices SolveConfig allows, a request's or command line's settings on
top of a tutor's own, and the one rule for which settings need programs this host may not run."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ...config import SolveConfig
from ...errors import MathtuneError, problem_text
from ...sandbox import current_boundary, require_programs
from .values import Mode, Tiebreak, VoteOver

log = logging.getLogger(__name__)
MODES = tuple(m.value for m in Mode)             # cot, program, code, vote
VOTE_OVER = tuple(m.value for m in VoteOver)     # cot, program, code, mixed
TIEBREAKS = tuple(m.value for m in Tiebreak)     # program, code, cot, none
# A vote in which no two samples agree says little: then a greedy program decides, if it runs (one that ran can be
# read and rerun, unlike the first of five disagreeing answers; docs/findings.md has the measurements).
VOTE_TIEBREAK = SolveConfig.model_fields["tiebreak"].default.value       # program


def _program_kinds(mode: str, over: str | None = None, then_over: str | None = None) -> set[str]:
    used = {str(mode)} | ({str(o) for o in (over, then_over) if o} if mode == "vote" else set())
    return used & {"program", "code", "mixed"}


def program_kinds(settings: SolveConfig) -> set[str]:
    """The modes of ``settings`` whose answers are programs (a vote's samples in either round; a tie-break that
    cannot run its program just decides nothing)."""
    return _program_kinds(settings.mode, settings.vote_over, settings.then_over)


def require_runnable(settings: SolveConfig) -> None:
    """ProgramsRefused (sandbox/run.py) when ``settings`` need programs and this host runs none: the one check every
    door (solve, a stream, the API before it answers) makes."""
    kinds = program_kinds(settings)
    if kinds:
        require_programs(f"mode {settings.mode}" + (f" over {', '.join(sorted(kinds))}" if settings.mode == "vote"
                                                     else ""))


def runnable(settings: SolveConfig, what: str) -> SolveConfig:
    """``settings``, or step by step (cot) where they need programs and this host runs none (said in the log)."""
    if program_kinds(settings) and not current_boundary().runs_programs:
        log.error("%s solves with programs (%s), which this host cannot run: it answers step by step (cot) instead",
                  what, ", ".join(sorted(program_kinds(settings))))
        return SolveConfig(mode="cot")
    return settings


def overridden(settings: SolveConfig, **overrides) -> SolveConfig:
    """``settings`` with the ``overrides`` that are not None on top (a request's or a command line's), validated."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return SolveConfig.checked({**settings.model_dump(mode="json"), **given}, "solving settings: {problems}")


def parse_assignments(pairs: list[str], option: str = "--solve") -> dict:
    """``key=value`` strings of the command line as solving settings to put on top (``overridden``): each key a
    SolveConfig field, each value read as that field reads it (MathtuneError naming the option and the choices)."""
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise MathtuneError(f"{option} {pair!r}: write KEY=VALUE, e.g. {option} mode=vote")
        if key not in SolveConfig.model_fields:
            raise MathtuneError(f"{option} {key}: not a solving setting; choose from "
                                f"{', '.join(SolveConfig.model_fields)}")
        given[key] = value.strip()
    try:
        SolveConfig.model_validate(given)
    except ValidationError as err:
        # a value that is wrong on its own is named here; a clash with the tutor's own settings, by ``overridden``
        problems = [f"{option} {e['loc'][0]}={given[e['loc'][0]]!r}: {problem_text(dict(e))}" for e in err.errors()
                    if e["loc"] and e["loc"][0] in given]
        if problems:
            raise MathtuneError("; ".join(problems)) from None
    return given
