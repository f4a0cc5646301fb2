#!/usr/bin/env python3
"""Write the difference between two root filesystems as a directory that,
packed as an image layer on top of LOWER (``oci.py --rootfs LOWER --rootfs OUT``),
gives UPPER: what is new or changed in UPPER, with its parent directories (same
owner, mode and times as in UPPER), and an OCI whiteout (``.wh.NAME``) for each
path of LOWER that UPPER no longer has.

    rootfs_diff.py LOWER UPPER OUT

Files are hard-linked from UPPER into OUT (same filesystem), not copied. A
regular file counts as unchanged when its type, mode, owner and contents are
the same (times alone do not make a change). Standard library only.
"""

from __future__ import annotations

import filecmp
import os
import stat
import sys


def same(lower: str, upper: str, lst: os.stat_result, ust: os.stat_result) -> bool:
    if stat.S_IFMT(lst.st_mode) != stat.S_IFMT(ust.st_mode):
        return False
    if (lst.st_mode, lst.st_uid, lst.st_gid) != (ust.st_mode, ust.st_uid, ust.st_gid):
        return False
    if stat.S_ISDIR(ust.st_mode):
        return True  # its contents are compared one by one
    if stat.S_ISLNK(ust.st_mode):
        return os.readlink(lower) == os.readlink(upper)
    if stat.S_ISREG(ust.st_mode):
        if lst.st_size != ust.st_size:
            return False
        if (lst.st_ino, lst.st_dev) == (ust.st_ino, ust.st_dev):
            return True
        return filecmp.cmp(lower, upper, shallow=False)
    return lst.st_rdev == ust.st_rdev  # devices, fifos


def copy_meta(src_st: os.stat_result, path: str) -> None:
    os.chown(path, src_st.st_uid, src_st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(src_st.st_mode):
        os.chmod(path, stat.S_IMODE(src_st.st_mode))
    os.utime(path, ns=(src_st.st_atime_ns, src_st.st_mtime_ns), follow_symlinks=False)


def diff(lower: str, upper: str, out: str) -> tuple[int, int, int]:
    """Return (added or changed entries, whiteouts, bytes linked)."""
    os.makedirs(out)
    dirs: dict[str, os.stat_result] = {}  # OUT dirs made, fixed up last (children change mtimes)
    changed = whiteouts = size = 0

    def ensure_parent(rel: str) -> None:
        parent = os.path.dirname(rel)
        if not parent or parent in dirs:
            return
        ensure_parent(parent)
        st = os.lstat(os.path.join(upper, parent))
        os.mkdir(os.path.join(out, parent))
        dirs[parent] = st

    for dirpath, dirnames, filenames in os.walk(upper):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in sorted(filenames + dirnames):
            rel = os.path.join(rel_dir, name)
            u, l = os.path.join(upper, rel), os.path.join(lower, rel)
            ust = os.lstat(u)
            try:
                lst = os.lstat(l)
            except FileNotFoundError:
                lst = None
            if lst is not None and same(l, u, lst, ust):
                continue
            changed += 1
            ensure_parent(rel)
            dst = os.path.join(out, rel)
            if stat.S_ISDIR(ust.st_mode):
                if rel not in dirs:
                    os.mkdir(dst)
                    dirs[rel] = ust
            elif stat.S_ISLNK(ust.st_mode):
                os.symlink(os.readlink(u), dst)
                copy_meta(ust, dst)
            elif stat.S_ISREG(ust.st_mode):
                os.link(u, dst)
                size += ust.st_size
            else:
                os.mknod(dst, ust.st_mode, ust.st_rdev)
                copy_meta(ust, dst)
            if lst is not None and stat.S_ISDIR(lst.st_mode) and not stat.S_ISDIR(ust.st_mode):
                pass  # a file replacing a directory: the layer applier removes the directory

    for dirpath, dirnames, filenames in os.walk(lower):
        rel_dir = os.path.relpath(dirpath, lower)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for name in sorted(filenames + dirnames):
            rel = os.path.join(rel_dir, name)
            if os.path.lexists(os.path.join(upper, rel)):
                if name in dirnames:
                    keep.append(name)
                continue
            whiteouts += 1
            ensure_parent(rel)
            wh = os.path.join(out, rel_dir, ".wh." + name)
            with open(wh, "wb"):
                pass
            os.chmod(wh, 0o644)
        dirnames[:] = [d for d in dirnames if d in keep and not os.path.islink(os.path.join(dirpath, d))]

    for rel in sorted(dirs, key=lambda r: r.count("/"), reverse=True):
        copy_meta(dirs[rel], os.path.join(out, rel))
    copy_meta(os.lstat(upper), out)
    return changed, whiteouts, size


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    lower, upper, out = argv
    changed, whiteouts, size = diff(lower, upper, out)
    print(f"rootfs_diff: {changed} added/changed, {whiteouts} removed, {size / 1e6:.1f} MB of files -> {out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
