"""An OpenAI-compatible LLM simulator: the keyless default endpoint and the test bed.

Three ways to run it, one :class:`SimulatorConfig`:

- CLI: ``skillgen sim-server --port 8000 --rpm 500 --tpm 200000 ...``
  (or ``python -m skillgen.simulator``);
- subprocess, for tests and benchmarks:
  ``with SimulatorProcess(rpm=600) as sim: sim.base_url, sim.stats()``;
- background thread, for the pipeline:
  ``sim = run_in_thread(SimulatorConfig()); ...; sim.stop()``.

Modules: ``config`` (settings), ``server`` (HTTP pipeline), ``ratelimit``
(per-key buckets), ``faults`` (injection), ``content`` / ``templates`` /
``lexicon`` (what the model says), ``structured`` (response_format),
``wire`` (OpenAI JSON shapes), ``stats`` (accounting), ``process`` /
``embedded`` / ``cli`` (starting it), ``control`` (HTTP helpers).

Heavy modules load on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skillgen.simulator.config import LatencySpec, SimulatorConfig
from skillgen.simulator.faults import FaultKind

if TYPE_CHECKING:
    from skillgen.simulator.embedded import SimulatorThread, run_in_thread
    from skillgen.simulator.process import SimulatorProcess

__all__ = ["FaultKind", "LatencySpec", "SimulatorConfig", "SimulatorProcess", "SimulatorThread", "run_in_thread"]

_LAZY = {
    "run_in_thread": "skillgen.simulator.embedded",
    "SimulatorThread": "skillgen.simulator.embedded",
    "SimulatorProcess": "skillgen.simulator.process",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skillgen.simulator' has no attribute {name!r}")
