"""Two BentoML services for the runtime tests: an entry service that calls a
model service (bentoml.depends), each declaring its own resources; no model,
no extra packages."""

import os

import bentoml


@bentoml.service(resources={"cpu": "2", "memory": "1Gi"}, traffic={"timeout": 120, "concurrency": 8}, workers=2,
                 envs=[{"name": "GREETING", "value": "from Model"}])
class Model:
    @bentoml.api
    def predict(self, x: float) -> float:
        return x * 2

    @bentoml.api
    def greeting(self) -> str:
        return os.environ.get("GREETING", "")


@bentoml.service(resources={"cpu": "500m", "memory": "512MiB"}, envs=[{"name": "GREETING", "value": "from Entry"}])
class Entry:
    model = bentoml.depends(Model)

    @bentoml.api
    def run(self, x: float) -> float:
        return self.model.predict(x + 1)
