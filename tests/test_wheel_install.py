"""The package as a stranger gets it: a built wheel, a fresh virtual environment outside the
repository, an empty working directory, no ``../shared`` and no data variables.

The fresh environment gets our wheel with ``--no-deps``; its third-party dependencies come from
this test run's environment through a plain path entry (a ``.pth`` line, which never activates
the editable install of the checkout), so the test needs no network and proves that everything
of ours, code and data, comes from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers.pipeline import MAX_CONSOLE_LINE, long_lines

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("stranger")
    source = base / "source"  # the files git would ship, so no stale build/ or untracked file leaks into the wheel
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
                   check=True, cwd=base, timeout=300)
    wheel = next(dist.glob("esco_skillgen-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in (*site.getsitepackages(), sysconfig.get_paths()["purelib"]) if Path(p).is_dir()]
    (Path(purelib) / "zz_test_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    workdir = base / "empty" / "cwd"
    workdir.mkdir(parents=True)
    return {"python": python, "bin": venv / "bin", "cwd": workdir, "base": base}


def run_in(env: dict[str, Path], args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SKILLS_DATA_DIR", "ESCO_SKILLS_CSV", "PYTHONPATH", "RAY_ADDRESS")}
    clean.update(PATH=f"{env['bin']}:{clean.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    return subprocess.run(args, cwd=env["cwd"], env=clean, capture_output=True, text=True, timeout=timeout)


# A line of Ray's C++ core at warning or error level, e.g. "[2026-11-30 20:25:14,223 E 13881 13881] core_worker.cc:2465: ..."
RAY_CORE_LINE = re.compile(r"\d [WE] \d+ \d+\] [\w.]+\.cc:\d+")
# What makes two console lines the same message: no log timestamp/level prefix, no Ray worker prefix, no colour codes.
LOG_PREFIX = re.compile(r"^(\x1b\[[\d;]*m)*(\(\w+ pid=\d+(, ip=[\d.]+)?\)(\x1b\[[\d;]*m)* )?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \w+ [\w.]+: )?")


def console_problems(output: str) -> list[str]:
    """Ray C++ warning/error lines, and messages printed twice (table rules and headers aside)."""
    problems = [f"Ray core line: {line}" for line in output.splitlines() if RAY_CORE_LINE.search(line)]
    problems += [f"longer than {MAX_CONSOLE_LINE} characters: {line[:120]}..." for line in long_lines(output)]
    seen: set[str] = set()
    for line in output.splitlines():
        message = re.sub(r"\x1b\[[\d;]*m", "", LOG_PREFIX.sub("", line)).strip()
        if len(message) < 12 or set(message) <= set("-| ") or message.startswith("set "):
            continue
        if message in seen:
            problems.append(f"printed twice: {message}")
        seen.add(message)
    return problems


def test_console_check_catches_what_it_should():
    noisy = ("[2026-11-30 20:25:14,223 E 13881 13881] core_worker.cc:2465: Actor x has constructor arguments\n"
             "(RayTrainWorker pid=15308) [skilltrain] step 5/5 loss 0.03\n(RayTrainWorker pid=15308) [skilltrain] step 5/5 loss 0.03\n"
             "2026-11-30 20:25:20,950 INFO skillgen.run: complete: 12 skills\ncomplete: 12 skills\n")
    assert len(console_problems(noisy)) == 3
    assert len(console_problems("(RayTrainWorker pid=1) Reporting training result 1: TrainingReport(" + "x" * 300 + ")\n")) == 1
    assert console_problems("set  n  RP@5\n-----\nset  n  RP@5\n-----\nstep 1 loss 2\nstep 2 loss 1\n") == []


def test_wheel_carries_code_and_data_and_runs_from_an_empty_directory(wheel_env):
    assert not (wheel_env["cwd"].parent / "shared").exists()
    where = run_in(wheel_env, [str(wheel_env["python"]), "-c",
                               "import skillgen, cluster; from skillgen.common import paths; "
                               "print(skillgen.__file__); print(cluster.__file__); print(paths.verify_bundled())"])
    assert where.returncode == 0, where.stderr
    lines = where.stdout.splitlines()
    assert all(str(ROOT) not in line and "site-packages" in line for line in lines[:2]), lines
    assert lines[2] == "[]"

    estimate = run_in(wheel_env, [str(wheel_env["bin"] / "skillgen"), "estimate", "--model", "gpt-4o-mini", "-n", "10"])
    assert estimate.returncode == 0, estimate.stderr
    assert "13896 x 10 sentences" in estimate.stdout

    help_text = run_in(wheel_env, [str(wheel_env["bin"] / "skilltrain"), "eval", "--help"])
    assert help_text.returncode == 0 and "--esco" in help_text.stdout and "bundled" in help_text.stdout


@pytest.mark.slow  # the pipeline itself is in the default suite (test_pipeline.py); CI runs this one too (.ci/run)
def test_wheel_runs_the_pipeline_to_a_report(wheel_env, tiny_encoder_dir):
    """The main job from the wheel with tiny settings: bundled ESCO and benchmarks, the tiny encoder."""
    config = wheel_env["base"] / "tiny.toml"
    config.write_text(f"""
run_dir = "runs/tiny"
[simulator]
latency = "fixed:0.01"
[generation]
base_url = "simulator"
n_sentences = 4
sample = 8
workers = 1
[training]
workers = 1
batch_size = 8
max_steps = 2
eval_every = 2
model = "{tiny_encoder_dir}"
max_seq_length = 32
val_sets = ["tech"]
[evaluation]
sets = ["tech"]
baseline = false
""")
    done = run_in(wheel_env, [str(wheel_env["python"]), "-m", "cluster.pipeline", "--config", str(config)], timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = wheel_env["cwd"] / "runs" / "tiny" / "report.md"
    assert report.exists() and "TECH" in report.read_text()
    assert "pipeline finished" in done.stdout
    problems = console_problems(done.stdout + done.stderr)
    assert not problems, "\n".join(problems)
