"""A job's live counters on Ray's metrics API, next to Ray's own on the dashboard and in Prometheus.

Ray exports application metrics from any process connected to a cluster (driver,
actors, Train workers) through the node's metrics agent; Grafana dashboards and
Prometheus scrapes then show ``skillgen_*`` and ``skilltrain_*`` series beside
``ray_*``. Outside a Ray process the calls do nothing, so library code and tests
can call :func:`publish` unconditionally.
"""

from __future__ import annotations

import logging
from typing import Mapping

__all__ = ["GAUGES", "publish"]

log = logging.getLogger(__name__)

# name -> description; every value is a gauge (the latest total or rate), tagged by run.
GAUGES = {
    "skillgen_skills_done": "skills with all their sentences written",
    "skillgen_requests": "requests sent to the LLM endpoint (attempts included)",
    "skillgen_tokens_per_s": "prompt + completion tokens per second since the run started",
    "skillgen_spend_usd": "spend of the run dir so far (USD)",
    "skillgen_rate_limited": "HTTP 429 answers received",
    "skillgen_retries": "retried attempts",
    "skillgen_failures": "skills recorded as failed",
    "skillgen_batches_open": "batches submitted and not yet collected (batch mode)",
    "skillgen_batch_lines": "request lines in the run dir's batches so far (batch mode)",
    "skillgen_batch_lines_done": "of those, lines the provider has finished, answered or failed (batch mode)",
    "skilltrain_samples_per_s": "training pairs per second, all workers",
    "skilltrain_loss": "training loss (latest logged step)",
    "skilltrain_step": "optimizer steps done",
}
_made: dict[str, object] = {}


def _gauge(name: str):
    if name not in _made:
        from ray.util.metrics import Gauge

        _made[name] = Gauge(name, description=GAUGES[name], tag_keys=("run",))
    return _made[name]


def publish(values: Mapping[str, float], run: str) -> None:
    """Set the named gauges (names from :data:`GAUGES`) for ``run``; a no-op without Ray."""
    try:
        import ray

        if not ray.is_initialized():
            return
        for name, value in values.items():
            _gauge(name).set(float(value), tags={"run": run})
    except Exception as exc:  # metrics must never break a paid run
        log.debug("metrics not published: %s", exc)
