"""``skilltrain extract``: job-ad text in, ranked ESCO skills per sentence out.

Input: TEXT arguments, ``--input`` files (.txt = one ad, .jsonl, .parquet;
``-`` = stdin) or piped stdin. Output: one row per (document, sentence) with
the top-k skills as list columns (see ``skilltrain.extraction.documents.OUTPUT_SCHEMA``),
to ``--out`` (.jsonl / .parquet), else a table on a terminal or JSONL on a pipe.

Exit codes: 0 all input processed; 1 some records were skipped (each listed on
stderr with its file and line/row; the valid ones are written); 2 nothing could
be done (bad model dir, empty input, unreadable file, bad flag), one line on stderr.

``--batch`` (implied by ``--actors`` / ``--address``) runs the same extraction
on Ray Data over Parquet, writing part files into the ``--out`` directory.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

from skillgen.common import UserError, check_output_dir, check_output_file, load_skills
from skillgen.common import ESCO_HELP
from skillgen.common import path_or_uri
from skilltrain.extraction.backend_names import BACKENDS, DEFAULT_CPU_BACKEND, DEFAULT_GPU_BACKEND
from skilltrain.extraction.documents import (INPUT_FORMATS, JsonlSink, documents_table, is_extract_output, iter_documents,
                                             open_sink, print_table)
from skilltrain.extraction.splitting import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP

HELP = "extract ESCO skills from job-ad text (arguments, stdin, .txt, JSONL, Parquet; Ray Data batch mode)"
DESCRIPTION = (
    "Split job ads into sentences (bullets, line breaks, semicolons; boilerplate skipped; long sentences windowed) "
    "and rank every ESCO skill per sentence with the bi-encoder. Output: one row per (document, sentence) with "
    "skill_ids / labels / scores list columns. Exit 1 when some input records were skipped (listed on stderr), "
    "2 when nothing could be processed."
)
CHUNK_DOCS = 512
MAX_PROBLEMS_SHOWN = 20


def add_diversity_argument(parser) -> None:
    """``--diversity S``, shared by ``eval`` and ``extract``: the coverage-aware top-k at strength S (implies --diverse)."""
    parser.add_argument("--diversity", type=float, default=None, metavar="S",
                        help="coverage-aware top-k at this strength (>= 0; implies --diverse; default: the model's, chosen "
                             "on validation): higher prefers skills from different words and near-synonyms less")


def merge_diversity(args: argparse.Namespace) -> None:
    """Fold ``--diversity S`` into ``args.diverse`` (a strength asks for the coverage-aware top-k), after checking it."""
    if args.diversity is None:
        return
    if not args.diversity >= 0:
        raise UserError(f"--diversity must be >= 0, got {args.diversity}")
    if args.diverse is False:
        raise UserError("--diversity asks for the coverage-aware top-k, --no-diverse turns it off: give one of them")
    args.diverse = args.diversity


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="*", metavar="TEXT", help="job-ad text(s) to extract from (each one document)")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="PATH",
                        help="input file, repeatable: .txt (one ad), .jsonl/.ndjson, .parquet (file or directory); '-' = stdin")
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default="auto", help="override the format guessed from the extension (stdin: txt or jsonl)")
    parser.add_argument("--text-field", "--text-column", dest="text_field", default="text", help="JSONL field / Parquet column holding the text")
    parser.add_argument("--id-field", "--id-column", dest="id_field", default="id",
                        help="JSONL field / Parquet column kept as doc_id when present (else a hash of the text)")
    parser.add_argument("--out", type=path_or_uri, default=None,
                        help="output .jsonl or .parquet (with --batch: a new directory of Parquet parts, local or s3://); default: stdout")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out file that is not an earlier extract output (with --batch: a non-empty --out directory)")
    parser.add_argument("--format", choices=("auto", "table", "jsonl"), default="auto", dest="stdout_format",
                        help="stdout format without --out: auto = table on a terminal, JSONL otherwise")
    parser.add_argument("--model", type=Path, default=None, help="encoder directory or a name: minilm, mpnet (installed separately, see README); default: minilm, the bundled all-MiniLM-L6-v2")
    parser.add_argument("--esco", type=Path, default=None, help=ESCO_HELP)
    parser.add_argument("--top-k", type=_positive_int, default=5, help="skills per sentence")
    parser.add_argument("--min-score", type=float, default=None, help="drop skills with cosine score below this")
    parser.add_argument("--no-split", dest="split", action="store_false", help="treat each document as one sentence (benchmark protocol)")
    parser.add_argument("--exhaustive", action="store_true", default=None,
                        help="token-attention models: score every skill with token attention instead of re-ranking the "
                             "model's C pooled candidates (two-stage, the default; C is in the model's skilltrain_scoring.json)")
    parser.add_argument("--diverse", action=argparse.BooleanOptionalAction, default=None,
                        help="token-attention models: coverage-aware top-k (skills found in different parts of the sentence) "
                             "on / off (default: what the model saved)")
    add_diversity_argument(parser)
    parser.add_argument("--max-words", type=_positive_int, default=DEFAULT_MAX_WORDS, help="longer sentences are cut into overlapping word windows")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="words shared by consecutive windows")
    parser.add_argument("--max-seq-length", type=_positive_int, default=None, help="token limit per sentence (default: the model's)")
    parser.add_argument("--encode-batch-size", type=_positive_int, default=None, help="sentences per forward pass (default: 32 on CPU, 512 on GPU)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help=f"how sentences are encoded (default: {DEFAULT_CPU_BACKEND} on CPU, {DEFAULT_GPU_BACKEND} on GPU; "
                             "torch-fp32 = exactly what `skilltrain eval` scores; onnx-* need the 'fast' extra)")
    parser.add_argument("--device", default=None, help="single-process mode: cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--bf16", action="store_true", help="same as --backend torch-bf16")
    parser.add_argument("--threads", type=_positive_int, default=None, help="torch threads in single-process mode (default: torch's, = cores)")
    batch = parser.add_argument_group("batch mode (Ray Data)")
    batch.add_argument("--batch", action="store_true", help="run on Ray Data: Parquet in, Parquet part files out")
    batch.add_argument("--actors", type=_positive_int, default=None, help="actor pool size, each holding the model and index (implies --batch; default 1)")
    batch.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs reserved per actor (= its torch threads)")
    batch.add_argument("--rows-per-batch", type=_positive_int, default=256, help="documents per map_batches call")
    batch.add_argument("--address", default=None, help="Ray cluster address, e.g. ray://head:10001 or auto (implies --batch; default: $RAY_ADDRESS, else a private local Ray instance)")


def _validate(args: argparse.Namespace) -> None:
    """Everything checkable before the model loads or anything is written."""
    if not 0 <= args.overlap < args.max_words:
        raise UserError(f"--overlap must be >= 0 and < --max-words ({args.max_words}), got {args.overlap}")
    merge_diversity(args)
    batch = args.batch or args.actors or args.address
    if args.out is not None and batch:
        inputs = [("--input", i) for i in args.input if i != "-"]
        check_output_dir(args.out, "--out", overwrite=args.overwrite, inputs=inputs)
    elif args.out is not None:
        _check_out_file(args)
    from skilltrain.model import check_encoder_dir, default_model_dir
    from skilltrain.scoring import ScoringConfig, wants_diverse

    model_dir = check_encoder_dir(args.model if args.model is not None else default_model_dir())
    if wants_diverse(args.diverse) and not ScoringConfig.load(model_dir).token_level:
        raise UserError(f"--diverse: {model_dir} ranks pooled; the coverage-aware top-k needs a token-attention model")
    skills = load_skills(args.esco).height  # what ranking all skills means; the extractor loads it again (cached)
    if args.top_k > skills:
        raise UserError(f"--top-k {args.top_k}: the taxonomy has {skills} skills; use at most {skills}")


def _check_out_file(args: argparse.Namespace) -> None:
    out = args.out
    if isinstance(out, str):
        raise UserError(f"--out {out}: object storage output needs --batch (Ray Data writes the part files there)")
    if out.expanduser().is_dir():
        raise UserError(f"--out {out}: is a directory; give a .jsonl or .parquet file (a directory of Parquet parts takes --batch)")
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".parquet", ".pq"):
        raise UserError(f"--out {out}: unknown output format '{suffix or '(none)'}'; use .jsonl or .parquet")
    if any(i != "-" and Path(i).expanduser().resolve() == out.expanduser().resolve() for i in args.input):
        raise UserError(f"--out {out}: is also an --input; write the output somewhere else")
    check_output_file(out, "--out", overwrite=args.overwrite, is_own=is_extract_output,
                      own_kind="an earlier 'skilltrain extract' output")


def _report(problems: list, shown: list[int]) -> None:
    for problem in problems:
        if shown[0] < MAX_PROBLEMS_SHOWN:
            print(f"skilltrain: warning: skipped {problem}", file=sys.stderr)
        shown[0] += 1
    problems.clear()


def run(args: argparse.Namespace) -> int:
    _validate(args)
    if args.batch or args.actors or args.address:
        return _run_batch(args)
    try:
        return _run_single(args)
    except BrokenPipeError:  # `skilltrain extract ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run_single(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    inputs = list(args.input)
    if not args.text and not inputs:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("no input: pass TEXT, --input PATH, or pipe text on stdin")
        inputs = ["-"]
    problems: list = []
    shown = [0]
    docs = iter_documents(args.text, inputs, input_format=args.input_format, text_field=args.text_field,
                          id_field=args.id_field, problems=problems)
    first = next(docs, None)  # fail on empty input before paying for the model
    if first is None:
        if problems:  # nothing can be processed: exit 2, one line, like any other unusable input
            more = f"; {len(problems) - 1} more like it" if len(problems) > 1 else ""
            raise UserError(f"no valid input records: {problems[0]}{more}")
        raise UserError("no input text (the input is empty)")

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from skilltrain.extraction.extractor import SkillExtractor

    extractor = SkillExtractor.from_pretrained(
        args.model, args.esco, max_seq_length=args.max_seq_length, batch_size=args.encode_batch_size,
        max_words=args.max_words, overlap=args.overlap, backend=args.backend, bf16=args.bf16, device=args.device,
        progress=sys.stderr.isatty(),
    )
    table_mode = args.out is None and (args.stdout_format == "table" or (args.stdout_format == "auto" and sys.stdout.isatty()))
    sink = None if table_mode else (open_sink(args.out) if args.out is not None else JsonlSink(stream=sys.stdout))
    tables = []
    n_docs = n_rows = 0
    all_docs = itertools.chain([first], docs)
    try:
        while True:
            chunk = list(itertools.islice(all_docs, CHUNK_DOCS))
            _report(problems, shown)
            if not chunk:
                break
            table = documents_table(extractor, chunk, top_k=args.top_k, min_score=args.min_score, split=args.split,
                                    exhaustive=args.exhaustive, diverse=args.diverse)
            n_docs += len(chunk)
            n_rows += table.num_rows
            if sink is None:
                tables.append(table)
            else:
                sink.write(table)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if sink is not None:
        sink.close()
    else:
        import pyarrow as pa

        print_table(pa.concat_tables(tables))
    elapsed = time.perf_counter() - started
    where = f" -> {args.out}" if args.out is not None else ""
    if args.out is not None or table_mode or not sys.stderr.isatty() or shown[0]:
        print(f"skilltrain: {n_rows} sentence(s) from {n_docs} document(s) in {elapsed:.1f} s{where}", file=sys.stderr)
    if shown[0]:
        if shown[0] > MAX_PROBLEMS_SHOWN:
            print(f"skilltrain: warning: ... and {shown[0] - MAX_PROBLEMS_SHOWN} more skipped record(s)", file=sys.stderr)
        print(f"skilltrain: error: {shown[0]} input record(s) skipped (see above); the other {n_docs} were processed", file=sys.stderr)
        return 1
    return 0


def _run_batch(args: argparse.Namespace) -> int:
    from skilltrain.extraction.bulk import run_batch

    if args.out is None:
        raise UserError("--batch needs --out DIR (a new directory for the Parquet part files)")
    if args.text:
        raise UserError("--batch reads Parquet files given with --input, not TEXT arguments")
    result = run_batch(
        args.input, args.out, overwrite=args.overwrite, model_dir=args.model, taxonomy=args.esco, text_field=args.text_field, id_field=args.id_field,
        top_k=args.top_k, min_score=args.min_score, split=args.split, actors=args.actors or 1,
        cpus_per_actor=args.cpus_per_actor, rows_per_batch=args.rows_per_batch, address=args.address,
        max_seq_length=args.max_seq_length, encode_batch_size=args.encode_batch_size, max_words=args.max_words,
        overlap=args.overlap, backend=args.backend, bf16=args.bf16, progress=sys.stderr.isatty(),
        exhaustive=args.exhaustive, diverse=args.diverse,
    )
    print(f"skilltrain: {result.rows} sentence(s) from {result.documents - result.skipped} document(s) in "
          f"{result.seconds:.1f} s ({result.rows / max(result.seconds, 1e-9):.0f} sentences/s) -> {result.out_dir}", file=sys.stderr)
    if result.skipped:
        print(f"skilltrain: error: {result.skipped} document(s) with a null or empty text were skipped", file=sys.stderr)
        return 1
    return 0
