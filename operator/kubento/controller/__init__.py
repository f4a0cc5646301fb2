"""kopf handlers and the API I/O they drive (the only code that talks to Kubernetes)."""
