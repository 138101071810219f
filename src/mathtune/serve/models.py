"""Load the served models (folders or MLflow registry URIs), one per task, and warm each one up."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ..errors import ModelError
from ..models.saved import Predictor, load_predictor, read_manifest
from ..sandbox import current_boundary
from .admission import TutorGate
from .drift import DriftMonitor
from .shared import SharedAnswers

log = logging.getLogger(__name__)



# Every forward pass of the served models runs on this one thread. PyTorch's OpenMP pool belongs to the thread
# that calls it: once a second thread has run torch code, two pools compete for the cores and every call gets
# about 2x slower (a 1-question topic request: 11 ms on one thread, 22-25 ms once two threads had run it, or
# from the server's general thread pool, or with OMP_WAIT_POLICY=PASSIVE). Warm-up runs here too.
INFERENCE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mathtune-inference")


def model_thread() -> ThreadPoolExecutor:
    return INFERENCE


class Served(Protocol):
    """What routes, the UI and the probes see of a served model: a classifier (ServedModel) or the tutor
    (ServedTutor). ``generates`` tells them apart; nothing else asks which one it is."""

    source: str
    generates: bool
    ready: bool
    load_seconds: float
    drift: Any

    @property
    def name(self) -> str: ...
    @property
    def manifest(self) -> dict: ...
    @property
    def folder(self) -> Path | None: ...

    async def run(self, fn, *args): ...
    def describe(self) -> dict: ...
    def close(self) -> None: ...


@dataclass
class ServedModel:
    source: str
    predictor: Predictor
    load_seconds: float
    ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # torch models are not re-entrant
    executor: ThreadPoolExecutor = field(default_factory=model_thread)

    async def run(self, fn, *args):
        """Run ``fn(*args)`` on this model's own thread without blocking the event loop."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    generates = False

    @property
    def name(self) -> str:
        return self.predictor.task

    @property
    def manifest(self) -> dict:
        return self.predictor.manifest

    @property
    def folder(self) -> Path:
        return self.predictor.folder

    def close(self) -> None:
        self.ready = False

    @property
    def task(self):
        return self.predictor.task_object

    drift: Any = None

    def predict_frame(self, frame: pd.DataFrame, k: int, record: bool = True):
        """Top-k ids and probabilities for the rows of ``frame`` (the task's input columns), and notes.
        The inputs and predictions also go into the drift window."""
        with self.lock:
            idx, prob, notes, texts = self.predictor.predict_frame(frame, k, source="request")
        if record and self.drift is not None:
            self.drift.record(texts, prob[:, 0], idx[:, 0])
        return idx, prob, notes


    def describe(self) -> dict:
        manifest = self.predictor.manifest
        return {"source": self.source, "task": self.name, "kind": self.predictor.kind,
                "labels": self.predictor.labels.names, "validation": manifest.get("validation"),
                "tracking": manifest.get("tracking", {}), "folder": str(self.predictor.folder)}


@dataclass
class ServedTutor:
    """A tutor folder behind one generator (transformers or llama.cpp) and, optionally, a retrieval index."""

    source: str
    folder: Path | None
    manifest: dict
    generator: Any  # a Generator (models/generation.py): transformers, llama.cpp or a remote engine
    load_seconds: float
    retriever: Any = None
    k: int = 4
    style: str = "examples"  # how retrieved chunks reach the model (rag/retrieve.py STYLES)
    ready: bool = False
    drift: Any = None
    name: str = "tutor"
    executor: ThreadPoolExecutor = field(default_factory=model_thread)
    gate: TutorGate = field(default_factory=lambda: TutorGate(1, 8))
    shared: SharedAnswers = field(default_factory=lambda: SharedAnswers(0, join=False))
    generates = True

    def close(self) -> None:
        """Free the engine's memory and threads (the server's shutdown)."""
        self.ready = False
        self.generator.close()
        if self.executor is not INFERENCE:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn, *args):
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def describe(self) -> dict:
        return {"source": self.source, "task": "tutor", "kind": "generator", "backend": self.generator.backend,
                "labels": [], "validation": self.manifest.get("validation"), "tracking": self.manifest.get("tracking", {}),
                "retrieval": bool(self.retriever), "retrieval_style": self.style if self.retriever else None,
                "solve": self.generator.solving.model_dump(mode="json"),  # what /v1/tutor does when a request does not say
                # whether requests join the same answer being made, answers kept and the most kept (serve/shared.py)
                "shared_answers": {"joined": self.shared.join, "kept": len(self.shared), "size": self.shared.size},
                # what model-written programs run behind: kernel, interpreter (an operator's opt-in) or none
                "sandbox": current_boundary().as_dict(),
                "folder": str(self.folder) if self.folder else ""}

    def readiness(self) -> tuple[bool, str]:
        """Whether the tutor answers now: loaded and warmed up, and a remote engine reachable (and why not)."""
        if not self.ready:
            return False, "still loading"
        alive = getattr(self.generator, "alive", None)
        return alive() if alive is not None else (True, "")

    def retrieve(self, question: str, k: int | None = None) -> tuple[str | None, list]:
        if self.retriever is None:
            return None, []
        hits = self.retriever.search(question, k or self.k)
        return self.retriever.render(hits, self.style), hits


