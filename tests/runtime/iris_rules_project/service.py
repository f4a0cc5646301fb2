"""A stand-in for the iris classifier with no model and no extra package
(standard library only, so `bentoml build` and `serve` take a second): the
same API as examples/iris, a rule on the petal length. Used by the runtime
tests of kubento.runtime.monitor, and by the e2e tier as a new revision of
the iris model that answers a different class mix (SKEW=1: most rows come
out virginica).

    POST /classify {"features": [[5.1, 3.5, 1.4, 0.2]]}  ->  ["setosa"]
"""

import os

import bentoml


@bentoml.service(name="iris-rules", workers=int(os.environ.get("WORKERS", "1")))
class IrisRules:
    @bentoml.api
    def classify(self, features: list[list[float]]) -> list[str]:
        shift = 3.0 if os.environ.get("SKEW") == "1" else 0.0
        out = []
        for row in features:
            petal = row[2] + shift
            out.append("setosa" if petal < 2.5 else "versicolor" if petal < 4.9 else "virginica")
        return out
