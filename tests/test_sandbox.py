"""The sandbox's wall (issue #46): each escape that a hostile trial found, given to the sandbox as a program, fails,
with the Python-level guard on (the product) and off (the wall alone). The programs reach the interpreter's
internals the way the trial did (``fractions.sys.modules``, ``_frozen_importlib._gcd_import``), which passes the
static check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from mathtune.sandbox import boundary, current_boundary, run_program
from mathtune.sandbox.run import Limits, run_behind_wall

pytestmark = pytest.mark.skipif(current_boundary().kind != "kernel",
                                reason=f"no kernel boundary here: {current_boundary().detail}")

REACH = "import fractions\nmods = fractions.sys.modules\nposix = mods['posix']\n" \
        "load = mods['_frozen_importlib']._gcd_import\n"


def both_layers(code: str, **limits) -> list:
    """The program's result with the guard on (the product) and with the wall alone."""
    return [run_program(code, **limits), run_behind_wall(code, Limits(**limits))]


@pytest.fixture(params=["root", "user-namespace"])
def wall(request, monkeypatch):
    """Both of the wall's shapes: as root (the child leaves root) and as a user (a user namespace)."""
    if request.param == "user-namespace" and os.geteuid() == 0:
        monkeypatch.setattr(boundary, "as_root", lambda: False)
    elif request.param == "root" and os.geteuid() != 0:
        pytest.skip("the server is not root here")
    return request.param


def test_the_program_runs_as_nobody_in_an_empty_world(wall):
    code = REACH + "print(posix.getresuid(), sorted(posix.listdir('/')), posix.listdir('/tmp'))"
    for result in both_layers(code):
        assert result.ok, result
        assert result.output.strip() == "(65534, 65534, 65534) ['dev', 'etc', 'lib', 'lib64', 'opt', 'root', 'tmp', " \
                                        "'usr'] []" or "(65534, 65534, 65534)" in result.output, result


def test_files_of_the_host_cannot_be_read_or_changed(wall, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the key")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)
    code = REACH + f"""
out = []
for how in ("read", "truncate", "symlink", "chown", "link", "write"):
    try:
        if how == "read":
            fd = posix.open({str(secret)!r}, posix.O_RDONLY)
            out.append(posix.read(fd, 100))
        elif how == "truncate":
            posix.truncate({str(secret)!r}, 0)
        elif how == "symlink":
            posix.symlink('/etc/passwd', {str(tmp_path / 'link')!r})
        elif how == "chown":
            posix.chown({str(secret)!r}, 65534, 65534)
        elif how == "link":
            posix.link({str(secret)!r}, {str(tmp_path / 'hard')!r})
        else:
            fd = posix.open({str(tmp_path / 'new')!r}, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC)
        out.append(how + " worked")
    except OSError as exc:
        out.append(how + " failed")
for path in ('/etc/hostname', '/etc/passwd', '/proc/1/environ', '/proc/self/environ', {str(sys.executable)!r}):
    try:
        posix.open(path, posix.O_RDONLY)
        out.append('opened ' + path)
    except OSError:
        pass
print(out)
"""
    for result in both_layers(code):
        assert "worked" not in result.output and "opened" not in result.output and "the key" not in result.output
    assert secret.read_text() == "the key" and secret.stat().st_uid == os.geteuid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]


def test_the_servers_environment_and_processes_are_out_of_sight(wall, monkeypatch):
    monkeypatch.setenv("MATHTUNE_API_KEY", "sk-do-not-leak")
    code = REACH + f"""
print(dict(mods['os'].environ))
for pid in (1, 2, {os.getpid()}, {os.getppid()}):
    for path in (f'/proc/{{pid}}/environ', f'/proc/{{pid}}/cmdline'):
        try:
            print(open(path).read())
        except Exception as exc:
            print(repr(exc)[:80])
"""
    for result in both_layers(code):
        assert "sk-do-not-leak" not in result.output + (result.error or "")


def test_no_shell_no_process_no_grandchild(wall, tmp_path):
    marker = tmp_path / "ran"
    code = REACH + f"""
out = []
try:
    r, w = posix.pipe()  # subprocess's own call, as the trial made it (3.11's signature)
    pid = load('_posixsubprocess').fork_exec([b'/bin/sh', b'-c', b'id; touch {marker}'], [b'/bin/sh'], True, (w,),
        None, None, -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None, False)
    out.append('forked')
except Exception as exc:
    out.append('fork_exec: ' + repr(exc)[:80])
try:
    pid = posix.fork()
    if pid == 0:
        load('time').sleep(3)
        posix.open({str(marker)!r}, posix.O_WRONLY | posix.O_CREAT)
        posix._exit(0)
    out.append('forked')
except OSError as exc:
    out.append('fork: ' + repr(exc)[:80])
try:
    posix.execv('/bin/sh', ['/bin/sh', '-c', 'touch {marker}'])
except OSError as exc:
    out.append('exec: ' + repr(exc)[:80])
print(out)
"""
    for result in both_layers(code):
        assert "forked" not in result.output and "uid=" not in result.output, result
    assert not marker.exists()


