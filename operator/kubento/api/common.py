"""What every part of the API shares: the base model, CEL rule entries,
quantities, and Kubernetes' name formats (in CEL and, identically, in Python).

Kubernetes 1.31+ has a CEL ``format`` library (``format.qualifiedName()``,
``format.labelValue()``, ...) that runs apimachinery's own name validation;
the functions here are the same checks in Python, for the pydantic side of
each rule (tests/integration checks that both agree on the fuzzer's values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Callable, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

# The API server's quantity grammar (resource.ParseQuantity), without the
# minus sign (no resource amount is negative) and with whole exponents
# (kubebuilder's pattern allows "1e3.5", which the API server refuses).
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]{1,3}))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _check_quantity(value: Union[int, str]) -> Union[int, str]:
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)")
    if isinstance(value, str) and (len(value) > 64 or not re.match(QUANTITY_PATTERN, value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi, 1)")
    return value


Quantity = Annotated[
    Union[int, str],
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "minimum": 0,  # the pattern only applies to strings: -5 is an integer
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def quantity_value(q: Union[int, str]) -> Decimal:
    """A quantity as an exact number (for comparisons: requests <= limits, integers)."""
    if isinstance(q, int):
        return Decimal(q)
    m = re.fullmatch(r"\+?([0-9]*\.?[0-9]*)(([KMGTPE]i)|[numkMGTPE]|[eE][-+]?[0-9]+)?", q)
    if not m or not re.search("[0-9]", m.group(1)):
        raise ValueError(f"{q!r} is not a Kubernetes quantity")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    binary = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
    decimal = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
    if suffix in binary:
        return number * (2 ** binary[suffix])
    if suffix in decimal:
        return number.scaleb(decimal[suffix])
    return number.scaleb(int(Decimal(suffix[1:])))


def cel(rule: str, message: str, field_path: Optional[str] = None,
        message_expression: Optional[str] = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry."""
    entry = {"rule": rule, "message": message}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(entries)}


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it appears in the Kubernetes API (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ------------------------------------------------------------- name formats

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def _dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS_LABEL.fullmatch(value):
        errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                    "and must start and end with an alphanumeric character")
    return errs


def _dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS_SUBDOMAIN.fullmatch(value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                    "'.', and must start and end with an alphanumeric character")
    return errs


def _qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name must have at most one '/'"]
    errs = []
    if len(parts) == 2:
        prefix = parts[0]
        errs += ["prefix part must be non-empty"] if not prefix else ["prefix part " + e for e in _dns1123_subdomain(prefix)]
    name = parts[-1]
    if not name:
        return errs + ["name part must be non-empty"]
    if len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.fullmatch(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character")
    return errs


def _label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if value and not _QUALIFIED_NAME.fullmatch(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character")
    return errs


@dataclass(frozen=True)
class Format:
    """A named Kubernetes string format: CEL's ``format.<name>()`` and the
    same check in Python (apimachinery's validation functions), and a
    pattern + maxLength for schemas, cheap where CEL's cost budget is tight
    (a qualified name needs a second pattern for its prefix's length)."""

    name: str
    errors: Callable[[str], list[str]]
    what: str
    pattern: str
    max_length: int
    also: Optional[str] = None  # a second pattern the value must match (schemas: allOf)

    def valid(self, value: str) -> bool:
        return not self.errors(value)

    def cel_invalid(self, expr: str) -> str:
        """CEL that is true when ``expr`` is NOT in this format."""
        return f"format.{self.name}().validate({expr}).hasValue()"

    def matches(self, value: str) -> bool:
        """The patterns' verdict (what the schema checks)."""
        return (len(value) <= self.max_length and re.fullmatch(self.pattern[1:-1], value) is not None
                and (self.also is None or re.fullmatch(self.also[1:-1], value) is not None))


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
DNS1123_LABEL = Format("dns1123Label", _dns1123_label, "a DNS label (lowercase letters, digits and '-', at most 63)",
                       rf"^{_LABEL}$", 63)
DNS1123_SUBDOMAIN = Format("dns1123Subdomain", _dns1123_subdomain,
                           "a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)", rf"^{_SUBDOMAIN}$", 253)
QUALIFIED_NAME = Format("qualifiedName", _qualified_name, "a qualified name ([prefix/]name, e.g. example.com/my-key)",
                        rf"^({_SUBDOMAIN}/)?([A-Za-z0-9][-A-Za-z0-9_.]{{0,61}})?[A-Za-z0-9]$", 317,
                        also=r"^([^/]{1,253}/)?[^/]*$")  # the prefix: at most 253
LABEL_VALUE = Format("labelValue", _label_value,
                     "a label value (at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends)",
                     r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", 63)


def map_keys_rule(fmt: Format, what: str) -> dict[str, str]:
    """A rule on a map: every key is in ``fmt``; the message names the first bad key."""
    bad = f"self.filter(k, {fmt.cel_invalid('k')})"
    return cel(
        f"self.all(k, !{fmt.cel_invalid('k')})",
        f"{what}s must be {fmt.what}",
        message_expression=f"'{what} ' + {bad}[0] + ' is invalid: it must be {fmt.what}'",
    )


DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")


def duration_seconds(duration: str) -> float:
    """An API Duration (``500ms``, ``30s``, ``5m``, ``1h``, ``1m30s``) in seconds."""
    if not isinstance(duration, str) or not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"{duration!r} is not a duration (e.g. 500ms, 30s, 5m, 1h, 1m30s)")
    return sum(float(n) * _UNIT_MS[u] for n, u in _DURATION_PART.findall(duration)) / 1000


# A request kubento sends to a pod waits at most this long: a deadline for all
# of it (connect, headers, body), so a tenant's pod cannot hold the operator.
MAX_REQUEST_TIMEOUT = "60s"
REQUEST_TIMEOUT_MESSAGE = f"must be more than 0s and at most {MAX_REQUEST_TIMEOUT} (a deadline for the whole request)"


def _request_timeout(value: str) -> str:
    if not 0 < duration_seconds(value) <= duration_seconds(MAX_REQUEST_TIMEOUT):
        raise ValueError(REQUEST_TIMEOUT_MESSAGE)
    return value


RequestTimeout = Annotated[
    str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=rules(cel(
        f"duration(self) > duration('0s') && duration(self) <= duration('{MAX_REQUEST_TIMEOUT}')",
        REQUEST_TIMEOUT_MESSAGE))),
    AfterValidator(_request_timeout),
]


# Lists whose items are unique by name (server-side apply merges them by name).
LIST_MAP_BY_NAME = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class SecretReference(Model):
    """A Secret in the ModelDeployment's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret."
    )
