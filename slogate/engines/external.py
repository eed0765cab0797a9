"""An endpoint that is already running (``--engine external --base-url URL``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from slogate.engines.base import ANY_METRICS, Launch, fetch_version
from slogate.server import LogDiagnosis

if TYPE_CHECKING:
    from slogate.config import Settings


class ExternalEngine:
    metrics = ANY_METRICS
    name = "external"

    def launch(self, settings: Settings, workdir: Path) -> tuple[Launch, list[Any]]:
        raise NotImplementedError("an external endpoint is not started by slogate")

    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        # /v1/models is the one route every OpenAI-compatible server has.
        try:
            resp = client.get(f"{base_url}/v1/models", timeout=10.0)
        except httpx.HTTPError as exc:
            return f"GET {base_url}/v1/models: {type(exc).__name__}: {exc}"
        if resp.status_code != 200:
            return f"GET {base_url}/v1/models: HTTP {resp.status_code}"
        return None

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if version := fetch_version(client, f"{base_url}/version"):
            info["version"] = version
        try:
            models = client.get(f"{base_url}/v1/models", timeout=5.0).json().get("data", [])
            info["served_models"] = [m.get("id") for m in models if isinstance(m, dict)]
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        return info

    def diagnose(self, log: str) -> LogDiagnosis | None:
        return None
