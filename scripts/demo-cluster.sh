#!/usr/bin/env bash
# scripts/demo.sh --cluster: three rds-gateway instances sharing one Redis tier, in front of the mock RDS that
# demo.sh started (https://localhost:18443, its CA in $1). Shows one upstream call serving a cold burst
# spread over the three instances, a purge on one reaching the others, and what Redis holds. Called by
# demo.sh with: <demo dir> <demo API key> <once: 0|1>. Cleans up what it started.
set -euo pipefail
DEMO=$1
DEMO_KEY=$2
ONCE=$3
MOCK=https://localhost:18443
mock() { curl -s --cacert "$DEMO/ca.pem" "$@"; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

mkdir -p "$DEMO/redis"
redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no --dir "$DEMO/redis" \
  > "$DEMO/redis.log" 2>&1 &
pids+=($!)
# The shared values' encryption key (AES-256-GCM), new for each run.
RDSGW_L2_KEY=$(openssl rand -hex 32)
export RDSGW_L2_KEY
KEY_SHA=$(printf %s "$DEMO_KEY" | sha256sum | cut -d' ' -f1)
for i in 1 2 3; do
  cat > "$DEMO/cluster-$i.json" <<EOF
{"listen": {"address": "127.0.0.1", "port": 808$i, "threads": 1},
 "admin": {"address": "127.0.0.1", "port": 909$i},
 "upstream": {"base_url": "https://localhost:18443", "ca_file": "$DEMO/ca.pem"},
 "auth": {"mode": "token", "token": {"env": "RDS_AUTH_TOKEN"}},
 "callers": {"list": [{"name": "demo", "api_key_sha256": ["$KEY_SHA"], "projects": ["*"]}]},
 "response": {"link_host_suffixes": ["myhuaweicloud.com"]},
 "redis": {"enabled": true, "address": "127.0.0.1:16379", "op_timeout_ms": 200,
           "encryption_keys": [{"id": "demo", "key": {"env": "RDSGW_L2_KEY"}}]},
 "log": {"access": "$DEMO/access-$i.log", "level": "info"}}
EOF
  build/release/rds-gateway --config "$DEMO/cluster-$i.json" 2> "$DEMO/gateway-$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:909$i/readyz" 2>/dev/null | grep -q '"state":"up"'; then break; fi
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:909$i/readyz" >/dev/null || { echo "instance $i did not start:"; cat "$DEMO/gateway-$i.log"; exit 1; }
done

PROJECT=97b026aa9cc4417888c14c84a1ad9860
BACKUP="cluster$(openssl rand -hex 6)"
PATH_Q="/v3/$PROJECT/backup-files?backup_id=$BACKUP"
mock -X POST "$MOCK/_mock/config" -d '{"latency_ms":200}' >/dev/null
before=$(mock "$MOCK/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rds_requests"])')

echo
echo "== 30 concurrent callers of one cold backup, spread over three instances (the upstream takes 200 ms):"
out=$(mktemp)
for n in $(seq 1 30); do
  i=$(( (n % 3) + 1 ))
  curl -s -o /dev/null -w "instance $i: HTTP %{http_code}\n" -H "X-Api-Key: $DEMO_KEY" "http://127.0.0.1:808$i$PATH_Q" >> "$out" &
done
wait_for=$(( $(date +%s) + 20 ))
while [[ $(wc -l < "$out") -lt 30 && $(date +%s) -lt $wait_for ]]; do sleep 0.05; done
sort "$out" | uniq -c
rm -f "$out"
after=$(mock "$MOCK/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rds_requests"])')
echo "upstream calls made for them: $((after - before))"

echo
echo "== a purge on instance 1 reaches Redis and every instance; the next request anywhere goes upstream:"
curl -s -X DELETE "http://127.0.0.1:9091/admin/cache?project_id=$PROJECT&backup_id=$BACKUP"; echo
curl -s -o /dev/null -D - -H "X-Api-Key: $DEMO_KEY" "http://127.0.0.1:8082$PATH_Q" | grep -i '^x-cache'
echo "(instance 3 now finds what instance 2 just stored in Redis:)"
curl -s -o /dev/null -D - -H "X-Api-Key: $DEMO_KEY" "http://127.0.0.1:8083$PATH_Q" | grep -i '^x-cache'

echo
echo "== what Redis holds: hashed keys, AES-256-GCM sealed values (no link, file name or id):"
redis-cli -p 16379 --scan | head -4
echo
echo "logs: $DEMO/gateway-{1,2,3}.log, $DEMO/access-{1,2,3}.log"
if [[ $ONCE -eq 1 ]]; then exit 0; fi
echo "serving on http://127.0.0.1:8081 .. 8083 (API key: $DEMO_KEY); Ctrl-C to stop"
wait
