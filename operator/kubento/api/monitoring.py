"""spec.monitoring: payload logs and input/output statistics (data quality), and the
rollout gate on output shift. Part of the ModelDeployment API (kubento.api.v1alpha1)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from kubento.api.common import (
    DNS_SUBDOMAIN_PATTERN, LIST_MAP_BY_NAME, Duration, Model, RequestTimeout, cel, rules as _rules,
)
from kubento.api.checks import ConfigMapKeyRef
from kubento.runtime.fields import PATH_PATTERN


# Sampled payload logs and per-revision input/output statistics, measured in
# the model pod (kubento.runtime.monitor), judged by the operator
# (kubento.quality) and by the canary analysis (Analysis.outputShift).

FIELD_PATH_DESCRIPTION = (
    "a field path: $ then .name, ['name'], [0], [-1] or [*] (a subset of JSONPath), e.g. $.features[*], $[2], "
    "$.user.email"
)
STAT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"
MAX_BUCKETS = 49  # upper bounds (+Inf is the 50th bucket)
MAX_CATEGORIES = 50
CategoryName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\s](.*[^\s])?$")]


def _check_field_path(value: str) -> str:
    from kubento.runtime.fields import compile_path

    compile_path(value)
    return value


FieldPath = Annotated[str, Field(max_length=256, pattern=PATH_PATTERN), AfterValidator(_check_field_path)]


def _ascending(bounds: Optional[list[float]]) -> None:
    if bounds is not None and any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError("buckets must be strictly ascending")


BUCKETS_RULE = cel("!has(self.buckets) || self.buckets.all(b, self.buckets.exists_one(c, c == b)) && "
                   "self.buckets.isSorted()", "buckets must be strictly ascending", ".buckets")
KIND_RULES = (
    cel("!has(self.buckets) || self.type == 'numeric'", "buckets apply to type numeric", ".buckets"),
    cel("!has(self.categories) || self.type == 'categorical'", "categories apply to type categorical",
        ".categories"),
)


class _Distribution(Model):
    """How one field's values are counted (shared by inputs and the output)."""

    type: Literal["numeric", "categorical"] = Field(
        default="numeric", description="numeric: counted in buckets by value; categorical: counted by name.")
    buckets: Optional[list[float]] = Field(
        default=None, min_length=1, max_length=MAX_BUCKETS,
        description="numeric: the buckets' upper bounds, strictly ascending (a last bucket takes the rest). "
        "Default: the reference profile's (its deciles).",
    )
    categories: Optional[list[CategoryName]] = Field(
        default=None, min_length=1, max_length=MAX_CATEGORIES,
        description="categorical: the names counted one by one (anything else counts as __other__). Default: "
        "the reference profile's (its most frequent). A name never comes from requests unless listed here or "
        "in the profile.",
    )

    @model_validator(mode="after")
    def _kind(self) -> "_Distribution":
        _ascending(self.buckets)
        if self.buckets is not None and self.type != "numeric":
            raise ValueError("buckets apply to type numeric")
        if self.categories is not None and self.type != "categorical":
            raise ValueError("categories apply to type categorical")
        return self


class FieldStatistics(_Distribution):
    """One input feature: where it is in a row, and how it is counted."""

    model_config = ConfigDict(json_schema_extra=_rules(BUCKETS_RULE, *KIND_RULES))

    name: str = Field(pattern=STAT_NAME_PATTERN, description="The feature's name (a metric label value).")
    path: FieldPath = Field(description=f"Where the feature is in a row: {FIELD_PATH_DESCRIPTION} (e.g. $[0] in "
                            "a list row, $.age in an object row). Nothing there, or null, counts as missing.")


class OutputStatistics(_Distribution):
    """The model's answer: where it is in an output row, and how it is counted."""

    model_config = ConfigDict(json_schema_extra=_rules(BUCKETS_RULE, *KIND_RULES))

    type: Literal["numeric", "categorical"] = Field(
        default="categorical", description="categorical (a class, the default) or numeric (a score, a value).")
    path: FieldPath = Field(default="$", description=f"Where the answer is in an output row: {FIELD_PATH_DESCRIPTION}.")


class ProfileSource(Model):
    """Where a reference profile is (the JSON `kubento profile` writes)."""

    config_map_key_ref: ConfigMapKeyRef = Field(description="The ConfigMap key holding the profile.")


class Statistics(Model):
    """Per-revision statistics of one endpoint's inputs and outputs. Every
    request to ``endpoint`` is counted in the model pod (kubento's runtime:
    bento.archive and bento.build), in fixed buckets; the operator reads the
    counts from the pods' /metrics every ``interval`` and exports, per
    revision, the drift of each feature from the reference profile, the
    share of rows missing each feature and the shift of the outputs
    (Jensen-Shannon distance, 0 to 1) over the last ``window``."""

    endpoint: str = Field(pattern=r"^/\S*$", max_length=256, description="The API whose requests are counted, "
                          "e.g. /classify.")
    input_rows: Optional[FieldPath] = Field(
        default=None, description=f"Where the rows are in a request body ({FIELD_PATH_DESCRIPTION}), e.g. "
        "$.features[*] for a body {\"features\": [[...], [...]]}. Default: the body is one row.")
    inputs: list[FieldStatistics] = Field(
        default_factory=list, max_length=32, description="The features counted (at most 32).",
        json_schema_extra=LIST_MAP_BY_NAME)
    output_rows: Optional[FieldPath] = Field(
        default=None, description=f"Where the rows are in a response body ({FIELD_PATH_DESCRIPTION}), e.g. $[*] "
        "for [\"setosa\", \"virginica\"]. Default: the body is one row. Only 2xx answers are counted.")
    output: Optional[OutputStatistics] = Field(default=None, description="The answer counted, if any.")
    reference: Optional[ProfileSource] = Field(
        default=None, description="The reference profile (`kubento profile NAME --from FILE` writes it): the "
        "expected distribution of each field, and the buckets and categories it does not set. Read when the "
        "revision is made: a new profile whose buckets differ is a new revision.")
    interval: Duration = Field(default="30s", description="How often the operator reads the pods' counts.")
    window: Duration = Field(default="10m", description="The scores cover this much recent traffic.")
    min_rows: int = Field(default=300, ge=1, le=1_000_000, description=(
        "Rows a revision must have sent (or answered) in the window before it gets a score: fewer scores "
        "nothing (see the Data quality docs for the bias of small samples)."))

    @model_validator(mode="after")
    def _unique(self) -> "Statistics":
        names = [f.name for f in self.inputs]
        if len(names) != len(set(names)):
            raise ValueError("input names must be unique")
        return self


