"""Prometheus scraping during load."""

from __future__ import annotations

from slogate.engines.base import ANY_METRICS, VLLM_METRICS
from slogate.scrape import parse_prometheus, peak

VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 12.0
vllm:num_requests_running{engine="1",model_name="m"} 4.0
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:gpu_cache_usage_perc{model_name="m"} 0.99
vllm:generation_tokens_total{model_name="m"} 1.5e+04
vllm:something_else NaN
"""

SGLANG_TEXT = """\
sglang:num_running_reqs{model_name="m",tp_rank="0"} 7.0
sglang:num_queue_reqs{model_name="m",tp_rank="0"} 2.0
sglang:token_usage{model_name="m",tp_rank="0"} 0.5
"""


def test_vllm_series_sum_over_labels_and_prefer_new_names() -> None:
    values = parse_prometheus(VLLM_TEXT, VLLM_METRICS)
    assert values["running"] == 16.0 and values["waiting"] == 3.0
    assert values["kv_cache_usage"] == 0.25  # kv_cache_usage_perc preferred over the old name
    assert values["generation_tokens_total"] == 15000.0
    assert "prompt_tokens_total" not in values


def test_sglang_names_through_the_any_engine_table() -> None:
    values = parse_prometheus(SGLANG_TEXT, ANY_METRICS)
    assert values == {"running": 7.0, "waiting": 2.0, "kv_cache_usage": 0.5}


def test_peak() -> None:
    samples = [{"t": 0, "running": 3, "waiting": 1}, {"t": 1, "running": 5, "waiting": 4}]
    assert peak(samples, "running", "waiting") == 9
    assert peak([], "running") is None
