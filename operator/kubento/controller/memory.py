"""What the operator remembers about each model between passes, in one
place with one ``forget``.

Nothing here is needed for correctness after a restart (status carries what
must survive); it saves work and API calls: the children's generations as
kubento last applied them (someone else's edit shows as a new generation),
manifests the API server refused (not retried in a loop), the Secrets last
checked, the analysis windows, the autoscaler's samples, and prediction
checks that got no answer yet (retried a few times before a pod fails),
the data-quality windows, the Gateways of its route (gateway mode), and the jobs of requests to its
pods (or through its route) under way (kubento.controller.podio).

One model is handled by one worker at a time (the work queue guarantees
it), so a ModelMemory needs no lock of its own; the registry's dict does.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.autoscale.decision import Decision as ScaleDecision
from kubento.autoscale.decision import Memory as ScaleMemory
from kubento.controller.quality import QualityMemory
from kubento.rollout.analysis import Sample

Key = tuple[str, str]


@dataclass
class SecretCheck:
    names: frozenset[str]
    missing: frozenset[str]
    checked: float  # monotonic time of the check
    attempts: int = 0  # consecutive checks that found one missing


@dataclass
class GatewayCheck:
    """The Gateways of a model's route as last read (gateway mode)."""

    keys: frozenset[tuple[str, str]]  # (namespace, name) of each
    seen: str  # the route's status when they were read (a change reads them again)
    found: dict[tuple[str, str], Optional[dict[str, Any]]]  # stripped (controller.route), None: missing
    checked: float  # monotonic time of the read
    attempts: int = 0  # reads in a row that found one missing or the route not accepted


@dataclass
class AutoscalerMemory:
    metric: Optional[str] = None  # the metric the windows were sampled for
    decision_memory: ScaleMemory = field(default_factory=ScaleMemory)
    counts: Optional[tuple[float, dict[str, Sample]]] = None  # rps: the previous sample
    last: Optional[tuple[float, ScaleDecision]] = None
    published: float = 0.0
    scrape_started: float = float("-inf")  # when the last scrape of the pods' /metrics began


@dataclass
class PredictionMemory:
    """Prediction checks that could not tell yet (no answer, a 5xx)."""

    # pod uid -> (runs in a row without a verdict, monotonic time of the last)
    attempts: dict[str, tuple[int, float]] = field(default_factory=dict)
    # rollout token -> comparisons in which the stable pod answered nothing
    comparisons: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelMemory:
    # (kind, name) -> the child's generation when kubento last applied or saw it
    generations: dict[tuple[str, str], int] = field(default_factory=dict)
    # applied-hash -> (the API server's refusal, when): not sent again until it expires
    rejected: dict[str, tuple[str, float]] = field(default_factory=dict)
    secrets: Optional[SecretCheck] = None
    gateways: Optional[GatewayCheck] = None
    # (rollout token, step) -> (candidate window, stable window), see controller.analysis
    windows: dict[tuple[str, int], Any] = field(default_factory=dict)
    autoscaler: AutoscalerMemory = field(default_factory=AutoscalerMemory)
    predictions: PredictionMemory = field(default_factory=PredictionMemory)
    quality: QualityMemory = field(default_factory=QualityMemory)  # drift windows per pod (controller.quality)
    # purpose (checks, analysis, autoscaler) -> its job of requests to pods, while it runs or until a pass takes it
    jobs: dict[str, Future] = field(default_factory=dict)
    checked: Optional[Future] = None  # the checks job whose results this pass uses (forgotten once written)
    verified: bool = False  # a pass of this leader read the model itself (reconcile's verify)
    conflicted: bool = False  # its last status was refused as stale (409): the next pass reads the model
    write_streak: int = 0  # passes in a row that wrote something (a pass that keeps writing is a fight: slow down)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[Key, ModelMemory] = {}

    def get(self, key: Key) -> ModelMemory:
        with self._lock:
            return self._models.setdefault(key, ModelMemory())

    def forget(self, key: Key) -> None:
        with self._lock:
            memory = self._models.pop(key, None)
        for job in (memory.jobs.values() if memory else ()):
            job.cancel()

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)
