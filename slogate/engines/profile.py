"""Engine profiles: how a user starts an engine, written down once (``matrices/engines/``).

Schema (YAML; unknown keys and wrong types are errors naming the file and key)::

    engine: vllm                     # required: vllm | sglang | ollama | llamacpp
    model: /mnt/models/DeepSeek-R1   # what the engine loads (--model overrides)
    served_model_name: null          # the name requests use, when not the model path
    launcher: local                  # local | docker (--launcher overrides)
    image: vllm/vllm-openai:v0.8.2   # for docker (--image overrides)
    python: python3                  # interpreter of a local engine (--engine-python overrides)
    host: 127.0.0.1                  # bind address; 127.0.0.1 unless the profile asks otherwise
    port: null                       # null: a free port is chosen
    trust_remote_code: false         # adds the engine's --trust-remote-code
    startup_timeout_s: 1800
    args: "--tensor-parallel-size 8 --max-num-seqs 256"   # server arguments, string or list
    env: {VLLM_HOST_IP: "${HOST_IP}"}  # ${HOST_IP}: this host's first address (hostname -I)
    pass_env: [HF_TOKEN]             # taken from slogate's environment if set; never logged
    docker:
      gpus: all                      # --gpus
      network: host                  # --network
      privileged: true
      ipc: null                      # --ipc
      shm_size: null                 # --shm-size
      tmpfs: ["/dev/shm:rw,nosuid,nodev,exec,size=128g"]
      volumes: ["/ssd1/models:/mnt/models"]
      cap_add: [SYS_PTRACE]
      security_opt: ["seccomp=unconfined"]
      workdir: /workspace
      entrypoint: ""                 # "" clears the image's entrypoint
      extra_args: []                 # anything else for docker run
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slogate.errors import ConfigError

LAUNCHERS = ("local", "docker")
PROFILE_ENGINES = ("vllm", "sglang", "ollama", "llamacpp")


@dataclass(frozen=True)
class DockerOptions:
    gpus: str | None = "all"
    network: str | None = "host"
    privileged: bool = False
    ipc: str | None = None
    shm_size: str | None = None
    tmpfs: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    workdir: str | None = None
    entrypoint: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineProfile:
    engine: str
    model: str | None = None
    served_model_name: str | None = None
    launcher: str = "local"
    image: str | None = None
    python: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    trust_remote_code: bool = False
    startup_timeout_s: float | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    docker: DockerOptions = DockerOptions()
    path: Path | None = None


_TOP: dict[str, tuple[tuple[type, ...], str]] = {
    "engine": ((str,), f"one of {', '.join(PROFILE_ENGINES)}"),
    "model": ((str,), "a model path or name"),
    "served_model_name": ((str, type(None)), "a name"),
    "launcher": ((str,), "local or docker"),
    "image": ((str, type(None)), "a Docker image"),
    "python": ((str, type(None)), "an interpreter path"),
    "host": ((str,), "an address to bind"),
    "port": ((int, type(None)), "a port number or null"),
    "trust_remote_code": ((bool,), "true or false"),
    "startup_timeout_s": ((int, float), "seconds"),
    "args": ((str, list), "a string or a list of arguments"),
    "env": ((dict,), "a mapping of NAME: value"),
    "pass_env": ((list,), "a list of variable names"),
    "docker": ((dict,), "a mapping of docker run options"),
    "description": ((str,), "text"),
}
_DOCKER: dict[str, tuple[tuple[type, ...], str]] = {
    "gpus": ((str, type(None)), "e.g. all"),
    "network": ((str, type(None)), "e.g. host"),
    "privileged": ((bool,), "true or false"),
    "ipc": ((str, type(None)), "e.g. host"),
    "shm_size": ((str, type(None)), "e.g. 32g"),
    "tmpfs": ((list,), "a list of mounts"),
    "volumes": ((list,), "a list of HOST:CONTAINER mounts"),
    "cap_add": ((list,), "a list of capabilities"),
    "security_opt": ((list,), "a list of options"),
    "workdir": ((str, type(None)), "a directory in the container"),
    "entrypoint": ((str, type(None)), 'a command, or "" to clear the image\'s'),
    "extra_args": ((list,), "a list of docker run arguments"),
}


def _check(
    data: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], str]], where: str
) -> None:
    for key, value in data.items():
        if key not in schema:
            raise ConfigError(
                f"{where}: unknown key {key!r}; allowed keys: {', '.join(sorted(schema))}"
            )
        types, expected = schema[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")


def _strings(value: list[Any], where: str) -> tuple[str, ...]:
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def split_args(value: str | list[Any], where: str) -> tuple[str, ...]:
    if isinstance(value, list):
        out: list[str] = []
        for item in _strings(value, where):
            # a list item may hold a flag and its value ("--tp 8"), as users copy them
            out.extend(shlex.split(item) if item.startswith("-") else [item])
        return tuple(out)
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot split the arguments ({exc})") from None


def load_profile(path: str | Path) -> EngineProfile:
    path = Path(path)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--engine-profile {path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}: malformed YAML{at}: {getattr(exc, 'problem', exc)}") from None
    except (ValueError, RecursionError) as exc:  # PyYAML: impossible dates, deep nesting
        raise ConfigError(f"{where}: malformed YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: an engine profile must be a YAML mapping")
    _check(data, _TOP, where)
    if data.get("engine") not in PROFILE_ENGINES:
        raise ConfigError(
            f"{where}.engine: expected one of {', '.join(PROFILE_ENGINES)}, "
            f"got {data.get('engine')!r}"
        )
    if data.get("launcher", "local") not in LAUNCHERS:
        raise ConfigError(f"{where}.launcher: expected local or docker, got {data['launcher']!r}")
    docker_raw = data.get("docker") or {}
    _check(docker_raw, _DOCKER, f"{where}: docker")
    docker_kwargs = {
        k: (_strings(v, f"{where}: docker.{k}") if isinstance(v, list) else v)
        for k, v in docker_raw.items()
    }
    env = data.get("env") or {}
    for k, v in env.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"{where}.env.{k}: expected a string, got {v!r}")
    port = data.get("port")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{where}.port: expected 1..65535, got {port}")
    return EngineProfile(
        engine=data["engine"],
        model=data.get("model"),
        served_model_name=data.get("served_model_name"),
        launcher=data.get("launcher", "local"),
        image=data.get("image"),
        python=data.get("python"),
        host=data.get("host", "127.0.0.1"),
        port=port,
        trust_remote_code=data.get("trust_remote_code", False),
        startup_timeout_s=data.get("startup_timeout_s"),
        args=split_args(data.get("args") or [], f"{where}.args"),
        env={str(k): str(v) for k, v in env.items()},
        pass_env=_strings(data.get("pass_env") or [], f"{where}.pass_env"),
        docker=DockerOptions(**docker_kwargs),
        path=path,
    )
