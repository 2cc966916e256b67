"""``skilltrain serve`` as a command: its Serve config file, its one-line refusals, and (slow) a real run.

The config and refusal tests start no Ray (each is a fraction of a second); the slow test runs the
command as a user does, in its own process, and stops it with Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.serve import client

from skilltrain.cli import main


def print_config(capsys: pytest.CaptureFixture, *flags: str) -> dict:
    assert main(["serve", "--print-config", *flags]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_print_config_is_a_serve_config_file_that_builds_the_same_application(capsys, monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    from skilltrain.serve.app import build_app
    from skilltrain.serve.config import AppConfig

    monkeypatch.setenv("MY_SERVE_KEY", "not-to-be-printed")
    printed = print_config(capsys, "--model", "s3://bucket/models/esco", "--autoscale", "1,4", "--device", "cuda",
                           "--api-key-env", "MY_SERVE_KEY", "--max-texts", "50", "--batch-wait-ms", "2")
    schema = ServeDeploySchema.model_validate(printed)  # Serve's own schema for `serve deploy`
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8000
    [app] = schema.applications
    module, _, name = app.import_path.partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is build_app
    args = AppConfig.model_validate(app.args)
    assert args.model == "s3://bucket/models/esco" and args.device == "cuda" and args.max_batch_size == 512
    assert (args.autoscale.min_replicas, args.autoscale.max_replicas) == (1, 4)
    assert args.api_key_env == "MY_SERVE_KEY" and args.max_texts == 50 and args.batch_wait_ms == 2
    assert "not-to-be-printed" not in yaml.safe_dump(printed)
    assert printed["http_options"]["request_timeout_s"] > args.request_timeout_s  # the ingress's JSON 503 comes first
    assert print_config(capsys, "--host", "0.0.0.0")["http_options"]["host"] == "0.0.0.0"


@pytest.mark.parametrize("flags, line", [
    (["--autoscale", "3,1"], "--autoscale: expected MIN,MAX"),
    (["--replicas", "2", "--autoscale", "1,2"], "--replicas and --autoscale: give one of them"),
    (["--cpus-per-replica", "0"], "--cpus-per-replica: Input should be greater than 0"),
    (["--api-key-env", "SKILLTRAIN_SERVE_UNSET_VAR"], "--api-key-env: $SKILLTRAIN_SERVE_UNSET_VAR is not set or empty"),
    (["--api-key-env", "not a name"], "--api-key-env: 'not a name' is not an environment variable name"),
    (["--model", "/nonexistent/model"], "/nonexistent/model: model directory does not exist"),
])
def test_bad_flags_exit_2_with_one_line_before_anything_starts(capsys, monkeypatch, flags, line):
    import ray

    monkeypatch.delenv("SKILLTRAIN_SERVE_UNSET_VAR", raising=False)
    assert exit_code(["serve", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert line in err.splitlines()[-1] and "Traceback" not in err  # argparse's usage lines come before it
    assert not ray.is_initialized()


def test_a_port_in_use_is_refused_before_ray_starts(capsys, tiny_encoder_dir: Path):
    import socket

    import ray

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert exit_code(["serve", "--model", str(tiny_encoder_dir), "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == (f"skilltrain: error: --host/--port 127.0.0.1:{port}: cannot listen there "
                                               "(Address already in use); choose another --port")
    assert not ray.is_initialized()


def exit_code(argv: list[str]) -> int:
    """What the command exits with: its return value, or argparse's SystemExit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.slow
def test_the_command_serves_until_ctrl_c_and_stops_ray(tiny_encoder_dir: Path, esco_csv: Path, tmp_path: Path):
    from helpers.ports import free_ports

    port = free_ports(1)[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")])),
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "skilltrain.cli", "serve", "--model", str(tiny_encoder_dir), "--esco", str(esco_csv),
               "--port", str(port), "--backend", "torch-fp32"]
    log = tmp_path / "serve.log"
    with log.open("a") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline and "skilltrain: serving" not in log.read_text():
            time.sleep(1)
        with client() as http:
            assert http.get(f"{url}/healthz").json() == {"status": "ok"}
            answer = http.post(f"{url}/v1/extract", json={"texts": ["We need a welder. Payroll audits."]})
            assert answer.status_code == 200 and len(answer.json()["results"][0]["sentences"]) == 2
        assert len(session_processes(process.pid)) > 3  # the command, Ray's GCS, raylet, Serve's actors and replicas
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # the port is taken
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.strip() == (f"skilltrain: error: --host/--port 127.0.0.1:{port}: cannot listen there "
                                         "(Address already in use); choose another --port")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
        deadline = time.monotonic() + 30
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert session_processes(process.pid) == []  # Serve and Ray stopped with it
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert f"serving {tiny_encoder_dir} at {url}" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]



def session_processes(sid: int) -> list[str]:
    """Processes still alive in the command's session (it was started in a new one): their command lines."""
    listing = subprocess.run(["ps", "-s", str(sid), "-o", "stat=,args="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.strip() and not line.lstrip().startswith("Z")]
