"""The wall around model-written programs, built by the kernel: bubblewrap namespaces, an unprivileged user,
rlimits and a seccomp filter.

Chosen by measurement (bench/sandbox.py) among the tools issue #46 names: bubblewrap (a Debian package, the sandbox
of Flatpak) starts a program in its own user, mount, PID, network, IPC and UTS namespaces for a few milliseconds, and
needs no daemon or root. The program sees a filesystem made for it: the Python interpreter, its standard library and
the math packages read-only, the system's shared libraries read-only, an empty size-limited tmpfs as its scratch
folder, and nothing else (no ``/proc``, no model folders, no home, no secrets); no network device but a closed
loopback; a clean environment; and its PID namespace dies with it, so no descendant outlives it.

Where the server is root, bwrap runs as root without a user namespace and the child leaves root for ``nobody``
before the program is read (an unprivileged bwrap could not reach an interpreter installed under ``/root``); else
bwrap maps the server's user to ``nobody`` in a new user namespace. Either way the program runs unprivileged, with
``RLIMIT_NPROC`` 0, no new privileges, and the seccomp filter below (child.py installs them).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass

log = logging.getLogger(__name__)

NOBODY = 65534
SITE = "/opt/mathtune-site"  # where the math packages appear inside the sandbox
SCRATCH = "/tmp"
SCRATCH_BYTES = 16 << 20
MATH_PACKAGES = ("sympy", "mpmath", "gmpy2")  # sympy and what it imports (gmpy2 when installed)

# Denied with EPERM (clone3 with ENOSYS, so the C library falls back to clone, which is denied): no new process,
# program or thread, no socket, no namespace, mount or ptrace, no change to the child's own timer, none of the
# kernel interfaces a program has no use for.
DENIED_SYSCALLS = (
    "fork", "vfork", "clone", "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "socket", "socketpair", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount",
    "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl",
    "fanotify_init", "personality", "mknod", "mknodat", "setuid", "setgid", "setreuid", "setregid", "setresuid",
    "setresgid", "setgroups",
    # the child's own wall-clock timer stays armed: no new signal handler, mask or timer
    "rt_sigaction", "rt_sigprocmask", "sigaltstack", "setitimer", "alarm", "timer_create", "timer_settime",
    "timer_delete", "timerfd_create")


@dataclass(frozen=True)
class Boundary:
    """How this host confines programs: ``kernel`` (the wall above), ``interpreter`` (the operator opted in to the
    Python-level guard alone) or ``none`` (programs are refused); ``detail`` says why, and how to enable the wall."""

    kind: str
    detail: str
    seccomp: bool = False

    @property
    def runs_programs(self) -> bool:
        return self.kind != "none"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "detail": self.detail, "seccomp": self.seccomp}


HOW_TO_ENABLE = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow user namespaces "
                 "(sysctl user.max_user_namespaces > 0; Ubuntu 24.04: kernel.apparmor_restrict_unprivileged_userns=0; "
                 "in a container or pod, a seccomp profile that allows unshare: docs/deployment.md), or set "
                 "MATHTUNE_SANDBOX=interpreter to accept the interpreter-only guard (not a boundary)")


@functools.cache
def seccomp_filter() -> bytes:
    """The filter as a BPF program (libseccomp through pyseccomp); empty where libseccomp cannot be loaded."""
    try:
        import pyseccomp as seccomp  # loads libseccomp.so.2 with ctypes
    except (ImportError, OSError, RuntimeError) as exc:
        log.warning("no seccomp layer in the sandbox (%s); the namespaces and limits still hold", exc)
        return b""
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(seccomp.ERRNO(1), name)
        except (ValueError, OSError, RuntimeError):
            pass  # not a syscall on this architecture
    rules.add_rule(seccomp.ERRNO(38), "clone3")
    read, write = os.pipe()
    try:
        with os.fdopen(write, "wb") as out:
            rules.export_bpf(out)
        with os.fdopen(read, "rb") as inp:
            return inp.read()
    except OSError as exc:
        log.warning("no seccomp layer in the sandbox (%s)", exc)
        return b""


def interpreter() -> str:
    """The real interpreter (not a virtual environment's link to it): bound read-only at its own path."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _package_dirs() -> dict[str, str]:
    out = {}
    for name in MATH_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            out[name] = os.path.realpath(list(spec.submodule_search_locations)[0])
    return out


def _system_mounts() -> list[str]:
    args = []
    for path in ("/usr/lib", "/usr/lib64", "/lib", "/lib64"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


def _bind_at_own_path(path: str, mounted: list[str]) -> list[str]:
    """Bind ``path`` read-only at the same path, its missing parents made traversable (bwrap would copy their
    modes, and an interpreter under ``/root`` would sit behind a 0700 folder)."""
    if any(path == m or path.startswith(m + "/") for m in mounted):
        return []
    args, parent = [], os.path.dirname(path)
    parents = []
    while parent not in ("/", ""):
        parents.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(parents):
        if not any(folder == m or folder.startswith(m + "/") for m in mounted):
            args += ["--perms", "0755", "--dir", folder]
    mounted.append(path)
    return args + ["--ro-bind", path, path]


def _python_mounts() -> list[str]:
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    mounted = ["/usr/lib", "/usr/lib64"]
    args = _bind_at_own_path(interpreter(), mounted) + _bind_at_own_path(stdlib, mounted)
    if os.path.isdir(os.path.join(stdlib, "site-packages")):  # the global packages: hidden
        args += ["--tmpfs", os.path.join(stdlib, "site-packages")]
    library = os.path.join(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or "")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and os.path.isfile(library):
        args += _bind_at_own_path(os.path.realpath(library), mounted)
    args += ["--perms", "0755", "--dir", SITE]
    for name, folder in _package_dirs().items():
        args += ["--ro-bind", folder, f"{SITE}/{name}"]
    return args


def child_path() -> list[str]:
    """``sys.path`` inside the sandbox: the standard library, its compiled modules and the math packages."""
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    return [stdlib, os.path.join(stdlib, "lib-dynload"), SITE]


def as_root() -> bool:
    return os.geteuid() == 0


def bwrap_command(child_args: list[str]) -> list[str]:
    """The bwrap command line that runs ``python -I -S`` + ``child_args`` inside the wall."""
    if as_root():  # namespaces without a user namespace; the child leaves root itself (child.confine)
        who = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        who = ["--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY), "--gid", str(NOBODY),
               "--cap-drop", "ALL"]
    return [shutil.which("bwrap") or "bwrap", *who, "--as-pid-1", "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "HOME", SCRATCH, "--setenv", "OMP_NUM_THREADS", "1", "--hostname", "sandbox",
            *_system_mounts(), *_python_mounts(), "--dev", "/dev", "--perms", "1777", "--size", str(SCRATCH_BYTES), "--tmpfs", SCRATCH,
            "--chdir", SCRATCH, "--", interpreter(), "-I", "-S", *child_args]
