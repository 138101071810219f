"""A real `mathtune serve` process for the tests that need one (ports, connections, signals): started on a free
port, waited on until /readyz says ready, and stopped at the end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(args: list[str], env: dict[str, str] | None = None, ready_within: float = 120.0) -> Iterator[tuple[subprocess.Popen, int]]:
    """``mathtune serve ARGS --host 127.0.0.1 --port P`` with ``env`` added, once ready: (the process, P)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mathtune.cli", "serve", *args, "--host", "127.0.0.1", "--port",
                             str(port)], env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + ready_within
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"mathtune serve {' '.join(args)} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    if json.loads(response.read())["ready"]:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise TimeoutError(f"mathtune serve {' '.join(args)} was not ready within {ready_within:g} s")
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


LLAMA_SERVER = """
import sys, time
import xllamacpp
params = xllamacpp.CommonParams()
params.model.path, params.n_parallel, params.n_ctx = sys.argv[1], 4, 8192
params.hostnames, params.port, params.api_keys = ["127.0.0.1"], int(sys.argv[2]), [sys.argv[3]]
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
params.verbosity = -1
server = xllamacpp.Server(params)
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


@contextmanager
def llama_server(gguf: str, key: str, ready_within: float = 60.0) -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible HTTP server (xllamacpp's Server, listening on a TCP port as llama-server
    does) for ``gguf``, behind ``key``, once it answers: its base URL (``http://127.0.0.1:P/v1``)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", LLAMA_SERVER, gguf, str(port), key],
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + ready_within
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp's server exited with {proc.returncode}")
            request = urllib.request.Request(f"{base}/models", headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(request, timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise TimeoutError(f"llama.cpp's server was not ready within {ready_within:g} s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
