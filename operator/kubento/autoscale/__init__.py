"""Autoscaling decisions as pure functions (kubento's own autoscaler)."""
