"""kubento: a Kubernetes operator that serves BentoML models."""

__version__ = "0.1.0"
