"""Pure rollout decisions: no I/O."""
