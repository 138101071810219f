"""Errors a user can act on. The CLI prints their message and exits with code 2."""


class MathtuneError(Exception):
    """Base class: the message names the file, row, key or flag to fix."""


class RecipeError(MathtuneError):
    """A recipe key is unknown, missing or has a wrong value."""


class DataError(MathtuneError):
    """A data file is missing, unreadable, or has bad rows or columns."""


class ModelError(MathtuneError):
    """A model cannot be loaded, saved or used as asked."""


def problem_text(error: dict) -> str:
    """A pydantic error's message as a user should read it: a validator's own sentence without pydantic's
    "Value error, " / "Assertion failed, " prefix."""
    message = str(error.get("msg", ""))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message
