#!/usr/bin/env bash
# make containerize: the Bento of MODEL as an OCI image, tagged IMAGE:<bento version> and IMAGE:latest.
#
#   deploy/container/containerize.sh MODEL_TAG
#
# Environment (the Makefile sets them):
#   BENTOML      the bentoml command (default bentoml); PYTHON one with PyYAML (default python3)
#   IMAGE        the image's name (default nextword)
#   IMAGE_TORCH  cpu: torch's CPU wheel (the default); cuda: PyPI's CUDA build, for GPU hosts
#   IMAGE_BASE   auto: BentoML's own base (python:3.11-slim) where Docker can pull it, else one made
#                from Debian's packages (base-image.sh); bentoml or debian to choose
#
# The Bento is built from bentofile.yaml plus what the choice needs (the base image, PyTorch's CPU
# index), then `bentoml containerize` builds it with the host's network (`--network host`: Docker
# runs here with no bridge) and Docker's classic builder, and Dockerfile adds the health check.
set -euo pipefail

model="${1:?usage: $0 MODEL_TAG}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bentoml="${BENTOML:-bentoml}"
python="${PYTHON:-python3}"
image="${IMAGE:-nextword}"
torch_build="${IMAGE_TORCH:-cpu}"
base="${IMAGE_BASE:-auto}"
bentoml_base=python:3.11-slim # what BentoML picks for distro debian, Python 3.11

if ! docker info >/dev/null 2>&1; then
  cat >&2 <<EOF
containerize: no Docker engine answers here ('docker info' failed), so no image can be built.
  On Debian, as root:  apt-get install docker.io && dockerd --bridge=none --iptables=false &
  (--bridge=none keeps container networking on this machine; builds and containers use the host's.)
  Without Docker, 'make build' still makes the Bento; 'bentoml export' carries it to a machine with Docker.
EOF
  exit 1
fi
case "$torch_build" in cpu | cuda) ;; *) echo "containerize: IMAGE_TORCH must be cpu or cuda, got $torch_build" >&2; exit 2 ;; esac
if [ "$base" = auto ]; then
  if docker image inspect "$bentoml_base" >/dev/null 2>&1 || timeout 60 docker pull -q "$bentoml_base" >/dev/null 2>&1; then
    base=bentoml
  else
    echo "containerize: Docker cannot pull $bentoml_base here; making a base from Debian's packages" >&2
    base=debian
  fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base_image=""
index=""
case "$base" in
  debian) base_image="$(PIP="${PIP:-pip}" "$here/base-image.sh" "$torch_build" | tail -1)" ;;
  bentoml) [ "$torch_build" = cpu ] && index=https://download.pytorch.org/whl/cpu ;;
  *) echo "containerize: IMAGE_BASE must be auto, bentoml or debian, got $base" >&2; exit 2 ;;
esac

cd "$repo"
exact="$("$bentoml" models get "$model" -o json | "$python" -c 'import json, sys; d = json.load(sys.stdin); print(d["name"] + ":" + d["version"])')"
"$python" - "$work/bentofile.yaml" "$base_image" "$index" <<'EOF'
import sys
import yaml

path, base_image, index = sys.argv[1:]
config = yaml.safe_load(open("bentofile.yaml"))
if base_image:
    config["docker"] = {"base_image": base_image}  # distro and python_version belong to BentoML's bases
if index:
    config["python"]["extra_index_url"] = [index]
yaml.safe_dump(config, open(path, "w"), sort_keys=False)
EOF
# The service pins the model NEXTWORD_MODEL names as it is imported: the exact one, whatever the caller's.
bento="$(NEXTWORD_MODEL="$exact" "$bentoml" build -f "$work/bentofile.yaml" --arg "model=$exact" --output tag | tail -1)"
bento="${bento#__tag__:}"
version="${bento#*:}"
echo "containerize: Bento $bento (model $exact, base $base, torch $torch_build)" >&2

echo "containerize: bentoml containerize (its log is shown if it fails)" >&2
DOCKER_BUILDKIT=0 "$bentoml" containerize "$bento" --image-tag "$image-bento:$version" --opt network=host \
  >"$work/containerize.log" 2>&1 || { tail -40 "$work/containerize.log" >&2; exit 1; }
docker build --quiet --network host --build-arg BENTO_IMAGE="$image-bento:$version" \
  --label "org.opencontainers.image.version=$version" --label "ai.nextword.model=$exact" \
  -t "$image:$version" -t "$image:latest" -f "$here/Dockerfile" "$here" >/dev/null 2>"$work/health.log" \
  || { cat "$work/health.log" >&2; exit 1; }
docker rmi "$image-bento:$version" >/dev/null
size="$(docker image inspect "$image:$version" --format '{{.Size}}')"
echo "containerize: built $image:$version ($((size / 1000000)) MB); run it with:" >&2
echo "  docker run --rm --network host -e PORT=3000 $image:$version" >&2
echo "$image:$version"
