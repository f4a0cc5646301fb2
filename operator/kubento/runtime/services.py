"""The services a bento declares (bento.yaml ``services``: BentoML 1.2+), as
kubento's operator reads them from a preparation's result: the entry service
first, each with the dependencies it has inside the bento and the settings
BentoML keeps in its ``config`` (resources, workers, traffic).

The environment Job and the build Job read it next to the requirements (the
archive's own bento.yaml, before anything of the bento runs) and put it in
their result, the termination message: so it is bounded here (MAX_SERVICES,
names and values checked, BUDGET bytes at most), and it is only data: no code of the bento is imported.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

MAX_SERVICES = 16
BUDGET = 900  # bytes of JSON: the step's termination message (2,000 bytes) holds the environment's result too
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?")
MAX_TEXT = 63


def _name(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and NAME.fullmatch(value) else None


UNITS = {"KB": "k", "MB": "M", "GB": "G", "TB": "T", "KiB": "Ki", "MiB": "Mi", "GiB": "Gi", "TiB": "Ti"}


def _quantity(value: Any) -> Optional[str]:
    """A Kubernetes quantity of BentoML's value ("4GB" and "512MiB" too); None if it is none."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?B)", text)
    if m and m.group(2) in UNITS:
        text = m.group(1) + UNITS[m.group(2)]
    return text if QUANTITY.fullmatch(text) else None


def _count(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1_000_000 else None


def _seconds(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 86400 * 7:
        return int(value) if float(value).is_integer() else round(float(value), 3)
    return None


def service_config(config: Any) -> dict[str, Any]:
    """What kubento uses of one service's ``config``: None and nonsense left out."""
    config = config if isinstance(config, dict) else {}
    out: dict[str, Any] = {}
    resources = config.get("resources") if isinstance(config.get("resources"), dict) else {}
    wanted = {"cpu": _quantity(resources.get("cpu")), "memory": _quantity(resources.get("memory")),
              "gpu": _count(resources.get("gpu")),
              "gpuType": resources["gpu_type"][:MAX_TEXT] if isinstance(resources.get("gpu_type"), str) else None}
    if any(v is not None for v in wanted.values()):
        out["resources"] = {k: v for k, v in wanted.items() if v is not None}
    workers = config.get("workers")
    if _count(workers) or workers == "cpu_count":
        out["workers"] = str(workers)
    traffic = config.get("traffic") if isinstance(config.get("traffic"), dict) else {}
    sizing = [("timeout", "timeout", _seconds), ("max_concurrency", "maxConcurrency", _count)]
    if not traffic.get("external_queue"):
        # BentoML gives a service with a task endpoint external_queue (BentoCloud's queue) and
        # concurrency 1 for it: a queue setting, not what a replica is sized for.
        sizing.append(("concurrency", "concurrency", _count))
    for key, field, parse in sizing:
        value = parse(traffic.get(key))
        if value is not None:
            out[field] = value
    return out


def services(bento: Any) -> Optional[dict[str, Any]]:
    """``{"entry": name, "services": [...], "more": n}`` of a parsed bento.yaml;
    None for a bento without ``services`` (BentoML < 1.2: one runner-based service)."""
    if not isinstance(bento, dict) or not isinstance(bento.get("services"), list):
        return None
    listed = [s for s in bento["services"] if isinstance(s, dict) and _name(s.get("name"))]
    if not listed:
        return None
    entry = _name(bento.get("entry_service")) or listed[0]["name"]
    listed.sort(key=lambda s: s["name"] != entry)  # the entry first, the rest in bento.yaml's order
    names = {s["name"] for s in listed}
    out = []
    for s in listed[:MAX_SERVICES]:
        item: dict[str, Any] = {"name": s["name"]}
        deps = [d.get("service") for d in s.get("dependencies") or [] if isinstance(d, dict)]
        inside = [d for d in deps if _name(d) and d in names]
        if inside:
            item["dependsOn"] = inside
        item.update(service_config(s.get("config")))
        out.append(item)
    while len(out) > 1 and len(json.dumps(out)) > BUDGET:
        out.pop()
    summary: dict[str, Any] = {"entry": entry, "services": out}
    if len(listed) > len(out):
        summary["more"] = len(listed) - len(out)  # said, not listed
    return summary


def read(bento_yaml: str) -> Optional[dict[str, Any]]:
    """``services`` of bento.yaml's text. PyYAML is BentoML's own dependency
    (it is wherever BentoML is); safe_load builds no object of the bento's."""
    import yaml

    try:
        return services(yaml.safe_load(bento_yaml or ""))
    except yaml.YAMLError as exc:
        print(f"kubento: cannot read the bento's services from bento.yaml: {exc}", flush=True)
        return None


def fit(message: dict[str, Any], holder: dict[str, Any], limit: int) -> None:
    """Take the last services out of ``holder["services"]`` (a summary inside
    ``message``) until ``message``'s JSON fits ``limit`` bytes: a message cut
    by the kubelet would not parse."""
    summary = holder.get("services")
    while isinstance(summary, dict) and summary.get("services") and len(json.dumps(message).encode()) > limit:
        summary["services"].pop()
        summary["more"] = summary.get("more", 0) + 1
