"""The run's settings, parsed and validated from the command line once per session.

Every bad value becomes a ``ConfigError`` naming the option and the accepted form; the
plugin turns it into ``pytest.UsageError``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slogate.engines.profile import LAUNCHERS, EngineProfile, load_profile
from slogate.errors import ConfigError
from slogate.matrix import Overrides, parse_lengths
from slogate.slo import parse_slo_option

ENGINES = ("sim", "vllm", "sglang", "ollama", "llamacpp", "external")


@dataclass(frozen=True)
class Settings:
    engine: str = "sim"
    model: str | None = None
    tokenizer: str | None = None
    engine_args: tuple[str, ...] = ()
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    matrix: Path | None = None
    slo_overrides: dict[str, float] = field(default_factory=dict)
    reports_dir: Path = Path("reports")
    baseline: Path | None = None  # an earlier reports dir to check regressions against
    overrides: Overrides = Overrides()
    sim_profile: str = "default"
    sim_time_scale: float = 1.0
    startup_timeout_s: float = 600.0
    rootdir: Path = Path(".")
    profile: EngineProfile | None = None
    launcher: str | None = None  # None: the profile's, else local
    image: str | None = None
    engine_python: str | None = None
    show_engine_command: bool = False
    gpus: str | None = None  # docker --gpus value
    cuda_visible_devices: str | None = None
    repeat: int = 1
    label: str = ""  # the engine configuration's name when several run in one session
    gpus_per_worker: int | None = None  # with pytest-xdist: GPUs each worker owns
    worker: int | None = None  # pytest-xdist worker index (gw3 -> 3)
    max_client_lag_ms: float = 10.0

    @property
    def served_model(self) -> str:
        """The model name sent in requests."""
        if self.model:
            return self.model
        return "sim-model" if self.engine == "sim" else ""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _is_count(text: str) -> bool:
    """Plain ASCII digits ("²".isdigit() is true, and int() rejects it)."""
    return text.isascii() and text.isdigit()


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    out = []
    for part in _csv(text):
        if not _is_count(part) or int(part) <= 0:
            raise ConfigError(
                f"{option} {text!r}: {part!r} is not a positive integer; "
                f"expected a comma-separated list such as {option} 1,64,256"
            )
        out.append(int(part))
    if not out:
        raise ConfigError(f"{option}: empty; expected e.g. {option} 1,64,256")
    return tuple(out)


def parse_float_list(text: str, option: str) -> tuple[float, ...]:
    out = []
    for part in _csv(text):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"{option} {text!r}: {part!r} is not a positive number; "
                f"expected e.g. {option} 1,2.5,10"
            )
        out.append(value)
    if not out:
        raise ConfigError(f"{option}: empty; expected e.g. {option} 1,2.5,10")
    return tuple(out)


def _positive_int(text: str | None, option: str, default: int = 1) -> int:
    if text is None:
        return default
    if not _is_count(str(text)) or int(text) <= 0:
        raise ConfigError(f"{option} {text!r}: expected a positive integer, e.g. {option} 3")
    return int(text)


def _positive_float(text: str | None, option: str, default: float = 10.0) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} {text!r}: expected a number > 0, e.g. {option} 25")
    return value


def ensure_reports_dir(path: Path) -> None:
    """Create the reports directory before the run: one that cannot be made is a usage
    error, not an INTERNALERROR from whichever writer comes first."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--reports-dir {path}: cannot create it ({exc.strerror or exc}); "
            f"give a directory you can write to"
        ) from None


