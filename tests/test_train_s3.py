"""Ray Train with everything on S3 (SeaweedFS): training data, checkpoints, the exported model.

A worker fails once just before reporting step 8 (injected from the test side); the worker group restarts from the step-4 checkpoint read back
from S3, and the exported model lands on S3. Ray starts after the AWS variables are set, so
its workers inherit them (as on a cluster whose nodes all get the same Secret).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import helpers.training
from helpers.card import check_card
from helpers.training import fail_once_before_report, inputs, make_config  # noqa: F401  (module fixture reused)

from skillgen.common.storage import resolve


@pytest.fixture
def ray_with_s3_env(s3_bucket):
    import ray

    ray.init(address="local", num_cpus=2, log_to_driver=False)
    try:
        yield s3_bucket
    finally:
        ray.shutdown()


@pytest.mark.slow  # ~105 s on the loaded 2-core box (Ray start, 2 workers, a restart, SeaweedFS)
def test_worker_failure_resumes_from_checkpoints_on_s3(ray_with_s3_env, inputs, tiny_encoder_dir, tmp_path):  # noqa: F811
    import ray.cloudpickle

    from skilltrain.model import BiEncoder
    from skilltrain.training.fit import fit
    from skilltrain.training.train import train_loop_per_worker

    bucket = ray_with_s3_env
    resolve(f"{bucket}/gen").upload_dir(inputs["run"])
    local = tmp_path / "local"
    local.mkdir()
    cfg = make_config(
        inputs, tiny_encoder_dir, local, data=f"{bucket}/gen", out=f"{bucket}/model",
        storage_path=f"{bucket}/train", max_failures=1,
    )
    ray.cloudpickle.register_pickle_by_value(helpers.training)  # the workers cannot import the test modules
    marker = tmp_path / "injected_failure"
    loop = partial(train_loop_per_worker, report=partial(fail_once_before_report, marker=str(marker), at_step=8))
    result = fit(cfg, train_loop=loop)

    assert marker.exists()
    assert result.extra["resumed_at_steps"] == [4]  # restarted from the step-4 checkpoint on S3
    run = resolve(f"{bucket}/train/{cfg.run_name}")
    assert any(name.startswith("checkpoint_") for name in _names(run))
    model = resolve(f"{bucket}/model")
    assert json.loads((model / "eval_results.json").read_text())["best_step"] == result.best_step
    copy = tmp_path / "model_copy"
    model.download_dir(copy)
    assert "# ESCO skill extraction: model" in check_card(copy)  # the card travels with the model
    assert BiEncoder.from_pretrained(copy).encode(["weld pipes"]).shape == (1, 32)
    assert list(local.iterdir()) == []  # nothing of the run landed on local disk


def _names(location) -> list[str]:
    import pyarrow.fs as pafs

    infos = location.fs.get_file_info(pafs.FileSelector(location.path, recursive=False))
    return [Path(i.path).name for i in infos]
