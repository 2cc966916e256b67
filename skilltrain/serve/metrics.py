"""The service's own counters on Ray's metrics API, next to Serve's (``serve_*``) in Prometheus.

Exported by every node's metrics agent as ``ray_skilltrain_serve_*`` (Ray 2.60 prefixes application
metrics with ``ray_``; counters get ``_total``). Ray records a histogram observation as its bucket's
midpoint, so ``batch_size``'s ``_sum`` is approximate; the exact mean batch is
``sentences_total / batches_total``. Like :mod:`skillgen.common.raymetrics`, a metric that cannot be
recorded is dropped with a debug line: counting must never fail a request.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

#: sentences per model call; buckets sized for CPU (64) and GPU (512) batches
BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


@lru_cache(maxsize=1)
def _metrics() -> dict[str, Any]:
    from ray.util.metrics import Counter, Histogram

    return {
        "texts": Counter("skilltrain_serve_texts", description="texts extracted"),
        "sentences": Counter("skilltrain_serve_sentences", description="sentences ranked"),
        "batches": Counter("skilltrain_serve_batches", description="model calls (each a batch across requests)"),
        "batch_size": Histogram("skilltrain_serve_batch_size", description="sentences per model call (batched across requests)",
                                boundaries=BATCH_SIZE_BOUNDARIES),
    }


def record_batch(texts: int, sentences: int) -> None:
    """Count one model call: its texts and sentences, and its size in sentences."""
    try:
        made = _metrics()
        made["texts"].inc(texts)
        made["batches"].inc()
        if sentences:
            made["sentences"].inc(sentences)
        made["batch_size"].observe(sentences)
    except Exception as exc:  # noqa: BLE001 - metrics must never fail a request
        log.debug("serve metrics not recorded: %s", exc)
