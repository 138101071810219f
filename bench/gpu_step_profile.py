"""Where a training step's time goes on a GPU, LoRA against full fine-tuning (bench/gpu_train.py found LoRA slower).

    python bench/gpu_step_profile.py                  # prints, and writes bench/results/gpu_step_profile.json
    python bench/gpu_step_profile.py --tiny           # the same on a 2-layer model (CPU is fine)

The model of bench/gpu_train.py (random weights, Qwen2.5-1.5B shapes), loaded by mathtune's own loader
(`load_classifier`) and prepared by its training loop (`prepare_model`), one batch of the benchmark's shape
(16 rows of 60 tokens, and 64 rows); each step's forward, backward and optimizer step timed apart (the GPU synchronised
between them), median of the steps after two warm-ups; then one profiled step's top operators.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from gpu_train import QWEN_1_5B, TINY, build_model  # noqa: E402


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(folder: Path, peft: str, steps: int, rows: int, tokens: int, top: int) -> dict:
    import torch
    import torch.nn.functional as F

    from mathtune.config import ModelConfig, TrainConfig
    from mathtune.models.hf import load_classifier
    from mathtune.train.distributed import Local
    from mathtune.train.loop import prepare_model

    cfg = ModelConfig(name=str(folder), peft=peft, max_length=128,
                      lora={"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    loaded = load_classifier(cfg, 8, {i: str(i) for i in range(8)})
    model = loaded.model
    train = TrainConfig(precision="auto")
    device, autocast, _ = prepare_model(model, train, Local())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(3, 60, (rows, tokens), device=device)
    mask = torch.ones_like(ids)
    target = torch.randint(0, 8, (rows,), device=device)
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    trainable_dtypes = sorted({str(p.dtype) for p in params})
    model.train()

    def step(timed: dict | None):
        t0 = time.perf_counter()
        with autocast():
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = F.cross_entropy(logits.float(), target)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if timed is not None:
            for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2)):
                timed.setdefault(k, []).append(v)

    step(None)
    step(None)
    timed: dict = {}
    for _ in range(steps):
        step(timed)
    out = {"peft": peft, "device": str(device), "param_dtypes": dtypes, "trainable_dtypes": trainable_dtypes,
           "trainable_params": sum(p.numel() for p in params),
           **{f"{k}_ms": round(1000 * statistics.median(v), 1) for k, v in timed.items()}}
    out["step_ms"] = round(out["forward_ms"] + out["backward_ms"] + out["optimizer_ms"], 1)
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step(None)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    events = prof.key_averages()
    out["operators"] = len(events)
    out["calls"] = sum(e.count for e in events)
    # the GPU's own busy time in the profiled step against the step's wall time: far below it, the step waits on
    # the CPU launching kernels (Python and dispatch overhead), not on the GPU
    # (an operator's device time and its kernels' are both listed: the sum over all events counts kernels twice,
    # so it is an upper bound; the kernels' own events alone give the busy time)
    out["device_busy_ms"] = round(sum(getattr(e, "self_device_time_total", 0) for e in events) / 1000, 1)
    kernels = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")]
    out["kernel_ms"] = round(sum(e.self_device_time_total for e in kernels) / 1000, 1) if kernels else None
    rows_ = sorted(events, key=lambda e: getattr(e, key.replace("cuda", "device"), 0) or getattr(e, key, 0),
                   reverse=True)[:top]
    out["top"] = [{"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
                   "self_device_ms": round(getattr(e, "self_device_time_total", 0) / 1000, 2)} for e in rows_]
    by_cpu = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    out["top_cpu"] = [{"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2)}
                      for e in by_cpu]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", type=int, default=16, help="rows of a batch where a variant names none")
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--variants", default="lora:16,none:16,lora:64,none:64", help="peft:rows, comma-separated")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu_step_profile.json"))
    args = parser.parse_args()
    import torch

    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "rows": args.rows, "tokens": args.tokens, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp) / "model", TINY if args.tiny else QWEN_1_5B)
        for variant in args.variants.split(","):
            peft, _, rows = variant.partition(":")
            run = measure(Path(tmp) / "model", peft, args.steps, int(rows or args.rows), args.tokens, args.top)
            run["rows"] = int(rows or args.rows)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
