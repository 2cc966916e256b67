"""Bad input, as a careful user would try it, across skillgen, skilltrain and the pipeline (issue 30).

Every row of :data:`CASES` runs one command in a fresh workspace (the current directory, holding
every input the command reads) and asserts what a user sees and what is left behind:

- the exit code;
- exactly one line on stderr (log records included: a real terminal shows them), naming the
  flag, key or file the row says, and no traceback;
- the workspace byte for byte as before: a refused command writes nothing, anywhere in it (no stub
  run dir, no half-written output, no scratch folder beside an output).

Commands run in-process through their ``main(argv)`` (fast: no Ray is started by any row, since
every check happens before Ray); rows marked ``subprocess`` run the real entry point instead, for the
exit paths a process has (argparse's own errors, the interpreter's exit code).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import synthetic_skill_rows, write_esco_csv
from helpers.quality_fixture import build_run_dir

REPO = Path(__file__).resolve().parents[1]
ENTRY = {
    "skillgen": [sys.executable, "-m", "skillgen.cli"],
    "skilltrain": [sys.executable, "-m", "skilltrain.cli"],
    "pipeline": [sys.executable, "-m", "cluster.pipeline"],
}


# ---- the workspace a row runs in --------------------------------------------------------------------


class Workspace:
    """The row's current directory. ``{name}`` in a row's argv is a path here, made on first use."""

    def __init__(self, root: Path, model: Path):
        self.root = root
        self.model = model

    def path(self, rel: str) -> Path:
        return self.root / rel

    def file(self, rel: str, content: str | bytes = "") -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return path

    def dir(self, rel: str) -> Path:
        path = self.root / rel
        path.mkdir(parents=True, exist_ok=True)
        return path

    # inputs a row names in its argv
    def esco(self) -> Path:
        return write_esco_csv(self.root / "skills_en.csv", synthetic_skill_rows(40))

    def run(self) -> Path:
        """A valid generation run dir (5 real ESCO skills, 11 sentences, 2 failure records)."""
        if not (self.root / "run" / "run.json").exists():
            build_run_dir(self.root / "run")
        return self.root / "run"

    def toml(self, rel: str, text: str) -> Path:
        return self.file(rel, text)


class Argv(dict):
    """``str.format_map`` mapping: ``{esco}``, ``{run}`` build their input on first use; ``{ws}``, ``{model}`` are paths."""

    def __init__(self, ws: Workspace):
        super().__init__(ws=str(ws.root), model=str(ws.model))
        self.ws = ws

    def __missing__(self, key: str) -> str:
        return str(getattr(self.ws, key)())


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes (folders: 'dir'; links: their target)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ---- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    cli: str  # skillgen | skilltrain | pipeline
    argv: tuple[str, ...]  # with {ws}, {esco}, {run}, {model} placeholders
    says: tuple[str, ...]  # substrings of the one stderr line
    rc: int = 2
    setup: Callable[[Workspace], object] | None = None
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset
    subprocess: bool = False


def c(id: str, cli: str, argv: str | list[str], *says: str, **kw) -> Case:
    return Case(id, cli, tuple(argv.split() if isinstance(argv, str) else argv), says, **kw)


NO_KEY = {"OPENAI_API_KEY": None}
OFFLINE = "--base-url http://127.0.0.1:9/v1 --model simulator"  # port 9 (discard): nothing listens there
PIPE = "--config {ws}/p.toml --run-dir {ws}/out"


def pipeline_toml(extra: str = "", generation: str = "n_sentences = 2\nsample = 40", training: str = "workers = 1\nbatch_size = 4") -> Callable[[Workspace], object]:
    """A pipeline config in the workspace (p.toml): the simulator, 40 sampled skills, a tiny training."""
    def setup(ws: Workspace) -> None:
        ws.toml("p.toml", f"{extra}\n[generation]\nbase_url = \"simulator\"\n{generation}\n[training]\n{training}\n")
    return setup


def foreign(rel: str) -> Callable[[Workspace], object]:
    """A user's folder with their own files in it."""
    def setup(ws: Workspace) -> None:
        ws.file(f"{rel}/notes.txt", "mine")
        ws.file(f"{rel}/photos/cat.jpg", b"\xff\xd8\xff")
    return setup


