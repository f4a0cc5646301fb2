"""The iris classifier as a BentoML project that kubento builds in the cluster
(bento.build): no model store needed, the model is trained when the server
starts (a fraction of a second for this data set).

    POST /classify {"features": [[5.1, 3.5, 1.4, 0.2]]}  ->  ["setosa"]
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
import numpy as np
from pydantic import Field

FeatureRow = Annotated[list[float], Field(min_length=4, max_length=4)]
MODEL_VERSION = os.environ.get("MODEL_VERSION", "1")


@bentoml.service(name="iris-source", workers=1, resources={"cpu": "1"}, traffic={"timeout": 10})
class IrisClassifier:
    def __init__(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        iris = load_iris()
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=42))
        self.model.fit(iris.data, iris.target)
        self.target_names = [str(n) for n in iris.target_names]

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
