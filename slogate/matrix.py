"""Sweep definitions: YAML loading, validation and expansion into cases.

Schema (every key optional unless marked required)::

    name: default                 # shown in reports
    description: "..."
    defaults:                     # apply to every case; a sweep block may override any of them
      endpoint: completions       # completions | chat
      ignore_eos: true            # ask for exactly output_len tokens
      range_ratio: 0.0            # vLLM's --random-range-ratio: lengths in [L(1-r), L(1+r)]
      num_prompts: null           # fixed number of measured requests per case, or null:
      min_prompts: 16             #   then max(concurrency, min_prompts)
      warmup_requests: 1          # sent before the measured window, excluded from statistics
      request_timeout_s: 600      # a request running longer is a `timeout`
      stall_timeout_s: 120        # a stream silent this long is a `timeout`
      seed: 0                     # prompt generation
      slo: {p99_ttft_ms: 2000, mean_tpot_ms: 80, error_rate: 0}
    sweep:                        # required: a list of blocks, each expanded as lengths x load
      - lengths: ["128x128", "256x256"]    # required: INPUTxOUTPUT token lengths
        concurrency: [1, 2, 4, 8]          # closed loop: this many requests in flight
        # request_rate: [1, 2.5]           # or open loop: Poisson arrivals, requests/s
        # burstiness: 1.0                  # gamma shape for request_rate (1 = Poisson)
        slo: {p99_ttft_ms: 5000}           # merged over the defaults' slo for this block

Unknown keys and wrong types are errors that name the file and the key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from slogate.errors import ConfigError
from slogate.loadgen.apis import APIS
from slogate.slo import validate_slo

#: case setting -> (accepted types, description for error messages)
_SETTINGS: dict[str, tuple[tuple[type, ...], str]] = {
    "endpoint": ((str,), "a request format: completions, chat, or a native one"),
    "ignore_eos": ((bool,), "true or false"),
    "range_ratio": ((int, float), "a number in [0, 1)"),
    "num_prompts": ((int, type(None)), "a positive integer or null"),
    "min_prompts": ((int,), "a positive integer"),
    "warmup_requests": ((int,), "an integer >= 0"),
    "request_timeout_s": ((int, float), "a number of seconds > 0"),
    "stall_timeout_s": ((int, float), "a number of seconds > 0"),
    "seed": ((int,), "an integer"),
    "burstiness": ((int, float), "a number > 0 (1 = Poisson)"),
    "slo": ((dict,), "a mapping of SLO name to threshold"),
}
_BLOCK_ONLY = {"lengths", "concurrency", "request_rate"}
_TOP = {"name", "description", "defaults", "sweep", "capacity"}
_CAPACITY = {"lengths", "concurrency", "request_rate", "resolution", "require", "slo"}

_DEFAULTS: dict[str, Any] = {
    "endpoint": "completions",
    "ignore_eos": True,
    "range_ratio": 0.0,
    "num_prompts": None,
    "min_prompts": 16,
    "warmup_requests": 1,
    "request_timeout_s": 600.0,
    "stall_timeout_s": 120.0,
    "seed": 0,
    "burstiness": 1.0,
    "slo": {},
}


@dataclass(frozen=True)
class Case:
    """One point of the sweep: a load level and a length pair, with its SLOs."""

    input_len: int
    output_len: int
    concurrency: int | None = None
    request_rate: float | None = None
    num_prompts: int = 1
    endpoint: str = "completions"
    ignore_eos: bool = True
    range_ratio: float = 0.0
    warmup_requests: int = 1
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 120.0
    seed: int = 0
    burstiness: float = 1.0
    slo: Mapping[str, float] = field(default_factory=dict)

    @property
    def load_id(self) -> str:
        if self.concurrency is not None:
            return f"c{self.concurrency}"
        return f"r{self.request_rate:g}"

    @property
    def id(self) -> str:
        """Readable test id, e.g. ``c64-in128-out128``."""
        return f"{self.load_id}-in{self.input_len}-out{self.output_len}"

    @property
    def file_stem(self) -> str:
        """The user's file naming: ``serving_benchmark_{concurrency}_{in}_{out}``."""
        load = self.concurrency if self.concurrency is not None else f"rate{self.request_rate:g}"
        return f"serving_benchmark_{load}_{self.input_len}_{self.output_len}"

    @property
    def load_label(self) -> str:
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}"
        return f"{self.request_rate:g} req/s"

    def with_slo(self, overrides: Mapping[str, float]) -> Case:
        return replace(self, slo={**self.slo, **overrides})


