"""A BentoML service with a task endpoint for the runtime tests (no model, no
extra packages): a task that takes ``seconds`` to upper-case ``text``."""

import time

import bentoml


@bentoml.service
class Slow:
    @bentoml.task
    def upper(self, text: str, seconds: float = 0.0) -> str:
        time.sleep(seconds)
        return text.upper()
