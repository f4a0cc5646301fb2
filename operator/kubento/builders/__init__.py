"""Pure functions from a ModelDeployment to the manifests of its children.

No I/O here: every builder takes the parsed spec and returns a plain dict that
the controller sends with server-side apply. Each is checked against the
kubernetes client's own models (``validated``) so a malformed manifest fails in
unit tests, not at the API server.
"""

from kubento.builders.deployment import deployment  # noqa: F401
from kubento.builders.hpa import horizontal_pod_autoscaler  # noqa: F401
from kubento.builders.meta import Owner  # noqa: F401
from kubento.builders.service import service  # noqa: F401
