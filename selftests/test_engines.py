"""Engine profiles and launch commands: the user's own command lines, flag by flag."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from slogate.config import Settings
from slogate.engines import command_line
from slogate.engines.launch import flag_pairs
from slogate.engines.profile import load_profile
from slogate.engines.vllm import VllmEngine
from slogate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "matrices" / "engines"

# From the deployment guide (seed 000), verbatim.
SEED_DOCKER = (
    "docker run -itd --privileged --net=host --cap-add=SYS_PTRACE "
    "--security-opt seccomp=unconfined --tmpfs /dev/shm:rw,nosuid,nodev,exec,size=128g "
    '-v /ssd1/models:/mnt/models --gpus all --name vllm-test --entrypoint "" -w /workspace '
    "vllm/vllm-openai:v0.8.2 /bin/bash"
)
SEED_VLLM = (
    "python3 -m vllm.entrypoints.openai.api_server --model /mnt/models/DeepSeek-R1 "
    "--gpu-memory-utilization 0.95 --tensor-parallel-size 8 --host 0.0.0.0 --trust-remote-code "
    "--port 8000 --max_num_seqs 256 --max-num-batched-tokens 16384 --max_model_len 4096 "
    "--max_seq_len_to_capture 16384 --tokenizer-mode auto --enable-chunked-prefill=False "
    "--enable-reasoning --reasoning-parser deepseek_r1 --enforce-eager"
)
# From the H800 notes (seed 003); its `--host` had no value there, a local bind is used.
SEED_AWQ = (
    "python -m vllm.entrypoints.openai.api_server --served-model-name deepseek-r1 "
    "--model /data/modlescope/DeepSeek-R1-awq --trust-remote-code --host 127.0.0.1 --port 8000 "
    "--gpu-memory-utilization 0.95 --tensor-parallel-size 8 --enable-prefix-caching "
    "--max-model-len 8192 --enforce-eager --dtype float16"
)


def docker_flags(argv: list[str]) -> set[tuple[str, str | None]]:
    """The docker run options, normalised (--net=host is --network host)."""
    image = next(i for i, a in enumerate(argv) if a.startswith("vllm/") or a.startswith("lmsys"))
    pairs = set()
    for name, value in flag_pairs(argv[2:image]):
        name = {"--net": "--network"}.get(name, name)
        pairs.add((name, value.strip('"') if value else value))
    return pairs


def split_at_image(argv: list[str]) -> tuple[list[str], list[str]]:
    i = next(i for i, a in enumerate(argv) if a.startswith("vllm/vllm-openai"))
    return argv[: i + 1], argv[i + 1 :]


def test_seed_vllm_docker_command_flag_by_flag() -> None:
    settings = Settings(engine="vllm", profile=load_profile(PROFILES / "vllm-deepseek-r1-h20.yaml"))
    argv, resolved, name = VllmEngine().command(settings, run_id="t1")
    docker, server = split_at_image(argv)
    # Same container flags as the user's, except how it runs: attached (not -itd), removed
    # on exit, with slogate's name, and the server as the container's command (no /bin/bash).
    ours = docker_flags(docker) - {("--rm", None), ("--init", None), ("--name", name)}
    ours = {p for p in ours if p[0] != "-e"}
    theirs = docker_flags(shlex.split(SEED_DOCKER)) - {("-itd", None), ("--name", "vllm-test")}
    assert ours == theirs
    assert docker[-1] == "vllm/vllm-openai:v0.8.2"
    assert server[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert sorted(flag_pairs(server[3:])) == sorted(flag_pairs(shlex.split(SEED_VLLM)[3:]))
    # the dual-stack advice of the guide: VLLM_HOST_IP set to this host's address
    assert {k for k in resolved.env} == {"VLLM_HOST_IP", "HOST_IP"}
    assert "${HOST_IP}" not in " ".join(argv)


def test_seed_awq_local_command_flag_by_flag() -> None:
    settings = Settings(
        engine="vllm",
        profile=load_profile(PROFILES / "vllm-deepseek-r1-awq-h800.yaml"),
        show_engine_command=True,
    )
    argv, resolved, _ = VllmEngine().command(settings)
    assert argv[0] == "/data/vllm/bin/python"
    assert sorted(flag_pairs(argv[3:])) == sorted(flag_pairs(shlex.split(SEED_AWQ)[3:]))
    assert resolved.served_model == "deepseek-r1"


def test_command_line_overrides() -> None:
    profile = load_profile(PROFILES / "vllm-deepseek-r1-h20.yaml")
    settings = Settings(
        engine="vllm",
        profile=profile,
        launcher="local",
        engine_python="/venv/bin/python",
        model="/tmp",
        engine_args=("--max-num-seqs", "64"),
    )
    line = command_line(settings)
    assert line.startswith("VLLM_HOST_IP=") and "/venv/bin/python -m vllm.entrypoints" in line
    assert "docker" not in line
    assert line.endswith("--max-num-seqs 64")  # --engine-args are appended last


def test_api_key_goes_by_environment_not_argv(tmp_path: Path) -> None:
    settings = Settings(engine="vllm", model=str(tmp_path), api_key="sk-planted-secret")
    launch, _ = VllmEngine().launch(settings, tmp_path / "logs")
    assert "sk-planted-secret" not in " ".join(launch.argv)
    assert launch.env is not None and launch.env["VLLM_API_KEY"] == "sk-planted-secret"


def test_engine_binds_loopback_unless_the_profile_says_otherwise(tmp_path: Path) -> None:
    argv, _, _ = VllmEngine().command(Settings(engine="vllm", model=str(tmp_path)))
    assert dict(flag_pairs(argv))["--host"] == "127.0.0.1"
    assert "--trust-remote-code" not in argv


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("engine: tgi\n", "engine: expected one of vllm, sglang, ollama, llamacpp"),
        ("engine: vllm\nlauncher: k8s\n", "launcher: expected local or docker"),
        ("engine: vllm\nargz: []\n", "unknown key 'argz'"),
        ("engine: vllm\ndocker: {gpu: all}\n", "docker: unknown key 'gpu'"),
        ("engine: vllm\nport: 99999\n", "port: expected 1..65535"),
        ("engine: vllm\nargs: '--a \"b'\n", "cannot split the arguments"),
    ],
)
def test_bad_profiles(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="p.yaml") as info:
        load_profile(path)
    assert message in str(info.value)


def test_show_engine_command_starts_nothing(project: pytest.Pytester) -> None:
    res = project.runpytest_subprocess(
        "--engine-profile", "vllm-deepseek-r1-h20.yaml", "--show-engine-command"
    )
    assert res.ret == 0
    line = res.stdout.lines[0]
    assert line.startswith("docker run --rm --init --name slogate-vllm-")
    assert "vllm/vllm-openai:v0.8.2 python3 -m vllm.entrypoints.openai.api_server" in line
    assert not (project.path / "reports" / "logs").exists()