BINARY = bytes(range(256)) * 4
ESCO_NO_LABEL = "conceptUri,altLabels\nhttp://x/1,foo\n"
NOT_A_ZIP = b"PK\x03\x04 this download was cut off"


def jsonl_without_text(ws: Workspace) -> None:
    ws.file("ads.jsonl", '{"body": "welding"}\n{"body": "payroll"}\n')


def fingerprinted_run(ws: Workspace) -> None:
    ws.run()  # -n 4, model smollm2


CASES: list[Case] = [
    # ---- skillgen run: inputs, credentials, endpoint, run dir: all before the run dir exists ----
    c("run-key-unset", "skillgen", "run --run-dir {ws}/r --esco {esco} --limit 2", "OPENAI_API_KEY", "not set", env=NO_KEY),
    c("run-key-empty", "skillgen", "run --run-dir {ws}/r --esco {esco} --limit 2", "OPENAI_API_KEY", "empty",
      env={"OPENAI_API_KEY": ""}),
    c("run-esco-missing", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{ws}}/nope.csv", "nope.csv", "does not exist"),
    c("run-esco-empty", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{ws}}/empty.csv", "empty.csv", "empty",
      setup=lambda ws: ws.file("empty.csv", "")),
    c("run-esco-no-label-column", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{ws}}/cols.csv", "cols.csv",
      "preferredLabel", setup=lambda ws: ws.file("cols.csv", ESCO_NO_LABEL)),
    c("run-esco-binary", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{ws}}/bin.csv", "bin.csv", "not UTF-8",
      setup=lambda ws: ws.file("bin.csv", BINARY)),
    c("run-esco-corrupt-zip", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{ws}}/esco.zip", "esco.zip",
      "not a readable ZIP", setup=lambda ws: ws.file("esco.zip", NOT_A_ZIP)),
    c("run-esco-directory", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{ws}}", "is a directory"),
    c("run-endpoint-unreachable", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/r --esco {{esco}}", "127.0.0.1:9",
      "unreachable", "--base-url"),
    c("run-run-dir-is-a-file", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/f --esco {{esco}}", "--run-dir", "is a file",
      setup=lambda ws: ws.file("f", "x")),
    c("run-run-dir-under-a-file", "skillgen", f"run {OFFLINE} --run-dir {{ws}}/f/r --esco {{esco}}", "--run-dir",
      "f is a file", setup=lambda ws: ws.file("f", "x")),
    c("run-n-zero", "skillgen", "run -n 0 --run-dir {ws}/r", "-n:", "greater than or equal to 1"),
    c("run-spend-cap-negative", "skillgen", "run --spend-cap-usd -1 --run-dir {ws}/r", "--spend-cap-usd:"),
    c("run-temperature-out-of-range", "skillgen", "run --temperature 3 --run-dir {ws}/r", "--temperature:"),
    c("run-base-url-no-scheme", "skillgen", "run --base-url localhost:8000/v1 --run-dir {ws}/r", "--base-url:", "http://"),
    c("run-api-key-env-holds-a-key", "skillgen", "run --api-key-env sk-proj-abc123 --run-dir {ws}/r", "--api-key-env:", "NAME"),
    c("run-fingerprint-names-n", "skillgen",
      "run --run-dir {run} -n 5 --model smollm2 --base-url http://127.0.0.1:9/v1 --json-schema-in json_object "
      "--price-input 0 --price-output 0",
      "different", "-n", "4 -> 5", setup=fingerprinted_run),
    c("run-config-unknown-key", "skillgen", f"run {OFFLINE} --config {{ws}}/g.toml --run-dir {{ws}}/r", "--config",
      "g.toml", "n_sentence", "did you mean n_sentences", setup=lambda ws: ws.toml("g.toml", "n_sentence = 5\n")),
    c("run-config-wrong-type", "skillgen", f"run {OFFLINE} --config {{ws}}/g.toml --run-dir {{ws}}/r", "g.toml",
      "[limits] rpm", "valid integer", setup=lambda ws: ws.toml("g.toml", '[limits]\nrpm = "fast"\n')),
    c("run-config-missing", "skillgen", "run --config {ws}/nope.toml --run-dir {ws}/r", "nope.toml", "does not exist"),
    c("run-config-bad-toml", "skillgen", "run --config {ws}/g.toml --run-dir {ws}/r", "g.toml", "not valid TOML", "line 1",
      setup=lambda ws: ws.toml("g.toml", "model = \n")),
    c("run-config-unknown-section", "skillgen", "run --config {ws}/g.toml --run-dir {ws}/r", "[sampleing]",
      "did you mean [sampling]", setup=lambda ws: ws.toml("g.toml", "[sampleing]\ntemperature = 1.0\n")),
    c("run-model-without-price", "skillgen", "run --model mystery-llm --base-url http://127.0.0.1:9/v1 --esco {esco} "
      "--run-dir {ws}/r", "mystery-llm"),
    c("run-skill-type-matches-nothing", "skillgen", f"run {OFFLINE} --skill-type nonsense --esco {{esco}} --run-dir {{ws}}/r",
      "--skill-type", "nonsense"),
    c("run-prices-missing", "skillgen", "run --prices {ws}/nope.json --run-dir {ws}/r", "nope.json"),
    c("run-prices-bad-json", "skillgen", "run --prices {ws}/prices.json --run-dir {ws}/r", "prices.json",
      setup=lambda ws: ws.file("prices.json", "{")),
    c("run-batch-max-requests-zero", "skillgen", "run --mode batch --batch-max-requests 0 --run-dir {ws}/r",
      "--batch-max-requests:"),
    c("run-int-flag-garbage", "skillgen", "run --rpm lots --run-dir {ws}/r", "--rpm", "invalid int value: 'lots'"),
    c("run-flag-typo", "skillgen", "run --sentenses 5 --run-dir {ws}/r", "unrecognized arguments: --sentenses",
      subprocess=True),
    c("estimate-esco-binary", "skillgen", "estimate --esco {ws}/bin.csv", "bin.csv", "not UTF-8",
      setup=lambda ws: ws.file("bin.csv", BINARY)),
    c("estimate-pilot-negative", "skillgen", "estimate --pilot -1 --esco {esco}", "--pilot"),
    # ---- skillgen status / report / export / repair / batch cancel: a run dir or nothing ----
    c("status-missing", "skillgen", "status {ws}/nope", "nope", "does not exist"),
    c("status-empty-dir", "skillgen", "status {ws}/empty", "no run.json", setup=lambda ws: ws.dir("empty")),
    c("report-missing", "skillgen", "report {ws}/nope", "nope", "does not exist"),
    c("report-empty-dir", "skillgen", "report {ws}/empty", "no run.json", setup=lambda ws: ws.dir("empty")),
    c("report-regular-file", "skillgen", "report {ws}/f", "is a file", setup=lambda ws: ws.file("f", "x")),
    c("report-plots-is-a-file", "skillgen", "report {run} --plots {ws}/f", "--plots", "is a file",
      setup=lambda ws: ws.file("f", "x")),
    c("report-samples-negative", "skillgen", "report {run} --samples -1", "--samples"),
    c("export-missing-run-dir", "skillgen", "export {ws}/nope {ws}/out", "nope", "does not exist"),
    c("export-into-a-users-folder", "skillgen", "export {run} {ws}/out", "out", "not empty", "notes.txt", "--overwrite",
      setup=foreign("out")),
    c("export-out-is-a-file", "skillgen", "export {run} {ws}/f", "is a file", setup=lambda ws: ws.file("f", "x")),
    c("export-out-inside-the-run-dir", "skillgen", "export {run} {run}/export", "inside run dir"),
    c("export-overwrite-would-delete-the-run-dir", "skillgen", "export {run} {ws} --overwrite", "would delete run dir"),
    c("repair-missing", "skillgen", "repair {ws}/nope", "nope", "does not exist"),
    c("batch-cancel-missing", "skillgen", "batch cancel {ws}/nope", "nope", "does not exist"),
    # ---- skilltrain fit: every input and --out before Ray, never into a user's folder or beside it ----
    c("fit-data-missing", "skilltrain", "fit --data {ws}/nope --out {ws}/m --model {model}", "--data", "nope",
      "skillgen run"),
    c("fit-data-empty-dir", "skilltrain", "fit --data {ws}/empty --out {ws}/m --model {model}", "--data", "no shards",
      setup=lambda ws: ws.dir("empty")),
    c("fit-data-is-a-file", "skilltrain", "fit --data {ws}/f --out {ws}/m --model {model}", "--data", "is a file",
      setup=lambda ws: ws.file("f", "x")),
    c("fit-out-is-a-users-folder", "skilltrain", "fit --data {run} --out {ws}/m --model {model}", "--out", "not empty",
      "--overwrite", setup=foreign("m")),
    c("fit-out-is-a-file", "skilltrain", "fit --data {run} --out {ws}/f --model {model}", "--out", "is a file",
      setup=lambda ws: ws.file("f", "x")),
    c("fit-out-under-a-file", "skilltrain", "fit --data {run} --out {ws}/f/m --model {model}", "--out", "f is a file",
      setup=lambda ws: ws.file("f", "x")),
    c("fit-out-is-the-data", "skilltrain", "fit --data {run} --out {run} --model {model} --overwrite", "--out",
      "would delete --data"),
    c("fit-out-inside-the-data", "skilltrain", "fit --data {run} --out {run}/model --model {model}", "--out",
      "inside --data"),
    c("fit-batch-size-one", "skilltrain", "fit --data {run} --out {ws}/m --batch-size 1", "--batch-size:"),
    c("fit-workers-zero", "skilltrain", "fit --data {run} --out {ws}/m --workers 0", "--workers:"),
    c("fit-lr-negative", "skilltrain", "fit --data {run} --out {ws}/m --lr -1", "--lr:"),
    c("fit-model-missing", "skilltrain", "fit --data {run} --out {ws}/m --model {ws}/nomodel", "nomodel", "does not exist"),
    c("fit-global-batch-exceeds-skills", "skilltrain", "fit --data {run} --out {ws}/m --model {model} --batch-size 4",
      "global batch 4", "3 distinct skills", "--batch-size"),
    c("fit-average-alphas-out-of-range", "skilltrain", "fit --data {run} --out {ws}/m --average-alphas 2", "--average-alphas"),
    c("fit-val-sets-unknown", "skilltrain", "fit --data {run} --out {ws}/m --val-sets foo", "--val-sets"),
    c("fit-taxonomy-pairs-binary-esco", "skilltrain",
      "fit --data {run} --out {ws}/m --model {model} --taxonomy-pairs --esco {ws}/bin.csv", "bin.csv",
      setup=lambda ws: ws.file("bin.csv", BINARY)),
    c("fit-config-json-under-a-file", "skilltrain", "fit --data {run} --out {ws}/m --model {model} --config-json {ws}/f/c.json",
      "--config-json", "f is a file", setup=lambda ws: ws.file("f", "x")),
    c("fit-storage-is-a-file", "skilltrain", "fit --data {run} --out {ws}/m --model {model} --storage {ws}/f",
      "--storage", "is a file", setup=lambda ws: ws.file("f", "x")),
    c("fit-gradcache-garbage", "skilltrain", "fit --data {run} --out {ws}/m --gradcache-chunk lots", "--gradcache-chunk"),
    c("fit-hard-negative-pool-too-small", "skilltrain",
      "fit --data {run} --out {ws}/m --model {model} --batch-size 2 --hard-negatives 5 --hard-negative-pool 2",
      "--hard-negatives", "--hard-negative-pool"),
    c("fit-required-flag-missing", "skilltrain", "fit --data {run}", "required", "--out"),
    # ---- skilltrain eval: --out checked before minutes of evaluation ----
    c("eval-out-is-a-directory", "skilltrain", "eval --model {model} --esco {esco} --out {ws}/d", "--out",
      "is a directory", setup=lambda ws: ws.dir("d")),
    c("eval-out-under-a-file", "skilltrain", "eval --model {model} --esco {esco} --out {ws}/f/r.json", "--out",
      "f is a file", setup=lambda ws: ws.file("f", "x")),
    c("eval-out-is-a-users-file", "skilltrain", "eval --model {model} --esco {esco} --out {ws}/notes.txt", "--out",
      "notes.txt", "--overwrite", setup=lambda ws: ws.file("notes.txt", "my notes")),
    c("eval-sets-unknown", "skilltrain", "eval --model {model} --sets foo", "--sets", "foo"),
    c("eval-model-missing", "skilltrain", "eval --model {ws}/nomodel", "nomodel", "does not exist"),
    c("eval-model-not-an-encoder", "skilltrain", "eval --model {ws}/d", "not an encoder directory",
      setup=lambda ws: ws.dir("d")),
    c("eval-esco-missing", "skilltrain", "eval --model {model} --esco {ws}/nope.csv", "nope.csv", "does not exist"),
    c("eval-benchmark-dir-missing", "skilltrain", "eval --model {model} --esco {esco} --benchmark-dir {ws}/nobench",
      "nobench"),
    c("eval-split-unknown", "skilltrain", "eval --split train", "--split", "invalid choice"),
    # ---- skilltrain extract: out of range, nothing to process, every --out ----
    c("extract-top-k-beyond-the-taxonomy", "skilltrain", "extract --model {model} --esco {esco} --top-k 100000 welding",
      "--top-k 100000", "40 skills"),
    c("extract-top-k-zero", "skilltrain", "extract --model {model} --top-k 0 welding", "--top-k"),
    c("extract-empty-text", "skilltrain", ["extract", "--model", "{model}", "--esco", "{esco}", ""], "no valid input records",
      "argument 1", "empty"),
    c("extract-no-text-field-anywhere", "skilltrain", "extract --model {model} --esco {esco} -i {ws}/ads.jsonl",
      "no valid input records", "ads.jsonl:1", "no 'text' field", setup=jsonl_without_text),
    c("extract-out-is-a-directory", "skilltrain", "extract --model {model} --esco {esco} --out {ws}/d welding", "--out",
      "is a directory", setup=lambda ws: ws.dir("d")),
    c("extract-out-is-a-users-file", "skilltrain", "extract --model {model} --esco {esco} --out {ws}/notes.jsonl welding",
      "--out", "--overwrite", setup=lambda ws: ws.file("notes.jsonl", '{"mine": 1}\n')),
    c("extract-out-under-a-file", "skilltrain", "extract --model {model} --esco {esco} --out {ws}/f/o.jsonl welding",
      "--out", "f is a file", setup=lambda ws: ws.file("f", "x")),
    c("extract-out-is-the-input", "skilltrain", "extract --model {model} --esco {esco} -i {ws}/ads.jsonl --out {ws}/ads.jsonl",
      "--out", "--input", setup=jsonl_without_text),
    c("extract-out-csv", "skilltrain", "extract --model {model} --esco {esco} --out {ws}/o.csv welding", "unknown output format"),
    c("extract-batch-out-is-a-users-folder", "skilltrain",
      "extract --model {model} --esco {esco} --batch -i {ws}/ads.parquet --out {ws}/o", "--out", "not an empty directory",
      "--overwrite",
      setup=lambda ws: (foreign("o")(ws), ws.file("ads.parquet", b""))),
    c("extract-overlap-too-large", "skilltrain", "extract --model {model} --overlap 100 welding", "--overlap"),
    c("extract-input-missing", "skilltrain", "extract --model {model} --esco {esco} -i {ws}/nope.jsonl", "nope.jsonl"),
    c("extract-batch-with-text", "skilltrain", "extract --model {model} --esco {esco} --batch --out {ws}/o welding", "TEXT"),
    c("extract-model-not-an-encoder", "skilltrain", "extract --model {ws}/d welding", "not an encoder directory",
      setup=lambda ws: ws.dir("d")),
    # ---- the pipeline: the file and key the user wrote; everything before Ray, pipeline.json or the lease ----
    c("pipe-config-missing", "pipeline", "--config {ws}/nope.toml --run-dir {ws}/out", "nope.toml", "does not exist"),
    c("pipe-toml-syntax", "pipeline", PIPE, "p.toml", "not valid TOML", "line 2", setup=lambda ws: ws.toml("p.toml", "[training]\nlr = \n")),
    c("pipe-training-unknown-key", "pipeline", PIPE, "--config", "p.toml", "[training] learning_rate", "did you mean lr?",
      setup=pipeline_toml(training="learning_rate = 1e-5")),
    c("pipe-generation-unknown-key", "pipeline", PIPE, "p.toml", "[generation] n_sentence", "did you mean n_sentences?",
      setup=pipeline_toml(generation="n_sentence = 3")),
    c("pipe-training-wrong-type", "pipeline", PIPE, "p.toml", "[training] workers", "valid integer",
      setup=pipeline_toml(training='workers = "two"')),
    c("pipe-generation-wrong-type", "pipeline", PIPE, "p.toml", "[generation] temperature", "valid number",
      setup=pipeline_toml(generation='temperature = "hot"')),
    c("pipe-simulator-wrong-type", "pipeline", PIPE, "p.toml", "[simulator] rpm", "valid integer",
      setup=pipeline_toml(extra='[simulator]\nrpm = "lots"')),
    c("pipe-evaluation-split-unknown", "pipeline", PIPE, "p.toml", "[evaluation] split", "'train'",
      setup=pipeline_toml(extra='[evaluation]\nsplit = "train"')),
    c("pipe-evaluation-sets-unknown", "pipeline", PIPE, "p.toml", "[evaluation] sets", "foo",
      setup=pipeline_toml(extra='[evaluation]\nsets = ["foo"]')),
    c("pipe-unknown-section", "pipeline", PIPE, "p.toml", "[trainig]", "did you mean [training]?",
      setup=lambda ws: ws.toml("p.toml", "[trainig]\nworkers = 1\n")),
    c("pipe-top-level-typo", "pipeline", PIPE, "p.toml", "rundir", "did you mean run_dir?",
      setup=pipeline_toml(extra='rundir = "x"')),
    c("pipe-esco-missing", "pipeline", PIPE + " --esco {ws}/nope.csv", "nope.csv", "does not exist", setup=pipeline_toml()),
    c("pipe-esco-binary", "pipeline", PIPE + " --esco {ws}/bin.csv", "bin.csv", "not UTF-8",
      setup=lambda ws: (pipeline_toml()(ws), ws.file("bin.csv", BINARY))),
    c("pipe-esco-corrupt-zip", "pipeline", PIPE + " --esco {ws}/esco.zip", "esco.zip", "not a readable ZIP",
      setup=lambda ws: (pipeline_toml()(ws), ws.file("esco.zip", NOT_A_ZIP))),
    c("pipe-global-batch-exceeds-the-sample", "pipeline", PIPE, "p.toml", "global batch 64", "20 skills",
      "sample = 20", "[training] batch_size", setup=pipeline_toml(generation="sample = 20", training="batch_size = 64")),
    c("pipe-run-dir-is-a-file", "pipeline", "--config {ws}/p.toml --run-dir {ws}/f", "is a file",
      setup=lambda ws: (pipeline_toml()(ws), ws.file("f", "x"))),
    c("pipe-training-data-is-derived", "pipeline", PIPE, "p.toml", "[training] data", "derived",
      setup=pipeline_toml(training='data = "x"')),
    c("pipe-generation-run-dir-is-derived", "pipeline", PIPE, "p.toml", "[generation] run_dir", "top-level run_dir",
      setup=pipeline_toml(generation='run_dir = "x"')),
    c("pipe-benchmark-dir-missing", "pipeline", PIPE + " --benchmark-dir {ws}/nobench", "nobench", setup=pipeline_toml()),
    c("pipe-training-model-missing", "pipeline", PIPE, "nomodel", "does not exist",
      setup=pipeline_toml(training='model = "nomodel"\nbatch_size = 4')),
    c("pipe-openai-without-key", "pipeline", PIPE, "OPENAI_API_KEY", "not set", env=NO_KEY,
      setup=lambda ws: ws.toml("p.toml", '[generation]\nbase_url = "https://api.openai.com/v1"\nmodel = "gpt-4o-mini"\n'
                                         'sample = 40\n[training]\nbatch_size = 4\n')),
    c("pipe-skill-type-matches-nothing", "pipeline", PIPE, "skill_types", "nonsense",
      setup=pipeline_toml(generation='skill_types = ["nonsense"]')),
    c("pipe-training-val-sets-unknown", "pipeline", PIPE, "p.toml", "[training] val_sets", setup=pipeline_toml(training='val_sets = ["foo"]')),
    c("pipe-has-no-batch-size-flag", "pipeline", PIPE + " --batch-size 8", "unrecognized arguments: --batch-size",
      setup=pipeline_toml(), subprocess=True),
]


