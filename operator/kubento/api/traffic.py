"""spec.traffic and status.traffic: how requests reach a model's revisions.

Without ``spec.traffic.gateway`` a model is reached through its Service and a
canary's weight is a share of pods (replicas mode). With it, kubento owns a
Gateway API HTTPRoute for the model (gateway mode): each serving revision has
its own Service, the route splits requests between them by weight, header
rules reach the candidate or a named revision, and a shadow step mirrors
requests to the candidate. Part of the API (kubento.api.v1alpha1 uses these
models); the rules are written as CEL and as pydantic validators, side by side.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, Model, cel, rules

GATEWAY_GROUP = "gateway.networking.k8s.io"
DEFAULT_REVISION_HEADER = "x-kubento-revision"
# Gateway API's own Duration (GEP-2257): up to four parts of at most five digits, no fractions.
GATEWAY_DURATION_PATTERN = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
# Gateway API's Hostname: a DNS name, optionally with one leading wildcard label; no IP address.
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
PATH_PREFIX_PATTERN = r"^/[A-Za-z0-9/\-._~%!$&'()*+,;=:@]*$"

GatewayDuration = Annotated[str, Field(pattern=GATEWAY_DURATION_PATTERN, max_length=24)]
Hostname = Annotated[str, Field(pattern=HOSTNAME_PATTERN, min_length=1, max_length=253)]


class GatewayParent(Model):
    """A Gateway (or one of its listeners) the model's HTTPRoute attaches to."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="The Gateway's name.")
    namespace: Optional[str] = Field(
        default=None, max_length=63, pattern=DNS_LABEL_PATTERN,
        description="The Gateway's namespace (default: the model's). Its listener must allow routes from the "
        "model's namespace (allowedRoutes.namespaces).",
    )
    section_name: Optional[str] = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN,
        description="A listener of the Gateway, by name (default: every listener that accepts the route).",
    )
    port: Optional[int] = Field(default=None, ge=1, le=65535, description="A listener of the Gateway, by port.")


class RouteRetry(Model):
    """Gateway API's HTTPRoute retry (rules[].retry). It is in the experimental
    channel of the Gateway API CRDs: where the cluster's HTTPRoute lacks it the
    route is made without it and the model's RouteAccepted condition says so."""

    attempts: int = Field(ge=1, le=10, description="Retries of a failed request, at most.")
    backoff: Optional[GatewayDuration] = Field(default=None, description="Wait between retries, e.g. 100ms.")
    codes: list[Annotated[int, Field(ge=500, le=599)]] = Field(
        default_factory=list, max_length=10,
        description="HTTP status codes that are retried (5xx); empty: the implementation's default.",
    )


class GatewayTraffic(Model):
    """Requests through a Gateway API Gateway, split per request by kubento's HTTPRoute."""

    model_config = ConfigDict(json_schema_extra=rules(
        cel("self.parentRefs.all(p, self.parentRefs.exists_one(q, q == p))", "parentRefs must be unique",
            ".parentRefs"),
    ))

    parent_refs: list[GatewayParent] = Field(
        min_length=1, max_length=16, description="The Gateways (listeners) the route attaches to.")
    hostnames: list[Hostname] = Field(
        default_factory=list, max_length=16,
        description="Host names the route answers (Gateway API hostnames; '*.example.com' allowed). Empty: every "
        "host name the listener accepts. The first one that is not a wildcard names status.url.",
    )
    path_prefix: str = Field(
        default="/", max_length=1024, pattern=PATH_PREFIX_PATTERN,
        description="Requests under this path reach the model, which sees them without it (a URLRewrite "
        "ReplacePrefixMatch to '/'), e.g. /iris: /iris/classify reaches the model's /classify.",
    )
    request_timeout: Optional[GatewayDuration] = Field(
        default=None,
        description="The route's request timeout (rules[].timeouts.request), e.g. 30s: the Gateway answers 504 "
        "after it. Default: the implementation's.",
    )
    retry: Optional[RouteRetry] = Field(default=None, description="Retries by the Gateway (see RouteRetry).")
    revision_header: str = Field(
        default=DEFAULT_REVISION_HEADER, max_length=256, pattern=HEADER_NAME_PATTERN,
        description="The header of the route's header rules: '<header>: candidate' reaches the revision being "
        "rolled out from the moment one of its pods is ready (before it takes any weight), '<header>: stable' "
        "the stable revision, '<header>: <revision hash>' any revision whose Deployment runs pods.",
    )

    @model_validator(mode="after")
    def _unique(self) -> "GatewayTraffic":
        keys = [(p.name, p.namespace, p.section_name, p.port) for p in self.parent_refs]
        if len(keys) != len(set(keys)):
            raise ValueError("parentRefs must be unique")
        return self


