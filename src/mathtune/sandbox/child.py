"""The sandbox's child: the first code that runs inside the boundary, before the program is read.

run.py passes this file's source to ``python -I -S -c`` with one JSON argument (``_spec`` in run.py). In order:
1. confine: where the server is root, leave root for the unprivileged user (the boundary started us with only the
   capabilities to do so); refuse to go on as root; no new processes (``RLIMIT_NPROC`` 0); its own wall-clock timer;
   no new privileges; the seccomp filter (no fork, exec, sockets, namespaces, mounts, ptrace, new signal handlers or
   timers...), so the kernel enforces all of it from here;
2. load the allowed modules the program imports (sympy loads native libraries with ctypes, which the guards below
   then forbid);
3. the second layer: restricted builtins, an import guard and an audit hook;
4. run the program read from stdin, and write one JSON line: what it printed and its error.
Nothing else imports this module; it only uses the standard library.
"""

import builtins
import ctypes
import io
import json
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 1, 38, 22, 2
BLOCKED_EVENTS = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.kill",
                  "os.remove", "os.unlink", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                  "os.symlink", "os.link", "shutil.", "ctypes.", "urllib.", "http.", "ftplib.", "smtplib.", "pty.",
                  "webbrowser.", "pdb.", "signal.")
HIDDEN_BUILTINS = ("open", "exec", "eval", "compile", "input", "globals", "locals", "vars", "getattr", "setattr",
                   "delattr", "breakpoint", "exit", "quit", "help", "memoryview", "__import__")


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _expired(signum, frame):
    os._exit(124)


def confine(drop_to, seccomp_hex, wall_seconds):
    if drop_to:
        uid, gid = drop_to
        if os.getuid() == 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            # a change of user clears the parent-death signal bwrap set: armed again, so the program dies with it
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise SystemExit("mathtune sandbox: refusing to run a program as root")
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    # the program's own clock: it ends itself when its time is up even if nobody outside is left to kill it (a
    # server killed with SIGKILL); the seccomp filter then forbids changing signal handlers, masks and timers
    signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, wall_seconds)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit(f"mathtune sandbox: no_new_privs failed (errno {ctypes.get_errno()})")
    if seccomp_hex:
        program = bytes.fromhex(seccomp_hex)
        buffer = ctypes.create_string_buffer(program, len(program))
        bpf = _Filter(len(program) // 8, ctypes.addressof(buffer))
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(bpf), 0, 0) != 0:
            raise SystemExit(f"mathtune sandbox: seccomp failed (errno {ctypes.get_errno()})")


class Capped(io.StringIO):
    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def write(self, text):
        if self.tell() + len(text) > self.limit:
            raise RuntimeError(f"the program printed more than {self.limit} characters")
        return super().write(text)


def guarded_import_for(allowed):
    real_import, importing = builtins.__import__, [0]

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        # the program may import only allowed modules; allowed modules may import what they need themselves
        if importing[0] == 0 and level == 0 and name.split(".")[0] not in allowed:
            raise ImportError(f"import of {name!r} is not allowed")
        importing[0] += 1
        try:
            return real_import(name, globals, locals, fromlist, level)
        finally:
            importing[0] -= 1
    return guarded_import


def hook(event, args):
    if event.startswith(BLOCKED_EVENTS):
        raise RuntimeError(f"blocked by the sandbox: {event}")
    if event == "open" and len(args) > 2 and (isinstance(args[1], str) and any(c in args[1] for c in "wax+")
                                              or isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR)):
        raise RuntimeError("blocked by the sandbox: writing files")


def main():
    spec = json.loads(sys.argv[1])
    confine(spec["drop_to"], spec["seccomp"], spec["wall_seconds"])
    sys.path[:] = spec["path"]
    for name in spec["preload"]:
        __import__(name)
    code = sys.stdin.read()
    out, real_stdout = Capped(spec["limit"]), sys.stdout
    safe = {k: getattr(builtins, k) for k in dir(builtins) if k not in HIDDEN_BUILTINS or not spec["guards"]}
    if spec["guards"]:
        safe["__import__"] = guarded_import_for(set(spec["allowed"]))
        sys.addaudithook(hook)
    sys.stdout = out
    error = None
    try:
        exec(compile(code, "<program>", "exec"), {"__builtins__": safe, "__name__": "__main__"})
    except BaseException as exc:  # the program's failure is its result, reported to the parent
        error = f"{type(exc).__name__}: {exc}"[:500]
    sys.stdout = real_stdout
    real_stdout.write(json.dumps({"output": out.getvalue(), "error": error}))


if __name__ == "__main__":
    main()
