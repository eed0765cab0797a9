"""Bad input: every user mistake is one line naming the option or file and the fix, and
the matrix loader and the response parsers raise nothing but their own errors.

The fuzz tests feed ``slogate.matrix`` arbitrary nested data and YAML text (expected:
cases, or ``ConfigError``) and the response parsers arbitrary bytes and JSON-shaped
streams (expected: a result, or ``SSEError``).  Each crash fuzzing found is kept as an
explicit example.  The usage tests run real pytest sessions with bad options and files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slogate.errors import ConfigError
from slogate.loadgen import native
from slogate.loadgen.apis import APIS, Api
from slogate.loadgen.sse import SSEError, StreamResult, parse_json_body, parse_stream
from slogate.matrix import Overrides, expand, load_matrix

BIG = 10**400  # YAML integers have no size limit; floats overflow on them
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the matrix loader ------------------------------------------------------------------------

SETTING_KEYS = [
    "endpoint", "ignore_eos", "range_ratio", "num_prompts", "min_prompts", "warmup_requests",
    "request_timeout_s", "stall_timeout_s", "seed", "burstiness", "slo",
]  # fmt: skip
BLOCK_KEYS = [*SETTING_KEYS, "lengths", "concurrency", "request_rate"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2000),
    st.integers(min_value=-BIG, max_value=BIG),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(
        ["128x128", "32X16", "²x3", "0x5", "1x1x1", " 8 x 8 ", "completions", "chat",
         "sglang_generate", "p99_ttft_ms", "error_rate", "output_throughput", "min", "max"]
    ),
)  # fmt: skip
OTHER_KEYS = ["name", "sweep", "defaults", "capacity", "min", "max", "resolution", "require"]
KEYS = st.sampled_from([*BLOCK_KEYS, *OTHER_KEYS, "p99_ttft_ms"]) | st.text(max_size=4)
NESTED = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
SLO = st.dictionaries(st.sampled_from(["p99_ttft_ms", "median_tpot_ms", "error_rate"]), SCALARS)
BLOCK = st.dictionaries(st.sampled_from(BLOCK_KEYS), NESTED | SLO, max_size=6)
MATRIX = st.fixed_dictionaries(
    {},
    optional={
        "name": NESTED,
        "defaults": st.dictionaries(st.sampled_from(SETTING_KEYS), NESTED | SLO, max_size=5)
        | NESTED,
        "sweep": st.lists(BLOCK, max_size=3) | NESTED,
        "capacity": st.dictionaries(
            st.sampled_from(["lengths", "concurrency", "request_rate", "resolution", "require"]),
            NESTED | st.fixed_dictionaries({"min": SCALARS, "max": SCALARS}),
        ),
    },
)
OVERRIDES = st.builds(
    Overrides,
    concurrency=st.lists(st.integers(1, 64), max_size=2).map(tuple),
    lengths=st.lists(st.tuples(st.integers(1, 64), st.integers(1, 64)), max_size=2).map(tuple),
    num_prompts=st.none() | st.integers(1, 8),
)


def check_cases(cases: list[Any]) -> None:
    """What the loader promises about the cases it returns."""
    for case in cases:
        assert case.input_len > 0 and case.output_len > 0 and case.num_prompts > 0
        assert (case.concurrency is None) != (case.request_rate is None)
        assert all(isinstance(v, float) for v in case.slo.values())


@FUZZ
@given(data=MATRIX | NESTED, overrides=st.none() | OVERRIDES)
@example(data={"sweep": [{"lengths": "1x1", "concurrency": [BIG]}]}, overrides=None)
@example(data={"sweep": [{"lengths": "1x1", "request_rate": BIG}]}, overrides=None)
@example(data={"sweep": [{"lengths": "²x3", "concurrency": 1}]}, overrides=None)
@example(data={"defaults": {"stall_timeout_s": BIG}, "sweep": []}, overrides=None)
@example(data={"defaults": {"slo": {"p99_ttft_ms": BIG}}, "sweep": []}, overrides=None)
def test_expand_raises_only_config_error(data: Any, overrides: Overrides | None) -> None:
    try:
        _, _, cases = expand(data, "fuzz.yaml", overrides)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)
        return
    check_cases(cases)


YAML_LINES = st.sampled_from(
    ["sweep:", "  - lengths: [128x128]", "    concurrency: [1, 8]", "    request_rate: 2.5",
     "defaults:", "  slo: {p99_ttft_ms: 2000}", "  seed: 2001-02-30", "  seed: !!float abc",
     "  seed: !!int 0xZZ", "x: !!python/object:os.system ls", "a: &a [*a]", "? [1, 2]\n: 3",
     "  request_timeout_s: 1e999", f"    concurrency: [{BIG}]", "capacity:",
     "  concurrency: {min: 1, max: 8}", "  require: .inf", "\t", "%YAML 1.1", "---", "...",
     "- 1", "a: " + "[" * 700, "k: \x00", "name: \udcff"]
)  # fmt: skip


def write_matrix(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


@FUZZ
@given(
    text=st.text(max_size=300)
    | st.lists(YAML_LINES, max_size=8).map("\n".join)
    | MATRIX.map(lambda m: yaml.safe_dump(m, allow_unicode=True))
)
@example(text="sweep:\n  - lengths: [128x128]\n    concurrency: [1]\ndefaults: {seed: 2001-02-30}")
@example(text="sweep: " + "[" * 700)  # deeper than the recursion limit
@example(text="sweep: !!float abc")
def test_load_matrix_raises_only_config_error(tmp_path_factory: Any, text: str) -> None:
    path = write_matrix(tmp_path_factory.mktemp("m"), text)
    try:
        matrix = load_matrix(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
        return
    check_cases(list(matrix.cases))


# -- the response parsers ---------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)
CHUNK_KEYS = [
    "choices", "usage", "error", "object", "text", "delta", "content", "finish_reason",
    "completion_tokens", "prompt_tokens", "meta_info", "response", "done", "thinking",
    "eval_count", "eval_duration", "done_reason", "message", "reasoning_content",
]  # fmt: skip
CHUNK = st.recursive(
    JSON,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(CHUNK_KEYS), inner, max_size=4)
    ),
    max_leaves=15,
)
EVENT = st.one_of(
    CHUNK.map(lambda obj: b"data: " + json.dumps(obj).encode() + b"\n\n"),
    CHUNK.map(lambda obj: json.dumps(obj).encode() + b"\n"),  # NDJSON (Ollama)
    st.sampled_from(
        [
            b"data: [DONE]\n\n",
            b": keep-alive\n\n",
            b"event: x\nid: 1\n\n",
            b"retry: 5\n",
            b"\r\n",
            b'data: {"choices": [\n\n',
            b"\xff\xfe\n\n",
            b"data: " + b"[" * 3000 + b"\n\n",
            b"[" * 3000 + b"\n",
        ]
    ),  # fmt: skip
    st.binary(max_size=30),
)


@st.composite
def pieces(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """A body split at arbitrary points, each piece with its arrival time."""
    body = b"".join(draw(st.lists(EVENT, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    bounds = [0, *cuts, len(body)]
    return [(i, body[a:b]) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]


def check_result(result: StreamResult) -> None:
    assert isinstance(result.text, str)
    assert all(isinstance(t, int) for t in result.text_chunk_ns)
    for count in (result.completion_tokens, result.prompt_tokens):
        assert count is None or (isinstance(count, int) and not isinstance(count, bool))


Parser = Callable[[list[tuple[int, bytes]]], StreamResult]


def api_parser(api: Api, content_type: str) -> Parser:
    return lambda pieces: api.parse(pieces, content_type)


PARSERS: dict[str, Parser] = {
    "parse_stream": parse_stream,
    "parse_json_body": lambda ps: parse_json_body(b"".join(p for _, p in ps)),
    "sglang_stream": native.parse_sglang_stream,
    "ollama_stream": native.parse_ollama_stream,
    **{
        f"{name}:{ctype}": api_parser(api, ctype)
        for name, api in APIS.items()
        for ctype in ("text/event-stream", "application/json", "application/x-ndjson")
    },
}


@FUZZ
@given(body=pieces())
@example(body=[(1, b'{"choices": 5}')])  # a non-streamed body whose choices are no list
@example(body=[(1, b'{"choices": [], "usage": {"completion_tokens": "7"}}')])
@example(body=[(1, b"data: " + b"[" * 5000 + b"\n\n")])  # nesting beyond the recursion limit
@example(body=[(1, b"[" * 5000 + b"\n")])
def test_parsers_raise_only_sse_error(body: list[tuple[int, bytes]]) -> None:
    for name, parse in PARSERS.items():
        try:
            result = parse(body)
        except SSEError:
            continue
        except Exception as exc:
            raise AssertionError(f"{name} raised {exc!r}") from exc
        check_result(result)


# -- bad options and files: one line, naming what and how to fix it ----------------------------

BAD_MATRICES = {
    "negative-concurrency": (
        "sweep:\n  - lengths: [32x16]\n    concurrency: [8, -4]\n",
        "sweep[[]0].concurrency: concurrency must be a list of positive numbers, got -4",
    ),
    "wrong-type": (
        "defaults: {stall_timeout_s: fast}\nsweep:\n  - lengths: [32x16]\n    concurrency: [1]\n",
        "defaults.stall_timeout_s: expected a number of seconds > 0, got 'fast'",
    ),
    "malformed-yaml": ("sweep: [\n", "malformed YAML at line 2, column 1*"),
    "impossible-date": (
        "defaults: {seed: 2001-02-30}\nsweep: []\n",
        "malformed YAML: day is out of range for month",
    ),
}


@pytest.mark.parametrize("name", list(BAD_MATRICES))
def test_bad_matrix_files_are_one_line_usage_errors(project: pytest.Pytester, name: str) -> None:
    text, message = BAD_MATRICES[name]
    path = project.path / "matrices" / f"{name}.yaml"
    path.write_text(text)
    assert_usage_error(project.runpytest_subprocess("--matrix", str(path)), f"{path}: {message}")


BAD_OPTIONS = {
    "concurrency=-4": (["--concurrency=-4"], "--concurrency '-4': '-4' is not a positive*"),
    "concurrency -4": (["--concurrency", "1,-4"], "--concurrency '1,-4': '-4' is not a positive*"),
    "concurrency ²": (["--concurrency", "²"], "--concurrency '²': '²' is not a positive*"),
    "startup-timeout": (["--startup-timeout", "-1"], "--startup-timeout -1.0: expected a number*"),
    "slo value": (["--slo", "p99_ttft_ms=fast"], "--slo 'p99_ttft_ms=fast': 'fast' is not a*"),
    "slo name": (["--slo", "p99_ttft=100"], "--slo: unknown SLO 'p99_ttft'; use a summary key*"),
    "profile missing": (["--engine-profile", "nope.yaml"], "--engine-profile nope.yaml: no such*"),
}


@pytest.mark.parametrize("name", list(BAD_OPTIONS))
def test_bad_options_are_one_line_usage_errors(project: pytest.Pytester, name: str) -> None:
    args, message = BAD_OPTIONS[name]
    assert_usage_error(project.runpytest_subprocess(*args), message)


def test_bad_engine_profile_and_reports_dir(project: pytest.Pytester) -> None:
    profile = project.path / "p.yaml"
    profile.write_text("engine: vllm\nmodel: /m\nargz: --x\n")
    res = project.runpytest_subprocess("--engine-profile", str(profile))
    assert_usage_error(res, f"{profile}: unknown key 'argz'; allowed keys:*")
    profile.write_text("engine: vllm\nargs: [\n")
    res = project.runpytest_subprocess("--engine-profile", str(profile))
    assert_usage_error(res, f"{profile}: malformed YAML at line 3*")
    blocker = project.path / "a-file"
    blocker.write_text("")
    res = project.runpytest_subprocess("-m", "smoke", "--reports-dir", str(blocker / "reports"))
    assert_usage_error(res, f"--reports-dir {blocker}/reports: cannot create it (*); give a*")


def assert_usage_error(res: pytest.RunResult, message: str) -> None:
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in res.errlines if line.strip()]
    assert len(lines) == 1, res.errlines  # one line, no traceback
    res.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in res.stdout.str() and "INTERNALERROR" not in res.stdout.str()
