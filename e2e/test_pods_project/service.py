"""A BentoML service for the pod tests (e2e/test_pods.py): it reads a file
at startup (MODEL_FILE, e.g. weights on a PersistentVolumeClaim; a missing
file fails the start like a missing model would), takes LOAD_SECONDS to load
(a large model), and reports what it found.

    POST /info {}  ->  {"weights": ..., "shm_bytes": ..., "greeting": ..., "loaded_in": ...}
"""

from __future__ import annotations

import os
import time

import bentoml


@bentoml.service(name="pods-probe", workers=1, traffic={"timeout": 10})
class PodsProbe:
    def __init__(self) -> None:
        start = time.monotonic()
        path = os.environ.get("MODEL_FILE")
        self.weights = open(path).read().strip() if path else ""
        time.sleep(float(os.environ.get("LOAD_SECONDS", "0")))
        self.loaded_in = round(time.monotonic() - start, 1)

    @bentoml.api
    def info(self) -> dict:
        """What this pod's model server sees."""
        shm = os.statvfs("/dev/shm")
        return {
            "weights": self.weights,
            "shm_bytes": shm.f_blocks * shm.f_frsize,
            "greeting": os.environ.get("GREETING", ""),
            "loaded_in": self.loaded_in,
        }
