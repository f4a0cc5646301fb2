"""The example BentoML service kubento's tests serve: an iris classifier.

    POST /classify {"features": [[5.1, 3.5, 1.4, 0.2]]}  ->  ["setosa"]

The model is trained and saved by train.py (at image build time) and packed
into the Bento by `bentoml build` (bentofile.yaml).
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
import numpy as np
from pydantic import Field

# One row of the four iris measurements, in cm: sepal length, sepal width,
# petal length, petal width.
FeatureRow = Annotated[list[float], Field(min_length=4, max_length=4)]
MODEL_VERSION = os.environ.get("MODEL_VERSION", "1")


@bentoml.service(
    name="iris",
    workers=1,
    resources={"cpu": "1"},
    traffic={"timeout": 10},
)
class IrisClassifier:
    # Resolved when the Bento is built; packed into the Bento with it.
    model_ref = bentoml.models.BentoModel("iris_clf:latest")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)
        self.target_names: list[str] = list(self.model_ref.custom_objects["target_names"])

    @bentoml.api
    def classify(
        self,
        features: Annotated[list[FeatureRow], Field(min_length=1, max_length=1000)],
        ctx: bentoml.Context,
    ) -> list[str]:
        """Predict the species of each row of four measurements."""
        # Which model answered (set MODEL_VERSION in the ModelDeployment's env):
        # lets a client, or a test, see how a canary splits the traffic.
        ctx.response.headers["x-model-version"] = MODEL_VERSION
        predictions = self.model.predict(np.asarray(features, dtype=np.float64))
        return [self.target_names[int(i)] for i in predictions]