@dataclass(frozen=True)
class CapacityTarget:
    """One capacity search: a length pair, a load kind and its range."""

    input_len: int
    output_len: int
    kind: str  # "concurrency" | "request_rate"
    low: float
    high: float
    resolution: float
    require: float | None
    settings: Mapping[str, Any] = field(default_factory=dict)  # for make_case

    @property
    def id(self) -> str:
        return f"{self.kind}-in{self.input_len}-out{self.output_len}"

    def case(self, load: float) -> Case:
        if self.kind == "concurrency":
            return make_case(self.input_len, self.output_len, int(load), None, self.settings)
        return make_case(self.input_len, self.output_len, None, load, self.settings)


@dataclass(frozen=True)
class Matrix:
    name: str
    description: str
    path: Path
    cases: tuple[Case, ...]
    capacity: tuple[CapacityTarget, ...] = ()


def parse_lengths(text: str, where: str) -> tuple[int, int]:
    """``"128x128"`` -> (128, 128)."""
    parts = str(text).lower().replace(" ", "").split("x")
    # isascii: "²".isdigit() is true, and int() rejects it
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"{where}: {text!r} is not a length pair; write INPUTxOUTPUT, e.g. 128x128"
        )
    return int(parts[0]), int(parts[1])


def _finite(value: Any) -> bool:
    """``math.isfinite``, and False for an int too large for a float (YAML has bignums)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_setting(key: str, value: Any, where: str) -> Any:
    types, expected = _SETTINGS[key]
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
    bad = False
    if key == "endpoint":
        if value not in APIS:
            raise ConfigError(
                f"{where}.endpoint: unknown request format {value!r}; "
                f"choose one of {', '.join(APIS)}"
            )
    elif key == "range_ratio":
        if value == 1:
            raise ConfigError(
                f"{where}.range_ratio: 1.0 is not accepted. slogate follows current vLLM: "
                f"lengths are drawn from [L*(1-r), L*(1+r)], so fixed lengths are r=0 "
                f"(what --random-range-ratio 1.0 meant in vLLM 0.8)"
            )
        bad = not (0 <= value < 1)
    elif key in ("num_prompts",):
        bad = value is not None and value <= 0
    elif key == "min_prompts":
        bad = value <= 0
    elif key == "warmup_requests":
        bad = value < 0
    elif key in ("request_timeout_s", "stall_timeout_s", "burstiness"):
        bad = not (_finite(value) and value > 0)
    elif key == "slo":
        return {
            str(name): validate_slo(str(name), limit, f"{where}.slo")
            for name, limit in value.items()
        }
    if bad:
        raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
    return value


def _check_keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r}; allowed keys: {', '.join(sorted(allowed))}"
            )


def _positive_list(value: Any, kind: type, where: str, what: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        ok = isinstance(item, (int, float) if kind is float else int) and not isinstance(item, bool)
        if not ok or not (_finite(item) and item > 0):
            raise ConfigError(f"{where}: {what} must be a list of positive numbers, got {item!r}")
        out.append(kind(item))
    if not out:
        raise ConfigError(f"{where}: {what} is empty")
    return out


@dataclass(frozen=True)
class Overrides:
    """Command-line replacements for a matrix's axes (``--concurrency``, ``--lengths`` ...).

    Each replaces that axis in every block, keeping the block's other settings, so a quick
    re-run can also try a point the matrix does not list.
    """

    concurrency: tuple[int, ...] = ()
    request_rate: tuple[float, ...] = ()
    lengths: tuple[tuple[int, int], ...] = ()
    num_prompts: int | None = None


def expand(
    data: Any, where: str, overrides: Overrides | None = None
) -> tuple[str, str, list[Case]]:
    """Validate a parsed matrix document and expand it into cases."""
    ov = overrides or Overrides()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the matrix must be a YAML mapping with a 'sweep' list")
    _check_keys(data, _TOP, where)
    defaults_raw = data.get("defaults") or {}
    if not isinstance(defaults_raw, dict):
        raise ConfigError(f"{where}: defaults: expected a mapping, got {defaults_raw!r}")
    _check_keys(defaults_raw, set(_SETTINGS), f"{where}: defaults")
    defaults = dict(_DEFAULTS)
    for key, value in defaults_raw.items():
        defaults[key] = _check_setting(key, value, f"{where}: defaults")

    blocks = data.get("sweep")
    if blocks is None and "capacity" in data:
        return str(data.get("name", "")), str(data.get("description", "")), []
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(f"{where}: 'sweep' must be a non-empty list of blocks")

    cases: list[Case] = []
    for i, block in enumerate(blocks):
        bw = f"{where}: sweep[{i}]"
        if not isinstance(block, dict):
            raise ConfigError(f"{bw}: expected a mapping with lengths and concurrency")
        _check_keys(block, set(_SETTINGS) | _BLOCK_ONLY, bw)
        settings = dict(defaults)
        for key, value in block.items():
            if key in _SETTINGS:
                checked = _check_setting(key, value, bw)
                settings[key] = {**defaults["slo"], **checked} if key == "slo" else checked
        if "lengths" not in block:
            raise ConfigError(f"{bw}: missing 'lengths', e.g. lengths: [128x128, 256x256]")
        raw_lengths = block["lengths"]
        raw_lengths = raw_lengths if isinstance(raw_lengths, list) else [raw_lengths]
        lengths = [parse_lengths(x, f"{bw}.lengths") for x in raw_lengths]
        has_c, has_r = "concurrency" in block, "request_rate" in block
        if has_c == has_r:
            raise ConfigError(f"{bw}: give exactly one of 'concurrency' or 'request_rate'")
        if ov.lengths:
            lengths = list(ov.lengths)
        if ov.num_prompts is not None:
            settings["num_prompts"] = ov.num_prompts
        loads: list[tuple[int | None, float | None]]
        if ov.concurrency or ov.request_rate:
            loads = [(c, None) for c in ov.concurrency] + [(None, r) for r in ov.request_rate]
        elif has_c:
            conc = _positive_list(block["concurrency"], int, f"{bw}.concurrency", "concurrency")
            loads = [(c, None) for c in conc]
        else:
            rates = _positive_list(block["request_rate"], float, f"{bw}.request_rate", "rates")
            loads = [(None, r) for r in rates]
        for (inp, out), (c, r) in itertools.product(lengths, loads):
            cases.append(make_case(inp, out, c, r, settings))
    seen: set[str] = set()
    unique = []
    for case in cases:
        if case.id in seen:
            if not (ov.concurrency or ov.request_rate or ov.lengths):
                raise ConfigError(f"{where}: case {case.id} is defined twice")
            continue  # command-line axes collapse blocks onto the same points
        seen.add(case.id)
        unique.append(case)
    return str(data.get("name", "")), str(data.get("description", "")), unique


def expand_capacity(
    data: Any, where: str, overrides: Overrides | None = None
) -> list[CapacityTarget]:
    """The ``capacity:`` block::

    capacity:
      lengths: [128x128, 256x256]
      concurrency: {min: 1, max: 1024}   # or request_rate: {min: 0.5, max: 64}
      resolution: 0.1                    # rates: stop within 10%; concurrency: within 1
      require: 64                        # optional: fail if capacity is below this
      slo: {p90_ttft_ms: 2000}           # merged over the defaults' slo
    """
    if not isinstance(data, dict) or "capacity" not in data:
        return []
    block = data["capacity"]
    bw = f"{where}: capacity"
    if not isinstance(block, dict):
        raise ConfigError(f"{bw}: expected a mapping with lengths and concurrency or request_rate")
    _check_keys(block, _CAPACITY, bw)
    ov = overrides or Overrides()
    settings = dict(_DEFAULTS)
    for key, value in (data.get("defaults") or {}).items():
        settings[key] = _check_setting(key, value, f"{where}: defaults")
    if "slo" in block:
        settings["slo"] = {**settings["slo"], **_check_setting("slo", block["slo"], bw)}
    if ov.num_prompts is not None:
        settings["num_prompts"] = ov.num_prompts
    if "lengths" not in block:
        raise ConfigError(f"{bw}: missing 'lengths', e.g. lengths: [128x128]")
    raw = block["lengths"] if isinstance(block["lengths"], list) else [block["lengths"]]
    lengths = list(ov.lengths) or [parse_lengths(x, f"{bw}.lengths") for x in raw]
    kinds = [k for k in ("concurrency", "request_rate") if k in block]
    if len(kinds) != 1:
        raise ConfigError(f"{bw}: give exactly one of 'concurrency' or 'request_rate' ranges")
    kind = kinds[0]
    rng = block[kind]
    if not isinstance(rng, dict) or set(rng) != {"min", "max"}:
        raise ConfigError(f"{bw}.{kind}: expected {{min: LOW, max: HIGH}}, got {rng!r}")
    low, high = rng["min"], rng["max"]
    for name, value in (("min", low), ("max", high)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not (_finite(value) and value > 0):
            raise ConfigError(f"{bw}.{kind}.{name}: expected a positive number, got {value!r}")
        if kind == "concurrency" and not isinstance(value, int):
            raise ConfigError(f"{bw}.{kind}.{name}: concurrency is a whole number, got {value!r}")
    if low > high:
        raise ConfigError(f"{bw}.{kind}: min {low} is above max {high}")
    resolution = block.get("resolution", 0.1)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, float))
        or not (0 < resolution < 1)
    ):
        raise ConfigError(
            f"{bw}.resolution: expected a fraction between 0 and 1, got {resolution!r}"
        )
    require = block.get("require")
    if require is not None and (
        isinstance(require, bool) or not isinstance(require, (int, float)) or not _finite(require)
    ):
        raise ConfigError(f"{bw}.require: expected a number, got {require!r}")
    return [
        CapacityTarget(i, o, kind, float(low), float(high), float(resolution),
                       None if require is None else float(require), settings)
        for i, o in lengths
    ]  # fmt: skip


def make_case(
    input_len: int,
    output_len: int,
    concurrency: int | None,
    request_rate: float | None,
    settings: Mapping[str, Any],
) -> Case:
    """Build a case from validated settings; resolves the number of prompts."""
    num = settings.get("num_prompts")
    if num is None:
        num = max(concurrency or 0, int(settings.get("min_prompts", 1)))
    return Case(
        input_len=input_len,
        output_len=output_len,
        concurrency=concurrency,
        request_rate=request_rate,
        num_prompts=int(num),
        endpoint=settings["endpoint"],
        ignore_eos=settings["ignore_eos"],
        range_ratio=float(settings["range_ratio"]),
        warmup_requests=settings["warmup_requests"],
        request_timeout_s=float(settings["request_timeout_s"]),
        stall_timeout_s=float(settings["stall_timeout_s"]),
        seed=settings["seed"],
        burstiness=float(settings["burstiness"]),
        slo=dict(settings["slo"]),
    )


def load_matrix(path: str | Path, overrides: Overrides | None = None) -> Matrix:
    """Read and validate a matrix file; every problem is a ``ConfigError`` naming the file."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: matrix file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the matrix file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML{at}: {problem}") from None
    except (ValueError, RecursionError) as exc:
        # PyYAML's constructors raise these for values it cannot build: an impossible date
        # (2001-02-30), `!!float abc`, nesting deeper than Python's recursion limit.
        raise ConfigError(f"{where}: malformed YAML: {exc}") from None
    name, description, cases = expand(data, where, overrides)
    capacity = expand_capacity(data, where, overrides)
    return Matrix(
        name=name or path.stem,
        description=description,
        path=path,
        cases=tuple(cases),
        capacity=tuple(capacity),
    )
