#!/usr/bin/env bash
# Build Horovod 0.28.1 (its last release) from the sdist against the pinned CPU torch.
#
# Why a script: Horovod 0.28.1 forces C++14, and torch 2.13's headers need C++17. We patch the
# two CMakeLists that set the standard, and build with --no-build-isolation so pip never pulls
# an unpinned torch (several GB of CUDA wheels) into a build environment.
#
# Usage: scripts/install_horovod.sh PYTHON    (exit 0 on success; non-zero with a clear message)
# HOROVOD_GPU_OPERATIONS=NCCL (with the CUDA toolkit and NCCL present; infra/docker/Dockerfile's gpu
# flavour) builds the GPU collectives on NCCL; unset, the build is CPU-only (gloo).
set -euo pipefail
PY=${1:?usage: install_horovod.sh PATH/TO/python}
VERSION=0.28.1
if "$PY" -c "import horovod.torch" >/dev/null 2>&1; then
  echo "horovod $VERSION already installed"; exit 0
fi
# The compiled wheel is cached per (horovod, torch, python) so a re-install or a fresh clone on the
# same machine skips the ~5-minute compile; a new machine builds it once.
torch_version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
cache=${EEGFM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eegfm/wheels}/horovod-$VERSION-torch$torch_version-$py_tag${HOROVOD_GPU_OPERATIONS:+-${HOROVOD_GPU_OPERATIONS,,}}
wheel=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then
  echo "horovod: installing the cached build $wheel"
  "$PY" -m pip install --quiet --no-deps "$wheel"
  "$PY" -c "import horovod.torch as hvd; hvd.init(); print('horovod $VERSION built with gloo:', hvd.gloo_built(), 'nccl:', hvd.nccl_built())"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$VERSION" -d "$work"
tar -xzf "$work/horovod-$VERSION.tar.gz" -C "$work"
src="$work/horovod-$VERSION"
sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
  "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
grep -q 'CMAKE_CXX_STANDARD 17' "$src/horovod/torch/CMakeLists.txt" \
  || { echo "horovod: could not apply the C++17 patch to horovod/torch/CMakeLists.txt" >&2; exit 1; }
export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
       HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
export MAKEFLAGS=${MAKEFLAGS:--j$(nproc)}
mkdir -p "$cache"
"$PY" -m pip wheel --quiet --no-build-isolation --no-deps "$src" -w "$work/wheel"
"$PY" -m pip install --quiet --no-deps "$work"/wheel/horovod-*.whl
cp "$work"/wheel/horovod-*.whl "$cache"/
# Horovod's runtime dependencies, pinned in requirements/lock.txt, are installed by the caller.
"$PY" -c "import horovod.torch as hvd; hvd.init(); print('horovod $VERSION built with gloo:', hvd.gloo_built(), 'nccl:', hvd.nccl_built())"
if [ -n "${HOROVOD_GPU_OPERATIONS:-}" ]; then
  "$PY" -c "import sys, horovod.torch as hvd; sys.exit(0 if hvd.nccl_built() else 'horovod: built without NCCL although HOROVOD_GPU_OPERATIONS is set (CUDA toolkit or NCCL not found?)')"
fi
