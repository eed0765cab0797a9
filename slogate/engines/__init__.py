"""One module per engine: how to launch it, when it is ready, how to read its metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from slogate.config import Settings
from slogate.engines.base import Endpoint, Engine, Launch
from slogate.errors import ConfigError, EngineStartError
from slogate.server import EngineProcess


def get_engine(name: str) -> Engine:
    if name == "sim":
        from slogate.engines.sim import SimEngine

        return SimEngine()
    if name == "external":
        from slogate.engines.external import ExternalEngine

        return ExternalEngine()
    raise ConfigError(
        f"--engine {name}: launching {name} is not available yet; start it yourself and use "
        f"--engine external --base-url http://HOST:PORT"
    )


@contextlib.contextmanager
def running_endpoint(settings: Settings, log_dir: Path) -> Iterator[Endpoint]:
    """Start the engine named in ``settings`` (or reach the external one) and yield it.

    Whatever happens inside the block, a started engine is torn down on exit.
    """
    engine = get_engine(settings.engine)
    with httpx.Client() as client:
        if settings.engine == "external":
            assert settings.base_url is not None
            reason = engine.probe(client, settings.base_url, settings.served_model)
            if reason:
                raise EngineStartError(
                    f"the external endpoint {settings.base_url} is not answering: {reason}"
                )
            info = engine.describe(client, settings.base_url)
            model = settings.served_model or (info.get("served_models") or [""])[0]
            yield Endpoint(
                "external", settings.base_url, model, settings.api_key, info,
                metrics=dict(engine.metrics),
            )  # fmt: skip
            return

        launch, resources = engine.launch(settings, log_dir)
        process = EngineProcess(
            argv=launch.argv,
            log_path=log_dir / f"{settings.engine}-server.log",
            probe=lambda: engine.probe(client, launch.base_url, settings.served_model),
            env=launch.env,
            startup_timeout_s=settings.startup_timeout_s,
            pass_fds=launch.pass_fds,
            diagnose=engine.diagnose,
            name=settings.engine,
        )
        try:
            process.start()
        finally:
            for resource in resources:  # the child has its own copy of passed sockets
                resource.close()
        try:
            process.wait_ready()
            info = engine.describe(client, launch.base_url)
            info["command"] = " ".join(launch.argv)
            yield Endpoint(
                settings.engine,
                launch.base_url,
                settings.served_model,
                settings.api_key,
                info,
                process,
                metrics=dict(engine.metrics),
            )
        finally:
            process.stop()


__all__ = ["Endpoint", "Engine", "Launch", "get_engine", "running_endpoint"]
