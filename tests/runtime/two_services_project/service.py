"""Two BentoML services for the runtime tests: an entry service that calls a
model service (bentoml.depends), each declaring its own resources; no model,
no extra packages."""

import bentoml


@bentoml.service(resources={"cpu": "2", "memory": "1Gi"}, traffic={"timeout": 120, "concurrency": 8}, workers=2)
class Model:
    @bentoml.api
    def predict(self, x: float) -> float:
        return x * 2


@bentoml.service(resources={"cpu": "500m", "memory": "512MiB"})
class Entry:
    model = bentoml.depends(Model)

    @bentoml.api
    def run(self, x: float) -> float:
        return self.model.predict(x + 1)