def tutor_backend(folder: Path, manifest: dict, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    from ..models.llama_engine import xllamacpp_available

    has_gguf = bool(manifest.get("gguf")) and (folder / manifest["gguf"]).is_file()
    return "llama.cpp" if has_gguf and xllamacpp_available() else "transformers"


def engine_for(model: ServedTutor, settings) -> ServedTutor:
    """Give the tutor its thread(s) and its admission limit, and warm it up there (/readyz waits for it).

    A llama.cpp tutor gets threads of its own: its work runs inside llama.cpp with the GIL released, so classifier
    requests on the inference thread never queue behind an answer (the cores are still shared). A transformers
    tutor runs on the inference thread, like every torch model (one OpenMP pool; see INFERENCE)."""
    generator = model.generator
    parallel = settings.tutor_parallel_requests if settings else 4
    waiting = settings.tutor_max_waiting if settings else 8
    if generator.parallel:
        model.executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="mathtune-tutor")
    else:
        parallel, model.executor = 1, INFERENCE
        generator.executor = INFERENCE  # streaming generation runs on the inference thread as well
    model.gate = TutorGate(parallel, waiting)
    model.shared = SharedAnswers(settings.tutor_answer_cache if settings else 0,
                                 join=settings.tutor_share_answers if settings else True)
    if hasattr(generator, "alive"):  # a remote engine: the server starts without it; /readyz says when it answers
        model.ready = True
        ok, why = generator.alive()
        if not ok:
            log.error("the tutor's engine does not answer yet: %s", why)
        return model
    model.executor.submit(generator.generate, ["What is 1 + 1?"], 4).result()
    model.ready = True
    return model


def _tutor_generator(source, settings):
    from ..models.generate import load_tutor

    return load_tutor(source, settings.tutor_backend if settings else "auto",
                      threads=settings.threads if settings else None, **({"slots": settings.tutor_slots} if settings else {}))


def load_tutor_model(source: str, folder: Path, settings) -> ServedTutor:
    from ..models.generate import load_tutor

    start = time.perf_counter()
    manifest = read_manifest(folder)
    backend = tutor_backend(folder, manifest, settings.tutor_backend if settings else "auto")
    generator = load_tutor(folder, backend, threads=settings.threads if settings else None,
                           **({"slots": settings.tutor_slots} if settings else {}))
    retrieval = manifest.get("retrieval") or {}
    index = (settings.tutor_index if settings else None) or retrieval.get("index")
    retriever = None
    if index:
        from ..rag.retrieve import Retriever

        retriever = Retriever.open(index)
    # a tutor trained with retrieval before styles existed was trained on passages
    style = (settings.tutor_retrieval_style if settings else None) or retrieval.get("style", "passages")
    model = ServedTutor(source, folder, manifest, generator, time.perf_counter() - start, retriever,
                        retrieval.get("k", 4), style)
    return engine_for(model, settings)


def load_pretrained_tutor(source: str, settings) -> ServedTutor:
    """A pretrained model served as the tutor without training (bundled:qwen2.5-coder-1.5b, a .gguf file, a hub
    id), or a trained tutor folder."""
    path = Path(source)
    if (path / "mathtune.json").is_file():
        return load_tutor_model(source, path, settings)
    start = time.perf_counter()
    generator = _tutor_generator(source, settings)
    retriever = None
    if settings and settings.tutor_index:
        from ..rag.retrieve import Retriever

        retriever = Retriever.open(settings.tutor_index)
    manifest = {"task": "tutor", "kind": "generator", "base_model": source, "max_new_tokens": 384}
    model = ServedTutor(source, None, manifest, generator, time.perf_counter() - start, retriever,
                        style=(settings.tutor_retrieval_style if settings else None) or "examples")
    return engine_for(model, settings)


def resolve_source(source: str) -> Path:
    if source.startswith("models:/") or source.startswith("runs:/"):
        from ..tracking import load_registered

        return load_registered(source)
    path = Path(source)
    if not path.is_dir():
        raise ModelError(f"--model {source}: no such model folder or MLflow model URI")
    return path


def warm_up_frame(served: ServedModel) -> pd.DataFrame:
    """One plausible input row for the model's task (the task's own example, built from its settings)."""
    return served.task.example_frame(served.predictor.manifest)


def load_models(sources: list[str], backend: str = "torch", settings=None) -> dict[str, Served]:
    """Load each model; with an ONNX backend, transformer models use their ONNX export (others stay as they are)."""
    served: dict[str, Served] = {}
    for source in sources:
        start = time.perf_counter()
        folder = resolve_source(source)
        kind = read_manifest(folder)["kind"]
        if kind == "generator":
            if "tutor" in served:
                raise ModelError(f"--model {source}: a tutor model is already served ({served['tutor'].source})")
            served["tutor"] = load_tutor_model(source, folder, settings)
            continue
        predictor = load_predictor(folder, backend if kind == "transformer" else "torch")
        if predictor.task in served:
            raise ModelError(f"--model {source}: a {predictor.task} model is already served ({served[predictor.task].source}); "
                             "serve one model per task")
        model = ServedModel(source, predictor, time.perf_counter() - start)
        model.drift = DriftMonitor(predictor.folder, len(predictor.labels),
                                   min_samples=settings.drift_min_requests if settings else 100)
        INFERENCE.submit(model.predict_frame, warm_up_frame(model), 1, False).result()
        model.ready = True
        served[predictor.task] = model
        log.info("loaded %s (%s) in %.1f s", source, predictor.task, model.load_seconds)
    return served
