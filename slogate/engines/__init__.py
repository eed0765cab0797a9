"""One module per engine: how to launch it, when it is ready, how to read its metrics."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from slogate.engines.base import Endpoint, Engine, Launch
from slogate.engines.launch import ServerEngine, shell_line
from slogate.environment import redact_argv
from slogate.errors import ConfigError, EngineStartError
from slogate.loadgen.http import auth_headers
from slogate.server import EngineProcess

if TYPE_CHECKING:
    from slogate.config import Settings


def get_engine(name: str) -> Engine:
    if name == "vllm":
        from slogate.engines.vllm import VllmEngine

        return VllmEngine()
    if name == "sglang":
        from slogate.engines.sglang import SglangEngine

        return SglangEngine()
    if name == "ollama":
        from slogate.engines.ollama import OllamaEngine

        return OllamaEngine()
    if name == "llamacpp":
        from slogate.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine()
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
    # The headers inline: a local holding the key would show in --showlocals.
    with httpx.Client(headers=auth_headers(settings.api_key)) as client:
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
        served_model = launch.served_model or settings.served_model
        process = EngineProcess(
            argv=launch.argv,
            log_path=log_dir / f"{settings.engine}-server.log",
            probe=lambda: engine.probe(client, launch.base_url, served_model),
            env=launch.env,
            startup_timeout_s=settings.startup_timeout_s,
            pass_fds=launch.pass_fds,
            diagnose=engine.diagnose,
            name=settings.engine,
            stop_argv=launch.stop_argv,
        )
        try:
            process.start()
        finally:
            for resource in resources:  # the child has its own copy of passed sockets
                resource.close()
        try:
            process.wait_ready()
            info = engine.describe(client, launch.base_url)
            info["command"] = shell_line(redact_argv(list(launch.argv)))
            yield Endpoint(
                settings.engine,
                launch.base_url,
                served_model,
                settings.api_key,
                info,
                process,
                metrics=dict(engine.metrics),
            )
        finally:
            process.stop()


def validate(settings: Settings) -> None:
    """Everything about the engine that can be checked before the run starts."""
    engine = get_engine(settings.engine)
    if isinstance(engine, ServerEngine):
        engine.resolve(settings)


def command_line(settings: Settings) -> str:
    """The exact command slogate would run for this engine (``--show-engine-command``)."""
    engine = get_engine(settings.engine)
    if isinstance(engine, ServerEngine):
        argv, resolved, _ = engine.command(settings, run_id="RUN")
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in resolved.env.items())
        if resolved.launcher == "local" and env:
            return f"{env} {shell_line(argv)}"
        return shell_line(argv)
    if settings.engine == "external":
        raise ConfigError("--engine external is not started by slogate: there is no command")
    launch, resources = engine.launch(settings, settings.reports_dir / "logs")
    for resource in resources:
        resource.close()
    return shell_line(list(launch.argv))


__all__ = [
    "Endpoint", "Engine", "Launch", "command_line", "get_engine", "running_endpoint", "validate",
]  # fmt: skip
