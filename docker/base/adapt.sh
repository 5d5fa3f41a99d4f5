#!/bin/sh
# Makes any base fit torchenv: the wanted python3 with venv and headers, a C/C++ compiler
# (torch.compile needs them at run time), the non-root user 1000 with its home and /out.
# torchenv's mmdebstrap base has the packages already; an upstream Debian/Ubuntu base gets
# what is missing from its own apt sources.
set -eu
want_python=$1

check_python() {
  have_python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$have_python" != "$want_python" ]; then
    echo "torchenv: error: the base image's python3 is $have_python, the variant wants $want_python; pick a base with Python $want_python or change python in images/matrix.toml" >&2
    exit 1
  fi
}

# Refuse a wrong Python before installing anything.
if command -v python3 >/dev/null 2>&1; then check_python; fi

missing=""
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  2>/dev/null || missing="$missing python3-dev"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
command -v g++ >/dev/null 2>&1 || missing="$missing g++"

if [ -n "$missing" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "torchenv: error: the base image lacks$missing and has no apt-get to install them; use a Debian/Ubuntu base or the default mmdebstrap:bookworm" >&2
    exit 1
  fi
  echo "torchenv: the base image lacks$missing; installing them with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    ca-certificates python3 python3-venv python3-dev gcc g++ >/dev/null
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
fi

check_python

if ! getent passwd 1000 >/dev/null 2>&1; then
  echo "torchenv:x:1000:1000::/home/torchenv:/usr/sbin/nologin" >>/etc/passwd
  getent group 1000 >/dev/null 2>&1 || echo "torchenv:x:1000:" >>/etc/group
fi
home=$(getent passwd 1000 | cut -d: -f6)
# Group 0 owns and may write what the user writes: Kubernetes and OpenShift run an image
# as an arbitrary UID in group 0, with no passwd entry (the image's ENV gives HOME and USER).
for dir in "$home" /home/torchenv /out; do
  [ -d "$dir" ] || mkdir -p "$dir"
  chown 1000:0 "$dir"
  chmod 0775 "$dir"
done

# triton (torch.compile on NVIDIA GPUs) links its launcher with -lcuda and looks for an
# unversioned libcuda.so beside the libcuda.so.1 that the NVIDIA container runtime
# injects, which is all the runtime injects. The link dangles, harmlessly, without a driver.
libdir=/usr/lib/$(gcc -dumpmachine)
if [ -d "$libdir" ] && [ ! -e "$libdir/libcuda.so" ] && [ ! -L "$libdir/libcuda.so" ]; then
  ln -s libcuda.so.1 "$libdir/libcuda.so"
fi
