"""The sandbox's second layer: a static check of a model-written program before it runs.

It refuses what no math program needs (imports beyond ``ALLOWED_MODULES``, ``open``/``exec``/``eval``-style escape
hatches, dunder attributes) with a message naming the line, so a model's mistake is reported clearly and most
hostile programs never start. It is not the wall: a blocklist inside the interpreter can be walked around
(issue #46 walked it); the wall is the kernel's (boundary.py).
"""

from __future__ import annotations

import ast

ALLOWED_MODULES = frozenset({"math", "fractions", "sympy", "decimal", "itertools", "functools", "statistics",
                             "cmath", "collections", "operator", "numbers", "re", "string"})
FORBIDDEN_NAMES = frozenset({"open", "exec", "eval", "compile", "__import__", "input", "globals", "locals", "vars",
                             "getattr", "setattr", "delattr", "breakpoint", "exit", "quit", "help", "memoryview",
                             "__builtins__", "__loader__", "__spec__"})


def check_program(code: str) -> str | None:
    """Why the program is refused before it runs, or None."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {exc.msg}"
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        for name in _imported_names(node):
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


def _imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""] if not node.level else ["(relative import)"]
    return []


def imported_modules(code: str) -> list[str]:
    """The allowed top-level modules a (checked) program imports: the child loads them before its guards start."""
    names = {name.split(".")[0] for node in ast.walk(ast.parse(code)) for name in _imported_names(node)}
    return sorted(names & ALLOWED_MODULES)
