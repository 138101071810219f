"""Generation behind one interface (generation.py's Generator), two backends: transformers (any causal LM, here)
and llama.cpp (GGUF, CPU, llama_engine.py).

``generate(questions)`` answers a batch greedily; ``sample(question, k)`` draws k answers of one prompt together;
``stream(question)`` yields text pieces as they are made. All use the model's chat template, the tutor's system
prompt, optional retrieved context, and stop sequences.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence

import torch

from ..config import SolveConfig
from ..errors import ModelError
from ..tasks.tutor import DEFAULT_PROMPT, DEFAULT_STOPS, TutorPrompt, messages  # noqa: F401 (DEFAULT_STOPS re-exported)
from .device import place
from .generation import Generation, Generator, cut_at_stop  # noqa: F401 (re-exported)
from .llama_engine import DEFAULT_SLOTS, LlamaCppGenerator, xllamacpp_available
from .solving.settings import runnable

log = logging.getLogger(__name__)



class StopOnEvent:
    """Stops generation once the event is set (a streaming client went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class StopOnText:
    """Stops a row once its generated text contains a stop sequence (decodes only the last few tokens; works
    with any tokenizer, unlike transformers' stop_strings which needs a byte-level vocabulary)."""

    def __init__(self, tokenizer, stops: Sequence[str], prompt_len: int, window: int = 16):
        self.tokenizer, self.prompt_len, self.window = tokenizer, prompt_len, window
        self.stops = [s for s in stops if s.strip()]

    def __call__(self, input_ids, scores, **kwargs):
        new = input_ids[:, self.prompt_len:][:, -self.window:]
        tails = self.tokenizer.batch_decode(new, skip_special_tokens=False)
        return torch.tensor([any(s in t for s in self.stops) for t in tails], device=input_ids.device)


class TransformersGenerator:
    backend = "transformers"
    parallel = False  # one generate at a time (torch's threads are shared)

    def __init__(self, model, tokenizer, system_prompt: str | None = None, stops: Sequence[str] | None = None,
                 threads: int | None = None, tutor_prompt: TutorPrompt = DEFAULT_PROMPT):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.tutor_prompt, self.solving = tutor_prompt, SolveConfig()
        self.system_prompt, self.stops = system_prompt or tutor_prompt.system, tuple(stops or tutor_prompt.stops)
        self.device = next(model.parameters()).device
        if threads:
            torch.set_num_threads(threads)
        self._lock = threading.Lock()  # one generate at a time per model (torch threads are shared)
        self.executor = None  # where stream() runs generation: a new thread, or a given executor (the server's)

    def prompt(self, question: str, context: str | None = None, system: str | None = None,
               prefix: str | None = None) -> str:
        chat = messages(question, None, system or self.system_prompt, context, self.tutor_prompt)
        if prefix:  # continue the tutor's own answer (tool-integrated reasoning)
            return self.tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": prefix}],
                                                      continue_final_message=True, tokenize=False)
        return self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    def sample(self, question, k, max_new_tokens=256, context=None, system=None, temperature=0.7, seed=None,
               stops=(), cancel=None, on_finish=None, prefix=None) -> list[Generation]:
        """k answers as one padded batch; they end together, so ``on_finish`` sees each once all are done and
        ``cancel`` cannot cut the batch short."""
        generations = self.generate([question] * k, max_new_tokens, [context] * k, system=system,
                                    temperature=temperature, seed=seed, stops=stops, prefix=prefix)
        for i, g in enumerate(generations):
            if on_finish is not None:
                on_finish(i, g)
        return generations

    def continue_answer(self, question, prefix, max_new_tokens=256, context=None, system=None, stops=(),
                        temperature=0.0, seed=None) -> Generation:
        return self._generate([self.prompt(question, context, system, prefix)], max_new_tokens, False, temperature,
                              seed, (*self.stops, *stops))[0]

    def close(self) -> None:
        self.model = None

    def _stopping(self, prompt_len: int, stops: Sequence[str] | None = None):
        from transformers import StoppingCriteriaList

        return StoppingCriteriaList([StopOnText(self.tokenizer, stops or self.stops, prompt_len)])

    @torch.no_grad()
    def generate(self, questions, max_new_tokens=256, contexts=None, ignore_eos=False, system=None,
                 temperature: float = 0.0, seed: int | None = None, stops: Sequence[str] = (),
                 prefix: str | None = None, cancel: threading.Event | None = None) -> list[Generation]:
        """Greedy answers (or sampled at ``temperature`` > 0, seeded); ``system`` replaces the system prompt;
        ``stops`` are added to the tutor's stop sequences; ``ignore_eos`` makes exactly max_new_tokens (for speed
        comparisons at equal length); ``prefix`` begins every answer (only what follows it is returned);
        ``cancel`` stops the batch at the next token."""
        contexts = list(contexts) if contexts is not None else [None] * len(questions)
        prompts = [self.prompt(q, c, system, prefix) for q, c in zip(questions, contexts)]
        return self._generate(prompts, max_new_tokens, ignore_eos, temperature, seed, (*self.stops, *stops), cancel)

    @torch.no_grad()
    def _generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool, temperature: float,
                  seed: int | None, stops: Sequence[str], cancel: threading.Event | None = None) -> list[Generation]:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        if temperature > 0 and seed is not None:
            torch.manual_seed(seed)
        self.tokenizer.padding_side = "left"
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                               return_token_type_ids=False).to(self.device)
        start = time.perf_counter()
        with self._lock:
            limits = ({"min_new_tokens": max_new_tokens} if ignore_eos
                      else {"stopping_criteria": self._stopping(batch["input_ids"].shape[1], stops)})
            if cancel is not None:
                from transformers import StoppingCriteriaList

                limits.setdefault("stopping_criteria", StoppingCriteriaList()).append(StopOnEvent(cancel))
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, **sampling,
                                      pad_token_id=self.tokenizer.pad_token_id, **limits)
        seconds = time.perf_counter() - start
        new = out[:, batch["input_ids"].shape[1]:]
        results = []
        for row in new:
            ids = row.tolist() if ignore_eos else [t for t in row.tolist() if t != self.tokenizer.pad_token_id]
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            results.append(Generation(cut_at_stop(text, stops), len(ids), seconds / len(prompts),
                                      len(ids) >= max_new_tokens))
        return results

    def stream(self, question, max_new_tokens=256, context=None, cancel=None, temperature=0.0, seed=None,
               info=None, prefix: str | None = None, stops: Sequence[str] = (), system: str | None = None) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        stops = (*self.stops, *stops)
        ids = self.tokenizer(self.prompt(question, context, system, prefix), return_tensors="pt",
                             add_special_tokens=False, return_token_type_ids=False).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        prompt_len = ids["input_ids"].shape[1]
        kwargs = dict(**ids, max_new_tokens=max_new_tokens, **sampling, streamer=streamer,
                      pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=self._stopping(prompt_len, stops))
        if cancel is not None:
            kwargs["stopping_criteria"].append(StopOnEvent(cancel))

        def run():
            with self._lock, torch.no_grad():
                if temperature > 0 and seed is not None:
                    torch.manual_seed(seed)
                out = self.model.generate(**kwargs)
            if info is not None:
                new = out.shape[1] - prompt_len
                info.update(new_tokens=int(new), truncated=bool(new >= max_new_tokens))

        if self.executor is not None:
            done = self.executor.submit(run)
            yield from _stop_filtered(streamer, stops)
            done.result()
            return
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from _stop_filtered(streamer, stops)
        worker.join()


