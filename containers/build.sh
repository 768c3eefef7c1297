#!/usr/bin/env bash
# Build (or pull) the workflow's Apptainer image, record its digest, verify it.
#
#   containers/build.sh                          # build containers/overlearning-gpu.sif
#   containers/build.sh path/to/image.sif        # build to another path
#   containers/build.sh --pull oras://... [out]  # fetch a published image instead
#
# Afterwards <image>.sha256 holds the image file's sha256 (what every result's
# .provenance.json records as the container digest), and scripts/verify_container.py has
# compared the image's installed packages with envs/gpu.lock.txt
# (report: <image>.verify.json). A difference fails the build.
#
# Needs apptainer >= 1.1 (root, or --fakeroot / user namespaces for an unprivileged build)
# and network access to Docker Hub and PyPI: run it on a login or build node.
set -euo pipefail
cd "$(dirname "$0")/.."

DEF=containers/overlearning-gpu.def
LOCK=envs/gpu.lock.txt
PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python

die() { echo "containers/build.sh: $*" >&2; exit 1; }
command -v apptainer >/dev/null || die "apptainer not found (module load apptainer?)"

pull=""
if [[ ${1:-} == --pull ]]; then
    pull=${2:?"--pull needs an image URI (oras://... or docker://...)"}
    shift 2
fi
out=${1:-containers/overlearning-gpu.sif}
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT

if [[ -n $pull ]]; then
    apptainer pull "$tmp" "$pull"
else
    build_args=()
    [[ $(id -u) == 0 ]] || build_args+=(--fakeroot)
    # %files paths in the definition are relative to the repository root (cwd).
    apptainer build "${build_args[@]}" "$tmp" "$DEF"
fi
mv -f "$tmp" "$out"
(cd "$(dirname "$out")" && sha256sum "$(basename "$out")" >"$(basename "$out").sha256")
echo "image: $out"
echo "digest: sha256:$(cut -d' ' -f1 "$out.sha256")"

PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" scripts/verify_container.py --image "$out" --lock "$LOCK" --def "$DEF" \
    --report "$out.verify.json"
