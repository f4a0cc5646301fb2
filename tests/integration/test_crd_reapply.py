"""A CRD changed while the operator runs (an upgrade re-applies it): the API
server re-initialises the resource's storage and ends its watches; the
operator must keep following its models."""

import json

from tests.helpers import wait_for
from tests.integration.conftest import newest_deployment
from tests.specs import VALID_SPEC

CRD = "modeldeployments.serving.kubento.io"


def _md(cp, namespace, name):
    return json.loads(cp.kubectl("get", "md", name, "-n", namespace, "-o", "json").stdout)


def test_a_changed_crd_does_not_stop_the_operator_following_its_models(controlplane, namespace, md):
    name = md(VALID_SPEC)
    wait_for("its Deployment", lambda: newest_deployment(controlplane, namespace, name))
    wait_for("observedGeneration 1", lambda: _md(controlplane, namespace, name).get("status", {}).get("observedGeneration") == 1)
    for i in range(2):
        controlplane.kubectl("patch", "crd", CRD, "--type=json", "-p", json.dumps(
            [{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/description", "value": f"changed {i}"}]))
        md({"bento": {"image": f"registry.local/iris:{3 + i}.0"}}, name=name)
        wait_for(f"the new image {3 + i}", lambda: newest_deployment(controlplane, namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{3 + i}.0"), timeout=60)
        wait_for(f"observedGeneration {2 + i}", lambda: _md(controlplane, namespace, name).get("status", {}).get("observedGeneration") == 2 + i, timeout=60)
