"""Readers and writers of ``skilltrain extract``: documents in, one row per sentence out.

Why a module of its own: users feed anything from one pasted sentence to
millions of ads in Parquet, and a corpus always has a few bad records. A bad
record (invalid JSON, no text field, empty text, a non-UTF-8 line) becomes an
:class:`InputProblem` with its file and 1-based line (JSONL) or row (Parquet),
and the rest is still processed; problems that make a whole input unusable
(missing file, empty file, a non-UTF-8 ``.txt``, a Parquet file without the
text column) are a :class:`UserError`.

Inputs (format from the extension, or ``input_format``):

* literal texts (CLI arguments): one document each, ``doc_id`` ``arg1``, ``arg2`` ...;
* ``.txt`` / stdin: the whole file is one job ad, ``doc_id`` = the path / ``stdin``;
* ``.jsonl`` / ``.ndjson``: one JSON object per line, text in ``text_field``;
* ``.parquet``: text in the ``text_field`` column, read in record batches.

For JSONL and Parquet, ``doc_id`` is the ``id_field`` value (as a string) when
the record has one, else the first 16 hex digits of the SHA-256 of the text,
so single-process and Ray batch mode name the same document the same way.

Output: :data:`OUTPUT_SCHEMA`, one row per (document, sentence), the top-k
skills as parallel list columns, best first, with each skill's evidence spans
(token-attention models; character offsets into the row's ``sentence``). Rows are written as JSONL or
Parquet (by extension) to a temporary file renamed into place at the end, so
an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from skillgen.common import UserError

INPUT_FORMATS = ("auto", "txt", "jsonl", "parquet")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")

#: one evidence span of a skill (token-attention models): ``sentence[start:end] == text``, ``weight`` its share of the score
EVIDENCE_TYPE = pa.struct([pa.field("start", pa.int32()), pa.field("end", pa.int32()), pa.field("text", pa.string()),
                           pa.field("weight", pa.float32())])

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string()),
        pa.field("sentence_index", pa.int32()),
        pa.field("sentence", pa.string()),
        pa.field("skill_ids", pa.list_(pa.string())),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float32())),
        pa.field("evidence", pa.list_(pa.list_(EVIDENCE_TYPE))),  # per skill, parallel to labels (empty lists: pooled model)
    ]
)


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str


@dataclass(frozen=True)
class InputProblem:
    """A skipped input record: where it is and why."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.message}"


def text_id(text: str) -> str:
    """Content-derived document id for records without an id field."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _id_value(value: object, text: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return text_id(text)
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def detect_format(path: Path, input_format: str = "auto") -> str:
    if input_format != "auto":
        return input_format
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES or path.is_dir():
        return "parquet"
    return "txt"


def _decode_whole(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{source}: not UTF-8 (invalid byte at line {line}); re-save the file as UTF-8") from None


def read_text_document(raw: bytes, source: str) -> Document:
    """A whole ``.txt`` file or stdin as one job ad."""
    text = _decode_whole(raw, source)
    if not text.strip():
        raise UserError(f"{source}: no input text (empty or only whitespace)")
    return Document(source, text)


def iter_jsonl(stream: IO[bytes], source: str, text_field: str, id_field: str, problems: list[InputProblem]) -> Iterator[Document]:
    """Documents of a JSONL stream; bad lines go to ``problems`` with their line number."""
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            problems.append(InputProblem(source, number, f"not UTF-8 (invalid byte at column {exc.start + 1})"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            # json's messages may end in "starting at": the column is what it starts at
            what = re.sub(r"\s+(starting )?at$", "", exc.msg)
            problems.append(InputProblem(source, number, f"invalid JSON ({what} at column {exc.colno})"))
            continue
        if not isinstance(record, dict):
            problems.append(InputProblem(source, number, f"expected a JSON object, got {type(record).__name__}"))
            continue
        if text_field not in record:
            problems.append(InputProblem(source, number, f"no '{text_field}' field (use --text-field to pick another)"))
            continue
        text = record[text_field]
        if not isinstance(text, str):
            problems.append(InputProblem(source, number, f"'{text_field}' is {type(text).__name__}, expected a string"))
            continue
        if not text.strip():
            problems.append(InputProblem(source, number, f"empty '{text_field}'"))
            continue
        yield Document(_id_value(record.get(id_field), text), text)


def iter_parquet(path: Path, text_field: str, id_field: str, problems: list[InputProblem], batch_rows: int = 8192) -> Iterator[Document]:
    """Documents of a Parquet file, streamed by record batch; null/empty texts go to ``problems`` (1-based row)."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise UserError(f"{path}: no '{text_field}' column (found: {', '.join(names) or 'none'}); use --text-column")
    if not (pa.types.is_string(pf.schema_arrow.field(text_field).type) or pa.types.is_large_string(pf.schema_arrow.field(text_field).type)):
        raise UserError(f"{path}: column '{text_field}' is {pf.schema_arrow.field(text_field).type}, expected strings")
    columns = [text_field] + ([id_field] if id_field in names and id_field != text_field else [])
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        texts = batch.column(text_field).to_pylist()
        ids = batch.column(id_field).to_pylist() if len(columns) == 2 else [None] * len(texts)
        for text, doc_id in zip(texts, ids):
            row += 1
            if text is None or not text.strip():
                problems.append(InputProblem(str(path), row, f"{'null' if text is None else 'empty'} '{text_field}' (row {row})"))
                continue
            yield Document(_id_value(doc_id, text), text)


