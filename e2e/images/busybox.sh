#!/usr/bin/env bash
# Builds a tiny busybox image (Debian's static busybox, an /www/index.html,
# /etc/passwd) as an OCI archive with oci.py, cached under
# ~/.cache/kubento/images, and prints the archive's path.
#
#   e2e/images/busybox.sh [NAME:TAG]     default kubento.local/busybox:test
#
# Import it with `e2e/cluster import "$(e2e/images/busybox.sh)"`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="${1:-kubento.local/busybox:test}"
bb=/bin/busybox
[[ -x $bb ]] && file -L "$bb" 2>/dev/null | grep -q 'statically linked' || bb=$(command -v busybox || true)
[[ -n "$bb" ]] || { echo "busybox.sh: install busybox-static" >&2; exit 1; }
key=$( { echo "$name"; sha256sum "$bb" "$here/oci.py" "$0"; } | sha256sum | cut -c1-12)
d="${KUBENTO_CACHE:-$HOME/.cache/kubento}/images/busybox-$key"
if [[ ! -f "$d/image.tar" ]]; then
  rm -rf "$d"; mkdir -p "$d/rootfs/bin" "$d/rootfs/etc" "$d/rootfs/www" "$d/rootfs/tmp" "$d/rootfs/root"
  cp "$bb" "$d/rootfs/bin/busybox"
  for applet in $("$bb" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$d/rootfs/bin/$applet"
  done
  chmod 1777 "$d/rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$d/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/rootfs/etc/group"
  echo "hello from kubento busybox" >"$d/rootfs/www/index.html"
  python3 "$here/oci.py" -q --rootfs "$d/rootfs" --name "$name" --cmd '["sh"]' --env PATH=/bin \
    --owner-root --mtime 0 --out "$d/image.tar.tmp"
  mv "$d/image.tar.tmp" "$d/image.tar"
fi
echo "$d/image.tar"
