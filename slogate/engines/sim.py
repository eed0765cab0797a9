"""The built-in simulator (``python -m slogate.sim``) as an engine."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import slogate
from slogate.engines.base import (
    COMMON_FAILURES,
    VLLM_METRICS,
    Launch,
    diagnose_with,
    http_probe,
)
from slogate.server import LogDiagnosis, listening_socket
from slogate.sim.server import API_KEY_ENV as SIM_API_KEY_ENV

if TYPE_CHECKING:
    from slogate.config import Settings


class SimEngine:
    metrics = VLLM_METRICS
    name = "sim"

    def launch(self, settings: Settings, workdir: Path) -> tuple[Launch, list[Any]]:
        # The simulator serves on a socket bound here, so no other process can take the port.
        sock = listening_socket("127.0.0.1")
        port = sock.getsockname()[1]
        argv = [
            sys.executable, "-m", "slogate.sim",
            "--fd", str(sock.fileno()),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--profile", settings.sim_profile,
            "--time-scale", repr(settings.sim_time_scale),
            "--model", settings.served_model,
            *settings.engine_args,
        ]  # fmt: skip
        # The child must import this very slogate, wherever pytest was started from.
        package_root = str(Path(slogate.__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        # The key goes by environment, never argv (which the log and reports show).
        env.pop(SIM_API_KEY_ENV, None)
        if settings.api_key:
            env[SIM_API_KEY_ENV] = settings.api_key
        launch = Launch(argv, f"http://127.0.0.1:{port}", env=env, pass_fds=[sock.fileno()])
        return launch, [sock]

    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        return http_probe(client, f"{base_url}/health")

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        try:
            info = client.get(f"{base_url}/version", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return {
            "version": info.get("version"),
            "sim_profile": info.get("profile"),
            "time_scale": info.get("time_scale"),
        }

    def diagnose(self, log: str) -> LogDiagnosis | None:
        return diagnose_with(COMMON_FAILURES, log)
