"""Run a model-written Python program behind the sandbox's boundary; what it printed, or why it failed.

A failure is reported, never raised: the caller gets ``ok=False`` and the reason. Which boundary is used is the
host's and the operator's choice (``MATHTUNE_SANDBOX``): ``kernel`` (the default) needs bubblewrap and user
namespaces and refuses programs without them; ``interpreter`` runs them with the Python-level guard alone, an
explicit opt-in that is logged as a warning and shown by ``/v1/models``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..errors import MathtuneError
from ..io import remove_orphans
from . import boundary, child
from .boundary import NOBODY, Boundary
from .guard import ALLOWED_MODULES, check_program, imported_modules

log = logging.getLogger(__name__)

POLICIES = ("kernel", "interpreter")
TEMP_PREFIX = "mathtune-sandbox-"  # the interpreter-only guard's scratch folders (the wall's scratch is a tmpfs)
_CHILD_SOURCE = Path(child.__file__).read_text(encoding="utf-8")


@dataclass
class ProgramResult:
    ok: bool
    output: str
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 5
    memory_mb: int = 768
    wall_seconds: float = 20.0
    max_output: int = 10_000
    file_bytes: int = 1 << 20  # the largest file a program may write in its scratch folder


def policy() -> str:
    chosen = os.environ.get("MATHTUNE_SANDBOX", "kernel").strip().lower() or "kernel"
    if chosen not in POLICIES:
        log.error("MATHTUNE_SANDBOX=%r is not one of %s; using kernel", chosen, ", ".join(POLICIES))
        return "kernel"
    return chosen


_probe_lock = threading.Lock()


def current_boundary() -> Boundary:
    """The boundary programs run behind here (probed once: a trivial program is run through the wall)."""
    with _probe_lock:
        return _probe(policy())


@functools.cache
def _probe(chosen: str) -> Boundary:
    remove_stale_folders()
    if chosen == "interpreter":
        log.warning("MATHTUNE_SANDBOX=interpreter: model-written programs run behind the interpreter-only guard, "
                    "which is not a boundary; a hostile question can escape it")
        return Boundary("interpreter", "MATHTUNE_SANDBOX=interpreter: the Python-level guard, rlimits and seccomp "
                                       "(if it loads) as the server's own user, no namespaces: not a boundary",
                        bool(boundary.seccomp_filter()))
    if shutil.which("bwrap") is None:
        return _refused("bubblewrap (bwrap) is not installed")
    done = _run_kernel("print(6 * 7)", Limits(wall_seconds=30.0))
    if done.output.strip() != "42":
        return _refused(f"bubblewrap could not start a program here ({done.error})")
    seccomp = bool(boundary.seccomp_filter())
    who = "root leaves for nobody" if boundary.as_root() else "a user namespace maps this user to nobody"
    return Boundary("kernel", f"bubblewrap namespaces; {who}; no network, no /proc, read-only Python and math "
                              f"packages, a tmpfs scratch folder; rlimits; seccomp {'on' if seccomp else 'off'}",
                    seccomp)


def _refused(why: str) -> Boundary:
    log.error("model-written programs are refused: %s. To run them, %s. Until then the tutor answers step by step.",
              why, boundary.HOW_TO_ENABLE)
    return Boundary("none", f"programs refused: {why}; to enable: {boundary.HOW_TO_ENABLE}")


class ProgramsRefused(MathtuneError):
    """A solving mode that runs programs, asked where no boundary can run them (the API answers 422)."""


def require_programs(what: str) -> None:
    """ProgramsRefused naming ``what`` asked for programs, why this host runs none and how to enable them."""
    wall = current_boundary()
    if not wall.runs_programs:
        raise ProgramsRefused(f"{what} runs Python programs, and this server runs none: {wall.detail}. Ask for mode "
                              "cot (step by step) instead")


def remove_stale_folders() -> None:
    """Scratch folders a killed server left behind (the interpreter-only guard's; the wall leaves none)."""
    remove_orphans(tempfile.gettempdir(), TEMP_PREFIX)


def run_program(code: str, cpu_seconds: int = 5, memory_mb: int = 768, wall_seconds: float = 20.0,
                max_output: int = 10_000) -> ProgramResult:
    """Run ``code`` behind this host's boundary; what it printed, or why it failed."""
    refused = check_program(code)
    if refused:
        return ProgramResult(False, "", f"refused: {refused}")
    limits = Limits(cpu_seconds, memory_mb, wall_seconds, max_output)
    wall = current_boundary()
    if wall.kind == "kernel":
        return _run_kernel(code, limits)
    if wall.kind == "interpreter":
        return _run_interpreter(code, limits)
    return ProgramResult(False, "", wall.detail)


def _spec(code: str, limits: Limits, drop_to, seccomp: bytes, path: list[str], guards: bool = True) -> str:
    return json.dumps({"allowed": sorted(ALLOWED_MODULES), "limit": limits.max_output, "path": path,
                       "preload": imported_modules(code) if guards else [], "drop_to": drop_to,
                       "seccomp": seccomp.hex(), "guards": guards, "wall_seconds": limits.wall_seconds + 1.0})


def run_behind_wall(code: str, limits: Limits = Limits()) -> ProgramResult:
    """The kernel's wall alone, without the Python-level guard (no static check, no audit hook, all builtins):
    what tests and bench/sandbox.py use to show that the wall holds by itself. Never used to answer a question."""
    return _run_kernel(code, limits, guards=False)


def _run_kernel(code: str, limits: Limits, guards: bool = True) -> ProgramResult:
    spec = _spec(code, limits, [NOBODY, NOBODY], boundary.seccomp_filter(), boundary.child_path(), guards)
    return _run(boundary.bwrap_command(["-c", _CHILD_SOURCE, spec]), code, limits, cwd=None)


def _run_interpreter(code: str, limits: Limits) -> ProgramResult:
    path = [p for p in sys.path if p and os.path.isdir(p)]
    # as the server's own user (an interpreter under /root could not be read as nobody), with seccomp where it loads
    spec = _spec(code, limits, None, boundary.seccomp_filter(), path)
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as folder:
        return _run([sys.executable, "-I", "-S", "-c", _CHILD_SOURCE, spec], code, limits, cwd=folder)


def _limits(limits: Limits):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20, limits.memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _run(command: list[str], code: str, limits: Limits, cwd: str | None) -> ProgramResult:
    start = time.perf_counter()
    # its own process group: on a timeout the whole group is killed (bwrap's PID namespace dies with it)
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=cwd, env={}, preexec_fn=_limits(limits), start_new_session=True)
    try:
        stdout, stderr = process.communicate(code, timeout=limits.wall_seconds)
        # bwrap exits once its PID namespace has ended: waiting for it (not killing it) leaves no orphan behind
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return ProgramResult(False, "", f"stopped: ran past {limits.wall_seconds:g} s", time.perf_counter() - start)
    finally:
        if process.returncode is None:  # an error on the way: nothing of it may outlive this call
            _kill_group(process)
    seconds = time.perf_counter() - start
    if process.returncode != 0 or not stdout:
        return ProgramResult(False, "", f"stopped: {_reason(process.returncode, stderr)}", seconds)
    try:
        report = json.loads(stdout[-(limits.max_output * 2 + 2000):])
    except ValueError:
        return ProgramResult(False, "", "stopped: output over the limit", seconds)
    return ProgramResult(report["error"] is None, report["output"], report["error"], seconds)


def _kill_group(process: subprocess.Popen) -> None:
    """Kill bwrap, its process group and every descendant (the program runs in a session of its own; bwrap's
    parent-death signal would kill it too, this does not rely on it)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    for victim in descendants:
        try:
            victim.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _reason(returncode: int, stderr: str) -> str:
    if returncode in (-9, -24, 137, 152):
        return "CPU time limit"
    if "MemoryError" in stderr:
        return "memory limit"
    last = stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
    return f"exit code {returncode}" + (f" ({last})" if last else "")
