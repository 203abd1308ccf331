"""A load test of the inference service: many concurrent clients, every answer checked.

Part of ``medshield bench obfnet`` (never the test suite). Each of ``concurrency`` clients
holds its own keep-alive connection and sends its share of ``requests`` one after another;
every answer is compared with the label the same model gives locally.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np

from medshield.serve.client import encode_binary, encode_json

__all__ = ["LoadReport", "load_test"]


@dataclass
class LoadReport:
    """What the load test measured.

    Attributes
    ----------
    requests, concurrency : what was sent, by how many concurrent clients
    correct : answers whose labels equal the local predictions
    failed : requests that got no 200 answer (or no answer)
    seconds : wall time of the whole run
    throughput : answered requests per second
    p50_ms, p99_ms, max_ms : request latency percentiles (client side, milliseconds)
    """

    requests: int
    concurrency: int
    correct: int
    failed: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def all_correct(self) -> bool:
        return self.correct == self.requests and self.failed == 0


async def _run(
    url: str,
    api_key: str,
    samples: np.ndarray,
    expected: np.ndarray,
    *,
    requests: int,
    concurrency: int,
    batch: int,
    binary: bool,
    timeout: float,
) -> LoadReport:
    encode = encode_binary if binary else encode_json
    n = len(samples)
    latencies: list[float] = []
    correct = 0
    failed = 0
    counter = iter(range(requests))

    async def client() -> None:
        nonlocal correct, failed
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=url,
            timeout=timeout,
            limits=limits,
            headers={"Authorization": f"Bearer {api_key}"},
        ) as http:
            for i in counter:
                idx = [(i * batch + j) % n for j in range(batch)]
                body, headers = encode(samples[idx])
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/predict", content=body, headers=headers)
                except httpx.HTTPError:
                    failed += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failed += 1
                elif r.json()["labels"] == expected[idx].tolist():
                    correct += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return LoadReport(
        requests=requests,
        concurrency=concurrency,
        correct=correct,
        failed=failed,
        seconds=seconds,
        throughput=(requests - failed) / seconds,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        max_ms=float(lat.max()),
    )


def load_test(
    url: str,
    api_key: str,
    samples: np.ndarray,
    expected: np.ndarray,
    *,
    requests: int = 2000,
    concurrency: int = 50,
    batch: int = 1,
    binary: bool = False,
    timeout: float = 30.0,
) -> LoadReport:
    """Send ``requests`` requests of ``batch`` samples from ``concurrency`` concurrent clients.

    Parameters
    ----------
    url, api_key
        The running service.
    samples
        ``(M, C, H, W)`` float32 samples (raw or obfuscated), cycled through.
    expected
        ``(M,)`` labels the model gives locally; every answer is checked against them.
    requests, concurrency, batch
        2,000 requests from 50 clients, one sample each, by default.
    binary
        Send raw float32 instead of JSON.
    timeout
        Seconds per request.
    """
    if len(samples) != len(expected) or len(samples) == 0:
        raise ValueError("samples and expected must be non-empty and of the same length")
    return asyncio.run(
        _run(
            url,
            api_key,
            np.asarray(samples, np.float32),
            np.asarray(expected),
            requests=requests,
            concurrency=concurrency,
            batch=batch,
            binary=binary,
            timeout=timeout,
        )
    )
