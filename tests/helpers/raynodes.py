"""Real Ray nodes for the multi-node tests: a head and extra nodes as ``ray start --block`` processes.

Every port is free-picked, each node runs in its own process group (stopped by killing the
group, even when a test fails), and the nodes share one short temp dir so Unix socket paths
stay under the OS limit. RAY_AUTH_MODE=disabled: Ray 2.60's token auth would otherwise
reject the job client on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers.ports import free_ports

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class RayNode:
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def _node_ports() -> list[str]:
    agent, agent_grpc, env_agent, metrics, node_mgr, obj_mgr = free_ports(6)
    return [
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
        f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
    ]


def start_node(args: list[str], env: dict[str, str], log_path: Path) -> RayNode:
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args, *_node_ports()],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return RayNode(process, log_path)


def start_head(env: dict[str, str], temp_dir: Path, log_path: Path, num_cpus: int) -> tuple[RayNode, str, str]:
    """(node, GCS address for ``ray start --address``, dashboard URL for ``ray job submit``)."""
    gcs, dash, client = free_ports(3)
    node = start_node(
        ["--head", f"--num-cpus={num_cpus}", f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
         "--include-dashboard=true", f"--ray-client-server-port={client}", f"--temp-dir={temp_dir}"],
        env, log_path,
    )
    return node, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"


class NodeExited(RuntimeError):
    """A ``ray start --block`` process ended; its log tail is the message."""


def join_node(args: list[str], env: dict[str, str], log_path: Path, dashboard: str, nodes: list[RayNode], attempts: int = 3) -> list[dict]:
    """Start one more node and wait until it is alive; retried because ``ray start`` gives a new node only
    30 s (hard-coded) to register, which a loaded machine can miss. ``nodes`` gets it either way (to stop)."""
    alive = [n for n in nodes if n.process.poll() is None]
    for attempt in range(1, attempts + 1):
        node = start_node(args, env, log_path)
        nodes.append(node)
        try:
            return wait_for_nodes(dashboard, len(alive) + 1, alive + [node])
        except NodeExited:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def wait_for_nodes(dashboard: str, count: int, nodes: list[RayNode], timeout: float = 180) -> list[dict]:
    """Block until ``count`` nodes are alive (per the dashboard's state API); returns their records."""
    deadline = time.monotonic() + timeout
    while True:
        for node in nodes:
            if node.process.poll() is not None:
                raise NodeExited(node.log_path.read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{dashboard}/api/v0/nodes?detail=1", timeout=5) as resp:
                alive = [n for n in json.load(resp)["data"]["result"]["result"] if n["state"] == "ALIVE"]
            if len(alive) >= count:
                return alive
        except (OSError, KeyError, ValueError):
            pass
        assert time.monotonic() < deadline, f"{count} Ray nodes did not come up"
        time.sleep(1)


def list_actors(dashboard: str, class_name: str) -> list[dict]:
    """All actors (dead ones too) of one class, with the node each ran on."""
    url = f"{dashboard}/api/v0/actors?detail=1&limit=1000&filter_keys=class_name&filter_predicates=%3D&filter_values={class_name}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)["data"]["result"]["result"]
