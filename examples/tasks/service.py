"""A BentoML service with a task endpoint: the example kubento's task tests serve.

    POST /slow_upper/submit {"text": "hello", "seconds": 0.5}  ->  {"task_id": "...", "status": "in_progress"}
    GET  /slow_upper/status?task_id=...                        ->  {"task_id": "...", "status": "completed", ...}
    GET  /slow_upper/get?task_id=...                           ->  "HELLO"
    POST /upper {"text": "hello"}                              ->  "HELLO"   (a plain API, answered at once)

X-Model-Version (MODEL_VERSION) and X-Served-By (the server's host name: in
Kubernetes, its pod) on /upper's answers say who answered.

A task runs in the server that took it, after the submit has been answered;
BentoML keeps its status and result in that server's own SQLite file. With
more than one replica behind a Service, kubento's in-pod helper routes a
task's status/get/retry/cancel to the pod that owns it (see README.md).
Nothing but bentoml is needed.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Annotated

import bentoml
from pydantic import Field

MODEL_VERSION = os.environ.get("MODEL_VERSION", "1")
SERVED_BY = socket.gethostname()  # the pod's name


@bentoml.service(name="tasks", workers=1, resources={"cpu": "500m"}, traffic={"timeout": 60})
class Tasks:
    @bentoml.task
    async def slow_upper(
        self,
        text: Annotated[str, Field(max_length=10_000)],
        seconds: Annotated[float, Field(ge=0, le=30)] = 0.5,
    ) -> str:
        """Wait ``seconds``, then return ``text`` upper-cased (a task: submit, then poll)."""
        # asyncio.sleep, not time.sleep: many tasks are in flight at once in
        # one worker (a sync task would run one at a time in BentoML's thread).
        await asyncio.sleep(seconds)
        return text.upper()

    @bentoml.api
    def upper(self, text: Annotated[str, Field(max_length=10_000)], ctx: bentoml.Context) -> str:
        """``text`` upper-cased, answered at once; X-Model-Version and X-Served-By say who answered."""
        ctx.response.headers["x-model-version"] = MODEL_VERSION
        ctx.response.headers["x-served-by"] = SERVED_BY
        return text.upper()
