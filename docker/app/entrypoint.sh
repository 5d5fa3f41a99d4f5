#!/bin/sh
# `verify` and `train` run torchenv's checks and demo; anything else runs as given.
set -e
case "$1" in
  verify|train)
    command=$1
    shift
    exec python -m "torchenv_app.$command" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
