"""Drift in serving: a sliding window of each model's input and output signals, compared with the reference
statistics saved at training time (metrics/drift.py)."""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path

import numpy as np

from ..metrics.drift import CONTINUOUS, THRESHOLDS, Familiarity, SignalExtractor, compare

REFERENCE_FILE = "drift_reference.json"


class DriftMonitor:
    def __init__(self, folder: Path, num_labels: int, window: int = 1000, min_samples: int = 100) -> None:
        path = Path(folder) / REFERENCE_FILE
        self.reference = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        self.num_labels = num_labels
        self.min_samples = min_samples
        self.window: dict[str, deque] = {name: deque(maxlen=window) for name in (*CONTINUOUS, "predicted_class")}
        self.lock = threading.Lock()
        self.extractor = None
        self.familiarity: Familiarity | None = None
        if self.reference:
            self.extractor = SignalExtractor(set(self.reference["vocabulary"]), np.asarray(self.reference["centroid"], dtype=np.float32))
            self.familiarity = Familiarity(self.extractor, self.reference)

    def unfamiliar(self, texts: list[str]) -> list[str | None]:
        """For each text, why it is unlike the model's training inputs (its prediction is a guess), or None."""
        return self.familiarity.reasons(texts) if self.familiarity is not None else [None] * len(texts)

    def record(self, texts: list[str], confidences, predicted) -> None:
        if self.extractor is None:
            return
        signals = self.extractor.signals(texts)
        with self.lock:
            for name, values in signals.items():
                self.window[name].extend(float(v) for v in values)
            self.window["confidence"].extend(float(c) for c in confidences)
            self.window["predicted_class"].extend(int(p) for p in predicted)

    def report(self) -> dict:
        if self.reference is None:
            return {"available": False, "reason": f"the model folder has no {REFERENCE_FILE} (trained before drift references existed)"}
        with self.lock:
            window = {name: np.array(values) for name, values in self.window.items()}
        n = len(window["predicted_class"])
        signals = compare(self.reference, window, self.num_labels) if n else {}
        enough = n >= self.min_samples
        if not enough:  # PSI over a handful of inputs is noise: measure, but flag nothing yet
            for entry in signals.values():
                entry["drift"] = False
        drifted = [name for name, entry in signals.items() if entry["drift"]]
        return {"available": True, "window_size": n, "min_samples": self.min_samples, "enough_data": enough,
                "thresholds": THRESHOLDS, "signals": signals, "drifted_signals": drifted,
                "retrain_suggested": enough and bool(drifted)}

    def histograms(self) -> dict[str, tuple[list[float], list[float]]]:
        """Per signal, the training reference's proportions and the recent window's over the same bins."""
        from ..metrics.drift import proportions

        if self.reference is None:
            return {}
        with self.lock:
            window = {name: np.array(values) for name, values in self.window.items()}
        out = {}
        for name in CONTINUOUS:
            ref = self.reference["signals"][name]
            current = window[name]
            out[name] = (list(ref["proportions"]), proportions(current, ref["edges"]).tolist() if len(current) else [])
        expected = self.reference["signals"]["predicted_class"]["proportions"]
        predicted = window["predicted_class"].astype(int)
        actual = (np.bincount(predicted, minlength=self.num_labels) / len(predicted)).tolist() if len(predicted) else []
        out["predicted_class"] = (list(expected), actual)
        return out
