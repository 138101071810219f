"""Fine-tuning a 1.5B classifier on a CUDA GPU: full, LoRA and QLoRA through `train_from_recipe`, timed.

    python bench/gpu_train.py                     # writes bench/results/gpu_train.json (needs a CUDA GPU)
    python bench/gpu_train.py --tiny --out /tmp/x.json   # the same path on a 2-layer model (CPU is fine)

What `recipes/topic-qlora.yaml` costs on a GPU, and what LoRA and full fine-tuning cost beside it: the model has
the architecture of its base (Qwen2.5-1.5B: 28 layers, hidden 1536, vocabulary 151,936) with random weights,
since a GPU machine without network access has no weights to load; time and memory depend on the shapes, not the
values. The texts are synthetic questions of the topic data's length (about 60 tokens), tokenized by a small
word-level tokenizer. Each variant runs the whole pipeline once (load, train one epoch, validate, merge, save)
in this process, one after another; figures: training samples/s, peak GPU memory (torch.cuda.max_memory_allocated
over the variant), training and whole-run seconds, and each variant's ratios to LoRA's in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = ("solve find the value of x y triangle angle circle radius area probability dice coin number prime "
         "divisor remainder sum product integer fraction equation polynomial root factor graph function slope "
         "sequence term series limit derivative matrix vector vertex edge counting ways choose arrange").split()
QWEN_1_5B = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
             "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
             "tie_word_embeddings": True, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512, "tie_word_embeddings": True}


def build_model(folder: Path, shapes: dict) -> None:
    """A random-weight Qwen2 model with the given shapes and a word-level tokenizer, saved as a local folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<eos>", *WORDS, *map(str, range(100))])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    config = Qwen2Config(**shapes, pad_token_id=0, eos_token_id=2, bos_token_id=2)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init on the GPU: seconds, not minutes
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model


def write_data(folder: Path, rows: int, words: int) -> None:
    import pandas as pd

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(0, 99)) for _ in range(words))
             for _ in range(rows)]
    pd.DataFrame({"Question": texts, "label": [str(rng.randint(0, 7)) for _ in texts]}).to_csv(
        folder / "topics.csv", index=False)


def run_variant(name: str, model: Path, work: Path, args) -> dict:
    import torch

    from mathtune.config import recipe_from_dict
    from mathtune.train.run import train_from_recipe

    peft = {"full": "none", "lora": "lora", "qlora": "qlora"}[name]
    recipe = recipe_from_dict({
        "task": "topic", "trainer": "finetune", "tracking": "none",
        "data": {"train": "topics.csv", "val_size": 0.2, "split_seed": 0},
        "model": {"name": str(model), "peft": peft, "max_length": args.max_length,
                  "gradient_checkpointing": name == "qlora",  # as topic-qlora.yaml
                  "lora": {"r": 16, "alpha": 32, "dropout": 0.05,
                           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}},
        "train": {"epochs": 1, "batch_size": args.batch_size, "eval_batch_size": 32, "learning_rate": 1e-4,
                  "precision": "auto", "seed": 0},
    })
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train_from_recipe(recipe, work / name, overwrite=True)
    wall = time.perf_counter() - start
    summary = json.loads((result.output / "metrics.json").read_text())["summary"]
    saved = sum(p.stat().st_size for p in (result.output / "model").glob("*.safetensors"))
    return {"variant": name, "wall_seconds": round(wall, 1), "train_seconds": summary["train_seconds"],
            "train_samples_per_second": round(summary["train_samples_per_second"], 1),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
            "trainable_params": summary.get("trainable_params"), "saved_gb": round(saved / 2**30, 2),
            "n_train": summary["n_train"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="lora,qlora,full")
    parser.add_argument("--rows", type=int, default=2560)
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model of the same family (checks the script)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu_train.json"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.tiny:
        sys.exit("bench/gpu_train.py measures GPU training: no CUDA GPU here (--tiny checks the script on a CPU)")
    variants = [v for v in args.variants.split(",") if v]
    if not torch.cuda.is_available():
        variants = [v for v in variants if v != "qlora"]
    out = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "shapes": "tiny" if args.tiny else "Qwen2.5-1.5B",
           "rows": args.rows, "max_length": args.max_length, "batch_size": args.batch_size, "runs": []}
    try:
        import bitsandbytes
        import peft
        import transformers

        out["versions"] = {"transformers": transformers.__version__, "peft": peft.__version__,
                           "bitsandbytes": bitsandbytes.__version__}
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        build_model(tmp / "model", TINY if args.tiny else QWEN_1_5B)
        out["build_seconds"] = round(time.perf_counter() - start, 1)
        write_data(tmp, args.rows, args.words)
        os.environ["MATHTUNE_DATA_DIR"] = str(tmp)
        os.chdir(tmp)
        for name in variants:
            try:
                row = run_variant(name, tmp / "model", tmp / "runs", args)
            except Exception as exc:  # noqa: BLE001 - a variant that fails is a result too (out of memory, say)
                row = {"variant": name, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")  # after each variant: a cut run keeps some
    lora = next((r for r in out["runs"] if r["variant"] == "lora" and "error" not in r), None)
    if lora:
        for row in out["runs"]:
            if "error" not in row:
                row["samples_per_second_vs_lora"] = round(row["train_samples_per_second"]
                                                          / lora["train_samples_per_second"], 2)
                if row.get("peak_gpu_gb") and lora.get("peak_gpu_gb"):
                    row["peak_memory_vs_lora"] = round(row["peak_gpu_gb"] / lora["peak_gpu_gb"], 2)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
