"""Several engine configurations in one session, and pytest-xdist workers with own GPUs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slogate.config import Settings
from slogate.engines.launch import worker_gpus
from slogate.engines.profile import load_profile
from slogate.engines.vllm import VllmEngine

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--lengths", "32x16", "--num-prompts", "6", "-p", "no:cacheprovider"]
PROFILES = "default,h20-deepseek-r1-sglang"


def test_two_configurations_on_two_workers_each_started_once(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--sim-profile", PROFILES, "--sim-time-scale", "20", "-n", "2",
        "-v",
    )  # fmt: skip
    res.assert_outcomes(passed=4)
    workers: dict[str, set[str]] = {}
    for line in res.stdout.lines:
        m = re.search(r"\[(gw\d)\].*PASSED.*test_smoke\[(sim-[\w.-]+?)-c\d+-in32-out16\]", line)
        if m:
            workers.setdefault(m.group(2), set()).add(m.group(1))
    assert set(workers) == {"sim-default", "sim-h20-deepseek-r1-sglang"}
    assert all(len(w) == 1 for w in workers.values()), workers  # a configuration stays put
    reports = project.path / "reports"
    for label in workers:
        log = (reports / label / "logs" / "sim-server.log").read_text()
        assert log.count("# slogate: starting sim") == 1  # its engine started once
        assert len(list((reports / label / "results").glob("serving_benchmark_*.json"))) == 2


def test_gpu_engines_need_gpus_per_worker_for_n(project: pytest.Pytester, tmp_path: Path) -> None:
    res = project.runpytest_subprocess(
        "-m", "smoke", "--engine", "vllm", f"--model={tmp_path}", "-n", "2"
    )
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(
        ["ERROR: -n 2 would run vllm in parallel on the same GPUs*--gpus-per-worker G*"]
    )


def test_each_worker_gets_its_own_gpus_and_port() -> None:
    profile = load_profile(ROOT / "matrices" / "engines" / "vllm-deepseek-r1-h20.yaml")
    argvs = []
    for worker in (0, 1):
        s = Settings(engine="vllm", profile=profile, gpus_per_worker=4, worker=worker)
        assert worker_gpus(s) == ("0,1,2,3", "4,5,6,7")[worker]
        argv, resolved, _ = VllmEngine().command(s, run_id=f"w{worker}")
        assert argv[argv.index("--gpus") + 1] == f'"device={worker_gpus(s)}"'
        argvs.append(argv)
    ports = [a[a.index("--port", a.index("vllm.entrypoints.openai.api_server")) + 1] for a in argvs]
    assert ports[0] != ports[1] and "8000" not in ports  # not the profile's fixed port


def test_local_worker_sets_cuda_visible_devices(tmp_path: Path) -> None:
    s = Settings(engine="vllm", model=str(tmp_path), gpus_per_worker=2, worker=3)
    launch, _ = VllmEngine().launch(s, tmp_path / "logs")
    assert launch.env is not None and launch.env["CUDA_VISIBLE_DEVICES"] == "6,7"


def test_two_configurations_in_one_session_are_compared(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--sim-profile", PROFILES, "--sim-time-scale", "20"
    )
    res.assert_outcomes(passed=4)
    compare_md = (project.path / "reports" / "compare" / "compare.md").read_text()
    assert "sim-default" in compare_md and "sim-h20-deepseek-r1-sglang" in compare_md
    assert (project.path / "reports" / "compare" / "compare.csv").exists()
    res.stdout.fnmatch_lines(
        [
            "*slogate sim-default*",
            "*slogate sim-h20-deepseek-r1-sglang*",
            "*comparison: *compare.md*",
        ]
    )
