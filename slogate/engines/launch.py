"""Building an engine's command line, as a local process or a ``docker run``.

A GPU engine module subclasses ``ServerEngine`` and says only what is its own: the entry
point, the flags for model/host/port, the readiness probe and the failures it knows.  The
profile's arguments are kept verbatim and in order, so the command is the one the user
wrote; slogate adds only what it must own (model, host, port).

Secrets (``--api-key``, ``pass_env`` names such as ``HF_TOKEN``) reach the engine through
its environment, never its argv: ``docker run -e NAME`` without a value takes the value
from the docker client's environment.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from slogate.engines.base import COMMON_FAILURES, Launch, diagnose_with, fetch_version
from slogate.engines.profile import EngineProfile
from slogate.errors import ConfigError
from slogate.server import LogDiagnosis, free_port

if TYPE_CHECKING:
    from slogate.config import Settings


def host_ip() -> str:
    """This host's first address, as ``hostname -I | awk '{print $1}'`` gives it."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5)
        first = out.stdout.split()
        if first:
            return first[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "127.0.0.1"


def expand_env(env: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in env.items():
        if "${HOST_IP}" in value:
            value = value.replace("${HOST_IP}", host_ip())
        out[key] = value
    return out


@dataclass(frozen=True)
class Resolved:
    """Settings and profile merged: the command line wins over the profile."""

    engine: str
    model: str
    served_model: str
    launcher: str
    image: str | None
    python: str
    host: str
    port: int
    args: tuple[str, ...]
    env: dict[str, str]
    secret_env: tuple[str, ...]  # names whose values come from slogate's environment
    profile: EngineProfile
    gpus: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ServerEngine:
    """Common launch logic of engines that are one server process (vLLM, SGLang, llama.cpp)."""

    name = ""
    default_python = "python3"
    default_port = 8000
    #: env var the engine reads its API key from, if it has one
    api_key_env: str | None = None
    failures: list[tuple[str, str, str]] = []

    # -- what a subclass says ---------------------------------------------------------
    def entry(self, python: str) -> list[str]:
        raise NotImplementedError

    def model_args(self, r: Resolved) -> list[str]:
        raise NotImplementedError

    def api_key_args(self) -> list[str]:
        """Arguments that make the engine require a key, when it has no env variable."""
        return []

    # -- shared -------------------------------------------------------------------------
    def resolve(self, settings: Settings) -> Resolved:
        profile = settings.profile or EngineProfile(engine=self.name)
        model = settings.model or profile.model
        if not model:
            raise ConfigError(
                f"--engine {self.name} needs a model: give --model PATH or an engine profile "
                f"with model:"
            )
        launcher = settings.launcher or profile.launcher
        image = settings.image or profile.image
        if launcher == "docker" and not image:
            raise ConfigError(
                "--launcher docker needs an image: give --image or image: in the profile"
            )
        if launcher == "local" and not settings.show_engine_command:
            if model.startswith(("/", ".")) and not Path(model).exists():
                raise ConfigError(f"--model {model}: no such path on this machine")
        port = profile.port or (self.default_port if launcher == "docker" else free_port())
        if settings.worker is not None:
            port = free_port()  # parallel workers: never two engines on the profile's port
        env = expand_env(profile.env)
        secret_env = tuple(n for n in profile.pass_env if n in os.environ)
        if settings.api_key and self.api_key_env:
            secret_env += (self.api_key_env,)
        gpus = settings.gpus or profile.docker.gpus
        devices = worker_gpus(settings)
        if devices is not None:
            gpus = f'"device={devices}"'
        return Resolved(
            engine=self.name,
            model=model,
            served_model=profile.served_model_name or model,
            launcher=launcher,
            image=image,
            python=settings.engine_python or profile.python or self.default_python,
            host=profile.host,
            port=port,
            args=tuple(profile.args) + tuple(settings.engine_args),
            env=env,
            secret_env=secret_env,
            profile=profile,
            gpus=gpus,
        )

    def server_argv(self, r: Resolved, python: str) -> list[str]:
        argv = self.entry(python) + self.model_args(r)
        if r.profile.trust_remote_code and "--trust-remote-code" not in r.args:
            argv.append("--trust-remote-code")
        argv += list(r.args)
        return argv

    def command(self, settings: Settings, run_id: str = "") -> tuple[list[str], Resolved, str]:
        """The full command (``docker run ...`` or the local argv), and the container name."""
        r = self.resolve(settings)
        if r.launcher == "docker":
            name = f"slogate-{self.name}-{run_id or int(time.time())}"
            return docker_argv(r, name, self.server_argv(r, "python3")), r, name
        return self.server_argv(r, r.python), r, ""

    def launch(self, settings: Settings, workdir: Path) -> tuple[Launch, list[Any]]:
        run_id = f"{settings.label or 'run'}-{os.getpid()}"
        argv, r, container = self.command(settings, run_id=run_id)
        env = dict(os.environ)
        env.update(r.env)
        if settings.api_key and self.api_key_env:
            env[self.api_key_env] = settings.api_key
        if r.launcher == "local" and Path(r.model).is_dir():
            # A local model directory needs no hub: never let the engine reach for one.
            env.setdefault("HF_HUB_OFFLINE", "1")
        devices = worker_gpus(settings) or settings.cuda_visible_devices
        if devices is not None and r.launcher == "local":
            env["CUDA_VISIBLE_DEVICES"] = devices
        stop_argv = ["docker", "rm", "-f", container] if container else None
        host = "127.0.0.1" if r.host in ("0.0.0.0", "::", "") else r.host
        base_url = f"http://{host}:{r.port}"
        launch = Launch(argv, base_url, env=env, stop_argv=stop_argv, served_model=r.served_model)
        return launch, []

    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        raise NotImplementedError

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        version = fetch_version(client, f"{base_url}/version")
        return {"version": version} if version else {}

    def diagnose(self, log: str) -> LogDiagnosis | None:
        return diagnose_with(self.failures + COMMON_FAILURES, log)


def worker_gpus(settings: Settings) -> str | None:
    """The GPUs of this pytest-xdist worker: worker i owns i*G .. i*G+G-1."""
    if settings.gpus_per_worker is None or settings.worker is None:
        return None
    g = settings.gpus_per_worker
    return ",".join(str(d) for d in range(settings.worker * g, (settings.worker + 1) * g))


def docker_argv(r: Resolved, name: str, server_argv: list[str]) -> list[str]:
    d = r.profile.docker
    argv = ["docker", "run", "--rm", "--init", "--name", name]
    if d.privileged:
        argv.append("--privileged")
    if d.network:
        argv += ["--network", d.network]
    for cap in d.cap_add:
        argv += ["--cap-add", cap]
    for opt in d.security_opt:
        argv += ["--security-opt", opt]
    for mount in d.tmpfs:
        argv += ["--tmpfs", mount]
    if d.shm_size:
        argv += ["--shm-size", d.shm_size]
    if d.ipc:
        argv += ["--ipc", d.ipc]
    for vol in d.volumes:
        argv += ["-v", vol]
    if r.gpus:
        argv += ["--gpus", r.gpus]
    for key, value in r.env.items():
        argv += ["-e", f"{key}={value}"]
    for key in r.secret_env:
        argv += ["-e", key]  # value from the docker client's environment, not argv
    if d.entrypoint is not None:
        argv += ["--entrypoint", d.entrypoint]
    if d.workdir:
        argv += ["-w", d.workdir]
    if d.network != "host":
        argv += ["-p", f"127.0.0.1:{r.port}:{r.port}"]
    argv += list(d.extra_args)
    assert r.image is not None
    argv.append(r.image)
    return argv + server_argv


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


_FLAG = re.compile(r"^--?[A-Za-z]")


def flag_pairs(argv: list[str]) -> list[tuple[str, str | None]]:
    """``--a 1 --b --c=2`` -> [(--a, 1), (--b, None), (--c, 2)]; underscores read as dashes.

    Used to compare two command lines flag by flag, whatever the order.
    """
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if _FLAG.match(arg):
            name, eq, value = arg.partition("=")
            name = name.replace("_", "-")
            if eq:
                pairs.append((name, value))
            elif i + 1 < len(argv) and not _FLAG.match(argv[i + 1]):
                pairs.append((name, argv[i + 1]))
                i += 1
            else:
                pairs.append((name, None))
        else:
            pairs.append(("", arg))
        i += 1
    return pairs
