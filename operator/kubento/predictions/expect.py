"""Does an answer match what a check expects? Pure functions, no I/O.

Answers are parsed with their numbers kept as written (``Decimal``), and
numbers are compared as decimals, exactly: ``|got - expected| <= tolerance``
holds at its edge as it does on paper (0.8 is within 0.1 of 0.7), which
binary floats get wrong. ``true`` is not ``1``; ``1`` equals ``1.0``; NaN
never matches; an infinity only matches itself.
"""

from __future__ import annotations

import decimal
import functools
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import Agreement, Expectation, PredictionCheck, StableComparison

SHORT = 80  # characters of an expected or received value shown in conditions and events
# Exact decimal arithmetic on any two finite doubles (17 digits, exponents to +-308).
_EXACT = decimal.Context(prec=800, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


# ------------------------------------------------------------------ JSONPath


@functools.lru_cache(maxsize=256)
def compile_path(text: str) -> Any:
    """An RFC 9535 JSONPath, compiled; ValueError with the parser's words if not one."""
    from jsonpath import JSONPathEnvironment
    from jsonpath.exceptions import JSONPathError

    try:
        return _env(JSONPathEnvironment).compile(text)
    except JSONPathError as exc:
        raise ValueError(f"{text!r} is not an RFC 9535 JSONPath: {str(exc).splitlines()[0]}") from None


@functools.lru_cache(maxsize=1)
def _env(cls: Any) -> Any:
    return cls(strict=True)


def select(path: Optional[str], answer: Any) -> list[Any]:
    """The values ``path`` selects in ``answer`` (the whole answer without a path)."""
    if not path:
        return [answer]
    return list(compile_path(path).findall(answer))


# ------------------------------------------------------------------ numbers


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest decimal that is this float: what JSON or YAML said
    return Decimal(value)


def within(expected: Any, got: Any, tolerance: Any = 0) -> bool:
    """``|got - expected| <= tolerance`` in exact decimal arithmetic."""
    e, g, t = _decimal(expected), _decimal(got), _decimal(tolerance)
    if e.is_nan() or g.is_nan() or t.is_nan() or t < 0:
        return False
    if e.is_infinite() or g.is_infinite():
        return e == g
    if t.is_infinite():
        return True
    return _EXACT.abs(_EXACT.subtract(g, e)) <= t


def same(expected: Any, got: Any, tolerance: Any = 0) -> bool:
    """JSON equality, numbers within ``tolerance`` (anywhere inside lists and objects)."""
    if is_number(expected) and is_number(got):
        return within(expected, got, tolerance)
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same(e, g, tolerance) for e, g in zip(expected, got))
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(same(v, got[k], tolerance) for k, v in expected.items())
    if expected is None or got is None:
        return expected is None and got is None
    return type(expected) is type(got) and expected == got  # strings (a number never equals a string)


# ------------------------------------------------------------------- values


def parse_answer(text: str) -> Any:
    """An answer as JSON (numbers kept as written); a body that is not JSON is its text."""
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return text


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value.as_tuple().exponent >= 0 else float(value)
    raise TypeError(type(value).__name__)


def show(value: Any, limit: int = SHORT) -> str:
    """A value as compact JSON, shortened to ``limit`` characters."""
    try:
        text = json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return shorten(text, limit)


