"""Two BentoML services in one bento: a CPU entry service that prepares the
input and calls a model service (``bentoml.depends``), which declares its own
resources and traffic settings. kubento runs each in its own Deployment
(docs/models/multi-service.md). Nothing but bentoml is needed."""

from __future__ import annotations

import os
import socket

import bentoml


@bentoml.service(resources={"cpu": "200m", "memory": "256Mi"}, traffic={"timeout": 30, "concurrency": 4})
class Scorer:
    """The "model": scores a list of numbers (their weighted sum)."""

    @bentoml.api
    def score(self, values: list[float]) -> dict:
        weights = [0.5, 0.3, 0.2]
        total = sum(w * v for w, v in zip(weights, values))
        return {"score": round(total, 6), "scored_by": socket.gethostname()}


@bentoml.service(resources={"cpu": "100m", "memory": "192Mi"})
class Frontend:
    """The entry: parses "a,b,c" text, scales it, asks the Scorer."""

    scorer = bentoml.depends(Scorer)

    @bentoml.api
    def predict(self, text: str) -> dict:
        values = [float(v) / 10 for v in text.split(",")[:3]]
        answer = self.scorer.score(values)
        return {**answer, "served_by": socket.gethostname(), "version": os.environ.get("MODEL_VERSION", "v1")}
