#!/bin/sh
# Starts munge with the cluster's key (a compose secret, never in the image), then the
# node's Slurm daemon in the foreground: `controller` (slurmctld) or `compute` (slurmd).
set -eu
role=${1:-compute}
key=/run/secrets/munge.key
if [ ! -s "$key" ]; then
  echo "slurm-node: error: no munge key at $key; give every node the same key as a secret (docker/slurm/compose.yaml: TORCHENV_MUNGE_KEY)" >&2
  exit 2
fi
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
install -o munge -g munge -m 0400 "$key" /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged
install -d -m 0755 /var/log/slurm /var/spool/slurmctld /var/spool/slurmd
case "$role" in
  controller) exec /usr/sbin/slurmctld -D -i ;;
  compute) exec /usr/sbin/slurmd -D ;;
  *)
    echo "slurm-node: error: unknown role '$role'; use controller or compute" >&2
    exit 2
    ;;
esac
