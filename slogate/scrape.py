"""Server-side metrics during load: scrape Prometheus ``/metrics`` every second.

The scraper runs in its own thread with its own HTTP client, so it never competes with
the load generator's event loop.  Each sample is the sum over label sets of each wanted
metric (e.g. ``vllm:num_requests_running`` for every model), with the time since the
case started, so a TTFT blow-up can be seen to be queueing (``waiting`` rising) or KV
cache pressure.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str, wanted: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    """``{series: value}`` for each series whose metric names appear in ``text``.

    ``wanted`` maps a series name (``running``) to the metric names that may carry it,
    in order of preference (engines rename metrics between versions).
    """
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        if math.isnan(value):
            continue
        name = m.group(1)
        totals[name] = totals.get(name, 0.0) + value
    out = {}
    for series, names in wanted.items():
        for name in names:
            if name in totals:
                out[series] = totals[name]
                break
    return out


class MetricsScraper:
    """Samples ``url`` every ``interval_s`` between ``start()`` and ``stop()``."""

    def __init__(
        self,
        url: str,
        wanted: Mapping[str, tuple[str, ...]],
        interval_s: float = 1.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.wanted = dict(wanted)
        self.interval_s = interval_s
        self.headers = dict(headers or {})
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slogate-scraper", daemon=True)
        self._t0 = 0.0

    def start(self) -> MetricsScraper:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        return self.samples

    def __enter__(self) -> MetricsScraper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0, headers=self.headers) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._sample(client)
                next_at += self.interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))
            self._sample(client)  # one last point after the load

    def _sample(self, client: httpx.Client) -> None:
        t = time.monotonic() - self._t0
        try:
            resp = client.get(self.url)
            resp.raise_for_status()
        except httpx.HTTPError:
            self.errors += 1
            return
        values = parse_prometheus(resp.text, self.wanted)
        if values:
            self.samples.append({"t": round(t, 3), **values})


def peak(samples: list[dict[str, Any]], *series: str) -> float | None:
    """The highest sum of ``series`` over the samples (e.g. running + waiting)."""
    sums = [sum(s.get(k, 0.0) for k in series) for s in samples if any(k in s for k in series)]
    return max(sums) if sums else None
