"""A tiny BentoML service for the runtime tests: no model, no extra
packages, so `bentoml build/export/import/serve` take about a second each."""

import bentoml


@bentoml.service
class Echo:
    @bentoml.api
    def echo(self, text: str) -> str:
        return text[::-1]
