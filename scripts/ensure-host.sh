#!/usr/bin/env bash
# usage: ensure-host.sh [SET ...]   SET: core, publishing, emulation or test (default: core;
# ./invokew picks the sets by the tasks it runs)
# Makes this machine able to build and run torchenv images. Needed everywhere: a Docker
# engine >= 23 with buildx and compose v2, running, and Python 3 with venv. On Debian
# hosts (as root) it installs those and mmdebstrap (else the base is made by mmdebstrap in
# a container): `core`, all that building and `docker compose run` need, so a first
# `./invokew demo` installs nothing else. The other sets add what some tasks use:
# `publishing` the distribution registry, skopeo, zstd and cosign (push, pull,
# verify-image, repro); `emulation` qemu with its binfmt registration (arm64 images on
# amd64); `test` all of these and the test tools (shellcheck, Node.js, rootless Podman,
# with /dev/net/tun opened for it). Elsewhere (macOS or Windows with Docker Desktop,
# another Linux) it installs nothing: it checks what is needed, says what is missing, and
# names the optional parts it goes without. Idempotent.
set -euo pipefail

tool_sets=" ${*:-core} "
for tool_set in $tool_sets; do
  case $tool_set in
    core | publishing | emulation | test) ;;
    *) printf 'torchenv: error: unknown tool set %q; use core, publishing, emulation or test\n' "$tool_set" >&2; exit 2 ;;
  esac
done
wants() { # wants SET: this run's tool sets include SET (test includes every set)
  [[ $tool_sets == *" test "* || $tool_sets == *" $1 "* ]]
}

log() { printf 'torchenv: %s\n' "$*" >&2; }
die() { printf 'torchenv: error: %s\n' "$*" >&2; exit 1; }

DOCKERD_LOG=${TORCHENV_DOCKERD_LOG:-/var/log/torchenv-dockerd.log}