def iter_documents(
    texts: Sequence[str] = (),
    inputs: Sequence[str | Path] = (),
    *,
    input_format: str = "auto",
    text_field: str = "text",
    id_field: str = "id",
    problems: list[InputProblem],
    stdin: IO[bytes] | None = None,
) -> Iterator[Document]:
    """Every document of the literal ``texts`` then of each input path (``-`` = stdin), in order."""
    for number, text in enumerate(texts, start=1):
        if text.strip():
            yield Document(f"arg{number}", text)
        else:
            problems.append(InputProblem(f"argument {number}", None, "empty text"))
    for item in inputs:
        if str(item) == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            if input_format == "jsonl":
                yield from iter_jsonl(stream, "stdin", text_field, id_field, problems)
            elif input_format == "parquet":
                raise UserError("stdin: Parquet cannot be read from stdin; pass the file path")
            else:
                yield read_text_document(stream.read(), "stdin")
            continue
        path = Path(item).expanduser()
        if not path.exists():
            raise UserError(f"{path}: input file does not exist")
        fmt = detect_format(path, input_format)
        if path.is_dir():
            if fmt != "parquet":
                raise UserError(f"{path}: is a directory (only a directory of .parquet files can be an input)")
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in PARQUET_SUFFIXES)
            if not files:
                raise UserError(f"{path}: directory holds no .parquet files")
            for file in files:
                yield from iter_parquet(file, text_field, id_field, problems)
        elif fmt == "parquet":
            yield from iter_parquet(path, text_field, id_field, problems)
        elif fmt == "jsonl":
            if path.stat().st_size == 0:
                raise UserError(f"{path}: file is empty")
            with open(path, "rb") as fh:
                yield from iter_jsonl(fh, str(path), text_field, id_field, problems)
        else:
            yield read_text_document(path.read_bytes(), str(path))


# ---- output -------------------------------------------------------------------


def results_table(doc_ids: Sequence[str], results: Sequence) -> pa.Table:
    """:data:`OUTPUT_SCHEMA` rows for ``results`` (``TextSkills``), aligned with ``doc_ids``."""
    cols: dict[str, list] = {name: [] for name in OUTPUT_SCHEMA.names}
    for doc_id, result in zip(doc_ids, results):
        for n, sentence in enumerate(result.sentences):
            cols["doc_id"].append(doc_id)
            cols["sentence_index"].append(n)
            cols["sentence"].append(sentence.sentence)
            cols["skill_ids"].append([m.skill_id for m in sentence.skills])
            cols["labels"].append([m.label for m in sentence.skills])
            cols["scores"].append([m.score for m in sentence.skills])
            cols["evidence"].append([[asdict(e) for e in m.evidence] for m in sentence.skills])
    return pa.Table.from_pydict(cols, schema=OUTPUT_SCHEMA)


