"""Ollama: ``ollama serve`` (or the ``ollama/ollama`` image), listening on ``OLLAMA_HOST``.

slogate owns the address: ``OLLAMA_HOST`` is set from the profile's ``host:``/``port:``
(a profile that sets ``OLLAMA_HOST`` itself is refused).  Every other ``OLLAMA_*``
setting goes in the profile's ``env`` (``OLLAMA_NUM_PARALLEL``, ``OLLAMA_KEEP_ALIVE``,
``OLLAMA_MODELS`` to reuse the model store of a system-wide Ollama ...).  An interpreter
given with ``--engine-python`` / ``python:`` is taken as the path of the ``ollama``
binary.  In Docker, models live in the named volume ``ollama:/root/.ollama`` unless the
profile mounts volumes of its own.

Ready means, in order:

1. ``GET /api/tags`` answers;
2. the profile's model (``DeepSeek-R1-Q4_K_M:latest``; a name without a tag means
   ``:latest``) is listed.  If it is not and a Modelfile is given, slogate runs
   ``ollama create NAME -f MODELFILE`` once (``docker exec`` into the container with the
   docker launcher: the path is then the container's) and waits for it.  A Modelfile is
   given as ``SLOGATE_OLLAMA_MODELFILE: /path/Modelfile`` in the profile's ``env`` or as
   ``--modelfile /path/Modelfile`` in its ``args`` / ``--engine-args`` (``ollama serve``
   takes no other arguments).  Without one, startup fails at once: slogate never runs
   ``ollama pull`` (that downloads from the internet);
3. the model is loaded: ``POST /api/generate`` with no prompt, Ollama's documented way
   to load a model, so that minutes of loading a 400 GB GGUF are not charged to the
   first requests.

Ollama has no Prometheus endpoint: ``metrics`` is empty, nothing is scraped.  Nor does it
check API keys.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from slogate.engines.base import Launch, fetch_version
from slogate.engines.launch import Resolved, ServerEngine
from slogate.errors import ConfigError, EngineStartError
from slogate.server import tail

if TYPE_CHECKING:
    from slogate.config import Settings

MODELFILE_ENV = "SLOGATE_OLLAMA_MODELFILE"
MODELFILE_ARG = "--modelfile"
DEFAULT_VOLUME = "ollama:/root/.ollama"  # the image's model store, kept between runs


def tagged(model: str) -> str:
    """Ollama's canonical name: ``name`` means ``name:latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