def shorten(text: str, limit: int = SHORT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Judgement:
    ok: bool
    expected: str  # what was wanted, shortened
    got: str  # what came, shortened


def expected_text(exp: "Expectation") -> str:
    """``$[0] = "setosa"``, ``$.p = 0.9 ± 0.05``, ``$[0] in ["a","b"]`` (without a path: the value alone)."""
    tol = f" ± {exp.tolerance:g}" if exp.tolerance else ""
    if exp.one_of is not None:
        value, op = show(exp.one_of), "in"
    elif exp.number is not None:
        value, op = f"{exp.number:g}{tol}", "="
    else:
        value, op = f"{show(exp.equals)}{tol}", "="
    if exp.json_path:
        return f"{exp.json_path} {op} {value}"
    return f"one of {value}" if op == "in" else value


def judge(exp: "Expectation", answer: Any) -> Judgement:
    """Whether ``answer`` meets one expectation."""
    values = select(exp.json_path, answer)
    wanted = expected_text(exp)
    if not values:
        return Judgement(False, wanted, f"nothing at {exp.json_path} in {show(answer)}")
    tolerance = exp.tolerance or 0
    if exp.equals is not None:
        target = values[0] if len(values) == 1 else values
        return Judgement(same(exp.equals, target, tolerance), wanted, show(target))
    if exp.number is not None:
        ok = all(is_number(v) and within(exp.number, v, tolerance) for v in values)
    else:
        assert exp.one_of is not None
        ok = all(any(same(label, v) for label in exp.one_of) for v in values)
    return Judgement(ok, wanted, show(values[0] if len(values) == 1 else values))


# ----------------------------------------------------------------- requests


@dataclass(frozen=True)
class Response:
    """What a pod answered (from the I/O layer)."""

    status: Optional[int]  # HTTP status; None: no answer
    body: str = ""
    seconds: float = 0.0
    error: str = ""  # why there was no (usable) answer: a timeout, a refusal, a redirect, too large
    final: bool = False  # an answer no retry will change (a redirect, too large, not HTTP): it fails now
    header: str = ""  # the value of the one answer header the caller asked for (podhttp.request's read_header)


@dataclass(frozen=True)
class CheckResult:
    check: str
    ok: bool
    retry: bool  # no answer or a 5xx: worth another try before failing the pod
    expected: str
    got: str
    seconds: float

    @property
    def message(self) -> str:
        return f"check {self.check}: expected {self.expected}, got {self.got}"


def judge_response(check: "PredictionCheck", resp: Response) -> CheckResult:
    """One check's result from the pod's response."""
    first = expected_text(check.expect[0]) if len(check.expect) == 1 else "; ".join(map(expected_text, check.expect))
    if resp.final:
        got = f"HTTP {resp.status}: {resp.error}" if resp.status is not None else resp.error
        return CheckResult(check.name, False, False, shorten(first), got, resp.seconds)
    if resp.status is None:
        return CheckResult(check.name, False, True, shorten(first), f"no answer ({resp.error})", resp.seconds)
    if not 200 <= resp.status < 300:
        got = f"HTTP {resp.status} {shorten(resp.body, SHORT - 10)}".strip()
        return CheckResult(check.name, False, resp.status >= 500, shorten(first), got, resp.seconds)
    answer = parse_answer(resp.body)
    for exp in check.expect:
        j = judge(exp, answer)
        if not j.ok:
            return CheckResult(check.name, False, False, j.expected, j.got, resp.seconds)
    return CheckResult(check.name, True, False, shorten(first), show(answer), resp.seconds)


def request_body(value: Any) -> bytes:
    return json.dumps(value, default=_plain, separators=(",", ":")).encode()


def parse_body(text: str, where: str) -> Any:
    """A request body kept as JSON text (a ConfigMap key). ValueError naming ``where``."""
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None


def parse_lines(text: str, where: str, limit: int) -> list[Any]:
    """JSON lines (blank lines skipped), the first ``limit``. ValueError naming the line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(parse_body(line, f"line {n} of {where}"))
            if len(out) >= limit:
                break
    if not out:
        raise ValueError(f"{where} has no input lines")
    return out


# ---------------------------------------------------------------- agreement


class Tally:
    """status.rollout.agreement, built one input at a time (the answers are
    judged as they arrive and not kept).

    An input the stable pod did not answer (no answer, not 2xx) is left out:
    it says nothing about the new revision. One the new pod did not answer is
    a disagreement. No input left is no verdict (``compared`` 0, not passed)."""

    def __init__(self, spec: "StableComparison") -> None:
        self.spec = spec
        self.agreed = self.compared = 0
        self.first = ""

    def add(self, body: Any, stable: Response, new: Response) -> None:
        spec = self.spec
        if stable.status is None or not 200 <= stable.status < 300 or stable.final:
            return
        self.compared += 1
        s = select(spec.json_path, parse_answer(stable.body))
        ok = new.status is not None and 200 <= new.status < 300 and not new.final
        if ok:
            n = select(spec.json_path, parse_answer(new.body))
            ok = same(s[0] if len(s) == 1 else s, n[0] if len(n) == 1 else n, spec.tolerance)
        if ok:
            self.agreed += 1
        elif not self.first:
            if new.final or new.status is None:
                got = f"{'HTTP %d: ' % new.status if new.status is not None else ''}{new.error}" if new.final \
                    else f"no answer ({new.error})"
            elif 200 <= new.status < 300:
                got = show(n[0] if len(n) == 1 else n, 40)
            else:
                got = f"HTTP {new.status}"
            self.first = (f"first disagreement: input {show(body, 60)}: stable {show(s[0] if len(s) == 1 else s, 40)}, "
                          f"new {got}")

    def result(self) -> "Agreement":
        from kubento.api.v1alpha1 import Agreement

        spec, agreed, compared = self.spec, self.agreed, self.compared
        rate = agreed / compared if compared else 0.0
        passed = compared > 0 and rate >= spec.min_agreement
        if not compared:
            message = "the stable pod answered none of the inputs: no comparison"
        else:
            message = (f"agreement {rate:.0%} ({agreed} of {compared} inputs) {'>=' if passed else '<'} "
                       f"minAgreement {spec.min_agreement:.0%} with the stable revision")
            if self.first:
                message += f"; {self.first}"
        return Agreement(rate=round(rate, 4), agreed=agreed, compared=compared, min_agreement=spec.min_agreement,
                         passed=passed, message=message)


def agreement(spec: "StableComparison", pairs: Iterable[tuple[Any, Response, Response]]) -> "Agreement":
    """status.rollout.agreement from (input, stable answer, new answer) triples (see Tally)."""
    tally = Tally(spec)
    for body, stable, new in pairs:
        tally.add(body, stable, new)
    return tally.result()
