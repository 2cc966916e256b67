"""Batch extraction on Ray Data: Parquet in, Parquet out, laptop to cluster.

Why Ray Data: the corpus is streamed in blocks (never fully in memory), the
model is loaded once per actor (a callable class in an actor pool,
``concurrency=N``), and the same command runs on a local Ray instance or on a
cluster given ``--address``.

The skill index is built (or loaded from its cache) once on the driver and
shipped to the actors through the object store, so N actors never re-encode
the 13,896 labels and workers need no shared disk for the cache. The model
directory must be readable at the same path on every node (shared storage or
baked into the image), and the ``skilltrain`` package installed there.

Output rows follow :data:`skilltrain.extraction.documents.OUTPUT_SCHEMA`, exactly as in
single-process mode, written as ``part-*.parquet`` files into ``--out`` (a
directory). Documents whose text is null or empty are skipped (the driver
reports how many); a malformed Parquet file fails the job.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from skillgen.common import UserError
from skillgen.common import init_ray
from skillgen.common import Location, check_output_dir, resolve
from skilltrain.extraction.documents import PARQUET_SUFFIXES, Document, _id_value, documents_table

log = logging.getLogger(__name__)

DEFAULT_ROWS_PER_BATCH = 256



@dataclass(frozen=True)
class BatchResult:
    out_dir: Path | str
    documents: int
    skipped: int
    rows: int
    seconds: float


class ExtractActor:
    """Ray Data callable class: holds the encoder and the skill index, maps document batches to sentence rows."""

    def __init__(self, model_dir: str, index_ref: list, options: dict[str, Any]):
        import numpy as np
        import polars as pl
        import ray
        import torch

        from skilltrain.extraction.extractor import SkillExtractor
        from skilltrain.model import BiEncoder
        from skilltrain.ranking import SkillIndex

        payload = index_ref[0]
        if isinstance(payload, ray.ObjectRef):
            payload = ray.get(payload)
        torch.set_num_threads(max(1, int(options.get("threads", 1))))
        model = BiEncoder.from_pretrained(model_dir, options.get("max_seq_length"))
        skills = pl.DataFrame({"skill_id": payload["skill_ids"], "label": payload["labels"]})
        index = SkillIndex(skills, np.asarray(payload["embeddings"], dtype=np.float32))
        self.extractor = SkillExtractor.with_index(
            model, Path(model_dir), index, backend=options["backend"], device="cpu", batch_size=options["batch_size"],
            max_words=options["max_words"], overlap=options["overlap"],
        )
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        o = self.options
        texts = batch.column(o["text_field"]).to_pylist()
        ids = batch.column(o["id_field"]).to_pylist() if o["id_field"] in batch.column_names else [None] * len(texts)
        docs = [Document(_id_value(i, t), t) for t, i in zip(texts, ids) if t is not None and t.strip()]
        return documents_table(self.extractor, docs, top_k=o["top_k"], min_score=o["min_score"], split=o["split"],
                               exhaustive=o["exhaustive"], diverse=o["diverse"])


def parquet_files(inputs: Sequence[str | Path]) -> list[Location]:
    """Every Parquet file named or inside a named directory (local or s3://...); one-line errors for anything else."""
    files: list[Location] = []
    for item in inputs:
        if str(item) == "-":
            raise UserError("--batch reads Parquet files, not stdin")
        path = resolve(Path(item).expanduser() if isinstance(item, Path) else item, "--input")
        if not path.exists():
            raise UserError(f"{path}: input does not exist")
        if not path.is_file():
            found = [p for p in path.list(recursive=True) if Path(p.name).suffix.lower() in PARQUET_SUFFIXES]
            if not found:
                raise UserError(f"{path}: directory holds no .parquet files")
            files.extend(found)
        elif Path(path.name).suffix.lower() in PARQUET_SUFFIXES:
            files.append(path)
        else:
            raise UserError(f"{path}: --batch reads Parquet (.parquet file or directory); run without --batch for .txt/.jsonl")
    if not files:
        raise UserError("no input: --batch needs Parquet input paths (--input PATH)")
    if len({f.fs.type_name for f in files}) > 1:
        raise UserError("--input: all inputs must be on one filesystem (all local or all on the same object store)")
    return files


def _parquet(path: Location) -> pq.ParquetFile:
    return pq.ParquetFile(path.fs.open_input_file(path.path))


def _check_schema(files: list[Location], text_field: str) -> None:
    for path in files:
        try:
            schema = _parquet(path).schema_arrow
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        if text_field not in schema.names:
            raise UserError(f"{path}: no '{text_field}' column (found: {', '.join(schema.names) or 'none'}); use --text-column")


def _count_documents(files: list[Location], text_field: str) -> tuple[int, int]:
    """(rows, rows with a null or empty text), from column reads on the driver."""
    import pyarrow.compute as pc

    total = skipped = 0
    for path in files:
        pf = _parquet(path)
        for batch in pf.iter_batches(columns=[text_field], batch_size=65536):
            col = batch.column(0)
            total += len(col)
            skipped += col.null_count + int(pc.sum(pc.equal(pc.utf8_trim_whitespace(col.fill_null("x")), "")).as_py() or 0)
    return total, skipped


def run_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    model_dir: str | Path | None = None,
    taxonomy: str | Path | None = None,
    text_field: str = "text",
    id_field: str = "id",
    top_k: int = 5,
    min_score: float | None = None,
    split: bool = True,
    actors: int = 1,
    cpus_per_actor: float = 1,
    rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
    address: str | None = None,
    max_seq_length: int | None = None,
    encode_batch_size: int | None = None,
    max_words: int | None = None,
    overlap: int | None = None,
    backend: str | None = None,
    bf16: bool = False,
    progress: bool = True,
    exhaustive: bool | None = None,
    diverse: bool | float | None = None,
) -> BatchResult:
    """Extract skills for every document of Parquet ``inputs`` into ``out_dir/part-*.parquet``.

    ``out_dir`` must be new or empty; ``overwrite`` replaces what it holds (never merges with it).
    Actors rank as single-process extraction does: the model's saved scoring (C, coverage default) unless
    ``exhaustive`` / ``diverse`` say otherwise.
    """
    from skilltrain.extraction.extractor import SkillExtractor
    from skilltrain.extraction.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP

    if actors < 1:
        raise UserError(f"--actors must be >= 1 (got {actors})")
    files = parquet_files(inputs)
    _check_schema(files, text_field)
    output = check_output_dir(out_dir, "--out", overwrite=overwrite, inputs=[("--input", f) for f in files])
    out = output.location
    documents, skipped = _count_documents(files, text_field)

    started = time.perf_counter()
    # the driver builds the index and checks (or falls back from) the backend once; actors run on CPU
    extractor = SkillExtractor.from_pretrained(model_dir, taxonomy, max_seq_length=max_seq_length, device="cpu",
                                               backend=backend or ("torch-bf16" if bf16 else None), progress=progress)
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        # The shared rule (given address, $RAY_ADDRESS, else a private local instance). Locally, an actor
        # pool holding every core would starve the read/write tasks (a hang, not an error): the private
        # instance gets one logical CPU more than the actors reserve (ignored when joining a cluster).
        init_ray(address, include_dashboard=False, log_to_driver=progress, configure_logging=False,
                 num_cpus=max(os.cpu_count() or 1, math.ceil(actors * cpus_per_actor) + 1))
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        payload = ray.put(
            {"skill_ids": extractor._skill_ids, "labels": extractor._labels, "embeddings": extractor.index.embeddings}
        )
        options = {
            "text_field": text_field,
            "id_field": id_field,
            "top_k": top_k,
            "min_score": min_score,
            "split": split,
            "threads": max(1, int(cpus_per_actor)),
            "max_seq_length": max_seq_length,
            "batch_size": encode_batch_size,
            "max_words": max_words or DEFAULT_MAX_WORDS,
            "overlap": DEFAULT_OVERLAP if overlap is None else overlap,
            "backend": extractor.backend,
            "exhaustive": exhaustive,
            "diverse": diverse,
        }
        model_path = str(extractor_model_dir(model_dir))
        del extractor
        names = _parquet(files[0]).schema_arrow.names
        columns = [text_field] + ([id_field] if id_field in names and id_field != text_field else [])
        # enough blocks that every actor gets work even from a single small file
        blocks = max(len(files), actors * 4, math.ceil(documents / 10_000))
        # Ray merges small files into one block, and one block goes to one actor: split them again
        ds = ray.data.read_parquet([f.path for f in files], filesystem=files[0].fs, override_num_blocks=blocks).select_columns(columns).repartition(blocks)
        ds = ds.map_batches(
            ExtractActor,
            fn_constructor_kwargs={"model_dir": model_path, "index_ref": [payload], "options": options},
            batch_size=rows_per_batch,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
        )
        output.clear()  # --overwrite: the folder's old files go; the new parts are never mixed with them
        ds.write_parquet(out.path, filesystem=out.fs)
    finally:
        if started_ray:
            ray.shutdown()
    rows = sum(_parquet(p).metadata.num_rows for p in out.list("*.parquet"))
    return BatchResult(out.local_path if out.is_local else out.uri, documents, skipped, rows, time.perf_counter() - started)


def extractor_model_dir(model_dir: str | Path | None) -> Path:
    from skilltrain.model import check_encoder_dir, default_model_dir

    return check_encoder_dir(model_dir if model_dir is not None else default_model_dir()).resolve()
