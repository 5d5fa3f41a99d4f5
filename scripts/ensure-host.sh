#!/usr/bin/env bash
# Makes this machine able to build and run torchenv images: a Docker engine with
# buildx and compose, mmdebstrap for the base, a running daemon. Idempotent: each
# step is skipped when what it provides is already there. Debian/Ubuntu hosts are
# set up automatically (as root); elsewhere it says what is missing and stops.
set -euo pipefail

log() { printf 'torchenv: %s\n' "$*" >&2; }
die() { printf 'torchenv: error: %s\n' "$*" >&2; exit 1; }

DOCKERD_LOG=${TORCHENV_DOCKERD_LOG:-/var/log/torchenv-dockerd.log}

have_engine_tools() {
  command -v docker >/dev/null && docker buildx version >/dev/null 2>&1 \
    && docker compose version >/dev/null 2>&1 && command -v dockerd >/dev/null
}

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 is missing and installing it needs root: run 'sudo $0' once, or install it yourself ($2)."
}

# Bookworm's own docker.io (20.10) ignores SOURCE_DATE_EPOCH and has no compose v2;
# trixie's engine, buildx and compose install cleanly on bookworm. The trixie suite is
# added from the machine's own first apt source and pinned low, so nothing else moves.
add_trixie_source() {
  local own=/etc/apt/sources.list.d/debian.sources
  local new=/etc/apt/sources.list.d/torchenv-trixie.sources
  [ -f "$new" ] && return 0
  [ -f "$own" ] || die "no $own to copy the Debian archive from: add a 'trixie' apt source by hand, then rerun."
  awk 'BEGIN{RS=""; ORS="\n\n"} NR==1' "$own" \
    | sed -E 's/^Suites:.*/Suites: trixie/' >"$new"
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 50\n' \
    >/etc/apt/preferences.d/torchenv-trixie
}

install_packages() {
  local missing=()
  have_engine_tools || missing+=(engine)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  # The tests push to and pull from a real registry (the distribution registry).
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  # `invoke push` and the bench push zstd layers through skopeo (the engine pushes gzip only).
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v python3 >/dev/null || missing+=(python3)
  # The cpu variant's arm64 image is built and tested here under emulation.
  if [ "$(uname -m)" = x86_64 ]; then
    [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    command -v arch-test >/dev/null || missing+=(arch-test)
  fi
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} = 0 ] && return 0
  command -v apt-get >/dev/null \
    || die "missing: ${missing[*]}; this is not a Debian-like host: install Docker Engine >= 23 with buildx, compose v2 and mmdebstrap, then rerun."
  need_root "${missing[*]}" "Docker Engine >= 23 with buildx + compose v2, and mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  local pkgs=()
  [[ " ${missing[*]} " == *" mmdebstrap "* ]] && pkgs+=(mmdebstrap)
  [[ " ${missing[*]} " == *" docker-registry "* ]] && pkgs+=(docker-registry)
  [[ " ${missing[*]} " == *" skopeo "* ]] && pkgs+=(skopeo)
  [[ " ${missing[*]} " == *" python3"* ]] && pkgs+=(python3 python3-venv)
  for emulation in qemu-user-static binfmt-support arch-test; do
    [[ " ${missing[*]} " == *" $emulation "* ]] && pkgs+=("$emulation")
  done
  if [[ " ${missing[*]} " == *" engine "* ]]; then
    add_trixie_source
    pkgs+=(docker.io/trixie docker-buildx/trixie docker-compose/trixie)
    # trixie's docker.io no longer ships the client; keep a client if one is there.
    command -v docker >/dev/null || pkgs+=(docker-cli/trixie)
  fi
  log "installing ${pkgs[*]} (apt)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

start_daemon() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if [ -S /var/run/docker.sock ] && [ "$(id -u)" != 0 ]; then
    die "the Docker daemon at /var/run/docker.sock does not answer to $(id -un): add yourself to the 'docker' group or start it ('sudo systemctl start docker')."
  fi
  need_root "a running Docker daemon" "start dockerd"
  # A daemon that was killed leaves its pid file behind, and a new one refuses to start.
  local pidfile=/var/run/docker.pid
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "removing the stale $pidfile of a daemon that is gone"
    rm -f "$pidfile"
  fi
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not answer within 60 s on /var/run/docker.sock: see $DOCKERD_LOG."
}

# binfmt_misc hands arm64 binaries to qemu; the handler's F flag opens the emulator once,
# so it works inside containers and mmdebstrap's chroot too.
enable_arm64_emulation() {
  [ "$(uname -m)" = x86_64 ] || return 0
  local misc=/proc/sys/fs/binfmt_misc
  [ -e "$misc/qemu-aarch64" ] && head -1 "$misc/qemu-aarch64" | grep -q enabled && return 0
  need_root "arm64 emulation (binfmt_misc)" "mount binfmt_misc and run update-binfmts --enable qemu-aarch64"
  [ -e "$misc/register" ] || mount -t binfmt_misc binfmt_misc "$misc" \
    || die "cannot mount binfmt_misc on $misc: arm64 images cannot be built here (a container host must allow it)."
  update-binfmts --enable qemu-aarch64 || die "update-binfmts could not enable qemu-aarch64: see 'update-binfmts --display qemu-aarch64'."
  log "arm64 emulation enabled (qemu-aarch64 through binfmt_misc)"
}

install_packages
enable_arm64_emulation
start_daemon
