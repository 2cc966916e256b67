"""Reading the Ray node's Prometheus endpoint the way a Prometheus server does, for the metrics tests.

Ray's metrics agent on each node serves every process's application metrics
(``ray.util.metrics``) and Ray's own on ``http://<node ip>:<MetricsExportPort>/metrics``;
``ray.init(_metrics_export_port=...)`` fixes the port, ``ray.nodes()`` reports it.
Processes push to the agent every ``metrics_report_interval_ms`` (10 s by default; the
tests' Ray uses 1 s, Ray's floor), so a scrape lags a ``Gauge.set`` by up to that.
Ray 2.60 exports an application metric ``name`` as ``ray_<name>`` (:func:`exported`).
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# the test Ray's options: a known export port and the fastest push to the agent Ray allows
METRICS_SYSTEM_CONFIG = {"metrics_report_interval_ms": 1000}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def exported(name: str) -> str:
    """The name Prometheus sees for the application metric ``name`` (Ray prefixes ``ray_``)."""
    return f"ray_{name}"


def metrics_url() -> str:
    """The connected Ray head node's Prometheus endpoint."""
    import ray

    node = next(n for n in ray.nodes() if n["Alive"])
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic() of the scrape
    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str, prefixes: tuple[str, ...], timeout: float = 5.0) -> list[Sample]:
    """One scrape: the samples whose metric name starts with one of ``prefixes``."""
    now = time.monotonic()
    with _OPENER.open(url, timeout=timeout) as resp:
        text = resp.read().decode()
    return [Sample(now, s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith(prefixes)]


class Scraper:
    """Scrapes ``url`` every ``period_s`` on a thread while in a ``with`` block; ``samples`` in scrape order."""

    def __init__(self, url: str, prefixes: tuple[str, ...], period_s: float = 0.25):
        self.url, self.prefixes, self.period = url, prefixes, period_s
        self.samples: list[Sample] = []
        self.scrapes = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prometheus-scraper", daemon=True)

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.extend(scrape(self.url, self.prefixes))
                self.scrapes += 1
            except Exception as exc:  # noqa: BLE001 - a slow agent: keep trying, report at the end
                self.errors.append(repr(exc))
            self._stop.wait(self.period)

    def series(self, name: str, **labels: str) -> list[Sample]:
        """Samples of one metric whose labels include ``labels``, in scrape order."""
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def wait_for_value(url: str, name: str, labels: dict[str, str], predicate, timeout_s: float = 30.0) -> float:
    """Scrape until ``name{labels}`` satisfies ``predicate``; its value (AssertionError with the last seen on timeout)."""
    deadline = time.monotonic() + timeout_s
    last: float | None = None
    while time.monotonic() < deadline:
        for s in scrape(url, (name,)):
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                last = s.value
                if predicate(s.value):
                    return s.value
        time.sleep(0.25)
    raise AssertionError(f"{name}{labels} never satisfied the check in {timeout_s:.0f} s; last scraped value {last}")


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
