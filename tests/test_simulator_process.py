"""Starting and stopping the simulator: subprocess helper (never leaks), CLI, python -m."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from skillgen.cli import main as skillgen_main
from skillgen.simulator import SimulatorProcess
from skillgen.simulator.__main__ import main as simulator_main
from skillgen.simulator.config import REQUIRE_KEY_ENV

REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a dead parent's init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_start_serves_stats_and_stop_writes_the_stats_file(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    sim = SimulatorProcess(stats_file=stats_file, seed=3, require_key="sk-env-only")
    base_url = sim.start()
    try:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        # The required key travels in the environment: command lines are visible to every user.
        assert sim.api_key == "sk-env-only"
        assert "sk-env-only" not in Path(f"/proc/{sim.pid}/cmdline").read_bytes().decode()
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="sk-other", max_retries=0).models.list()
        client = openai.OpenAI(base_url=base_url, api_key=sim.api_key, max_retries=0, timeout=10)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"X-Request-Key": "one"})
        assert sim.stats()["served_by_key"] == {"one": 1}
        sim.reset_stats()
        assert sim.stats()["served"] == 0
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        pid = sim.pid
        assert pid is not None and alive(pid)
    finally:
        assert sim.stop() == 0  # SIGTERM is a clean shutdown
    assert not alive(pid)
    assert sim.stop() == 0  # idempotent
    written = json.loads(stats_file.read_text())
    assert written["served"] == 1 and written["config"]["seed"] == 3


def test_the_process_is_stopped_when_the_with_block_raises() -> None:
    pid = None
    with pytest.raises(ZeroDivisionError):
        with SimulatorProcess() as sim:
            pid = sim.pid
            1 / 0
    assert pid is not None and wait_gone(pid, 5)


def test_a_forgotten_process_is_stopped_when_garbage_collected() -> None:
    sim = SimulatorProcess()
    sim.start()
    pid = sim.pid
    assert pid is not None
    del sim
    gc.collect()
    assert wait_gone(pid, 5)


def test_the_server_exits_when_its_parent_is_killed() -> None:
    script = (
        "import sys, time\n"
        "from skillgen.simulator import SimulatorProcess\n"
        "sim = SimulatorProcess(); sim.start()\n"
        "print(sim.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)  # no Python cleanup runs in the parent
        parent.wait(5)
        assert wait_gone(child, 10)
    finally:
        parent.kill()


def test_start_failure_raises_with_the_server_output_and_leaks_nothing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sim = SimulatorProcess(port=port, startup_timeout=20)
        with pytest.raises(RuntimeError, match="cannot listen"):
            sim.start()
    assert sim.pid is not None and not alive(sim.pid)


def test_skillgen_sim_server_help_lists_the_flags(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_KEY_ENV, "sk-must-not-show")
    with pytest.raises(SystemExit) as info:
        skillgen_main(["sim-server", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--rpm", "--tpm", "--latency", "--fault-rate", "--seed", "--hang-seconds",
                 "--require-key", "--stats-file"):
        assert flag in out
    assert "sk-must-not-show" not in out


@pytest.mark.parametrize("argv", [["--fault-rate", "bogus=0.1"], ["--latency", "gauss:1"],
                                  ["--fault-rate", "500=0.7,503=0.7"], ["--rpm", "-5"]])
def test_bad_flags_are_one_line_user_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert simulator_main(["--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err


def test_skillgen_cli_serves_until_sigterm(tmp_path: Path) -> None:
    stats_file = tmp_path / "cli-stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "skillgen.cli", "sim-server", "--port", "0", "--stats-file", str(stats_file)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        match = None
        while match is None:
            line = proc.stdout.readline()
            assert line, "server exited before listening"
            match = re.search(r"listening on (http://\S+/v1)", line)
        base_url = match.group(1)
        assert [m.id for m in openai.OpenAI(base_url=base_url, api_key="k", max_retries=0).models.list()]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
    assert json.loads(stats_file.read_text())["received"] == 0