def test_a_signal_reaches_no_process_outside(wall):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = REACH + f"""
for pid in ({victim.pid}, {os.getpid()}, -1, 1):
    try:
        posix.kill(pid, 9)
    except OSError as exc:
        print(pid, repr(exc)[:80])
try:
    fd = posix.pidfd_open({victim.pid})
    print('pidfd', fd)
except OSError as exc:
    print('pidfd', repr(exc)[:80])
"""
        for result in both_layers(code):
            assert "pidfd 3" not in result.output, result
        assert victim.poll() is None  # and this test process lives
    finally:
        victim.kill()
        victim.wait()


def test_no_socket_reaches_a_listening_port(wall):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = REACH + f"""
try:
    s = load('_socket').socket(2, 1)
    s.connect(('127.0.0.1', {port}))
    print('connected')
except Exception as exc:
    print(repr(exc)[:80], exc)
"""
    try:
        for result in both_layers(code):
            assert "connected" not in result.output, result
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_sympify_of_a_string_stays_inside(wall, tmp_path):
    marker = tmp_path / "ran"
    code = f"import sympy\nprint(sympy.sympify(\"__import__('os').system('touch {marker}')\"))"
    for result in both_layers(code):
        assert not marker.exists(), result
        assert result.output.strip() in ("", "-1", "256", "32512", "1") or not result.ok, result


def test_the_scratch_folder_is_writable_and_bounded(wall):
    code = REACH + """
fd = posix.open('/tmp/work.txt', posix.O_WRONLY | posix.O_CREAT)
posix.write(fd, b'x' * 1000)
print('small file ok')
written = 1000
try:
    for _ in range(64):
        written += posix.write(fd, b'x' * (1 << 20))
except OSError as exc:
    print('big file', repr(exc)[:80])
print('written', written)
try:
    posix.open('/usr/lib/mathtune-was-here', posix.O_WRONLY | posix.O_CREAT)
    print('wrote outside')
except OSError as exc:
    print('outside', repr(exc)[:80])
"""
    result = run_behind_wall(code, Limits())
    assert "small file ok" in result.output and "big file OSError" in result.output, result
    assert int(result.output.split("written ")[1].split()[0]) <= Limits().file_bytes
    assert "wrote outside" not in result.output, result


