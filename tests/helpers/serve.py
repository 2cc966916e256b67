"""A real ``skilltrain serve`` application on a private local Ray, a real HTTP client, and what the tests compare.

:func:`serving` starts Ray (2 CPUs, a known Prometheus port), deploys through the same
:func:`skilltrain.serve.deploy.deploy` the command uses, on a free loopback port, and stops Serve and
Ray afterwards whatever happened.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx2 as httpx

from helpers.ports import free_ports
from helpers.promscrape import METRICS_SYSTEM_CONFIG

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

TEST_KEY_ENV = "SKILLTRAIN_SERVE_TEST_KEY"
TEST_KEY = "test-bearer-7c41d2a9e6"  # only ever in this process's environment and in request headers

ADS = [
    "We need a welder.\n- 3+ years of payroll audits\n- Fluent German; you teach pastry classes",
    "Operate forklift systems safely. Inspect kubernetes systems daily!",
    "Design carpentry systems; manage sales systems and nursing work",
    "",
    "   ",
    "Python",
]


def client(timeout_s: float = 60.0) -> httpx.Client:
    return httpx.Client(timeout=timeout_s, trust_env=False)


def auth(key: str = TEST_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def serving(app: Any, env: dict[str, str] | None = None, num_cpus: int = 2) -> Iterator[str]:
    """``app`` (an AppConfig) served on a private local Ray at ``http://127.0.0.1:<free port>``.

    ``env`` is set before Ray starts, so the replicas inherit it (keys, AWS_* settings) and nothing else carries it.
    """
    import pytest
    import ray

    from skilltrain.serve.deploy import deploy, shutdown
    from skilltrain.serve.config import HttpConfig, ServeConfig

    port, metrics_port = free_ports(2)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 _metrics_export_port=metrics_port, _system_config=METRICS_SYSTEM_CONFIG)
        try:
            yield deploy(ServeConfig(http=HttpConfig(port=port), app=app))
        finally:
            shutdown()


def ray_logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path())


def expected_results(extractor: Any, texts: Sequence[str], **options: Any) -> list[dict[str, Any]]:
    """What ``POST /v1/extract`` must answer: ``dataclasses.asdict`` of the extractor's own result, as JSON types."""
    import json
    from dataclasses import asdict

    return json.loads(json.dumps([asdict(t) for t in extractor.extract(list(texts), **options)]))


def assert_same_results(served: list[dict[str, Any]], expected: list[dict[str, Any]], atol: float = 1e-5) -> None:
    """Same texts, sentences and skills in the same order; scores equal up to float noise (batches pad differently)."""
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got["text"] == want["text"]
        assert [s["sentence"] for s in got["sentences"]] == [s["sentence"] for s in want["sentences"]]
        for got_sentence, want_sentence in zip(got["sentences"], want["sentences"]):
            got_skills, want_skills = got_sentence["skills"], want_sentence["skills"]
            assert [(s["skill_id"], s["label"]) for s in got_skills] == [(s["skill_id"], s["label"]) for s in want_skills]
            assert all(math.isclose(g["score"], w["score"], abs_tol=atol) for g, w in zip(got_skills, want_skills))
            for g, w in zip(got_skills, want_skills):  # any further field as the extractor has it; evidence weights up to noise
                assert {k: v for k, v in g.items() if k not in ("score", "evidence") and v is not None} == \
                    {k: v for k, v in w.items() if k not in ("score", "evidence")}
                got_spans, want_spans = g.get("evidence") or [], w.get("evidence") or []
                assert [(e["start"], e["end"], e["text"]) for e in got_spans] == [(e["start"], e["end"], e["text"]) for e in want_spans]
                assert all(math.isclose(a["weight"], b["weight"], abs_tol=1e-4) for a, b in zip(got_spans, want_spans))