def documents_table(extractor, docs: Sequence[Document], *, top_k: int = 5, min_score: float | None = None, split: bool = True,
                    exhaustive: bool | None = None, diverse: bool | float | None = None) -> pa.Table:
    """Extract ``docs`` with a :class:`~skilltrain.extraction.extractor.SkillExtractor`: the step both modes share."""
    results = extractor.extract([d.text for d in docs], top_k=top_k, min_score=min_score, split=split,
                                exhaustive=exhaustive, diverse=diverse)
    return results_table([d.doc_id for d in docs], results)


class JsonlSink:
    """JSONL rows to a stream (stdout) or to ``path`` (written under a temporary name, renamed on close)."""

    def __init__(self, path: Path | None = None, stream: IO[str] | None = None):
        self.path = path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp") if path is not None else None
        self._fh = open(self._tmp, "w", encoding="utf-8") if self._tmp is not None else (stream or sys.stdout)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            row["scores"] = [round(s, 6) for s in row["scores"]]
            row["evidence"] = [[{**e, "weight": round(e["weight"], 4)} for e in spans] for spans in row["evidence"]]
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += table.num_rows

    def close(self) -> None:
        if self._tmp is not None:
            self._fh.close()
            os.replace(self._tmp, self.path)
        else:
            self._fh.flush()

    def abort(self) -> None:
        if self._tmp is not None:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)


class ParquetSink:
    """Parquet row groups to ``path`` (temporary name until :meth:`close`)."""

    def __init__(self, path: Path):
        self.path = path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, OUTPUT_SCHEMA, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)


def is_extract_output(path: Path) -> bool:
    """An earlier ``skilltrain extract --out`` file: its columns (Parquet) or first record's keys (JSONL) are ours."""
    core = {"doc_id", "sentence_index", "sentence", "skill_ids"}
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return core <= set(pq.read_schema(path).names)
        with open(path, "rb") as fh:
            first = next((line for line in fh if line.strip()), b"")
        record = json.loads(first)
    except (OSError, ValueError, pa.ArrowException):
        return False
    return isinstance(record, dict) and core <= set(record)


def open_sink(path: Path) -> JsonlSink | ParquetSink:
    """A sink chosen by the extension of ``path`` (.jsonl/.ndjson or .parquet/.pq)."""
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES + PARQUET_SUFFIXES:
        raise UserError(f"{path}: unknown output format '{suffix or '(none)'}'; use .jsonl or .parquet")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return ParquetSink(path) if suffix in PARQUET_SUFFIXES else JsonlSink(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write output ({exc.strerror})") from None


def print_table(table: pa.Table, console=None) -> None:
    """A readable rich table for a terminal: one line per (sentence, skill)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    view = Table(show_lines=False, header_style="bold")
    for name, kw in (("doc", {}), ("#", {"justify": "right"}), ("sentence", {"overflow": "fold", "ratio": 3}),
                     ("ESCO skill", {"overflow": "fold", "ratio": 2}), ("score", {"justify": "right"})):
        view.add_column(name, **kw)
    previous_doc = None
    for row in table.to_pylist():
        labels = row["labels"] or ["(none above --min-score)"]
        scores = [f"{s:.3f}" for s in row["scores"]] or [""]
        for n, (label, score) in enumerate(zip(labels, scores)):
            first = n == 0
            doc = row["doc_id"] if first and row["doc_id"] != previous_doc else ""
            view.add_row(doc, str(row["sentence_index"]) if first else "", row["sentence"] if first else "", label, score,
                         end_section=n == len(labels) - 1)
        previous_doc = row["doc_id"]
    console.print(view)

