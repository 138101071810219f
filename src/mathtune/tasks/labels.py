"""Label maps: how labels appear in files (values) and how people read them (names)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError


@dataclass(frozen=True)
class LabelMap:
    values: list[str]  # as written in data and submission files, in id order
    names: list[str]   # display names, in id order
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.values) != len(self.names):
            raise ValueError("values and names must have the same length")
        index = {v: i for i, v in enumerate(self.values)}
        index.update({n: i for i, n in enumerate(self.names) if n not in index})
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def infer(cls, raw: Sequence[str], default_names: Sequence[str] | None = None,
              names: Sequence[str] | None = None) -> LabelMap:
        """Build from training labels.

        Integer labels 0..K-1 with K default names (the Kaggle topic data) keep their ids and get the names;
        labels that are names get ids in the order of the names given; anything else gets sorted ids.
        """
        distinct = sorted(set(raw))
        named = list(names or default_names or [])
        if named and all(v.strip().lstrip("-").isdigit() for v in distinct):
            ids = sorted(int(v) for v in distinct)
            if ids[0] >= 0 and ids[-1] < len(named):
                return cls([str(i) for i in range(len(named))], named)
        if named and set(distinct) <= set(named):
            return cls(list(named), list(named))
        if names:
            raise DataError(f"recipe labels {list(names)} do not match the data's labels {distinct[:20]}")
        return cls(distinct, distinct)

    def encode(self, raw: Sequence[str], path: str | Path = "data", allow_unknown: bool = False) -> list[int]:
        """Label ids; an unknown label is an error naming its row, or -1 with ``allow_unknown``
        (a grouped validation split can hold labels that training never saw)."""
        ids = []
        for row, value in enumerate(raw, start=1):
            key = value.strip()
            if key not in self._index and allow_unknown:
                ids.append(-1)
                continue
            if key not in self._index:
                known = ", ".join(self.values[:20]) + (" ..." if len(self.values) > 20 else "")
                raise DataError(
                    f"{path}: data row {row} has label {value!r}, which the model never saw (known labels: {known}). "
                    "Remove or relabel the row, or retrain with it."
                )
            ids.append(self._index[key])
        return ids

    def to_dict(self) -> dict:
        return {"values": self.values, "names": self.names}

    @classmethod
    def from_dict(cls, data: dict) -> LabelMap:
        return cls(list(data["values"]), list(data["names"]))
