"""A model replica killed under a bounded load: the service keeps answering, nothing hangs past its timeout.

Two model replicas on a private local Ray; 8 clients send requests until 160 are answered or 120 s
pass (whichever first), and one replica is killed (``ray.kill``: the process dies mid-batch) once a
fifth of them are done. Every answer must be a 200, or a 503 with one line (the ingress retries a
request whose replica died, so 503s should be rare); no request may take longer than the request
timeout plus the proxy's margin; Serve must bring the replica count back to two; and the service
must answer after it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.serve import ADS, client, serving

CLIENTS, REQUESTS, LOAD_LIMIT_S = 8, 160, 120.0
REQUEST_TIMEOUT_S = 20.0


def model_replicas(states: tuple[str, ...] = ("RUNNING",)) -> int:
    from ray import serve

    from skilltrain.serve.config import APP_NAME

    status = serve.status().applications[APP_NAME].deployments["SkillModel"]
    return sum(n for state, n in status.replica_states.items() if str(getattr(state, "value", state)) in states)


def kill_one_model_replica() -> str:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a.get("namespace") == "serve" and "SkillModel" in a["name"]]
    assert len(names) == 2, names
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


@pytest.mark.slow
def test_a_replica_killed_under_load_leaves_the_service_answering(tiny_encoder_dir: Path, esco_csv: Path):
    from skilltrain.serve.config import PROXY_TIMEOUT_MARGIN_S, AppConfig

    app = AppConfig(model=str(tiny_encoder_dir), esco=str(esco_csv), backend="torch-fp32", replicas=2,
                    request_timeout_s=REQUEST_TIMEOUT_S, batch_wait_ms=10)
    outcomes: list[tuple[int, float, dict]] = []
    lock, stop = threading.Lock(), threading.Event()
    with serving(app) as url:
        started = time.monotonic()

        def one_client(n: int) -> None:
            with client(timeout_s=REQUEST_TIMEOUT_S + PROXY_TIMEOUT_MARGIN_S + 15) as http:
                while not stop.is_set() and time.monotonic() - started < LOAD_LIMIT_S:
                    sent = time.monotonic()
                    answer = http.post(f"{url}/v1/extract", json={"texts": ADS[n % 3 : n % 3 + 3]})
                    with lock:
                        outcomes.append((answer.status_code, time.monotonic() - sent, answer.json()))
                        if len(outcomes) >= REQUESTS:
                            stop.set()

        with ThreadPoolExecutor(CLIENTS) as pool:
            running = [pool.submit(one_client, n) for n in range(CLIENTS)]
            while len(outcomes) < REQUESTS // 5 and time.monotonic() - started < LOAD_LIMIT_S:
                time.sleep(0.05)
            killed = kill_one_model_replica()
            killed_at = len(outcomes)
            for future in running:
                future.result()

        deadline = time.monotonic() + 180
        while model_replicas() < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert model_replicas() == 2, f"Serve did not replace {killed}"
        with client() as http:
            after = http.post(f"{url}/v1/extract", json={"texts": ADS[:2]})
        assert after.status_code == 200

    statuses = [status for status, _, _ in outcomes]
    assert len(outcomes) > killed_at + CLIENTS, "the load ended before the kill had a chance to matter"
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) > len(statuses) // 2
    for status, _, body in outcomes:
        if status == 503:
            assert set(body) == {"detail"} and "\n" not in body["detail"], body
    assert max(seconds for _, seconds, _ in outcomes) < REQUEST_TIMEOUT_S + PROXY_TIMEOUT_MARGIN_S
