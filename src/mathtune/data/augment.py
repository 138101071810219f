"""Augmentation for rare classes (seed 000): number substitution and back-translation.

Runs on the training split only (the train pipeline calls it after the split), rare classes first, up to a
target count or ratio; exact and near duplicates of any existing or generated text are dropped.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import AugmentConfig
from ..errors import ModelError

log = logging.getLogger(__name__)

# A fraction a/b, a decimal, or an integer; not part of a word (x2, h2o, \log_2 keep their digits as they are
# only when glued to letters on the left).
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])(-?\d+)(?:/(\d+)|\.(\d+))?(?!\d)(?!\.\d)")
_FRAC = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_MATH = re.compile(r"(\$\$.+?\$\$|\$.+?\$|\\\(.+?\\\)|\\\[.+?\\\])", re.DOTALL)


def _new_integer(digits: str, rng: random.Random, nonzero: bool = False) -> str:
    negative = digits.startswith("-")
    body = digits.lstrip("-")
    if len(body) == 1:
        value = rng.randint(1 if nonzero or body != "0" else 0, 9)
    else:
        value = rng.randint(10 ** (len(body) - 1), 10 ** len(body) - 1)
    if str(value) == body:  # make sure something changes
        value = value + 1 if value + 1 < 10 ** len(body) else value - 1
    return ("-" if negative else "") + str(value)


def substitute_numbers(text: str, rng: random.Random) -> str:
    """Replace the numbers of a question with new ones of the same shape: integers keep their digit count,
    decimals their places, fractions (a/b and \\frac{a}{b}) get a non-zero denominator. Text, LaTeX commands
    and the label stay as they were."""

    def frac(match: re.Match) -> str:
        num = _new_integer(match.group(1), rng)
        den = _new_integer(match.group(2), rng, nonzero=True)
        return match.group(0).replace(f"{{{match.group(1)}}}{{{match.group(2)}}}", f"{{{num}}}{{{den}}}", 1)

    def number(match: re.Match) -> str:
        whole, den, decimals = match.group(1), match.group(2), match.group(3)
        if den is not None:
            return f"{_new_integer(whole, rng)}/{_new_integer(den, rng, nonzero=True)}"
        if decimals is not None:
            return f"{_new_integer(whole, rng)}.{''.join(str(rng.randint(0, 9)) for _ in decimals)}"
        return _new_integer(whole, rng)

    text = _FRAC.sub(frac, text)
    # \frac{..}{..} already changed: protect its braces from the plain-number pass by splitting around them
    parts = re.split(r"(\\[dt]?frac\{\d+\}\{\d+\})", text)
    return "".join(p if _FRAC.fullmatch(p) else _NUMBER.sub(number, p) for p in parts)


class BackTranslator:
    """Translate to a pivot language and back with two local or hub seq2seq models (MarianMT, NLLB, ...).
    Math spans ($..$, \\(..\\), \\[..\\]) are masked so the translator cannot mangle them."""

    def __init__(self, forward: str, backward: str, batch_size: int = 16, max_new_tokens: int = 256,
                 forward_lang: str | None = None, backward_lang: str | None = None) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            self.models = [(AutoTokenizer.from_pretrained(name), AutoModelForSeq2SeqLM.from_pretrained(name).eval())
                           for name in (forward, backward)]
        except (OSError, ValueError) as exc:
            raise ModelError(f"augment.back_translation: cannot load a translation model ({exc}). "
                             "Give local folders or hub ids of seq2seq models (e.g. Helsinki-NLP/opus-mt-en-fr).") from None
        self.langs = [forward_lang, backward_lang]
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def _translate(self, texts: list[str], step: int) -> list[str]:
        import torch

        tokenizer, model = self.models[step]
        kwargs = {}
        if self.langs[step] and hasattr(tokenizer, "convert_tokens_to_ids"):  # NLLB-style target language
            kwargs["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(self.langs[step])
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=512)
            batch.pop("token_type_ids", None)
            with torch.no_grad():
                generated = model.generate(**batch, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False, **kwargs)
            out.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
        return out

    def __call__(self, texts: Sequence[str]) -> list[str | None]:
        masked, spans = [], []
        for text in texts:
            found = _MATH.findall(text)
            spans.append(found)
            for i, span in enumerate(found):
                text = text.replace(span, f" MATH{i} ", 1)
            masked.append(text)
        back = self._translate(self._translate(masked, 0), 1)
        results: list[str | None] = []
        for text, found in zip(back, spans):
            ok = all(f"MATH{i}" in text for i in range(len(found)))
            for i, span in enumerate(found):
                text = text.replace(f"MATH{i}", span, 1)
            results.append(re.sub(r"\s+", " ", text).strip() if ok and text.strip() else None)
        return results


# ----------------------------------------------------------------------------- duplicates


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def _near_duplicates(candidates: list[str], existing: list[str], threshold: float) -> list[bool]:
    """True where a candidate's character 3-5-gram TF-IDF cosine to any existing text or earlier candidate
    reaches the threshold."""
    if not candidates:
        return []
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), lowercase=True)
    matrix = vectorizer.fit_transform(existing + candidates)
    base, cand = matrix[: len(existing)], matrix[len(existing):]
    sims_existing = (cand @ base.T).toarray().max(axis=1) if len(existing) else np.zeros(len(candidates))
    sims_within = (cand @ cand.T).toarray()
    flags = []
    for i in range(len(candidates)):
        earlier = sims_within[i, :i][[not f for f in flags]] if i else np.array([])
        flags.append(bool(sims_existing[i] >= threshold or (earlier.size and earlier.max() >= threshold)))
    return flags


# ----------------------------------------------------------------------------- rare-class augmentation


@dataclass
class AugmentReport:
    added_per_label: dict
    dropped_duplicates: int
    target_count: int


def class_targets(counts: Counter, cfg: AugmentConfig) -> tuple[dict, int]:
    """How many rows each class lacks, and the target count."""
    largest = max(counts.values())
    target = cfg.target_count or math.ceil(cfg.target_ratio * largest)
    return {label: max(0, target - n) for label, n in counts.items()}, target


def augment_rows(texts: Sequence[str], labels: Sequence[str], cfg: AugmentConfig,
                 translator: Callable[[Sequence[str]], list[str | None]] | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[list[str], list[str], AugmentReport]:
    """New (text, label) rows for the classes below the target, rarest first. Originals are not returned."""
    rng = random.Random(cfg.seed)
    counts = Counter(labels)
    needs, target = class_targets(counts, cfg)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in zip(texts, labels):
        by_label[label].append(text)
    if "back_translation" in cfg.methods and translator is None:
        bt = cfg.back_translation
        if not bt.forward_model or not bt.backward_model:
            raise ModelError("augment.methods includes back_translation: set augment.back_translation.forward_model "
                             "and backward_model (local folders or hub ids of seq2seq translation models)")
        translator = BackTranslator(bt.forward_model, bt.backward_model, bt.batch_size,
                                    forward_lang=bt.forward_lang, backward_lang=bt.backward_lang)
    seen = {_normalise(t) for t in texts}
    new_texts, new_labels, added, dropped = [], [], {}, 0
    for label in sorted(needs, key=lambda label: counts[label]):  # rarest first
        need = needs[label]
        if need <= 0:
            continue
        sources = by_label[label]
        candidates: list[str] = []
        rounds = 0
        while len(candidates) < need and rounds < cfg.max_per_example:
            order = sources[:]
            rng.shuffle(order)
            order = order[: need - len(candidates)]
            batch: list[str | None] = []
            if "numbers" in cfg.methods:
                batch += [substitute_numbers(t, rng) for t in order]
            if translator is not None and "back_translation" in cfg.methods:
                batch += translator(order)
            for text in batch:
                if text and _normalise(text) not in seen:
                    seen.add(_normalise(text))
                    candidates.append(text)
                else:
                    dropped += 1
            rounds += 1
        flags = _near_duplicates(candidates, sources, cfg.near_duplicate_threshold)
        kept = [c for c, near in zip(candidates, flags) if not near][:need]
        dropped += len(candidates) - len(kept)
        new_texts += kept
        new_labels += [label] * len(kept)
        added[label] = len(kept)
        if progress:
            progress(len(kept))
    return new_texts, new_labels, AugmentReport(added, dropped, target)
