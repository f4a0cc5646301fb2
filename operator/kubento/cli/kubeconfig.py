"""The typed Kubernetes client's configuration for the CLI's commands.

In a pod, its ServiceAccount; elsewhere the kubeconfig (``$KUBECONFIG`` as it
is now, or ~/.kube/config; the current context), with everything the typed
client supports (exec plugins, auth providers). The operator itself does not
import the typed client (kubento.controller.credentials)."""

from __future__ import annotations

import os
from typing import Any


def load_configuration() -> Any:
    """A kubernetes.client.Configuration."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        config.load_kube_config(config_file=path, client_configuration=cfg)
    return cfg
