#!/usr/bin/env bash
# Make sure a Docker engine answers. When none does and we run as root, install Debian's
# docker.io (and debootstrap, which builds the offline base image) and start dockerd in the
# background. Otherwise say clearly what to do. Idempotent; safe to call from any script.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
# Extra tools as COMMAND:PACKAGE pairs (the tests want nvim:neovim for the editor test).
for extra in ${MINICLOUD_EXTRA_DEBS:-}; do
  command -v "${extra%%:*}" >/dev/null 2>&1 || need_pkgs+=("${extra#*:}")
done

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${need_pkgs[*]}; run as root: apt-get install -y ${need_pkgs[*]}"
    engine_answers || exit 1
  else
    log "installing ${need_pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || apt-get update
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
fi

if engine_answers; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  log "no Docker engine answers and this is not root."
  log "start one (e.g. 'sudo systemctl start docker') or add your user to the 'docker' group."
  exit 1
fi

log "starting dockerd in the background (log: /var/log/minicloud-dockerd.log)"
# --userland-proxy=false: a published port reached on 127.0.0.1 (the gateway's, for every editor, CLI and
# test) goes through the kernel's NAT instead of a docker-proxy process that copies each byte in user
# space; measured here, that process cost ~0.3 ms per request, a quarter of a data API find.
nohup dockerd --userland-proxy=false >/var/log/minicloud-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if engine_answers; then log "engine ready"; exit 0; fi
  sleep 0.5
done
log "dockerd did not answer within 30 s; see /var/log/minicloud-dockerd.log"
tail -n 20 /var/log/minicloud-dockerd.log >&2 || true
exit 1