class PayloadHTTPSink(Model):
    """CloudEvents (HTTP binary mode) to a URL, as KServe's payload logger
    sends them: one org.kubeflow.serving.inference.request and one
    ...inference.response event per sampled request, sharing its id."""

    url: str = Field(pattern=r"^https?://[^\s@]+$", max_length=2048, description=(
        "The receiver, e.g. http://payload-receiver.monitoring/ (no credentials: the model's own code shares "
        "the process that sends; keep the receiver inside the cluster)."))
    timeout: RequestTimeout = Field(default="2s", description="Deadline of each POST (at most 60s); redirects "
                                    "are not followed.")


class PayloadFiles(Model):
    """JSON lines files on a PersistentVolumeClaim, one file per model
    server process at a time, rotated by size and age."""

    claim_name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN,
                            description="The PersistentVolumeClaim (ReadWriteMany unless every pod runs on one node).")
    path: str = Field(default="payloads", max_length=256, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$",
                      description="Directory in the volume (relative, no segment starting with a dot; created if "
                      "missing).")
    max_bytes: int = Field(default=64 << 20, ge=1 << 16, le=1 << 34, description="A file is closed past this size.")
    max_age: Duration = Field(default="1h", description="A file is closed after this long.")


class Payloads(Model):
    """Sampled payload logs: a share of the requests to the model's API,
    with their answers, written by the model pod to its sinks."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("self.stdout || has(self.http) || has(self.files)", "give at least one sink: stdout, http or files"),
    ))

    sample_rate: float = Field(ge=0, le=1, description="Share of the requests recorded (0-1), decided at random "
                               "per request; the others cost one random draw.")
    max_bytes: int = Field(default=16384, ge=256, le=1 << 20, description=(
        "Largest request or response body recorded; a larger one is recorded as its size only (truncated)."))
    drop: list[FieldPath] = Field(default_factory=list, max_length=32, description=(
        "Fields removed from recorded bodies (requests and responses), e.g. $.customer.email."))
    hash: list[FieldPath] = Field(default_factory=list, max_length=32, description=(
        "Fields replaced by a SHA-256 hash of their value (the same value, the same hash: joinable, not "
        "anonymous; a guessable value can be confirmed by hashing guesses: drop those)."))
    endpoints: list[Annotated[str, Field(pattern=r"^/\S*$", max_length=256)]] = Field(
        default_factory=list, max_length=32, description="Endpoints recorded (default: every API endpoint; probes, "
        "/metrics and docs never).")
    stdout: bool = Field(default=True, description="JSON lines on the model container's stdout (what cluster "
                         "log pipelines collect).")
    http: Optional[PayloadHTTPSink] = Field(default=None, description="CloudEvents to an HTTP receiver.")
    files: Optional[PayloadFiles] = Field(default=None, description="JSON lines files on a PersistentVolumeClaim.")

    @model_validator(mode="after")
    def _a_sink(self) -> "Payloads":
        if not (self.stdout or self.http or self.files):
            raise ValueError("give at least one sink: stdout, http or files")
        return self


class Monitoring(Model):
    """What goes in and what comes out: sampled payload logs and
    per-revision input/output statistics, measured in the model pod by
    kubento's runtime (bento.archive and bento.build; an image made by
    bentoml containerize runs its own server, which kubento cannot see
    into). Part of the revision: a change rolls out as a new revision."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("has(self.payloads) || has(self.statistics)", "give payloads, statistics or both"),
    ))

    payloads: Optional[Payloads] = Field(default=None, description="Sampled payload logs.")
    statistics: Optional[Statistics] = Field(default=None, description="Input and output statistics, drift scores.")

    @model_validator(mode="after")
    def _something(self) -> "Monitoring":
        if self.payloads is None and self.statistics is None:
            raise ValueError("give payloads, statistics or both")
        return self


MONITORING_NEEDS_RUNTIME = ("monitoring applies to bento.archive and bento.build only (an image made by bentoml "
                            "containerize runs its own server, without kubento's runtime)")
OUTPUT_SHIFT_NEEDS_OUTPUT = "rollout.analysis.outputShift needs monitoring.statistics.output (what is compared)"
OUTPUT_SHIFT_NEEDS_CANARY = ("rollout.analysis.outputShift needs strategy Canary (both revisions answer the same "
                             "traffic mix)")


class OutputShift(Model):
    """A canary analysis criterion: the new revision's output distribution
    against the stable revision's, over the same window (both serve the same
    traffic mix). Jensen-Shannon distance (base 2): 0 for the same
    distribution, 1 for disjoint ones."""

    max_distance: float = Field(gt=0, le=1, description="Largest distance that passes, e.g. 0.2.")
    min_outputs: int = Field(default=100, ge=1, le=1_000_000, description=(
        "Answers (output rows) each revision must have given in the window before a verdict; fewer is never a "
        "pass."))
