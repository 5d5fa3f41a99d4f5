#!/bin/sh
# usage: clamp-mtimes.sh EPOCH SINCE
# Sets the mtime of everything the current build step changed (modified at or after SINCE,
# the step's start in seconds) to EPOCH, so the layer is the same whenever it is built:
# the docker image exporter keeps file times as they are (it ignores rewrite-timestamp).
# Mounts, and /mnt and /srv where build steps mount their inputs, are left alone.
set -eu
epoch=$1
since=$(($2 - 1))
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /mnt -o -path /srv \
  -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf \) -prune \
  -o -newermt "@$since" -exec touch --no-dereference --date="@$epoch" {} +
