"""Train the example iris classifier and save it to the BentoML model store.

Runs at image build time (e2e/images/build iris) or by hand:

    BENTOML_HOME=/tmp/bentoml python train.py

Uses the iris data set bundled with scikit-learn (nothing is downloaded). The
class names travel with the model (custom_objects), so the service needs no
copy of them.
"""

from __future__ import annotations

import bentoml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "iris_clf"


def main() -> None:
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.2, random_state=42, stratify=iris.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=42))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    print(f"test accuracy: {accuracy:.3f}")
    if accuracy < 0.9:
        raise SystemExit(f"accuracy {accuracy:.3f} is too low; refusing to save the model")

    saved = bentoml.sklearn.save_model(
        MODEL_NAME,
        model,
        signatures={"predict": {"batchable": False}},
        custom_objects={"target_names": [str(n) for n in iris.target_names]},
        metadata={"accuracy": accuracy, "dataset": "sklearn.datasets.load_iris"},
        labels={"example": "iris"},
    )
    print(f"saved model: {saved.tag}")


if __name__ == "__main__":
    main()