have_engine_tools() {
  command -v docker >/dev/null && docker buildx version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

is_debian_root() { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; }

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 is missing and installing it needs root: run 'sudo $0${tool_sets% }' once, or install it yourself ($2)."
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
  local missing=() optional=()
  have_engine_tools || missing+=(engine)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  # pyproject.toml's requires-python (macOS's own python3 is 3.9).
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || missing+=("python3>=3.11")
  # Optional: without it the base is made in a container.
  command -v mmdebstrap >/dev/null || optional+=(mmdebstrap)
  if wants publishing; then
    # The tests push to and pull from a real registry (the distribution registry).
    command -v docker-registry >/dev/null || optional+=(docker-registry)
    # `invoke push` uploads the zstd layers it compressed through skopeo (the engine pushes
    # gzip only); `invoke repro --against` reads registries with it.
    command -v skopeo >/dev/null || optional+=(skopeo)
    # The bench measures zstd's decode time, the floor of a pull, with the zstd tool.
    command -v zstd >/dev/null || optional+=(zstd)
    # `invoke push` signs and attests, `invoke pull` checks, with cosign (Debian 13 packages it).
    command -v cosign >/dev/null || optional+=(cosign)
  fi
  if wants test; then
    # The tests check the Slurm batch-script templates with shellcheck.
    command -v shellcheck >/dev/null || optional+=(shellcheck)
    # The dev container test runs the reference Dev Containers CLI, which needs Node.js >= 20
    # (Debian 12 has 18: trixie's then).
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null && command -v npm >/dev/null \
      || optional+=(nodejs)
    # tests/podman runs the images under rootless Podman (bookworm's 4.3): uidmap maps the
    # user's IDs, slirp4netns and netavark with aardvark-dns give the networks (with DNS on
    # compose's internal ddp network), catatonit is --init.
    { command -v podman && command -v newuidmap && command -v slirp4netns \
      && [ -x /usr/libexec/podman/catatonit ] && [ -x /usr/lib/podman/netavark ] && [ -x /usr/lib/podman/aardvark-dns ]; } >/dev/null \
      || optional+=(podman)
  fi
  # The cpu variant's arm64 image is built and tested here under emulation.
  if wants emulation && [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
    [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || optional+=(qemu-user-static)
    command -v update-binfmts >/dev/null || optional+=(binfmt-support)
    command -v arch-test >/dev/null || optional+=(arch-test)
  fi
  [ ${#missing[@]} = 0 ] && [ ${#optional[@]} = 0 ] && return 0
  if ! is_debian_root; then
    if [ ${#missing[@]} != 0 ]; then
      command -v apt-get >/dev/null && [ "$(id -u)" != 0 ] \
        && die "missing: ${missing[*]}; installing it needs root: run 'sudo $0${tool_sets% }' once, or install Docker Engine >= 23 with buildx and compose v2, and python3-venv, yourself."
      die "missing: ${missing[*]}; install Docker Desktop or Docker Engine >= 23 with buildx and compose v2, and Python >= 3.11 with venv, then rerun."
    fi
    log "not installed (optional, this host is set up by hand): ${optional[*]}; without mmdebstrap the base is made in a container, without docker-registry and skopeo the registry tests, zstd pushes and repro --against cannot run, without zstd the bench shows no floor, without cosign no signed pushes or checked pulls, without shellcheck no check of the Slurm templates, without qemu no arm64 images on amd64, without Node.js >= 20 and npm no dev container test, without podman (with uidmap, slirp4netns, catatonit, netavark and aardvark-dns) no Podman test"
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  local pkgs=() all=" ${missing[*]} ${optional[*]} "
  [[ $all == *" python3"* ]] && pkgs+=(python3 python3-venv)
  for package in mmdebstrap docker-registry skopeo zstd shellcheck qemu-user-static binfmt-support arch-test; do
    [[ $all == *" $package "* ]] && pkgs+=("$package")
  done
  if [[ $all == *" engine "* || $all == *" cosign "* ]]; then
    add_trixie_source
  fi
  [[ $all == *" cosign "* ]] && pkgs+=(cosign/trixie)
  if [[ $all == *" engine "* ]]; then
    pkgs+=(docker.io/trixie docker-buildx/trixie docker-compose/trixie)
    # trixie's docker.io no longer ships the client; keep a client if one is there.
    command -v docker >/dev/null || pkgs+=(docker-cli/trixie)
  fi
  apt-get update -qq
  if [ ${#pkgs[@]} != 0 ]; then
    log "installing ${pkgs[*]} (apt)"
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  # Optional, and apart: a Node.js of another origin (NodeSource's, say) conflicts with
  # Debian's npm, and that must not stop the set-up.
  if [[ $all == *" nodejs "* ]]; then
    add_trixie_source
    apt-get update -qq
    log "installing nodejs/trixie npm/trixie (apt; for the dev container test)"
    apt-get install -y -qq --no-install-recommends nodejs/trixie npm/trixie >/dev/null \
      || log "could not install Node.js >= 20 with npm (see apt above); the dev container test will say so"
  fi
  # Optional, and apart: a release without one of these must not stop the set-up.
  if [[ $all == *" podman "* ]]; then
    log "installing podman uidmap slirp4netns catatonit netavark aardvark-dns (apt; for the Podman tests)"
    apt-get install -y -qq --no-install-recommends podman uidmap slirp4netns catatonit netavark aardvark-dns >/dev/null \
      || log "could not install Podman and what rootless Podman needs (see apt above); the Podman tests will say so"
  fi
}

start_daemon() {
  if docker info >/dev/null 2>&1; then return 0; fi
  [ "$(uname -s)" = Linux ] || die "the Docker engine does not answer: start Docker Desktop (or your engine), then rerun."
  if [ -S /var/run/docker.sock ] && [ "$(id -u)" != 0 ]; then
    die "the Docker daemon at /var/run/docker.sock does not answer to $(id -un): add yourself to the 'docker' group or start it ('sudo systemctl start docker')."
  fi
  need_root "a running Docker daemon" "start dockerd"
  command -v dockerd >/dev/null || die "the Docker daemon does not answer and there is no dockerd to start: start your engine, then rerun."
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
  wants emulation || return 0
  [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || return 0
  local misc=/proc/sys/fs/binfmt_misc
  [ -e "$misc/qemu-aarch64" ] && head -1 "$misc/qemu-aarch64" | grep -q enabled && return 0
  if ! is_debian_root || ! command -v update-binfmts >/dev/null; then
    log "arm64 emulation is off: arm64 images cannot be built or run here (see docs/building.md)"
    return 0
  fi
  need_root "arm64 emulation (binfmt_misc)" "mount binfmt_misc and run update-binfmts --enable qemu-aarch64"
  [ -e "$misc/register" ] || mount -t binfmt_misc binfmt_misc "$misc" \
    || die "cannot mount binfmt_misc on $misc: arm64 images cannot be built here (a container host must allow it)."
  update-binfmts --enable qemu-aarch64 || die "update-binfmts could not enable qemu-aarch64: see 'update-binfmts --display qemu-aarch64'."
  log "arm64 emulation enabled (qemu-aarch64 through binfmt_misc)"
}

# Rootless Podman's networks (slirp4netns) open /dev/net/tun. Without udev (a container
# host) it stays 0600, root's only; Debian's udev rules make it 0666, as here.
open_tun_for_rootless_podman() {
  wants test || return 0
  is_debian_root && command -v podman >/dev/null && [ -c /dev/net/tun ] && [ ! -e /run/udev ] || return 0
  [ "$(stat -c %a /dev/net/tun)" = 600 ] || return 0
  chmod 0666 /dev/net/tun
  log "/dev/net/tun made 0666, the mode Debian's udev rules give it (there is no udev here): rootless Podman's networks need it"
}

# BuildKit honours SOURCE_DATE_EPOCH (and so makes the same image twice) from Engine 23 on.
check_engine_version() {
  local version
  version=$(docker version --format '{{.Server.Version}}' 2>/dev/null) || die "docker version did not answer: see 'docker version'."
  [ "${version%%.*}" -ge 23 ] 2>/dev/null \
    || die "Docker Engine $version is too old: torchenv needs >= 23 (reproducible BuildKit builds); upgrade the engine, then rerun."
}

install_packages
enable_arm64_emulation
open_tun_for_rootless_podman
start_daemon
check_engine_version
