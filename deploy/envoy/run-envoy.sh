#!/bin/bash
# Envoy's entry point in the gateway's containers (docker/envoy.Dockerfile).
#
# Starts Envoy on envoy/envoy.yaml, unchanged, plus the container listeners of
# deploy/envoy/container.yaml, and makes SIGTERM a graceful stop, which Envoy
# alone does not do (it closes every connection at once):
#   1. ask Envoy to drain (admin POST /drain_listeners?graceful): every
#      response now carries `Connection: close` (HTTP/2: GOAWAY), so clients
#      reconnect elsewhere, while new connections are still accepted;
#   2. after ENVOY_DRAIN_SECONDS the listeners close;
#   3. wait until no request is in flight (bounded by ENVOY_STOP_TIMEOUT_SECONDS,
#      counted from SIGTERM), then stop Envoy.
# The orchestrator's stop timeout (ECS stopTimeout, Kubernetes
# terminationGracePeriodSeconds) must be longer than ENVOY_STOP_TIMEOUT_SECONDS.
# Extra arguments are passed to Envoy (e.g. --log-level debug).
set -uo pipefail

config=${ENVOY_CONFIG:-/etc/envoy/envoy.yaml}
overlay=${ENVOY_OVERLAY:-/etc/envoy/container.yaml}
admin_port=${ENVOY_ADMIN_PORT:-9901}
drain_seconds=${ENVOY_DRAIN_SECONDS:-15}
stop_timeout=${ENVOY_STOP_TIMEOUT_SECONDS:-100}
# Requests in flight on the gateway listener (stat_prefix "gateway" in envoy.yaml).
active_stat=http.gateway.downstream_rq_active

log() { printf 'run-envoy: %s\n' "$*" >&2; }

# admin METHOD PATH: the body of an admin API answer (bash's /dev/tcp: the
# image needs no curl).
admin() {
  local response
  exec 3<>"/dev/tcp/127.0.0.1/${admin_port}" || return 1
  printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' "$1" "$2" >&3
  response=$(cat <&3)
  exec 3<&-
  printf '%s' "${response#*$'\r\n\r\n'}"
}

active_requests() {
  local line
  while IFS= read -r line; do
    if [[ $line == "${active_stat}: "* ]]; then
      printf '%s' "${line#*: }"
      return 0
    fi
  done < <(admin GET "/stats?filter=downstream_rq_active")
  return 1
}

terminating=0
trap 'terminating=1' TERM INT

envoy -c "$config" --config-yaml "$(cat "$overlay")" \
  --drain-time-s "$drain_seconds" --drain-strategy immediate --disable-hot-restart "$@" &
envoy_pid=$!

wait "$envoy_pid"
status=$?
if [ "$terminating" -eq 0 ]; then
  exit "$status"   # Envoy stopped on its own (bad configuration, crash): report its status.
fi

deadline=$((SECONDS + stop_timeout))
log "SIGTERM: draining for ${drain_seconds}s, then waiting for requests in flight (at most ${stop_timeout}s in all)"
admin POST "/drain_listeners?graceful" >/dev/null || log "could not reach the admin API to drain"
drain_end=$((SECONDS + drain_seconds))
while [ "$SECONDS" -lt "$drain_end" ] && [ "$SECONDS" -lt "$deadline" ] && kill -0 "$envoy_pid" 2>/dev/null; do
  sleep 0.5
done
while [ "$SECONDS" -lt "$deadline" ] && kill -0 "$envoy_pid" 2>/dev/null; do
  active=$(active_requests) || break
  [ "${active:-0}" -eq 0 ] && break
  sleep 0.5
done
log "stopping Envoy (requests in flight: ${active:-0})"
kill -TERM "$envoy_pid" 2>/dev/null
wait "$envoy_pid"
exit 0