# ---- the runner -------------------------------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Every row is refused before the work: loading a model (minutes of evaluation or training) fails the row."""
    from skilltrain.model import BiEncoder

    def forbidden(*args, **kwargs):
        raise AssertionError("the command loaded a model before refusing its input")

    monkeypatch.setattr(BiEncoder, "from_pretrained", classmethod(forbidden))


@pytest.fixture
def workspace(tmp_path: Path, tiny_encoder_dir: Path, monkeypatch) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))  # caches are not the command's output
    for name in ("ESCO_SKILLS_CSV", "SKILLS_DATA_DIR", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return Workspace(root, tiny_encoder_dir)


def run_in_process(case: Case, argv: list[str], capsys, caplog) -> tuple[int, list[str]]:
    from cluster.pipeline import main as pipeline_main
    from skillgen.cli import main as skillgen_main
    from skilltrain.cli import main as skilltrain_main

    main = {"skillgen": skillgen_main, "skilltrain": skilltrain_main, "pipeline": pipeline_main}[case.cli]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    logged = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]
    return rc, [line for line in err.splitlines() if line.strip()] + logged


def run_subprocess(case: Case, argv: list[str], ws: Workspace) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for key, value in case.env.items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    proc = subprocess.run(ENTRY[case.cli] + argv, cwd=ws.root, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(case: Case, workspace: Workspace, no_work, monkeypatch, capsys,
                                                             caplog):
    argv = [arg.format_map(Argv(workspace)) for arg in case.argv]
    if case.setup is not None:
        case.setup(workspace)
    for key, value in case.env.items():
        monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
    capsys.readouterr()
    before = snapshot(workspace.root)
    rc, lines = run_subprocess(case, argv, workspace) if case.subprocess else run_in_process(case, argv, capsys, caplog)
    assert rc == case.rc, (rc, lines)
    assert len(lines) == 1, "expected one line on stderr, got:\n" + "\n".join(lines)
    for text in case.says:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert snapshot(workspace.root) == before, "the command changed the workspace"
    if "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized(), "the command started Ray before refusing its input"


def test_the_table_covers_the_three_clis_with_at_least_60_cases():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    by_cli = {cli: sum(case.cli == cli for case in CASES) for cli in ENTRY}
    assert len(CASES) >= 60 and all(n >= 12 for n in by_cli.values()), by_cli


# ---- what a refused command no longer blocks, and what an output may replace ------------------------


def test_a_run_refused_for_a_missing_key_leaves_nothing_and_the_corrected_rerun_succeeds(tmp_path, esco_csv, monkeypatch,
                                                                                         capsys):
    """Batch mode against the simulator (no Ray): the refused run leaves no run dir; a stub that an older version
    left after such a refusal (run.json of another fingerprint, nothing sent) is taken over by the corrected run."""
    from skillgen.cli import main
    from skillgen.config import GenerationConfig
    from skillgen.rundir.rundir import RunDir
    from skillgen.rundir.sinks import read_rows
    from skillgen.simulator import run_in_thread

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_dir = tmp_path / "r"
    common = ["run", "--mode", "batch", "--esco", str(esco_csv), "--limit", "3", "-n", "2", "--run-dir", str(run_dir),
              "--batch-poll-min-s", "0.05", "--batch-poll-max-s", "0.3", "--no-progress"]
    assert main(common + ["--model", "gpt-4o-mini"]) == 2  # api.openai.com without OPENAI_API_KEY
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err and not run_dir.exists()

    RunDir.open(GenerationConfig(model="gpt-4o-mini", n_sentences=2, run_dir=str(run_dir))).close()  # the old stub
    with run_in_thread(batch_seconds_per_line=0.0) as sim:
        assert main(common + ["--model", "simulator", "--base-url", sim.base_url]) == 0, capsys.readouterr().err
    assert read_rows(run_dir).height == 3 * 2
    assert json.loads((run_dir / "run.json").read_text())["config"]["model"] == "simulator"


def test_export_replaces_an_earlier_export_and_overwrite_replaces_a_users_folder(tmp_path, capsys):
    import polars as pl

    from skillgen.cli import main

    run = tmp_path / "run"
    build_run_dir(run)
    out = tmp_path / "dataset"
    assert main(["export", str(run), str(out)]) == 0
    pl.DataFrame({"sentence": ["stale"] * 200}).write_parquet(out / "data" / "train-old.parquet")  # an older export's shard
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # a dataset repository's clone
    assert main(["export", str(run), str(out)]) == 0  # an earlier export: replaced without --overwrite
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    assert pl.read_parquet(out / "data" / "*.parquet").height == 11 and "Sentences: 11 " in (out / "README.md").read_text()
    assert (out / ".git" / "HEAD").exists()  # not the export's: kept

    users = tmp_path / "mine"
    (users / "photos").mkdir(parents=True)
    (users / "notes.txt").write_text("mine")
    assert main(["export", str(run), str(users), "--overwrite"]) == 0
    assert sorted(p.name for p in users.iterdir()) == ["README.md", "data"]  # replaced, not merged


def test_fit_writes_its_checkpoints_inside_out_and_takes_a_model_dir_it_wrote(tmp_path):
    from skilltrain.config import TrainConfig
    from skilltrain.training.fit import check_outputs, kept_on_export

    cfg = TrainConfig(data=tmp_path / "run", out=tmp_path / "m")
    assert cfg.storage == (tmp_path / "m" / "checkpoints").resolve()  # not a sibling m.ray/
    assert check_outputs(cfg).holds == "nothing"
    (tmp_path / "m" / "checkpoints" / "skilltrain-m").mkdir(parents=True)  # a fit stopped before its export
    assert check_outputs(cfg).holds == "own"
    (tmp_path / "m" / "skilltrain_config.json").write_text("{}")  # a finished fit's model
    (tmp_path / "m" / "model.safetensors").write_bytes(b"old weights")
    output = check_outputs(cfg)
    assert output.holds == "own" and kept_on_export(cfg) == ("checkpoints",)
    output.clear(keep=kept_on_export(cfg))  # what the export does before saving the new model
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["checkpoints"]
    (tmp_path / "m" / "notes.txt").write_text("mine")
    from skillgen.common.errors import UserError

    with pytest.raises(UserError, match="--overwrite"):
        check_outputs(cfg)
    assert check_outputs(cfg, overwrite=True).holds == "foreign"


def test_extract_replaces_its_own_output_and_a_users_file_only_with_overwrite(tmp_path, tiny_encoder_dir, esco_csv,
                                                                            monkeypatch, capsys):
    from skilltrain.cli import main

    monkeypatch.setenv("SKILLGEN_CACHE_DIR", str(tmp_path / "cache"))
    base = ["extract", "--model", str(tiny_encoder_dir), "--esco", str(esco_csv), "--top-k", "2", "--out"]
    out = tmp_path / "skills.jsonl"
    assert main(base + [str(out), "welding"]) == 0
    assert main(base + [str(out), "payroll"]) == 0  # its own earlier output: replaced
    assert [json.loads(line)["sentence"] for line in out.read_text().splitlines()] == ["payroll"]
    users = tmp_path / "notes.jsonl"
    users.write_text('{"mine": 1}\n')
    assert main(base + [str(users), "payroll"]) == 2 and users.read_text() == '{"mine": 1}\n'
    assert main(base + [str(users), "--overwrite", "sales"]) == 0
    assert json.loads(users.read_text().splitlines()[0])["sentence"] == "sales"


def test_eval_knows_its_own_results_file(tmp_path):
    from skilltrain.evaluation.cli import is_results_file

    (tmp_path / "r.json").write_text(json.dumps({"tech": {"RP@5": 50.0, "MRR": 0.4}, "house": {"RP@5": 40.0}}))
    (tmp_path / "notes.json").write_text(json.dumps({"todo": ["buy milk"]}))
    (tmp_path / "text.txt").write_text("not json")
    assert is_results_file(tmp_path / "r.json")
    assert not is_results_file(tmp_path / "notes.json") and not is_results_file(tmp_path / "text.txt")
