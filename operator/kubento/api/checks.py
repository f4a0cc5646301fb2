"""spec.predictionChecks: requests each pod must answer as expected before it takes traffic,
and comparisons of a candidate with stable. Part of the ModelDeployment API."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, ConfigDict, Field, StrictInt, WithJsonSchema, model_validator

from kubento.api.common import (
    DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, LIST_MAP_BY_NAME, Model, RequestTimeout, cel, rules as _rules,
)


JSON_PATH_PATTERN = r"^\$"


def _check_json_path(value: str) -> str:
    from kubento.predictions.expect import compile_path

    compile_path(value)  # raises ValueError naming the syntax error
    return value


JsonPathText = Annotated[str, Field(max_length=512, pattern=JSON_PATH_PATTERN), AfterValidator(_check_json_path)]
JSON_PATH_DESCRIPTION = (
    "An RFC 9535 JSONPath selecting the part of the answer to judge, e.g. $[0] or $.scores[0]; default: the whole "
    "answer. Several matches are judged as their list (equals) or one by one (number, oneOf); no match fails."
)


# A class label: a string or an integer (a class index).
Label = Annotated[
    Union[StrictInt, str],
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]


class ConfigMapKeyRef(Model):
    """One key of a ConfigMap in the ModelDeployment's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="ConfigMap name.")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key.")


class InputSource(Model):
    """Request bodies kept in a ConfigMap (for large or many inputs)."""

    config_map_key_ref: ConfigMapKeyRef = Field(description="The ConfigMap key holding the input.")


class Expectation(Model):
    """What the answer (or the part jsonPath selects) must be. Set exactly one
    of equals, number or oneOf."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            # CEL cannot see equals (any JSON has no schema type): the models check the rest of the rule.
            cel("!has(self.number) || !has(self.oneOf)", "set exactly one of equals, number or oneOf"),
            cel(
                "!has(self.tolerance) || !has(self.oneOf)",
                "tolerance applies to equals and number, not oneOf",
                ".tolerance",
            ),
        )
    )

    json_path: Optional[JsonPathText] = Field(default=None, description=JSON_PATH_DESCRIPTION)
    equals: Optional[Any] = Field(
        default=None,
        description=(
            "Any JSON value (not null) the answer must equal: objects key by key, lists item by item, numbers "
            "within tolerance (1 and 1.0 are equal; true is not 1)."
        ),
    )
    number: Optional[float] = Field(
        default=None, description="A number the answer must be within tolerance of (a JSON number, not a string)."
    )
    tolerance: Optional[float] = Field(
        default=None, ge=0, description="Largest absolute difference allowed for numbers (default 0: exact)."
    )
    one_of: Optional[list[Label]] = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Labels (strings or integers) of which the answer must be one, e.g. [versicolor, virginica].",
    )

    @model_validator(mode="after")
    def _one(self) -> "Expectation":
        if sum(x is not None for x in (self.equals, self.number, self.one_of)) != 1:
            raise ValueError("set exactly one of equals, number or oneOf")
        if self.tolerance is not None and self.one_of is not None:
            raise ValueError("tolerance applies to equals and number, not oneOf")
        return self


class PredictionCheck(Model):
    """A known input and the answer it must get. kubento sends it to each new
    pod, directly, once the pod's own probes pass and before the pod gets
    any Service traffic."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "self.method == 'GET' ? !has(self.body) && !has(self.bodyFrom) : "
                "[has(self.body), has(self.bodyFrom)].filter(x, x).size() == 1",
                "set exactly one of body or bodyFrom (none with method GET)",
            )
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN, description="Names the check in "
                      "conditions, events and `kubento check`.")
    path: str = Field(pattern=r"^/\S*$", max_length=1024, description="The endpoint, e.g. /classify.")
    method: Literal["POST", "GET"] = Field(default="POST", description="POST (a JSON body) or GET.")
    body: Optional[dict[str, Any]] = Field(
        default=None,
        description="The request body as inline JSON: an object, as a BentoML API takes (sent as application/json).",
    )
    body_from: Optional[InputSource] = Field(
        default=None,
        description=(
            "The request body from a ConfigMap key (JSON text). Read when a pod is checked: an edit applies to "
            "pods checked afterwards; name another key to make it a new revision."
        ),
    )
    expect: list[Expectation] = Field(
        min_length=1, max_length=16, description="What the answer must be; every expectation must hold."
    )
    timeout: RequestTimeout = Field(default="5s", description=(
        "How long to wait for the whole answer, e.g. 5s, 500ms (at most 60s). kubento reads at most 1 MiB of it "
        "and follows no redirect (a 3xx fails the check)."))

    @model_validator(mode="after")
    def _body(self) -> "PredictionCheck":
        given = sum(x is not None for x in (self.body, self.body_from))
        if (self.method == "GET" and given) or (self.method != "GET" and given != 1):
            raise ValueError("set exactly one of body or bodyFrom (none with method GET)")
        return self


class StableComparison(Model):
    """Compare a new revision with the stable one on the same inputs before
    the new revision takes any traffic: each input goes to one stable and one
    new pod; the share of inputs whose answers agree must reach minAgreement,
    else the rollout fails (PredictionMismatch)."""

    inputs: InputSource = Field(description="A ConfigMap key of JSON lines: one request body a line.")
    path: str = Field(pattern=r"^/\S*$", max_length=1024, description="The endpoint the inputs are POSTed to.")
    min_agreement: float = Field(ge=0, le=1, description="Smallest share of inputs whose answers agree (0-1).")
    json_path: Optional[JsonPathText] = Field(
        default=None, description="Compare only this part of the answers (an RFC 9535 JSONPath, e.g. $[0])."
    )
    tolerance: float = Field(default=0, ge=0, description="Numbers within this absolute difference agree.")
    max_inputs: int = Field(default=100, ge=1, le=1000, description="Send at most this many lines (the first).")
    timeout: RequestTimeout = Field(default="5s", description=(
        "How long to wait for each whole answer (at most 60s). kubento reads at most 1 MiB of each and follows no "
        "redirect (a 3xx is a disagreement)."))


class PredictionChecks(Model):
    """Prediction checks: no pod of the model takes traffic before it has
    answered known inputs correctly. Each pod gets a readiness gate
    (serving.kubento.io/prediction-checks) that kubento sets once the checks
    pass; a pod that fails stays out of the Service, and a new revision that
    fails is rolled back (PredictionCheckFailed). Part of the revision: a
    change rolls out as a new revision."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "(has(self.checks) && size(self.checks) > 0) || has(self.compareWithStable)",
                "give at least one check or compareWithStable",
            )
        )
    )

    checks: list[PredictionCheck] = Field(
        default_factory=list, max_length=32, description="Known inputs and their answers.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    compare_with_stable: Optional[StableComparison] = Field(
        default=None, description="Compare a new revision's answers with the stable revision's before it serves."
    )

    @model_validator(mode="after")
    def _something(self) -> "PredictionChecks":
        if not self.checks and self.compare_with_stable is None:
            raise ValueError("give at least one check or compareWithStable")
        names = [c.name for c in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique")
        return self

    def config_maps(self) -> set[str]:
        """ConfigMaps the checks read."""
        refs = [c.body_from for c in self.checks if c.body_from is not None]
        if self.compare_with_stable is not None:
            refs.append(self.compare_with_stable.inputs)
        return {r.config_map_key_ref.name for r in refs}
