"""The pipeline on two real Ray nodes with its run dir on S3 (SeaweedFS), via `ray job submit`.

A head and a second node (custom resource ``worker_node``) run on this machine as separate
``ray start`` processes. Generation workers and Ray Train workers ask for ``worker_node``, so
they run on the second node; the driver (job entrypoint) and the built-in simulator run on the
head, the simulator bound to the node's address rather than loopback. Both nodes get the
AWS variables in their environment, as pods do from a Kubernetes Secret. Inputs that every
node of a real cluster has in its image (taxonomy, benchmarks, the encoder) are local files here.

Then the same job runs again: it must resume from S3 without one more generation request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers.raynodes import RAY, join_node, list_actors, start_head, wait_for_nodes
from helpers.pipeline import N_SENTENCES, N_SKILLS, tiny_pipeline_config

from skillgen.common.storage import polars_storage_options, resolve

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR_FILES = ("run.json", "pipeline.json", "generation_runs.jsonl", "fit_result.json", "report.md", "model.safetensors")

pytestmark = pytest.mark.slow  # two Ray nodes, two pipeline runs: 3-4 min on the loaded 2-core box


@pytest.fixture
def two_nodes(s3_server, s3_bucket, tmp_path_factory):
    """(dashboard URL, env, node id of the worker node, Ray temp dirs); both nodes stopped afterwards."""
    temp_dir = tmp_path_factory.mktemp("r", numbered=True)
    node_temp = temp_dir / "n2"  # its own temp dir, as on a real node: shared, both nodes' runtime-env
    node_temp.mkdir()  # agents would unpack the job's working dir into the same folder at once
    env = {**os.environ, **s3_server.env(), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head, gcs, dashboard = start_head(env, temp_dir, temp_dir / "head.log", num_cpus=2)
    nodes = [head]
    try:
        wait_for_nodes(dashboard, 1, nodes)
        alive = join_node(
            [f"--address={gcs}", "--num-cpus=3", '--resources={"worker_node": 3}', f"--temp-dir={node_temp}"],
            env, temp_dir / "node2.log", dashboard, nodes,
        )
        worker_node = next(n["node_id"] for n in alive if "worker_node" in n.get("resources_total", {}))
        yield dashboard, env, worker_node, temp_dir
    finally:
        for node in reversed(nodes):
            node.stop()
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` records its head; don't leave ours behind
        if current.exists() and current.read_text().strip() == gcs:
            current.unlink()


def submit(dashboard: str, env: dict[str, str], config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--",
         sys.executable, "-m", "cluster.pipeline", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=1200,
    )


def test_pipeline_on_two_nodes_with_run_dir_on_s3_and_rerun_resumes(two_nodes, s3_bucket, tmp_path, tiny_encoder_dir):
    dashboard, env, worker_node, temp_dir = two_nodes
    run_uri = f"{s3_bucket}/runs/two-nodes"
    config = tiny_pipeline_config(tmp_path, tiny_encoder_dir, run_uri)  # type: ignore[arg-type]
    text = config.read_text().replace("workers = 1\n", 'workers = 1\nworker_resources = { worker_node = 1 }\n', 1)
    text = text.replace("[training]\n", "[training]\nworker_resources = { worker_node = 1 }\n")
    config.write_text(text)

    before = _run_dir_like_files(temp_dir, tmp_path, ROOT)
    first = submit(dashboard, env, config)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "trained model (test)" in first.stdout
    assert "simulator listening on http://127.0.0.1" not in first.stdout  # bound to the node's address

    generation = [a for a in list_actors(dashboard, "WorkerActor")]
    training = [a for a in list_actors(dashboard, "RayTrainWorker")]
    assert generation and training
    assert {a["node_id"] for a in generation + training} == {worker_node}

    run = resolve(run_uri)
    rows = pl.read_parquet(f"{run_uri}/generation/shards/*.parquet", storage_options=polars_storage_options(run_uri))
    assert rows.height == N_SKILLS * N_SENTENCES
    assert json.loads((run / "results_test.json").read_text())["tech"]["n"] == 6
    assert (run / "model" / "model.safetensors").exists() and (run / "report.md").exists()
    assert any(c.name.startswith("checkpoint_") for c in _dirs(run / "train" / "skilltrain"))
    written = (run / "pipeline.json").read_text() + (run / "generation" / "run.json").read_text()
    assert env["AWS_SECRET_ACCESS_KEY"] not in written + first.stdout + first.stderr  # no key in outputs or logs

    again = submit(dashboard, env, config)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    records = [json.loads(line) for line in (run / "generation_runs.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[1]["summary"]["requests"] == 0
    assert records[1]["summary"]["skills_already_done"] == N_SKILLS

    # nothing of the run dir on local disk: not in the job's working dir, Ray's temp dir or the repo
    leaked = _run_dir_like_files(temp_dir, tmp_path, ROOT) - before
    assert not leaked, sorted(leaked)[:5]


def _run_dir_like_files(*bases: Path) -> set[Path]:
    return {p for base in bases for p in base.rglob("*") if p.name in RUN_DIR_FILES or p.name.startswith("s3:")}


def _dirs(location) -> list:
    import pyarrow.fs as pafs

    infos = location.fs.get_file_info(pafs.FileSelector(location.path, recursive=False))
    return [resolve(f"{location.uri}/{Path(i.path).name}") for i in infos if i.type == pafs.FileType.Directory]
