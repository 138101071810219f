"""Named solving presets: each a SolveConfig and the words that say what it does. The bundled models' defaults, the
benchmarks (bench/tutor_modes.py), the docs test and the app's labels read them here; what each measured lives in
bench/results and the generated docs/benchmarks.md, not here."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import SolveConfig


@dataclass(frozen=True)
class Preset:
    name: str          # the key in the benchmark's results and a model id's suffix (NAME:cot)
    settings: SolveConfig
    label: str         # what a teacher reads: how it answers


def _preset(name: str, label: str, **settings) -> Preset:
    return Preset(name, SolveConfig(**settings), label)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    _preset("cot", "step by step", mode="cot"),
    _preset("program", "with a program", mode="program"),
    _preset("code", "with a commented program", mode="code"),
    _preset("vote", "by a vote of 5", mode="vote", tiebreak="none"),
    _preset("vote(program)", "by a vote of 5 programs", mode="vote", vote_over="program", tiebreak="none"),
    _preset("vote(mixed)", "by a vote of 5 mixed answers", mode="vote", vote_over="mixed", tiebreak="none"),
    _preset("vote+program", "by a vote of 5 with a program breaking ties", mode="vote", tiebreak="program"),
    _preset("adaptive(program)", "by 2 agreeing programs or a vote of 5", mode="vote", vote_over="program",
            agree_first=2),
    _preset("adaptive(code)", "by 2 agreeing commented programs or a vote of 5", mode="vote", vote_over="code",
            agree_first=2),
    _preset("adaptive(code,program)", "by 2 agreeing commented programs or a vote of 5 programs", mode="vote",
            vote_over="code", then_over="program", agree_first=2),
    _preset("adaptive(code,2of3)", "by 2 of 3 agreeing commented programs or a vote of 7", mode="vote",
            vote_over="code", samples=7, agree_first=2, first_round=3, tiebreak="code"),
)}



@dataclass(frozen=True)
class TimeBudget:
    seconds: float
    speed: float  # tokens/s (the engine's speed(), one answer decoding alone) of the host the seconds were set on


# The bundled models' defaults (what serve, ask and evaluate use when nobody says): the preset that the benchmark
# found best within the classroom's bound (DEFAULT_MODE_SECONDS), with a time budget that a slower host stretches
# (solving/budget.py; bench/slow_host.py measures the rule). tests/test_docs.py checks the choice against bench/results.
DEFAULT_PRESET: dict[str, str] = {"bundled:qwen2.5-coder-1.5b": "adaptive(code,2of3)"}
DEFAULT_TIME_BUDGET: dict[str, TimeBudget] = {"bundled:qwen2.5-coder-1.5b": TimeBudget(60.0, 20.0)}
# The longest median a default mode may take per problem (the tutor issue's bound for a classroom).
DEFAULT_MODE_SECONDS = 20.0


def default_settings(model: str) -> SolveConfig:
    """A pretrained model's own solving settings: its default preset within its time budget; else cot."""
    preset = DEFAULT_PRESET.get(model)
    if preset is None:
        return SolveConfig()
    budget = DEFAULT_TIME_BUDGET.get(model)
    timed = {"time_budget": budget.seconds, "budget_speed": budget.speed} if budget else {}
    return PRESETS[preset].settings.model_copy(update=timed)


def preset_named(name: str) -> Preset | None:
    return PRESETS.get(name)


def label_of(settings: SolveConfig) -> str | None:
    """The preset's label when ``settings`` are one (ignoring the time budget), else None."""
    untimed = settings.model_copy(update={"time_budget": None, "budget_speed": None})
    return next((p.label for p in PRESETS.values() if p.settings == untimed), None)