class OllamaEngine(ServerEngine):
    name = "ollama"
    default_port = 11434  # Ollama's own default
    default_python = "ollama"  # here: the ollama binary
    metrics: dict[str, tuple[str, ...]] = {}
    failures = [
        (
            r"listen tcp .*bind: address already in use",
            "another server, often the system's Ollama service, already listens on the port",
            "stop it (systemctl stop ollama), give the profile another port:, or test the "
            "running one with --engine external --base-url http://127.0.0.1:11434",
        ),
        (
            r"exec: \"?ollama\"?: executable file not found|ollama: (command )?not found",
            "the ollama binary was not found",
            "install Ollama or give the binary's path with --engine-python",
        ),
    ]

    def __init__(self) -> None:
        self.modelfile: str | None = None
        self.launched = False
        self._connect_host = "127.0.0.1"
        self._port = self.default_port
        self._container = ""
        self._env: dict[str, str] = {}
        self._log_dir: Path | None = None
        self._create: subprocess.Popen[bytes] | None = None
        self._create_log: Path | None = None
        self._load: threading.Thread | None = None
        self._load_error: str | None = None
        self._loaded = False

    # -- command ------------------------------------------------------------------------
    def resolve(self, settings: Settings) -> Resolved:
        r = super().resolve(settings)
        if "OLLAMA_HOST" in r.env:
            raise ConfigError(
                f"{r.profile.path or 'the engine profile'}: env.OLLAMA_HOST: slogate sets "
                f"OLLAMA_HOST from host: and port:; set those instead"
            )
        env = dict(r.env)
        modelfile = env.pop(MODELFILE_ENV, None)
        args = list(r.args)
        if MODELFILE_ARG in args:
            i = args.index(MODELFILE_ARG)
            if i + 1 >= len(args):
                raise ConfigError(f"{MODELFILE_ARG} needs a path: {MODELFILE_ARG} /path/Modelfile")
            modelfile = args[i + 1]
            del args[i : i + 2]
        if args:
            raise ConfigError(
                f"--engine ollama: `ollama serve` takes no arguments (got {shlex.join(args)}); "
                f"set OLLAMA_* variables in the profile's env, and the Modelfile with "
                f"{MODELFILE_ARG} PATH"
            )
        if modelfile and r.launcher == "local" and not settings.show_engine_command:
            if not Path(modelfile).is_file():
                raise ConfigError(f"Modelfile {modelfile}: no such file on this machine")
        self.modelfile = modelfile
        # Inside a bridged container the server must listen on every interface for the
        # published port to reach it.
        bind = r.host
        if r.launcher == "docker" and r.profile.docker.network != "host":
            bind = "0.0.0.0"
        env["OLLAMA_HOST"] = f"{bind}:{r.port}"
        profile = r.profile
        if r.launcher == "docker" and not profile.docker.volumes:
            docker = dataclasses.replace(profile.docker, volumes=(DEFAULT_VOLUME,))
            profile = dataclasses.replace(profile, docker=docker)
        self._connect_host = "127.0.0.1" if r.host in ("0.0.0.0", "::", "") else r.host
        self._port = r.port
        return dataclasses.replace(r, env=env, args=(), profile=profile)

    def entry(self, python: str) -> list[str]:
        return [python, "serve"]

    def model_args(self, r: Resolved) -> list[str]:
        return []  # the model is named per request, not when the server starts

    def server_argv(self, r: Resolved, python: str) -> list[str]:
        if r.launcher == "docker":
            # ollama/ollama's entrypoint is /bin/ollama; "" clears it, then name the binary.
            return ["ollama", "serve"] if r.profile.docker.entrypoint == "" else ["serve"]
        return self.entry(r.python)

    def command(self, settings: Settings, run_id: str = "") -> tuple[list[str], Resolved, str]:
        argv, r, container = super().command(settings, run_id)
        self._container = container
        return argv, r, container

    def launch(self, settings: Settings, workdir: Path) -> tuple[Launch, list[Any]]:
        launch, resources = super().launch(settings, workdir)
        self.launched = True
        self._env = dict(launch.env or os.environ)
        self._log_dir = workdir
        return launch, resources

    # -- readiness ----------------------------------------------------------------------
    def probe(self, client: httpx.Client, base_url: str, model: str) -> str | None:
        url = f"{base_url}/api/tags"
        try:
            resp = client.get(url, timeout=5.0)
            listed = resp.json().get("models") if resp.status_code == 200 else None
        except httpx.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}"
        except (ValueError, AttributeError):
            return f"GET {url}: not Ollama's JSON"
        if not isinstance(listed, list):
            return f"GET {url}: HTTP {resp.status_code}"
        names = {
            tagged(str(m.get(k))) for m in listed if isinstance(m, dict) for k in ("name", "model")
        }
        if tagged(model) not in names:
            return self._missing(model)
        return self._loading(base_url, model)

    def _missing(self, model: str) -> str | None:
        if not self.modelfile:
            reason = (
                f"model {model} is not pulled: run `ollama pull {model}` or give a Modelfile "
                f"({MODELFILE_ENV} in the profile's env, or {MODELFILE_ARG} PATH)"
            )
            if self.launched:
                raise EngineStartError(f"ollama: {reason}")  # waiting cannot help
            return reason
        if self._create is None:
            self._start_create(model)
            return f"creating {model} from {self.modelfile} (ollama create)"
        code = self._create.poll()
        if code is None:
            return f"ollama create {model} is still running"
        log = tail(self._create_log, 20) if self._create_log else ""
        raise EngineStartError(
            f"ollama: `ollama create {model} -f {self.modelfile}` "
            + (f"exited with code {code}" if code else "finished but the model is not listed")
            + (f"\n--- its output ---\n{log}" if log else "")
        )

    def create_argv(self, model: str) -> list[str]:
        """The ``ollama create`` command: in the container when the server runs in one."""
        assert self.modelfile is not None
        cmd = ["ollama", "create", model, "-f", self.modelfile]
        return ["docker", "exec", self._container, *cmd] if self._container else cmd

    def _start_create(self, model: str) -> None:
        env = dict(self._env or os.environ)
        env["OLLAMA_HOST"] = f"{self._connect_host}:{self._port}"  # the client's view
        log_dir = self._log_dir or Path(".")
        log_dir.mkdir(parents=True, exist_ok=True)
        self._create_log = log_dir / "ollama-create.log"
        with self._create_log.open("ab") as log:
            try:
                self._create = subprocess.Popen(
                    self.create_argv(model),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            except OSError as exc:
                raise EngineStartError(f"ollama: cannot run ollama create: {exc}") from None

    def _loading(self, base_url: str, model: str) -> str | None:
        if self._loaded:
            return None
        if self._load is None:
            self._load = threading.Thread(
                target=self._load_model, args=(base_url, model), daemon=True
            )
            self._load.start()
        if self._load.is_alive():
            return f"loading {model} into memory"
        if self._load_error is not None:
            raise EngineStartError(f"ollama: loading {model} failed: {self._load_error}")
        self._loaded = True
        return None

    def _load_model(self, base_url: str, model: str) -> None:
        # Its own client: httpx clients are not shared across threads.  No timeout: a
        # 400 GB model takes minutes, and the startup deadline bounds the wait anyway.
        try:
            with httpx.Client(timeout=None) as client:
                resp = client.post(f"{base_url}/api/generate", json={"model": model})
            if resp.status_code != 200:
                self._load_error = f"HTTP {resp.status_code}: {resp.text[:300]}"
            elif b'"error"' in resp.content:
                self._load_error = resp.text[:300]
        except httpx.HTTPError as exc:
            self._load_error = f"{type(exc).__name__}: {exc}"

    def describe(self, client: httpx.Client, base_url: str) -> dict[str, Any]:
        version = fetch_version(client, f"{base_url}/api/version")
        return {"version": version} if version else {}