def settings_from_options(opt: Any, rootdir: Path) -> Settings:
    """Build ``Settings`` from pytest's parsed options (``config.option``)."""
    profile = None
    if opt.slogate_engine_profile:
        path = Path(opt.slogate_engine_profile)
        if not path.exists() and (rootdir / "matrices" / "engines" / path).exists():
            path = rootdir / "matrices" / "engines" / path
        profile = load_profile(path)
    engine = opt.slogate_engine or (profile.engine if profile else "sim")
    if profile and engine != profile.engine:
        raise ConfigError(
            f"--engine {engine} does not match the profile {profile.path} (engine: "
            f"{profile.engine}); drop --engine or pick another profile"
        )
    if engine not in ENGINES:
        raise ConfigError(
            f"--engine {engine!r}: unknown engine; choose one of {', '.join(ENGINES)}"
        )

    base_url = opt.slogate_base_url
    if engine == "external" and not base_url:
        raise ConfigError(
            "--engine external needs --base-url, e.g. --base-url http://127.0.0.1:8000"
        )
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"--base-url {base_url!r}: expected an http(s) URL such as http://127.0.0.1:8000"
        )
    launcher = opt.slogate_launcher
    if launcher is not None and launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r}: expected local or docker")
    if (launcher or opt.slogate_image or opt.slogate_engine_python) and engine in (
        "sim",
        "external",
    ):
        raise ConfigError(
            f"--launcher/--image/--engine-python start an engine; --engine {engine} does not "
            f"take them"
        )
    if base_url and engine not in ("external",):
        raise ConfigError(
            f"--base-url is for an endpoint that is already running: add --engine external "
            f"(got --engine {engine})"
        )

    try:
        engine_args = tuple(shlex.split(opt.slogate_engine_args or ""))
    except ValueError as exc:
        raise ConfigError(
            f"--engine-args: cannot split {opt.slogate_engine_args!r}: {exc}"
        ) from None

    slos: dict[str, float] = {}
    for text in opt.slogate_slo or []:
        name, value = parse_slo_option(text)
        slos[name] = value

    matrix = Path(opt.slogate_matrix) if opt.slogate_matrix else None
    if matrix is not None and not matrix.is_absolute() and not matrix.exists():
        candidate = rootdir / matrix
        if not candidate.exists() and (rootdir / "matrices" / matrix).exists():
            candidate = rootdir / "matrices" / matrix
        matrix = candidate
    if matrix is not None and not matrix.is_file():
        raise ConfigError(f"--matrix {opt.slogate_matrix}: no such file")

    num_prompts = opt.slogate_num_prompts
    if num_prompts is not None:
        if not _is_count(num_prompts) or int(num_prompts) <= 0:
            raise ConfigError(f"--num-prompts {num_prompts!r}: expected a positive integer")
        num_prompts = int(num_prompts)

    conc = (
        parse_int_list(opt.slogate_concurrency, "--concurrency") if opt.slogate_concurrency else ()
    )
    rates = (
        parse_float_list(opt.slogate_request_rate, "--request-rate")
        if opt.slogate_request_rate
        else ()
    )
    lengths: tuple[tuple[int, int], ...] = ()
    if opt.slogate_lengths:
        lengths = tuple(parse_lengths(x, "--lengths") for x in _csv(opt.slogate_lengths))
        if not lengths:
            raise ConfigError("--lengths: empty; expected e.g. --lengths 128x128,256x256")

    time_scale = _positive_float(opt.slogate_sim_time_scale, "--sim-time-scale", default=1.0)

    model = opt.slogate_model
    local = (launcher or (profile.launcher if profile else "local")) == "local"
    if (
        model
        and local
        and engine in ("vllm", "sglang", "llamacpp")
        and model.startswith(("/", "."))
    ):
        if not Path(model).exists() and not opt.slogate_show_engine_command:
            raise ConfigError(
                f"--model {model}: no such path; give the model directory the engine should load"
            )

    api_key = opt.slogate_api_key or os.environ.get("SLOGATE_API_KEY") or None
    reports = Path(opt.slogate_reports_dir)
    if not reports.is_absolute():
        reports = rootdir / reports if opt.slogate_reports_dir == "reports" else reports.resolve()
    baseline_opt = getattr(opt, "slogate_baseline", None)
    baseline = Path(baseline_opt).resolve() if baseline_opt else None

    return Settings(
        engine=engine,
        model=model,
        tokenizer=opt.slogate_tokenizer,
        engine_args=engine_args,
        base_url=base_url.rstrip("/") if base_url else None,
        api_key=api_key,
        matrix=matrix,
        slo_overrides=slos,
        reports_dir=reports,
        baseline=baseline,
        overrides=Overrides(
            concurrency=conc, request_rate=rates, lengths=lengths, num_prompts=num_prompts
        ),
        sim_profile=opt.slogate_sim_profile,
        sim_time_scale=time_scale,
        startup_timeout_s=_positive_float(opt.slogate_startup_timeout, "--startup-timeout", 600.0),
        rootdir=rootdir,
        profile=profile,
        launcher=launcher,
        image=opt.slogate_image,
        engine_python=opt.slogate_engine_python,
        show_engine_command=bool(opt.slogate_show_engine_command),
        repeat=_positive_int(opt.slogate_repeat, "--repeat"),
        gpus_per_worker=(
            _positive_int(opt.slogate_gpus_per_worker, "--gpus-per-worker")
            if opt.slogate_gpus_per_worker is not None
            else None
        ),
        max_client_lag_ms=_positive_float(opt.slogate_max_client_lag_ms, "--max-client-lag-ms"),
    )


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def variants_from_options(opt: Any, rootdir: Path) -> list[Settings]:
    """One ``Settings`` per engine configuration of the run.

    ``--engine vllm,sglang``, ``--engine-profile a.yaml,b.yaml`` or (for the simulator)
    ``--sim-profile p1,p2`` run several configurations in one session: each gets its own
    label and its own reports under ``reports/<label>/``, and the session compares them.
    """
    lists = {
        "--engine-profile": _split(opt.slogate_engine_profile),
        "--engine": _split(opt.slogate_engine),
        "--sim-profile": _split(opt.slogate_sim_profile),
    }
    multi = [name for name, values in lists.items() if len(values) > 1]
    if not multi:
        return [settings_from_options(opt, rootdir)]
    if len(multi) > 1:
        raise ConfigError(
            f"{' and '.join(multi)} both list several values; list the engine configurations "
            f"in one of them"
        )
    option = multi[0]
    values = lists[option]
    if len(set(values)) != len(values):
        raise ConfigError(f"{option} {','.join(values)}: a configuration is listed twice")
    dest = {
        "--engine-profile": "slogate_engine_profile",
        "--engine": "slogate_engine",
        "--sim-profile": "slogate_sim_profile",
    }[option]
    out = []
    for value in values:
        one = copy.copy(opt)
        setattr(one, dest, value)
        settings = settings_from_options(one, rootdir)
        if option == "--engine-profile":
            label = Path(value).stem
        elif option == "--sim-profile":
            label = f"sim-{value}"
        else:
            label = value
        out.append(
            dataclasses.replace(settings, label=label, reports_dir=settings.reports_dir / label)
        )
    return out
