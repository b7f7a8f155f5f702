"""Kopf's HTTP session: at most API_REQUESTS requests in flight, watches never queued."""

import asyncio
from typing import Any

from yarl import URL

from gpufinops.handlers import startup


class Request:
    def __init__(self, url: str) -> None:
        self.url = URL(url)


def test_requests_beyond_the_limit_wait_and_watches_pass() -> None:
    async def scenario() -> tuple[int, int]:
        limit = 3
        middleware = startup._bounded(asyncio.Semaphore(limit))
        running = peak = 0
        release = asyncio.Event()

        async def handler(request: Any) -> Any:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            return request

        patches = [
            asyncio.ensure_future(middleware(Request(f"https://k/apis/x/{i}"), handler))  # type: ignore[arg-type]
            for i in range(10)
        ]
        watch = asyncio.ensure_future(
            middleware(Request("https://k/apis/x?watch=true"), handler)  # type: ignore[arg-type]
        )
        for _ in range(20):
            await asyncio.sleep(0)
        in_flight = running
        release.set()
        await asyncio.gather(*patches, watch)
        return in_flight, peak

    in_flight, peak = asyncio.run(scenario())
    assert in_flight == 3 + 1  # three short requests and the watch
    assert peak == 4
