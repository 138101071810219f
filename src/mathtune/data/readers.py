"""Read CSV, JSONL and Parquet files into DataFrames of strings, with errors that point at the row.

All columns are read as text (``NA`` stays the string ``NA``; the MAP data uses it as a label).
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..errors import DataError

_BYTES_LITERAL = re.compile(r"""^\s*b(['"]).*\1\s*$""", re.DOTALL)


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    name = path.name.lower().removesuffix(".gz")
    for suffix, kind in ((".csv", "csv"), (".tsv", "csv"), (".jsonl", "jsonl"), (".json", "jsonl"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    raise DataError(f"{path}: cannot tell the format from the file name; use .csv, .jsonl or .parquet, or set data.format")


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Decode a (possibly gzipped) text file; a bad byte is reported with its line number."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.end].hex()
        raise DataError(
            f"{path}: line {line} has bytes that are not valid {encoding} (0x{bad} at byte {exc.start}). "
            f"Re-save the file as UTF-8, or set data.encoding (e.g. latin-1) / --encoding to the file's encoding."
        ) from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r}") from None


def _existing(path: str | Path, fmt: str) -> tuple[Path, str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path, detect_format(path, fmt)


def _csv_sep(path: Path) -> str:
    return "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, missing ones empty (what the CSV reader gives)."""
    return frame.astype(str).where(frame.notna(), "")


def read_table(path: str | Path, fmt: str = "auto", encoding: str = "utf-8") -> pd.DataFrame:
    path, kind = _existing(path, fmt)
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types
            raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
        return _as_text(frame)
    text = read_text(path, encoding)
    if kind == "csv":
        try:
            return pd.read_csv(io.StringIO(text), sep=_csv_sep(path), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{path}: not a valid CSV file ({exc})") from None
    return _read_jsonl(path, text)


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(records[-1], dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
    frame = pd.DataFrame.from_records(records)
    return frame.map(lambda v: "" if v is None else (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)))


def require_columns(frame: pd.DataFrame, columns: list[str], path: str | Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (the file has: {have}).{(' ' + hint) if hint else ''}")


def decode_bytes_literal(text: str) -> str:
    """``b'Solve 2x = 4.\\n'`` -> ``Solve 2x = 4.`` (rows of the Kaggle topic data stored this way)."""
    if not _BYTES_LITERAL.match(text):
        return text
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return text


def is_bytes_literal(text: str) -> bool:
    return bool(_BYTES_LITERAL.match(text)) and decode_bytes_literal(text) != text


def clean_texts(values: list[str]) -> list[str]:
    return [decode_bytes_literal(v) for v in values]


def check_nonempty(texts: list[str], column: str, path: str | Path, first_row: int = 1) -> None:
    """``first_row``: the data-row number of texts[0] (a chunk of a streamed file starts later)."""
    empty = [i + first_row for i, t in enumerate(texts) if not t.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DataError(
            f"{path}: column {column} is empty in {len(empty)} row(s): data row {shown}. Fill or remove those rows."
        )


# The longest line a CSV row may have: a longer one is not a question or a product record, and pandas' parser held
# a 50 MB field as gigabytes of memory before any check could see it.
MAX_LINE_BYTES = 1 << 20


def check_line_lengths(path: Path, limit: int = MAX_LINE_BYTES) -> None:
    """DataError naming the first line of ``path`` longer than ``limit`` bytes (read in blocks, gzip too)."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    line, length = 1, 0
    with opener(path, "rb") as stream:
        while block := stream.read(1 << 20):
            pieces = block.split(b"\n")
            for i, piece in enumerate(pieces):
                length += len(piece)
                if length > limit:
                    raise DataError(f"{path}: line {line} is longer than {limit:,} bytes; no field of a row may be "
                                    "that long (a question, an explanation or a product's text): check the file")
                if i < len(pieces) - 1:
                    line, length = line + 1, 0


def iter_table(path: str | Path, chunk_rows: int = 10_000, fmt: str = "auto",
               encoding: str = "utf-8") -> Iterator[pd.DataFrame]:
    """The rows of a data file in chunks of ``chunk_rows``, without holding the whole file: CSV/TSV (gzip too) and
    Parquet stream; JSON lines and arrays are read whole, then cut."""
    path, kind = _existing(path, fmt)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield _as_text(batch.to_pandas())
        except Exception as exc:  # pyarrow raises many types
            raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
        return
    if kind != "csv":
        frame = read_table(path, fmt, encoding)
        for start in range(0, max(len(frame), 1), chunk_rows):
            yield frame.iloc[start:start + chunk_rows].reset_index(drop=True)
        return
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding  # a BOM is not part of a name
    check_line_lengths(path)
    try:
        for frame in pd.read_csv(path, sep=_csv_sep(path), dtype=str, keep_default_na=False, chunksize=chunk_rows,
                                 encoding=enc, compression="infer"):
            yield frame
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text (byte {exc.start} of a chunk); save it as UTF-8 or pass its "
                        "encoding") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a valid CSV file ({exc})") from None


def count_rows(path: str | Path) -> int | None:
    """Data rows of a plain CSV/TSV file, counted by lines (for progress; quoted line breaks make it an estimate)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv"):
        return None
    with open(path, "rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - 1, 0)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write atomically in the format the suffix names."""
    from ..io import atomic_path

    path = Path(path)
    kind = detect_format(path)
    with atomic_path(path) as tmp:
        if kind == "csv":
            frame.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
        elif kind == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False, compression="gzip" if path.suffix == ".gz" else None)
        else:
            frame.to_parquet(tmp, index=False)
