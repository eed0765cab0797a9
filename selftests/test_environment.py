"""The run environment: GPU facts from nvidia-smi, secrets out of recorded commands."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slogate.environment import (
    gpu_environment,
    parse_cuda_version,
    parse_gpu_query,
    redact_argv,
)

H20_QUERY = "NVIDIA H20, 535.216.03, 97871 MiB\n" * 8
BANNER = "| NVIDIA-SMI 535.216.03   Driver Version: 535.216.03   CUDA Version: 12.2     |"


def test_parse_nvidia_smi() -> None:
    gpus = parse_gpu_query(H20_QUERY)
    assert len(gpus) == 8 and gpus[0] == {
        "name": "NVIDIA H20",
        "driver": "535.216.03",
        "memory": "97871 MiB",
    }
    assert parse_cuda_version(BANNER) == "12.2"


def test_gpu_environment_from_a_fake_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=name,driver_version,memory.total" ]; then\n'
        f"printf '{H20_QUERY.strip()}\\n'\nelse\necho '{BANNER}'\nfi\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    env = gpu_environment()
    assert env == {
        "gpu": "NVIDIA H20",
        "gpu_count": 8,
        "gpu_memory": "97871 MiB",
        "gpu_driver": "535.216.03",
        "cuda_version": "12.2",
    }


def test_no_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_environment()["gpu_count"] == 0


def test_redact_argv() -> None:
    argv = ["sglang", "--api-key", "sk-1", "--port", "8000", "--hf-token=hf_x", "--api-key=k2"]
    assert redact_argv(argv) == [
        "sglang",
        "--api-key",
        "***",
        "--port",
        "8000",
        "--hf-token=***",
        "--api-key=***",
    ]
