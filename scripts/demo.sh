#!/usr/bin/env bash
# The gateway's main job, end to end: builds it, starts the bundled mock RDS over TLS (a throwaway CA made
# here), starts rds-gateway with conf/demo.json, and sends one real request with curl. Then it keeps serving
# until Ctrl-C; with --once it stops after the sample call. It cleans up what it started.
#   --cluster   three instances sharing one Redis tier (redis-server started here): one upstream call
#               serves a cold burst spread over all three, and a purge on one reaches the others.
set -euo pipefail
cd "$(dirname "$0")/.."
ONCE=0
CLUSTER=0
for a in "$@"; do
  case "$a" in
    --once) ONCE=1 ;;
    --cluster) CLUSTER=1 ;;
    *) echo "usage: scripts/demo.sh [--once] [--cluster]"; exit 2 ;;
  esac
done

scripts/bootstrap.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target rds-gateway rds-mock

DEMO=build/demo
mkdir -p "$DEMO"
if [[ ! -f "$DEMO/server.pem" ]]; then
  echo "== making a throwaway CA and a certificate for localhost in $DEMO"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=rds-gateway demo CA" \
    -keyout "$DEMO/ca.key" -out "$DEMO/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$DEMO/server.key" -out "$DEMO/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$DEMO/san.ext"
  openssl x509 -req -in "$DEMO/server.csr" -CA "$DEMO/ca.pem" -CAkey "$DEMO/ca.key" -CAcreateserial -days 30 \
    -extfile "$DEMO/san.ext" -out "$DEMO/server.pem" 2>/dev/null
fi

# The upstream token is a per-run random value: the gateway injects it, the mock requires it.
export RDS_AUTH_TOKEN="demo-token-$(openssl rand -hex 16)"
DEMO_KEY="demo-key-0123456789"   # the demo caller's API key (its sha256 is in conf/demo.json)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

build/release/tests/rds-mock --port 18443 --tls-cert "$DEMO/server.pem" --tls-key "$DEMO/server.key" \
  --config "{\"auth\":\"static\",\"static_token\":\"$RDS_AUTH_TOKEN\",\"link_lifetime_s\":900,\"expiry_field\":\"link_expired_link\"}" \
  > "$DEMO/mock.log" 2>&1 &
pids+=($!)

if [[ $CLUSTER -eq 1 ]]; then
  scripts/demo-cluster.sh "$DEMO" "$DEMO_KEY" "$ONCE"
  exit $?
fi
build/release/rds-gateway --config conf/demo.json > "$DEMO/access.log" 2> "$DEMO/gateway.log" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -sf http://127.0.0.1:8080/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
if ! curl -sf http://127.0.0.1:8080/readyz >/dev/null; then
  echo "the gateway did not become ready; its log:"; cat "$DEMO/gateway.log"; exit 1
fi

URL='http://127.0.0.1:8080/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files?backup_id=c0c9f155c7b7423a9d30f0175998b63bbr01'
echo
echo "== the mock RDS answers with the field name 'link_expired_link'; the gateway normalizes it:"
echo "\$ curl -s -H \"X-Api-Key: \$DEMO_KEY\" '$URL'"
curl -s -D "$DEMO/headers.txt" -H "X-Api-Key: $DEMO_KEY" "$URL" | python3 -m json.tool
echo
grep -iE '^(HTTP|x-cache|x-request-id|cache-control|age)' "$DEMO/headers.txt"
echo
echo "== the same request again is served from the cache:"
curl -s -o /dev/null -D - -H "X-Api-Key: $DEMO_KEY" "$URL" | grep -iE '^(HTTP|x-cache|age)'
echo
echo "== without a key:"
curl -s "$URL"; echo
echo
echo "== readiness and a few metrics (admin listener 127.0.0.1:9090):"
curl -s http://127.0.0.1:8080/readyz; echo
curl -s http://127.0.0.1:9090/metrics | grep -E '^rdsgw_(requests_total|cache_events_total|upstream_requests_total)' | head -8
echo
echo "access log: $DEMO/access.log    diagnostic log: $DEMO/gateway.log"
if [[ $ONCE -eq 1 ]]; then exit 0; fi
echo "serving on http://127.0.0.1:8080 (API key in DEMO_KEY above); Ctrl-C to stop"
wait
