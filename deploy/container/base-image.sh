#!/usr/bin/env bash
# A Python 3.11 base image made from Debian's packages, for a Docker that cannot pull from
# Docker Hub (BentoML's own base is python:3.11-slim). Prints the image's name on its last line.
#
#   deploy/container/base-image.sh cpu|cuda
#
# debootstrap lays out Debian bookworm (minbase, with Python 3.11 and the packages BentoML's
# Dockerfile installs: its apt-get step then finds them there), `docker import` turns it into an
# image, and base.Dockerfile adds uv (BentoML's installer), the machine's CA bundle (pip and uv
# reach the package index only through it on machines that inspect TLS) and, for a CPU image,
# torch's CPU wheel with UV_FIND_LINKS pointing at it. The image is named by a hash of all its
# inputs: a second run with the same inputs finds it and builds nothing.
#
# Environment: PIP (the pip that fetches torch's CPU wheel; default pip), DEBIAN_MIRROR (default:
# the first one apt uses here, else deb.debian.org), CA_BUNDLE (default the system's).
set -euo pipefail

variant="${1:-cpu}"
case "$variant" in cpu | cuda) ;; *) echo "usage: $0 cpu|cuda" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
suite=bookworm
packages=python3,python3-venv,ca-certificates,gnupg2,bash,build-essential,git
torch=2.13.0
uv=0.13.10
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
pip="${PIP:-pip}"
mirror="${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"

for tool in docker debootstrap; do
  command -v "$tool" >/dev/null || { echo "base-image: $tool is needed (Debian: apt-get install docker.io debootstrap)" >&2; exit 1; }
done
[ -r "$ca_bundle" ] || { echo "base-image: no CA bundle at $ca_bundle (set CA_BUNDLE)" >&2; exit 1; }

inputs="$(cat "$0" "$here/base.Dockerfile" "$ca_bundle"; echo "$variant $suite $packages $torch $uv $mirror")"
name="nextword-base:$suite-$variant-$(sha256sum <<<"$inputs" | cut -c1-12)"
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base-image: $name is built already (same inputs)" >&2
  echo "$name"
  exit 0
fi

work="$(mktemp -d /var/tmp/nextword-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
echo "base-image: debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
rootfs="nextword-debian:$suite-$(sha256sum <<<"$inputs" | cut -c1-12)"
tar -C "$work/root" -c . | docker import - "$rootfs" >/dev/null
rm -rf "$work/root"

mkdir -p "$work/context/wheels"
cp "$ca_bundle" "$work/context/machine-ca.crt"
if [ "$variant" = cpu ]; then
  # This machine's pip may hold the wheel already (its find-links); elsewhere PyTorch's CPU index has it.
  fetch=("$pip" download --quiet --no-deps --only-binary=:all: --python-version 3.11
    --platform manylinux_2_28_x86_64 --dest "$work/context/wheels" "torch==$torch+cpu")
  "${fetch[@]}" 2>/dev/null || "${fetch[@]}" --index-url https://download.pytorch.org/whl/cpu
fi
docker build --quiet --network host --build-arg ROOTFS="$rootfs" --build-arg UV_VERSION="$uv" \
  --build-arg VARIANT="$variant" -f "$here/base.Dockerfile" -t "$name" "$work/context" >&2
docker rmi "$rootfs" >/dev/null
echo "$name"
