"""The load generator: streaming HTTP client, SSE parsing, datasets and scheduling."""

from slogate.loadgen.runner import ClientStats, LoadResult, LoadSpec, Progress, run_load

__all__ = ["ClientStats", "LoadResult", "LoadSpec", "Progress", "run_load"]
