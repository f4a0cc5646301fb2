import bentoml
import numpy as np

POSITIVE = ["good", "great", "love", "excellent", "happy"]
NEGATIVE = ["bad", "awful", "hate", "terrible", "sad"]


@bentoml.service
class Sentiment:
    def __init__(self) -> None:
        self.weights = {word: 1.0 for word in POSITIVE} | {word: -1.0 for word in NEGATIVE}

    @bentoml.api
    def classify(self, texts: list[str]) -> list[str]:
        scores = np.array([sum(self.weights.get(w, 0.0) for w in t.lower().split()) for t in texts])
        return ["positive" if s > 0 else "negative" for s in scores]
