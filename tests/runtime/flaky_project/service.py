"""A tiny BentoML service for the metrics runtime test: ``POST /work``
answers HTTP 500 when asked to fail and can be made slow, so a test produces
known numbers of requests, errors and latencies. No model, no extra packages.
Async, so concurrent slow requests do not queue behind each other."""

import asyncio

import bentoml


@bentoml.service
class Flaky:
    @bentoml.api
    async def work(self, fail: bool = False, sleep: float = 0.0) -> str:
        if sleep:
            await asyncio.sleep(sleep)
        if fail:
            raise RuntimeError("asked to fail")  # BentoML answers 500 for an unexpected exception
        return "ok"
