#!/bin/sh
# usage: install.sh PART   (from docker/Dockerfile's torch stage, one RUN and layer per part)
# Installs /mnt/requirements.txt (from PyPI) and /mnt/pytorch-index.txt (from
# TORCH_INDEX_URL), one part of the variant's lock, into /opt/venv with uv:
# downloads run in parallel into the uv cache (a BuildKit cache mount on /tmp) and unpack
# as they arrive. Then trims what is provably unused at run time, and clamps the mtimes of
# everything this step changed, so the layer does not depend on when it was built.
# Environment: LOCKED (1: --require-hashes --no-deps), TORCH_INDEX_URL, SOURCE_DATE_EPOCH.
set -eu
part=$1
start=$(date +%s)
here=$(dirname "$0")

# The CA bundle is a secret mounted inside the cache mount: a mount point that does not
# exist in the image would be created beside the venv and leave its trace in the layer.
if [ -s /tmp/ca-bundle ]; then export SSL_CERT_FILE=/tmp/ca-bundle; fi
# A private mirror's credentials (a secret, like the CA bundle).
if [ -s /tmp/index-netrc ]; then export NETRC=/tmp/index-netrc; fi
export UV_CACHE_DIR=/tmp/uv UV_LINK_MODE=copy UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never

[ -d /opt/venv ] || python3 -m venv /opt/venv

if [ "${LOCKED:-0}" = 1 ]; then exact="--require-hashes --no-deps"; else exact=""; fi
has_requirements() { [ -f "$1" ] && grep -q '^[^#[:space:]]' "$1"; }
uv_install() {
  # $exact holds several words on purpose.
  # shellcheck disable=SC2086
  "$here/bin/uv" pip install --python /opt/venv/bin/python --compile-bytecode $exact "$@"
}
installed=0
# torch, torchvision and torchaudio of a "pytorch-<channel>" variant: from that index only.
if has_requirements /mnt/pytorch-index.txt; then
  [ -n "${TORCH_INDEX_URL:-}" ] || { echo "torchenv: error: no TORCH_INDEX_URL for /mnt/pytorch-index.txt" >&2; exit 1; }
  uv_install --index-url "$TORCH_INDEX_URL" -r /mnt/pytorch-index.txt
  installed=1
fi
# Everything else: from PyPI (uv's default index).
if has_requirements /mnt/requirements.txt; then
  uv_install -r /mnt/requirements.txt
  installed=1
fi
[ "$installed" = 1 ] || echo "torchenv: nothing to install in the $part layer"

site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Symbol tables: never loaded at run time (the dynamic symbols stay); about 250 MB in a
# CUDA venv. A file already stripped is left alone, so a later layer never copies an
# earlier layer's file up.
for library in "$site"/torch/lib/libtorch*.so "$site"/triton/_C/libtriton.so "$site"/nvidia/nccl/lib/libnccl.so.*; do
  if [ -f "$library" ] && readelf -S "$library" | grep -q ' \.symtab'; then echo "$library"; fi
done | xargs -r -n 1 -P "$(nproc)" strip --strip-unneeded
# Libraries that nothing in the venv links against or opens by name (the image tests
# check that no file names them): the multi-GPU cusolver, the FFTW and BLAS drop-ins.
rm -f "$site"/nvidia/cusolver/lib/libcusolverMg.so.* "$site"/nvidia/cufft/lib/libcufftw.so.* \
  "$site"/nvidia/cublas/lib/libnvblas.so.*
# The dependencies' own test suites (numpy, sympy, networkx, ...); torch.testing is an
# API, not a test suite, and stays.
find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +

sh "$here/clamp-mtimes.sh" "$SOURCE_DATE_EPOCH" "$start"
