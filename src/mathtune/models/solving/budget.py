"""How long a vote may take on this engine. A time budget is seconds on an engine at least as fast as the one it
was set for (``budget_speed``, tokens/s of one answer); on a slower engine it stretches by the ratio of the speeds,
up to MAX_STRETCH times, so a vote does about the same work, and gives about the same answers, on a slower host as
on the one it was measured on. Why not plain seconds: on a host half as fast they cut most second rounds and the
default's accuracy fell by a tenth (docs/findings/tutor-solving.md); why not a token budget: the vote's samples
decode side by side with others' requests, so no count of tokens is the vote's own, and a busy server would then
make a teacher wait without limit. Past MAX_STRETCH the budget stays a bound on the wait, and a cut vote says so."""

from __future__ import annotations

from ...config import SolveConfig

MAX_STRETCH = 3.0


def stretch(settings: SolveConfig, generator) -> float:
    """How many times the budget's seconds this engine gets: 1 where no speed is stated or the engine cannot say
    its own (the transformers generator), else the stated speed over the engine's, within 1 and MAX_STRETCH."""
    measure = getattr(generator, "speed", None)
    if not settings.time_budget or not settings.budget_speed or measure is None:
        return 1.0
    return min(MAX_STRETCH, max(1.0, settings.budget_speed / measure()))


def max_stretch(settings: SolveConfig) -> float:
    """The most a slower engine could stretch ``settings``' budget by."""
    return MAX_STRETCH if settings.budget_speed else 1.0


def budget_seconds(settings: SolveConfig, generator) -> float | None:
    """The vote's time budget on ``generator``, seconds; None: no limit."""
    return settings.time_budget * stretch(settings, generator) if settings.time_budget else None