class Traffic(Model):
    """How requests reach the model."""

    gateway: Optional[GatewayTraffic] = Field(
        default=None,
        description=(
            "Gateway mode: kubento owns an HTTPRoute named like the model, attached to these Gateways; every "
            "revision that runs pods gets its own Service (<name>-<revision>) as a backend of it. A canary step's "
            "weight is then a share of requests, exact per request whatever the replica count and for keep-alive "
            "clients too; the candidate runs ceil(weight% x replicas) pods (at least one) and the stable revision "
            "keeps all its replicas until the candidate takes every request; BlueGreen switches the route; a "
            "rollback moves the weight back first, then scales; a step may mirror requests to the candidate "
            "(rollout.steps[].mirror). The model's Service still serves in-cluster clients as in replicas mode. "
            "Unset: replicas mode (the Service selects the pods; a canary's weight is a share of pods)."
        ),
    )


# ------------------------------------------------------------------- status

ConditionStatus = Literal["True", "False", "Unknown"]


class RouteParentStatus(Model):
    """What one Gateway said about the model's HTTPRoute (its status.parents)."""

    gateway: str = Field(description="The Gateway, as namespace/name.")
    section_name: Optional[str] = Field(default=None, description="The listener, when the spec names one.")
    accepted: ConditionStatus = Field(description="The route's Accepted condition for this Gateway.")
    resolved_refs: ConditionStatus = Field(description="The route's ResolvedRefs condition for this Gateway.")
    reason: str = Field(description="The reason of the first condition that is not True (else Accepted's).")
    message: str = Field(default="", description="Its message, or why kubento knows nothing yet.")


class MirrorCheck(Model):
    """Whether the Gateways mirror requests (a probe before a shadow step takes the route's traffic)."""

    revision: str = Field(description="The candidate the check was made for.")
    supported: ConditionStatus = Field(description="True: mirrored requests are answered; False: the Gateway "
                                       "refuses or breaks the RequestMirror filter; Unknown: it could not be probed.")
    message: str = Field(default="", description="What the probe saw.")


class BackendWeight(Model):
    """One weighted backend of the route's main rule."""

    revision: str = Field(description="Revision hash.")
    weight: int = Field(description="Percent of requests the route sends to it.")


class TrafficStatus(Model):
    """How requests reach the model now."""

    mode: Literal["replicas", "gateway"] = Field(
        description="replicas: the Service selects the pods (a canary's weight is a share of pods); gateway: "
        "kubento's HTTPRoute splits requests by weight.")
    route: Optional[str] = Field(default=None, description="The model's HTTPRoute (gateway mode).")
    backends: Optional[list[BackendWeight]] = Field(default=None, description="The route's weighted backends.")
    mirror: Optional[int] = Field(default=None, description="Percent of requests mirrored to the candidate.")
    parents: Optional[list[RouteParentStatus]] = Field(default=None, description="Each Gateway's view of the route.")
    mirror_check: Optional[MirrorCheck] = Field(default=None, description="The last probe of mirroring.")


