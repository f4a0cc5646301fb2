"""Fields of JSON request and response bodies, as the model pod and the
operator both see them (standard library only: this file runs in the model
pod, in kubento's runtime, and in the operator and CLI).

A field path is a small subset of JSONPath (RFC 9535): ``$`` then any of
``.name``, ``['name']``, ``[3]``, ``[-1]`` and ``[*]``, e.g. ``$.features[*]``
(the rows of a batch), ``$[2]`` (the third value of a row), ``$.user.email``.
``select`` gives every value a path reaches; ``redact`` drops or hashes what a
path reaches in a copy of a body (payload records).

A value is counted in a fixed bucket, so that metric labels stay bounded: a
number in the bucket of the first upper bound it does not exceed
(``bucket_of``: its bound as text, ``+Inf`` past the last), a category under
its own name when the spec or the profile lists it, otherwise ``__other__``.
Nothing from a request becomes a label unless it is one of those names.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from typing import Any, Callable, Optional, Sequence, Union

PATH_PATTERN = r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[(\*|-?[0-9]+|'[^'\\]*'|\"[^\"\\]*\")\])*$"
MAX_SEGMENTS = 16
WILDCARD = "*"
OTHER = "__other__"  # a category not in the list
INF = "+Inf"  # the last numeric bucket: above every bound

Segment = Union[str, int]  # a name, an index, or WILDCARD
Path = tuple[Segment, ...]

_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\*|-?[0-9]+|'[^'\\]*'|\"[^\"\\]*\")\]")


def compile_path(text: str) -> Path:
    """The segments of a field path; ValueError naming what is wrong."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError(f"{text!r} is not a field path: it starts with $ (e.g. $.features[*], $[0], $.user.email)")
    out: list[Segment] = []
    at = 1
    while at < len(text):
        m = _SEGMENT.match(text, at)
        if not m:
            raise ValueError(f"{text!r}: unexpected {text[at:at + 12]!r} at {at} (segments: .name, ['name'], [0], [*])")
        name, bracket = m.group(1), m.group(2)
        if name is not None:
            out.append(name)
        elif bracket == "*":
            out.append(WILDCARD)
        elif bracket[0] in "'\"":
            out.append(bracket[1:-1])
        else:
            out.append(int(bracket))
        at = m.end()
    if len(out) > MAX_SEGMENTS:
        raise ValueError(f"{text!r}: more than {MAX_SEGMENTS} segments")
    return tuple(out)


def _step(value: Any, segment: Segment) -> list[Any]:
    if segment == WILDCARD:
        if isinstance(value, list):
            return list(value)
        if isinstance(value, dict):
            return list(value.values())
        return []
    if isinstance(segment, int):
        if isinstance(value, list) and -len(value) <= segment < len(value):
            return [value[segment]]
        return []
    if isinstance(value, dict) and segment in value:
        return [value[segment]]
    return []


def select(value: Any, path: Path) -> list[Any]:
    """Every value ``path`` reaches in ``value`` (none: the field is missing)."""
    if WILDCARD not in path:  # one value at most: no lists to build on the way (the common case, per row)
        for segment in path:
            if isinstance(segment, int):
                if not isinstance(value, list) or not -len(value) <= segment < len(value):
                    return []
            elif not isinstance(value, dict) or segment not in value:
                return []
            value = value[segment]
        return [value]
    found = [value]
    for segment in path:
        found = [v for f in found for v in _step(f, segment)]
        if not found:
            return []
    return found


def _redact(value: Any, path: Path, change: Callable[[Any], Any], drop: bool) -> Any:
    if not path:
        return change(value)
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        keys = list(value) if head == WILDCARD else [head] if isinstance(head, str) and head in value else []
        out = dict(value)
        for k in keys:
            if drop and not rest:
                del out[k]
            else:
                out[k] = _redact(value[k], rest, change, drop)
        return out
    if isinstance(value, list):
        if head == WILDCARD:
            idx = range(len(value))
        elif isinstance(head, int) and -len(value) <= head < len(value):
            idx = range(head % len(value), head % len(value) + 1)
        else:
            return value
        out_list = list(value)
        for i in idx:
            out_list[i] = _redact(value[i], rest, change, drop)
        if drop and not rest:
            out_list = [v for i, v in enumerate(out_list) if i not in idx]
        return out_list
    return value


def hash_value(value: Any, salt: str) -> str:
    """A value replaced by a hash (pseudonymous: the same value, the same hash)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256((salt + "\x00" + text).encode()).hexdigest()[:32]


def redact(value: Any, drop: Sequence[Path] = (), hashed: Sequence[Path] = (), salt: str = "") -> Any:
    """A copy of ``value`` without what ``drop`` reaches and with what ``hashed`` reaches hashed."""
    for path in hashed:
        value = _redact(value, path, lambda v: hash_value(v, salt), drop=False)
    for path in drop:
        if not path:
            return None
        value = _redact(value, path, lambda v: v, drop=True)
    return value


# ---------------------------------------------------------------- buckets


def bound_label(bound: float) -> str:
    """A numeric bucket's label: its upper bound as the shortest exact text."""
    return INF if bound == math.inf else repr(float(bound))


def number(value: Any) -> Optional[float]:
    """A JSON number as a float (None: not a finite number; booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def category(value: Any) -> Optional[str]:
    """A JSON scalar as a category's name (None: not a scalar)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def numeric_labels(bounds: Sequence[float]) -> list[str]:
    return [bound_label(b) for b in bounds] + [INF]


def bucket_of(value: Any, kind: str, bounds: Sequence[float] = (), categories: Sequence[str] = ()) -> Optional[str]:
    """The bucket label of one value (None: missing, null or unusable)."""
    if kind == "numeric":
        v = number(value)
        if v is None:
            return None
        i = bisect.bisect_left(bounds, v)
        return bound_label(bounds[i]) if i < len(bounds) else INF
    name = category(value)
    if name is None:
        return None
    return name if name in categories else OTHER
