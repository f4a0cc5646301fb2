#!/usr/bin/env python3
"""Write an OCI image archive from local files, without a registry or a daemon.

The archive (an OCI image layout in one tar: oci-layout, index.json,
blobs/sha256/...) is what `ctr -n k8s.io images import FILE` loads; the
index's `io.containerd.image.name` annotation names the image, normalised
the way the kubelet refers to it (``busybox-httpd:1`` ->
``docker.io/library/busybox-httpd:1``).

Each --rootfs DIR or --layer-tar FILE becomes one layer, in the order given
(lower layers first); --add SRC:DEST entries go into one extra top layer.

Examples:
  oci.py --rootfs ./root --name kubento.local/pause:1.0 --entrypoint /pause --out pause.tar
  oci.py --rootfs ./base --rootfs ./app --name my/app:dev --cmd 'bentoml serve .' \
         --env BENTOML_HOME=/home/bento --user 1000 --workdir /home/bento --port 3000 --out app.tar

--entrypoint and --cmd take a JSON array ('["httpd","-f"]') or a string that
is split like a shell would (no shell is involved at run time).

Python use: ``from oci import build_image``; see its docstring.
Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 1 << 20


def normalize_name(name: str) -> str:
    """Full reference the way containerd/kubelet spell it: domain/path:tag."""
    ref, digest = (name.split("@", 1) + [""])[:2]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        repo, tag = ref[:colon], ref[colon + 1 :]
    else:
        repo, tag = ref, "" if digest else "latest"
    first = repo.split("/", 1)[0]
    if "/" not in repo or not ("." in first or ":" in first or first == "localhost"):
        if "/" not in repo:
            repo = "library/" + repo
        repo = "docker.io/" + repo
    out = repo + (":" + tag if tag else "")
    return out + ("@" + digest if digest else "")


def parse_command(value: str | None) -> list[str] | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("["):
        cmd = json.loads(value)
        if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise ValueError(f"not a JSON array of strings: {value}")
        return cmd
    return shlex.split(value)


@dataclass
class Layer:
    kind: str  # "dir", "tar" or "files"
    source: object  # path, or list of (src, dest) for "files"


@dataclass
class ImageConfig:
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    architecture: str = "amd64"
    os: str = "linux"


class _HashingWriter(io.RawIOBase):
    """File wrapper that hashes and counts what is written through it."""

    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


def _tarinfo_filter(owner_root: bool, mtime: int | None):
    def f(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uname = ti.gname = ""
        if owner_root:
            ti.uid = ti.gid = 0
        if mtime is not None and ti.mtime > mtime:
            ti.mtime = mtime
        return ti

    return f


def _add_tree(tar: tarfile.TarFile, root: str, prefix: str, flt) -> None:
    """Add root's contents under prefix (no leading '/'), sorted, parents first.
    Symlinks are stored as links (never followed); hard links as tar links."""
    root = os.path.abspath(root)

    def arcname(*parts: str) -> str:
        return os.path.normpath(os.path.join(prefix, *parts)) if prefix else os.path.normpath(os.path.join(*parts))

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            tar.addfile(flt(tar.gettarinfo(dirpath, arcname=arcname(rel))))
        linked_dirs = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames + linked_dirs):
            path = os.path.join(dirpath, name)
            ti = tar.gettarinfo(path, arcname=arcname(rel, name))
            if ti is None:  # sockets and the like
                continue
            ti = flt(ti)
            if ti.isreg():
                with open(path, "rb") as fh:
                    tar.addfile(ti, fh)
            else:
                tar.addfile(ti)


def _parent_dirs(tar: tarfile.TarFile, arc: str, seen: set[str], mtime: int | None) -> None:
    parts = arc.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d and d not in seen:
            seen.add(d)
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            ti.mtime = mtime if mtime is not None else int(time.time())
            tar.addfile(ti)


def _write_layer(layer: Layer, tmpdir: str, compress: bool, owner_root: bool, mtime: int | None):
    """Return (blob_path, blob_digest, blob_size, diff_id, media_type)."""
    fd, raw_path = tempfile.mkstemp(dir=tmpdir, suffix=".tar")
    os.close(fd)
    flt = _tarinfo_filter(owner_root, mtime)
    with open(raw_path, "wb") as raw:
        hw = _HashingWriter(raw)
        if layer.kind == "tar":
            with open(layer.source, "rb") as src:
                head = src.read(2)
                src.seek(0)
                stream = gzip.GzipFile(fileobj=src) if head == b"\x1f\x8b" else src
                shutil.copyfileobj(stream, hw, CHUNK)
        else:
            with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if layer.kind == "dir":
                    _add_tree(tar, layer.source, "", flt)
                else:
                    seen: set[str] = set()
                    for src, dest in layer.source:
                        arc = dest.strip("/")
                        _parent_dirs(tar, arc, seen, mtime)
                        if os.path.isdir(src) and not os.path.islink(src):
                            ti = flt(tar.gettarinfo(src, arcname=arc))
                            tar.addfile(ti)
                            seen.add(arc)
                            _add_tree(tar, src, arc, flt)
                        else:
                            ti = flt(tar.gettarinfo(src, arcname=arc))
                            if ti.isreg():
                                with open(src, "rb") as fh:
                                    tar.addfile(ti, fh)
                            else:
                                tar.addfile(ti)
        diff_id = "sha256:" + hw.h.hexdigest()
    if not compress:
        return raw_path, diff_id, os.path.getsize(raw_path), diff_id, MT_LAYER
    gz_path = raw_path + ".gz"
    with open(raw_path, "rb") as src, open(gz_path, "wb") as dst:
        hw = _HashingWriter(dst)
        with gzip.GzipFile(fileobj=hw, mode="wb", compresslevel=6, mtime=0) as gz:
            shutil.copyfileobj(src, gz, CHUNK)
    os.unlink(raw_path)
    return gz_path, "sha256:" + hw.h.hexdigest(), hw.n, diff_id, MT_LAYER_GZ


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def build_image(layers: list[Layer], out: str, name: str, config: ImageConfig | None = None,
                compress: bool = False, owner_root: bool = False, mtime: int | None = None) -> str:
    """Write an OCI archive to `out`; return the manifest digest.

    layers: Layer("dir", path) | Layer("tar", path) | Layer("files", [(src, dest), ...]),
    bottom first. owner_root forces uid/gid 0 on every entry; mtime clamps
    modification times (for reproducible digests)."""
    config = config or ImageConfig()
    if not layers:
        raise ValueError("an image needs at least one layer")
    full_name = normalize_name(name)
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix=".oci-", dir=os.path.dirname(out))
    try:
        built = [_write_layer(l, tmpdir, compress, owner_root, mtime) for l in layers]
        env = list(config.env)
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        cfg: dict = {"Env": env}
        if config.entrypoint is not None:
            cfg["Entrypoint"] = config.entrypoint
        if config.cmd is not None:
            cfg["Cmd"] = config.cmd
        if config.user:
            cfg["User"] = config.user
        if config.workdir:
            cfg["WorkingDir"] = config.workdir
        if config.ports:
            cfg["ExposedPorts"] = {(p if "/" in p else p + "/tcp"): {} for p in config.ports}
        if config.labels:
            cfg["Labels"] = dict(config.labels)
        if config.stop_signal:
            cfg["StopSignal"] = config.stop_signal
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime if mtime is not None else time.time()))
        image_config = {
            "created": created,
            "architecture": config.architecture,
            "os": config.os,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [b[3] for b in built]},
            "history": [{"created": created, "created_by": "kubento e2e/images/oci.py"} for _ in built],
        }
        cfg_digest, cfg_bytes = _blob(json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
            "layers": [{"mediaType": b[4], "digest": b[1], "size": b[2]} for b in built],
        }
        man_digest, man_bytes = _blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
        tag = full_name.rsplit(":", 1)[1] if ":" in full_name.rsplit("/", 1)[-1] else "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [{
                "mediaType": MT_MANIFEST,
                "digest": man_digest,
                "size": len(man_bytes),
                "platform": {"architecture": config.architecture, "os": config.os},
                "annotations": {
                    "io.containerd.image.name": full_name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }
        tmp_out = os.path.join(tmpdir, "image.tar")
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            def add_bytes(arc: str, data: bytes) -> None:
                ti = tarfile.TarInfo(arc)
                ti.size, ti.mode, ti.mtime = len(data), 0o644, mtime or 0
                tar.addfile(ti, io.BytesIO(data))

            def add_dir(arc: str) -> None:
                ti = tarfile.TarInfo(arc)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime or 0
                tar.addfile(ti)

            add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add_dir("blobs")
            add_dir("blobs/sha256")
            done = set()
            for path, digest, size, _, _ in built:
                if digest in done:
                    continue
                done.add(digest)
                ti = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
                ti.size, ti.mode, ti.mtime = size, 0o644, mtime or 0
                with open(path, "rb") as fh:
                    tar.addfile(ti, fh)
            add_bytes("blobs/sha256/" + cfg_digest.split(":", 1)[1], cfg_bytes)
            add_bytes("blobs/sha256/" + man_digest.split(":", 1)[1], man_bytes)
            add_bytes("index.json", json.dumps(index, indent=2).encode())
        os.replace(tmp_out, out)
        return man_digest
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class _LayerAction(argparse.Action):
    """--rootfs / --layer-tar share one ordered list."""

    def __call__(self, parser, ns, value, option_string=None):
        layers = getattr(ns, "layers", None) or []
        kind = "dir" if option_string == "--rootfs" else "tar"
        check = os.path.isdir if kind == "dir" else os.path.isfile
        if not check(value):
            parser.error(f"{option_string} {value}: not a {'directory' if kind == 'dir' else 'file'}")
        layers.append(Layer(kind, value))
        ns.layers = layers


def _kv(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    k, v = value.split("=", 1)
    return k, v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--rootfs", metavar="DIR", action=_LayerAction, dest="layers", default=[],
                   help="directory whose contents become one layer (repeatable, bottom first)")
    p.add_argument("--layer-tar", metavar="FILE", action=_LayerAction, dest="layers",
                   help="an existing layer tarball (.tar or .tar.gz) used as one layer (repeatable)")
    p.add_argument("--add", metavar="SRC:DEST", action="append", default=[],
                   help="file or directory SRC placed at DEST in an extra top layer (repeatable)")
    p.add_argument("--name", required=True, help="image name[:tag] (normalised to docker.io/library/... if bare)")
    p.add_argument("--entrypoint", help="JSON array or shell-like string")
    p.add_argument("--cmd", help="JSON array or shell-like string")
    p.add_argument("--env", metavar="K=V", action="append", default=[], type=_kv)
    p.add_argument("--user", help="UID[:GID] or name")
    p.add_argument("--workdir")
    p.add_argument("--port", action="append", default=[], help="exposed port, e.g. 3000 or 53/udp (repeatable)")
    p.add_argument("--label", metavar="K=V", action="append", default=[], type=_kv)
    p.add_argument("--stop-signal")
    p.add_argument("--arch", default="amd64")
    p.add_argument("--gzip", action="store_true", help="gzip the layers (smaller, slower)")
    p.add_argument("--owner-root", action="store_true", help="record every file as owned by 0:0")
    p.add_argument("--mtime", type=int, default=None,
                   help="clamp file times to this epoch (default: $SOURCE_DATE_EPOCH if set)")
    p.add_argument("--out", required=True, help="archive to write (for `ctr images import`)")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)

    layers = list(a.layers)
    if a.add:
        pairs = []
        for spec in a.add:
            if ":" not in spec:
                p.error(f"--add {spec}: expected SRC:DEST")
            src, dest = spec.rsplit(":", 1)
            if not os.path.lexists(src):
                p.error(f"--add {spec}: {src} does not exist")
            pairs.append((src, dest))
        layers.append(Layer("files", pairs))
    if not layers:
        p.error("give at least one --rootfs, --layer-tar or --add")
    mtime = a.mtime
    if mtime is None and os.environ.get("SOURCE_DATE_EPOCH"):
        mtime = int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        cfg = ImageConfig(
            entrypoint=parse_command(a.entrypoint), cmd=parse_command(a.cmd),
            env=[f"{k}={v}" for k, v in a.env], user=a.user, workdir=a.workdir,
            ports=a.port, labels=dict(a.label), stop_signal=a.stop_signal, architecture=a.arch)
    except ValueError as e:
        p.error(str(e))
    digest = build_image(layers, a.out, a.name, cfg, compress=a.gzip, owner_root=a.owner_root, mtime=mtime)
    if not a.quiet:
        print(f"{normalize_name(a.name)} {digest} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
