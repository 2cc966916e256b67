"""The Serve application: two deployments bound from one :class:`~skilltrain.serve.config.AppConfig`.

``SkillAPI`` (ingress: HTTP, auth, limits; no CPU reserved, no torch) calls ``SkillModel`` (the
encoder, batching across requests; ``cpus_per_replica`` CPUs or one GPU each). Both scale together
(``replicas`` or ``autoscale``). :func:`build_app` is also the ``import_path`` of the Serve config
file that ``skilltrain serve --print-config`` writes, so ``serve deploy`` and KubeRay build the same
application from the same arguments.
"""

# no `from __future__ import annotations`: Serve reads build_app's annotation to turn a config
# file's `args` into an AppConfig (and refuses bad ones with pydantic's message)
from typing import Any

from ray.serve import Application

from skilltrain.serve.batching import SkillModel
from skilltrain.serve.config import AppConfig
from skilltrain.serve.ingress import SkillAPI


#: how often a stopping replica checks that its requests have drained (Serve's default, 2 s, makes every
#: stop and scale-down take 2 s per deployment even when idle)
DRAIN_CHECK_S = 0.25


def build_app(config: AppConfig) -> Application:
    """The application for ``config`` (Serve's application builder)."""
    replicas = {
        **config.replica_options(),
        "graceful_shutdown_wait_loop_s": DRAIN_CHECK_S,
        "graceful_shutdown_timeout_s": config.request_timeout_s,  # a stopping replica still answers what it holds
    }
    args = config.model_dump(mode="json")
    model = SkillModel.options(
        **replicas,
        ray_actor_options=_model_actor_options(config),
        max_ongoing_requests=config.max_ongoing_requests,
        max_queued_requests=config.max_queued_requests,
        # a line per internal call ("CALL extract OK") costs CPU per request and says what the ingress's line says
        logging_config={"enable_access_log": False},
    ).bind(args)
    return SkillAPI.options(
        **replicas,
        # one ingress replica passes every request of a model replica, and each holds a handle call open
        max_ongoing_requests=config.max_ongoing_requests * 2,
    ).bind(model, args)


def _model_actor_options(config: AppConfig) -> dict[str, Any]:
    if config.device == "cuda":
        return {"num_cpus": config.cpus_per_replica, "num_gpus": 1}
    return {"num_cpus": config.cpus_per_replica}
