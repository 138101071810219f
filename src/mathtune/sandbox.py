"""Run a model-written Python program in a sandbox: a separate process with CPU-time, memory, output and
file-size limits, only an allow-list of modules, no network, no file writes, no new processes.

Four layers, each enough to stop the common cases alone:
1. a static check of the program (ast): imports only from ``ALLOWED_MODULES``; no ``open``, ``exec``, ``eval``,
   ``compile``, ``__import__``, ``input``, ``globals``/``vars``/``getattr``-style escape hatches, and no dunder
   attributes (``__class__``, ``__subclasses__``, ``__globals__``...); refused with a message naming the line;
2. in the child, restricted builtins and an ``__import__`` that only lets allowed modules (and what they import
   themselves) load;
3. a CPython audit hook in the child that aborts on sockets, subprocesses, ``os.system``/``exec``/``fork``,
   writing or deleting files, and ``ctypes``;
4. OS limits on the child (``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE`` = 0, ``RLIMIT_NPROC``), a wall-clock
   timeout, and an output cap: a program that loops, allocates without bound or prints megabytes is stopped.

The child runs ``python -I -S`` (isolated: no user site, no PYTHON* variables) with an empty environment in a
fresh temporary folder. A failure is reported, never raised: the caller gets ``ok=False`` and the reason.
"""

from __future__ import annotations

import ast
import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ALLOWED_MODULES = frozenset({"math", "fractions", "sympy", "decimal", "itertools", "functools", "statistics",
                             "cmath", "collections", "operator", "numbers", "re", "string"})
FORBIDDEN_NAMES = frozenset({"open", "exec", "eval", "compile", "__import__", "input", "globals", "locals", "vars",
                             "getattr", "setattr", "delattr", "breakpoint", "exit", "quit", "help", "memoryview",
                             "__builtins__", "__loader__", "__spec__"})


@dataclass
class ProgramResult:
    ok: bool
    output: str
    error: str | None = None
    seconds: float = 0.0


def check_program(code: str) -> str | None:
    """Why the program is refused before it runs, or None."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {exc.msg}"
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if not node.level else ["(relative import)"]
        else:
            names = []
        for name in names:
            if name.split(".")[0] not in ALLOWED_MODULES:
                return (f"line {line}: import of {name!r} is not allowed; the program may use only "
                        f"{', '.join(sorted(ALLOWED_MODULES))}")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            return f"line {line}: {node.id!r} is not allowed in a program"
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            return f"line {line}: the attribute {node.attr!r} is not allowed in a program"
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return f"line {line}: global/nonlocal statements are not allowed"
    return None


def imported_modules(code: str) -> list[str]:
    """The allowed top-level modules a (checked) program imports."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(names & ALLOWED_MODULES)


# The child: installs the audit hook and restricted builtins, then runs the program read from stdin.
_CHILD = r'''
import builtins, io, json, sys
allowed = set(json.loads(sys.argv[1]))
limit = int(sys.argv[2])
sys.path[:] = json.loads(sys.argv[3])  # -I -S: no site, no PYTHONPATH; the parent's library folders only
for name in json.loads(sys.argv[4]):  # the allowed modules the program imports load before the audit hook
    real_import_ = __import__(name)   # (sympy loads native libraries with ctypes, which the hook then forbids)

class Capped(io.StringIO):
    def write(self, text):
        if self.tell() + len(text) > limit:
            raise RuntimeError(f"the program printed more than {limit} characters")
        return super().write(text)

real_import = builtins.__import__
importing = [0]

def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.split(".")[0]
    # the program may import only allowed modules; allowed modules may import what they need themselves
    if importing[0] == 0 and level == 0 and top not in allowed:
        raise ImportError(f"import of {name!r} is not allowed")
    importing[0] += 1
    try:
        return real_import(name, globals, locals, fromlist, level)
    finally:
        importing[0] -= 1

BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.kill",
           "os.remove", "os.unlink", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "shutil.", "ctypes.",
           "urllib.", "http.", "ftplib.", "smtplib.", "pty.", "webbrowser.", "pdb.")

def hook(event, args):
    if event.startswith(BLOCKED):
        raise RuntimeError(f"blocked by the sandbox: {event}")
    if event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
        raise RuntimeError("blocked by the sandbox: writing files")

code = sys.stdin.read()
out = Capped()
safe = {k: getattr(builtins, k) for k in dir(builtins) if k not in (
    "open", "exec", "eval", "compile", "input", "globals", "locals", "vars", "getattr", "setattr", "delattr",
    "breakpoint", "exit", "quit", "help", "memoryview", "__import__")}
safe["__import__"] = guarded_import
real_stdout = sys.stdout
sys.stdout = out
sys.addaudithook(hook)
error = None
try:
    exec(compile(code, "<program>", "exec"), {"__builtins__": safe, "__name__": "__main__"})
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"[:500]
sys.stdout = real_stdout
text = out.getvalue()
real_stdout.write(json.dumps({"output": text, "error": error}))
'''


def _limits(cpu_seconds: int, memory_mb: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        except (ValueError, OSError):
            pass
        os.setsid()
    return apply


def run_program(code: str, cpu_seconds: int = 5, memory_mb: int = 768, wall_seconds: float = 20.0,
                max_output: int = 10_000) -> ProgramResult:
    """Run ``code`` in the sandbox; what it printed, or why it failed."""
    import time

    refused = check_program(code)
    if refused:
        return ProgramResult(False, "", f"refused: {refused}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mathtune-sandbox-") as folder:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-c", _CHILD, json.dumps(sorted(ALLOWED_MODULES)), str(max_output),
                 json.dumps([p for p in sys.path if p and os.path.isdir(p)]), json.dumps(imported_modules(code))],
                input=code, capture_output=True, text=True, timeout=wall_seconds, cwd=folder, env={},
                preexec_fn=_limits(cpu_seconds, memory_mb))
        except subprocess.TimeoutExpired:
            return ProgramResult(False, "", f"stopped: ran past {wall_seconds:g} s", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not done.stdout:
        reason = "CPU time limit" if done.returncode in (-9, -24, 137, 152) else \
            "memory limit" if "MemoryError" in done.stderr else f"exit code {done.returncode}"
        return ProgramResult(False, "", f"stopped: {reason}", seconds)
    try:
        report = json.loads(done.stdout[-(max_output * 2 + 2000):])
    except ValueError:
        return ProgramResult(False, "", "stopped: output over the limit", seconds)
    return ProgramResult(report["error"] is None, report["output"], report["error"], seconds)
