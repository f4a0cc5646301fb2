"""A probe for credentials beside untrusted code: Python source that a test
puts where kubento runs code it did not write — a project's service.py (run
by ``bentoml build``), a source distribution's setup.py (run by pip) — and
that searches everything that code can read for the credential values:

- its own environment (``os.environ``);
- every process it can see: ``/proc/*/environ`` and ``/proc/*/cmdline``;
- the files under the given roots (not following symlinks; /proc, /sys and
  /dev skipped; files up to 16 MB).

The values are embedded hex-encoded (the probe's own file must not contain
them), each with the forms a leak would take: the raw value, percent-encoded
(a URL's user info) and ``user:password`` in base64 (a Basic Authorization
header). What it found is named by label and place, never by value.

    source = leakprobe.render({"s3 secret key": [key]}, roots=["/"])
    service_py = source + leakprobe.FAIL_ON_FINDINGS + "...the BentoML service..."
"""

from __future__ import annotations

import base64
from typing import Iterable, Optional
from urllib.parse import quote

MARKER = "leak-probe:"

_PROBE = r'''
import os as _os
import stat as _stat

_NEEDLES = {label: [bytes.fromhex(h) for h in forms] for label, forms in %(needles)r.items()}
_ROOTS = %(roots)r
_SKIP = {"/proc", "/sys", "/dev"}
_LIMIT = 16 << 20


def _leak_search():
    found, seen = [], set()

    def check(where, data):
        for label, forms in _NEEDLES.items():
            if (label, where) not in seen and any(f in data for f in forms):
                seen.add((label, where))
                found.append(f"{label} in {where}")

    for key, value in _os.environ.items():
        check(f"os.environ[{key}]", f"{key}={value}".encode(errors="replace"))
    pids = [p for p in _os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    check(f"/proc/{pid}/{what}", f.read())
            except OSError:
                pass
    files = 0
    for top in _ROOTS:
        for dirpath, dirs, names in _os.walk(top):
            dirs[:] = [d for d in dirs if _os.path.join(dirpath, d) not in _SKIP]
            for name in names:
                path = _os.path.join(dirpath, name)
                try:
                    st = _os.lstat(path)
                    if not _stat.S_ISREG(st.st_mode) or st.st_size > _LIMIT:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                files += 1
                check(path, data)
    return found, len(pids), files
'''

# Appended to a service.py: the build fails naming what was found, or says it found nothing.
FAIL_ON_FINDINGS = f'''
_found, _procs, _files = _leak_search()
if _found:
    raise SystemExit("{MARKER} FOUND " + "; ".join(_found[:30]))
print(f"{MARKER} nothing found ({{_procs}} processes, {{_files}} files searched)", flush=True)
'''


def forms(value: str, user: Optional[str] = None) -> list[bytes]:
    """What a leak of ``value`` looks like: raw, percent-encoded, and (with
    ``user``) in a Basic Authorization header."""
    out = [value.encode(), quote(value, safe="").encode()]
    if user is not None:
        out.append(base64.b64encode(f"{user}:{value}".encode()))
    return list(dict.fromkeys(out))


def render(needles: dict[str, list[bytes]], roots: Iterable[str]) -> str:
    """The probe's source: defines ``_leak_search() -> (findings, processes, files)``."""
    return _PROBE % {"needles": {label: [f.hex() for f in fs] for label, fs in needles.items()}, "roots": list(roots)}