def test_a_program_past_its_time_is_killed_with_everything_it_started(wall):
    import psutil

    seen: set[int] = set()
    done = threading.Event()

    def watch():  # the sandbox's processes under this test process while the program runs
        while not done.is_set():
            for child in psutil.Process().children(recursive=True):
                try:
                    if "sandbox's child" in " ".join(child.cmdline()):
                        seen.add(child.pid)
                except psutil.Error:
                    pass
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_behind_wall(REACH + "load('time').sleep(60)", Limits(wall_seconds=1.5))
    finally:
        done.set()
        watcher.join()
    assert not result.ok and "ran past 1.5 s" in (result.error or "") and result.seconds < 10
    assert seen
    time.sleep(0.5)
    assert not [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_the_wall_holds_the_limits():
    assert "CPU time limit" in run_behind_wall("while True:\n    pass", Limits(cpu_seconds=1)).error
    eaten = run_behind_wall("a = []\nwhile True:\n    a.append('x' * 10**7)", Limits(memory_mb=256))
    assert not eaten.ok and any(n in eaten.error for n in ("MemoryError", "memory limit", "CPU time limit")), eaten


# --------------------------------------------------------------------------- where the wall cannot be had

@pytest.fixture
def host_without_bwrap(monkeypatch):
    from mathtune.sandbox import run

    monkeypatch.setattr(run.shutil, "which", lambda name: None)
    monkeypatch.delenv("MATHTUNE_SANDBOX", raising=False)
    run._probe.cache_clear()
    yield
    run._probe.cache_clear()


def test_without_the_wall_programs_are_refused_and_say_how_to_enable_it(host_without_bwrap):
    from mathtune.config import SolveConfig
    from mathtune.errors import MathtuneError
    from mathtune.models.solving.settings import runnable
    from solving_helpers import solve_in as solve

    wall = current_boundary()
    assert wall.kind == "none" and "bubblewrap" in wall.detail and "MATHTUNE_SANDBOX=interpreter" in wall.detail
    result = run_program("print(1)")
    assert not result.ok and "programs refused" in result.error
    with pytest.raises(MathtuneError, match="mode code runs Python programs.*apt-get install bubblewrap"):
        solve(object(), ["q"], "code")
    with pytest.raises(MathtuneError, match="mode vote over mixed"):
        solve(object(), ["q"], "vote", base="mixed")
    # a tutor whose default needs programs answers step by step instead
    adaptive = SolveConfig(mode="vote", vote_over="code", agree_first=2, samples=5)
    assert runnable(adaptive, "bundled:x") == SolveConfig(mode="cot")
    assert runnable(SolveConfig(mode="vote"), "x").mode == "vote"  # a vote over cot needs none


def test_a_cot_answer_without_the_wall_says_its_block_was_not_run(host_without_bwrap, tmp_path):
    from solving_helpers import streamed_text
    from test_solve import Streamed

    marker = tmp_path / "ran"
    generator = Streamed([f"Let me compute.\n```python\nprint(6*7)\nopen('{marker}', 'w')\n```", "So 42."])
    text = "".join(streamed_text(generator, "q", 64))
    assert "not run: this server runs no programs" in text and not marker.exists()


def test_the_interpreter_guard_is_an_explicit_opt_in(host_without_bwrap, monkeypatch, caplog):
    from mathtune.sandbox import run

    monkeypatch.setenv("MATHTUNE_SANDBOX", "interpreter")
    run._probe.cache_clear()
    with caplog.at_level("WARNING"):
        wall = current_boundary()
    assert wall.kind == "interpreter" and "not a boundary" in wall.detail
    assert "is not a boundary" in caplog.text
    assert run_program("print(6 * 7)").output == "42\n"
    assert "os.system" in run_program("import statistics\nstatistics.sys.modules['os'].system('id')").error


SYSTEM_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root to start a server as another user, and a system Python of this version")
def test_the_wall_holds_for_a_server_that_is_not_root(tmp_path):
    """The container's case (deploy/Dockerfile: USER mathtune, Python under /usr): the server is an ordinary user,
    bwrap maps it to nobody in a user namespace, and the escapes still fail."""
    import site

    secret = tmp_path / "secret"
    secret.write_text("the key")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)
    source = os.path.dirname(os.path.dirname(os.path.abspath(boundary.__file__)))
    probe = f"""
import sys
sys.path[:0] = [{os.path.dirname(source)!r}, *{site.getsitepackages()!r}]
from mathtune.sandbox import current_boundary
from mathtune.sandbox.run import run_behind_wall
print(current_boundary().kind)
print(run_behind_wall({REACH!r} + "print(posix.getresuid())\\n"
                  "try:\\n    posix.open({str(secret)!r}, 0)\\n    print('read it')\\nexcept OSError:\\n    print('no')\\n"
                  "try:\\n    posix.fork()\\n    print('forked')\\nexcept Exception:\\n    print('no fork')").output)
"""

    def as_nobody():
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, cwd="/tmp",
                          env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"}, preexec_fn=as_nobody, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["kernel", "(65534,", "65534,", "65534)", "no", "no", "fork"], done.stdout


def test_a_program_whose_server_is_gone_ends_on_its_own_clock(wall):
    """Nobody outside may be left to kill it (a server killed with SIGKILL): the child's own timer, which the
    program cannot disarm (seccomp denies new handlers, masks and timers), ends it a second after its time."""
    import psutil

    from mathtune.sandbox.run import _CHILD_SOURCE, NOBODY, _spec

    code = REACH + "load('time').sleep(60)"
    spec = _spec(code, Limits(wall_seconds=1.0), [NOBODY, NOBODY], boundary.seccomp_filter(), boundary.child_path(),
                 False)
    bwrap = subprocess.Popen(boundary.bwrap_command(["-c", _CHILD_SOURCE, spec]), stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    bwrap.stdin.write(code)
    bwrap.stdin.close()
    time.sleep(0.5)
    program = psutil.Process(bwrap.pid).children(recursive=True)
    bwrap.kill()  # the server's side is gone
    bwrap.wait()
    assert program
    time.sleep(3)
    assert not [p for p in program if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    disarm = REACH + ("signal = load('_signal')\nfor step in (lambda: signal.signal(14, 1), lambda: signal.setitimer(0, 0),"
                      " lambda: signal.pthread_sigmask(0, [14])):\n    try:\n        step()\n        print('disarmed')\n"
                      "    except OSError:\n        print('denied')")
    assert run_behind_wall(disarm, Limits()).output.split() == ["denied"] * 3
