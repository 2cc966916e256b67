"""The cluster manifests are checked offline: Ray's own schema for `ray up`, and the fields the
KubeRay RayJob CRD requires (KubeRay's API reference, ray.io/v1)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"


def test_ray_up_config_passes_rays_schema_and_has_gpu_autoscaling():
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    validate_config(config)  # jsonschema of the installed Ray + its consistency checks
    node_types = config["available_node_types"]
    assert config["head_node_type"] in node_types
    gpu_types = [name for name, spec in node_types.items() if "gpu" in spec["node_config"]["InstanceType"] or name.endswith("gpu")]
    assert gpu_types and all(node_types[n]["max_workers"] > node_types[n]["min_workers"] for n in gpu_types)


def load_rayjob() -> tuple[dict, list[dict]]:
    docs = list(yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    return job, docs


def containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def test_rayjob_has_the_required_kuberay_fields():
    job, _ = load_rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m cluster.pipeline")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert "working_dir" in runtime_env and runtime_env["pip"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert "rayStartParams" in head and containers(head["template"])[0]["image"]
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert containers(group["template"])[0]["image"]
        assert any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers(group["template"]))


def test_rayjob_entrypoint_config_exists_and_secrets_come_from_a_kubernetes_secret():
    job, docs = load_rayjob()
    args = shlex.split(job["spec"]["entrypoint"])
    config_path = args[args.index("--config") + 1]
    assert (ROOT / config_path).is_file()
    groups = [job["spec"]["rayClusterSpec"]["headGroupSpec"], *job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    for group in groups:
        env = {e["name"]: e for c in containers(group["template"]) for e in c.get("env", [])}
        assert "secretKeyRef" in env["OPENAI_API_KEY"]["valueFrom"]
        assert "value" not in env["OPENAI_API_KEY"]
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # object-storage keys: a Secret too
            assert "secretKeyRef" in env[name]["valueFrom"] and "value" not in env[name]
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    mounted = {v["persistentVolumeClaim"]["claimName"] for g in groups for v in g["template"]["spec"].get("volumes", [])}
    assert mounted <= claims
    assert "sk-" not in (CLUSTER / "rayjob.yaml").read_text()


def test_training_curve_keeps_every_logged_step_and_the_latest_value_after_a_resume():
    from cluster.run_report import training_curve

    before_crash = [{"step": s, "loss": 1.0} for s in (10, 20, 30)] + [{"step": 30, "loss": 1.0, "val_rp5": 40.0}]
    after_resume = [{"step": 30, "loss": 0.9, "val_rp5": 41.0}, {"step": 40, "loss": 0.8}]
    curve = training_curve(before_crash + after_resume)
    assert curve["loss_steps"] == [10, 20, 30, 40] and curve["loss"][2:] == [0.9, 0.8]
    assert curve["val_steps"] == [30] and curve["val_rp5"] == [41.0]


def test_rayjob_run_dir_is_on_object_storage():
    """Nodes share no disk: the run dir (and so Ray Train's storage and the model) is an s3:// URI."""
    from cluster.config import PipelineConfig

    job, _ = load_rayjob()
    args = shlex.split(job["spec"]["entrypoint"])
    run_dir = args[args.index("--run-dir") + 1]
    assert run_dir.startswith("s3://")
    config = PipelineConfig(run_dir=run_dir)
    assert config.train_config().storage_path == f"{run_dir}/train" and config.model_dir == f"{run_dir}/model"
    assert any(p.startswith("boto3") for p in yaml.safe_load(job["spec"]["runtimeEnvYAML"])["pip"])


def test_llamacpp_config_trains_and_evaluates_exactly_like_the_main_job():
    """Real-model data vs simulator data (BENCHMARKS.md, issue 21) compares data only: llamacpp.toml's recipe
    once drifted from local.toml's when the main job changed; this keeps the two equal."""
    from cluster.config import load_pipeline_config

    local = load_pipeline_config(CLUSTER / "configs" / "local.toml")
    llama = load_pipeline_config(CLUSTER / "configs" / "llamacpp.toml")
    assert llama.training == local.training and llama.evaluation == local.evaluation
    same = ("n_sentences", "sample", "sample_seed", "temperature")
    assert {k: llama.generation[k] for k in same} == {k: local.generation[k] for k in same}


def test_mpnet_main_job_differs_from_the_main_job_only_in_its_encoder_and_baseline():
    """benchmarks/mainjob_mpnet.toml is the MiniLM vs mpnet comparison (BENCHMARKS.md, "Larger encoder"):
    the same data and recipe, so it must follow local.toml when the main job changes."""
    from cluster.config import load_pipeline_config

    local = load_pipeline_config(CLUSTER / "configs" / "local.toml")
    mpnet = load_pipeline_config(CLUSTER.parent / "benchmarks" / "mainjob_mpnet.toml")
    assert mpnet.generation == local.generation and mpnet.simulator == local.simulator
    assert mpnet.training == {**local.training, "model": "mpnet"}
    assert mpnet.evaluation == local.evaluation.model_copy(update={"baseline": False})