def _stop_filtered(pieces: Iterator[str], stops: Sequence[str]) -> Iterator[str]:
    """Pass streamed text through until a stop sequence appears (held back while it could be one's start)."""
    held = ""
    longest = max((len(s) for s in stops), default=0)
    for piece in pieces:
        held += piece
        hits = [held.find(s) for s in stops if s in held]
        if hits:
            if held[: min(hits)]:
                yield held[: min(hits)]
            return
        safe = len(held) - (longest - 1)
        if safe > 0:
            yield held[:safe]
            held = held[safe:]
    if held:
        yield held


def saved_solving(folder, manifest: dict) -> SolveConfig:
    """How a trained tutor solves (its recipe's tutor.solve, ``solve`` in mathtune.json; the defaults for a tutor
    saved before it was kept), checked like the rest of the file."""
    return SolveConfig.checked(manifest.get("solve") or {}, f"{folder}/mathtune.json: solve has values a tutor "
                               "cannot use ({problems}); fix the file or train the tutor again", ModelError)


def load_tutor(model: str | os.PathLike, backend: str = "transformers", threads: int | None = None,
               slots: int = DEFAULT_SLOTS) -> Generator:
    """A generator for a tutor folder written by `mathtune train` (``model/`` weights, optional ``model.gguf``,
    its saved prompt), or for a pretrained model used as it is: a bundled name (``bundled:qwen2.5-coder-1.5b``),
    a GGUF file, a local folder or a Hugging Face id. ``backend``: transformers, llama.cpp, or auto (llama.cpp
    when there is a GGUF file and xllamacpp is installed)."""
    from pathlib import Path

    from ..config import ModelConfig
    from .causal import load_causal_lm
    from .registry import resolve
    from .saved import HF_SUBDIR, MANIFEST, read_manifest

    if backend not in ("transformers", "llama.cpp", "auto"):
        raise ModelError(f"backend {backend!r}: choose transformers, llama.cpp or auto")
    folder = Path(model)
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        if manifest["task"] != "tutor":
            raise ModelError(f"{folder}: a {manifest['task']} model, not a tutor")
        saved = TutorPrompt.from_dict(manifest.get("prompt"), system=manifest.get("system_prompt"))
        if backend == "auto":
            backend = "llama.cpp" if manifest.get("gguf") and xllamacpp_available() else "transformers"
        if backend == "llama.cpp":
            if not manifest.get("gguf"):
                raise ModelError(f"{folder}: no GGUF file; run `mathtune export {folder} --gguf f16` first")
            generator = LlamaCppGenerator(folder / manifest["gguf"], threads=threads, tutor_prompt=saved, slots=slots)
        else:
            loaded = load_causal_lm(ModelConfig(name=str(folder / HF_SUBDIR), peft="none"))
            generator = TransformersGenerator(place(loaded.model), loaded.tokenizer, threads=threads, tutor_prompt=saved)
        generator.solving = runnable(saved_solving(folder, manifest), str(folder))
        return generator
    if str(model).startswith("openai:"):  # an OpenAI-compatible server: the tutor's solving here, tokens there
        from .openai_engine import EngineAddress, OpenAIEngineGenerator

        engine = OpenAIEngineGenerator(EngineAddress.parse(str(model)), workers=max(slots, 8))
        engine.solving = pretrained_solving(str(model))
        return engine
    source = resolve(str(model))
    if backend == "auto":
        backend = "llama.cpp" if source.gguf_file and xllamacpp_available() else "transformers"
    if backend == "llama.cpp":
        if not source.gguf_file:
            raise ModelError(f"{model}: the llama.cpp backend needs a GGUF model (a bundled model, a .gguf file or a "
                             f"tutor folder with model.gguf)")
        generator = LlamaCppGenerator(Path(source.path) / source.gguf_file, threads=threads, slots=slots)
    else:
        loaded = load_causal_lm(ModelConfig(name=source.path, gguf_file=source.gguf_file, peft="none"))
        generator = TransformersGenerator(place(loaded.model), loaded.tokenizer, threads=threads)
    generator.solving = pretrained_solving(str(model))
    return generator


def pretrained_solving(model: str) -> SolveConfig:
    """How a pretrained model solves unless told otherwise: the bundled model's default preset (models/solving/
    presets.py), else cot; cot where it needs programs and this host runs none. `serve`, `ask` and `evaluate` all
    start here."""
    from .solving.presets import PRESETS, default_settings

    if model.startswith("openai:"):  # a remote engine: the preset its name gives, else cot
        from .openai_engine import EngineAddress

        preset = EngineAddress.parse(model).preset
        return runnable(PRESETS[preset].settings if preset else SolveConfig(), model)
    return runnable(default_settings(model), model)
