"""Model-written programs run here: behind a boundary the kernel enforces (boundary.py), with the Python-level
checks (guard.py) as a second layer. ``run_program`` is the one way in."""

from .boundary import Boundary
from .guard import ALLOWED_MODULES, check_program, imported_modules
from .run import Limits, ProgramResult, ProgramsRefused, current_boundary, require_programs, run_program

__all__ = ["ALLOWED_MODULES", "Boundary", "Limits", "ProgramResult", "ProgramsRefused", "check_program",
           "current_boundary", "imported_modules", "require_programs", "run_program"]
