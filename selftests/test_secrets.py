"""Secrets: the API key and tokens reach the engine by environment and appear nowhere else.

A planted key (``--api-key KEY``, ``--api-key=KEY`` or ``SLOGATE_API_KEY``) and a planted
``HF_TOKEN`` go through a whole session whose second case breaks, run with pytest's
``-l -vv`` so failures print every local variable in full; then every file under the
reports directory (logs and Allure results included) and the captured output are
searched for them.  Engines bind 127.0.0.1 and trust no remote code unless a profile
says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from slogate.config import Settings
from slogate.engines import command_line
from slogate.engines.base import Endpoint, Launch
from slogate.engines.launch import ServerEngine, flag_pairs
from slogate.engines.profile import load_profile
from slogate.engines.sglang import SglangEngine
from slogate.engines.vllm import VllmEngine
from slogate.loadgen.runner import LoadSpec
from slogate.server import EngineProcess, listening_socket
from slogate.sim.server import API_KEY_ENV

KEY = "sk-slogate-planted-XYZ"
HF_TOKEN = "hf_slogatePlantedToken123"
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--lengths", "32x16", "--num-prompts", "6", "-p", "no:cacheprovider"]


def files_holding(root: Path, secrets: tuple[str, ...]) -> tuple[list[str], int]:
    """Files under ``root`` that contain any of ``secrets``, and how many were read."""
    hits, read = [], 0
    for path in root.rglob("*"):
        if path.is_file():
            read += 1
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return hits, read


@pytest.mark.parametrize("how", ["--api-key KEY", "--api-key=KEY", "SLOGATE_API_KEY"])
def test_planted_secrets_appear_in_no_report_log_or_output(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    key_args = {"--api-key KEY": ["--api-key", KEY], "--api-key=KEY": [f"--api-key={KEY}"]}
    if how == "SLOGATE_API_KEY":
        monkeypatch.setenv("SLOGATE_API_KEY", KEY)
    res = project.runpytest_subprocess(
        "-m", "smoke", *FAST, "--concurrency", "1,2", *key_args.get(how, []),
        "--engine-args=--crash-after 10", "-l", "-vv",
    )  # fmt: skip
    # c1 passed: the simulator, which answers 401 without the key, got it by environment
    # and the client sent it.  c2 broke (the engine died), so a failure was printed with
    # every local variable of every frame.
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*EngineDiedError*"])
    output = res.stdout.str() + res.stderr.str()
    assert KEY not in output and HF_TOKEN not in output
    reports = project.path / "reports"
    hits, read = files_holding(reports, (KEY, HF_TOKEN))
    assert hits == []
    assert read > 10  # results, requests, summary, Allure results and attachments, logs
    engine_log = (reports / "logs" / "sim-server.log").read_text()
    assert "# slogate: starting sim:" in engine_log  # the command line was logged, keyless
    environment = (reports / "allure-results" / "environment.properties").read_text()
    if how != "SLOGATE_API_KEY":
        assert "--api-key" in environment  # the command is recorded, its value redacted


def test_the_simulator_requires_the_key_it_was_given() -> None:
    """What makes the session test above prove that the key reached the engine."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "slogate.sim", "--fd", str(sock.fileno())],
        pass_fds=[sock.fileno()],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), API_KEY_ENV: KEY},
        start_new_session=True,
    )
    sock.close()
    try:
        assert proc.stdout is not None and b"ready" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        body = {"prompt": "a b", "max_tokens": 2}

        def post(headers: dict[str, str]) -> int:
            return httpx.post(f"{url}/v1/completions", json=body, headers=headers).status_code

        assert post({}) == 401
        assert post({"Authorization": "Bearer sk-wrong"}) == 401
        assert post({"Authorization": f"Bearer {KEY}"}) == 200
        assert httpx.get(f"{url}/health").status_code == 200  # as vLLM: no key for probes
        assert KEY not in str(proc.args)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_objects_holding_the_key_never_show_it() -> None:
    """pytest --showlocals prints these reprs, and Allure keeps what pytest prints."""
    env = {"VLLM_API_KEY": KEY}
    for obj in (
        Settings(api_key=KEY),
        LoadSpec(base_url="http://127.0.0.1:1", model="m", api_key=KEY),
        Endpoint("vllm", "http://127.0.0.1:1", "m", KEY),
        Launch(["vllm"], "http://127.0.0.1:1", env=env),
        EngineProcess(["vllm"], Path("log"), probe=lambda: None, env=env),
    ):
        assert KEY not in repr(obj), type(obj).__name__


def test_secrets_go_by_environment_never_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "engine: vllm\nlauncher: docker\nimage: vllm/vllm-openai:v0.8.2\n"
        f"model: {tmp_path}\npass_env: [HF_TOKEN]\n"
    )
    settings = Settings(engine="vllm", profile=load_profile(profile), api_key=KEY)
    line = command_line(settings)  # what --show-engine-command prints
    argv, _, _ = VllmEngine().command(settings, run_id="t")
    assert KEY not in line and HF_TOKEN not in line
    assert ["-e", "HF_TOKEN"] in [argv[i : i + 2] for i in range(len(argv))]
    assert ["-e", "VLLM_API_KEY"] in [argv[i : i + 2] for i in range(len(argv))]
    launch, _ = VllmEngine().launch(settings, tmp_path / "logs")
    assert launch.env is not None and launch.env["VLLM_API_KEY"] == KEY
    assert KEY not in " ".join(launch.argv) and HF_TOKEN not in " ".join(launch.argv)


@pytest.mark.parametrize("engine", [VllmEngine(), SglangEngine()], ids=["vllm", "sglang"])
def test_loopback_and_no_remote_code_unless_the_profile_asks(
    tmp_path: Path, engine: ServerEngine
) -> None:
    default = Settings(engine=engine.name, model=str(tmp_path))
    argv, _, _ = engine.command(default)
    assert dict(flag_pairs(argv))["--host"] == "127.0.0.1"
    assert "--trust-remote-code" not in argv

    profile = tmp_path / "p.yaml"
    profile.write_text(
        f"engine: {engine.name}\nmodel: {tmp_path}\nhost: 0.0.0.0\ntrust_remote_code: true\n"
    )
    asked = Settings(engine=engine.name, profile=load_profile(profile))
    argv, _, _ = engine.command(asked)
    assert dict(flag_pairs(argv))["--host"] == "0.0.0.0"
    assert argv.count("--trust-remote-code") == 1
    launch, _ = engine.launch(asked, tmp_path / "logs")
    assert launch.base_url.startswith("http://127.0.0.1:")  # reached locally either way
