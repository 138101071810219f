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



@contextmanager
def llama_server(gguf: str, key: str, ready_within: float = 60.0) -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible HTTP server (mathtune.models.llama_server: xllamacpp's Server on a TCP port,
    as llama-server runs) for ``gguf``, behind ``key``, once it answers: its base URL (``http://127.0.0.1:P/v1``)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mathtune.models.llama_server", gguf, "--port", str(port),
                             "--key-env", "LLAMA_SERVER_KEY", "--threads", "2", "--ctx", "2048"],
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "LLAMA_SERVER_KEY": key},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
