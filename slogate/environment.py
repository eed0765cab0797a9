"""The run environment recorded with every run: host, GPUs, driver, CUDA, slogate.

GPU facts come from ``nvidia-smi`` when it is there; on a machine without it the fields
say so rather than being left out, so a report never looks like it came from a GPU box
when it did not.
"""

from __future__ import annotations

import platform
import re
import shutil
import socket
import subprocess
from typing import Any

from slogate import __version__


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_gpu_query(csv_text: str) -> list[dict[str, str]]:
    """``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader``."""
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def parse_cuda_version(banner: str) -> str | None:
    """The ``CUDA Version: 12.2`` of nvidia-smi's banner."""
    m = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    return m.group(1) if m else None


def gpu_environment() -> dict[str, Any]:
    if shutil.which("nvidia-smi") is None:
        return {"gpu": "none (nvidia-smi not found)", "gpu_count": 0}
    query = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    gpus = parse_gpu_query(query or "")
    banner = _run(["nvidia-smi"]) or ""
    if not gpus:
        return {"gpu": "unknown (nvidia-smi failed)", "gpu_count": 0}
    names = sorted({g["name"] for g in gpus})
    return {
        "gpu": ", ".join(names),
        "gpu_count": len(gpus),
        "gpu_memory": gpus[0]["memory"],
        "gpu_driver": gpus[0]["driver"],
        "cuda_version": parse_cuda_version(banner),
    }


def host_environment() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "slogate_version": __version__,
    }


#: Options whose value is a secret wherever they appear on a command line.
SECRET_OPTIONS = ("--api-key", "--hf-token", "--token", "--admin-api-key")


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret options replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name in SECRET_OPTIONS:
            if eq:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out
