#!/bin/bash
# geobatch-healthcheck [PORT [PATH]]: exit 0 when GET http://127.0.0.1:PORT/PATH answers 200.
#
# The container's HEALTHCHECK. It uses bash's /dev/tcp instead of curl: bash is already in
# debian:bookworm-slim, while curl would add libcurl, OpenSSL, nghttp2, LDAP and friends to an
# image whose binary needs none of them (more megabytes, more CVEs to follow). Plain HTTP/1.0
# to the loopback is all a probe needs.
#
# PORT defaults to the port of GEOBATCH_HTTP_ADDR (8080), PATH to /healthz; the worker's probe
# is `geobatch-healthcheck 9100 /metrics`.
set -u

addr=${GEOBATCH_HTTP_ADDR:-0.0.0.0:8080}
port=${1:-${addr##*:}}
path=${2:-/healthz}

if ! exec 3<>"/dev/tcp/127.0.0.1/${port}"; then
    echo "healthcheck: nothing listens on 127.0.0.1:${port}" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$port" >&3
if ! IFS= read -r -t 5 status <&3; then
    echo "healthcheck: no answer from 127.0.0.1:${port}${path}" >&2
    exit 1
fi
status=${status%$'\r'}
case $status in
    "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "healthcheck: 127.0.0.1:${port}${path} answered: ${status}" >&2
exit 1
