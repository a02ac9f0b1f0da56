#!/usr/bin/env bash
# rds-gateway against nginx as the equivalent caching proxy, on this machine, in one command:
#
#   scripts/bench.sh [--quick] [--threads N] [--rounds N] [--duration S] [--mock-threads N]
#                    [--access-log file|off] [--upstream-keepalive N] [--callers key|none] [--no-pin]
#                    [--build-dir DIR] [--scenarios hits,misses,burst,conns,memory,l2] [--l2-keys N]
#                    [--idle-conns N]
#
# Installs wrk and nginx (scripts/bootstrap.sh --bench), builds rds-gateway and rds-mock (Release), starts
# rds-mock (plain HTTP, loopback), the gateway and nginx with the same job (cache, stampede lock, token
# injection, upstream keep-alive), and measures, each at least 3 times with the two proxies alternating:
#   1. cache hits on one key (wrk), against the limit as well: nginx answering the same body with a static
#      `return 200` (same access log), 2. misses (a new backup_id per request; nginx without a cache),
#   3. a cold burst of 500 concurrent first requests against a 100 ms upstream (bench/benchtool.py),
#   3b. (conns) RSS per idle keep-alive connection: N connections (2000) get one cached answer each and stay
#      open,
#   4. RSS after 100,000 cached entries and the time from exec to the first /readyz 200,
#   5. (l2) the shared tier: two gateways A and B sharing a private redis-server; A fills Redis with K keys,
#      a fresh B answers them (L1 miss, L2 hit: rps, p50, p99, upstream calls), the upstream calls of the
#      K-key workload through A then B with and without Redis, and B's L1 hit path with Redis configured.
# Every request carries an API key (the gateway authenticates it, as in production; --callers none turns
# caller authentication off). Prints one markdown table (medians, ratios, targets) and writes it to
# build/bench/results.md (results-threadsN.md with --threads N > 1).
# Everything it starts is stopped on exit, error or Ctrl-C. See bench/README-bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
THREADS=1
ROUNDS=3
DURATION=10
MOCK_THREADS=1
ACCESS_LOG="file"
PIN=1
BUILD_DIR=${BENCH_BUILD_DIR:-build/release}
FILL=100000
BURST=500
CONNS=64
WRK_THREADS=2
KEEPALIVE=32
CALLERS=key
SCENARIOS=hits,misses,burst,conns,memory,l2
IDLE_CONNS=2000
L2_KEYS=""  # default: 100000, 40000 with --quick

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }
while (($#)); do
  case "$1" in
    --quick) QUICK=1; DURATION=3 ;;
    --threads) THREADS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --mock-threads) MOCK_THREADS=$2; shift ;;
    --access-log) ACCESS_LOG=$2; shift ;;
    --upstream-keepalive) KEEPALIVE=$2; shift ;;
    --callers) CALLERS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --l2-keys) L2_KEYS=$2; shift ;;
    --idle-conns) IDLE_CONNS=$2; shift ;;
    --no-pin) PIN=0 ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ $ACCESS_LOG == file || $ACCESS_LOG == off ]] || { echo "bench: --access-log is file or off" >&2; exit 2; }
[[ $CALLERS == key || $CALLERS == none ]] || { echo "bench: --callers is key or none" >&2; exit 2; }
[[ -n $L2_KEYS ]] || { ((QUICK)) && L2_KEYS=40000 || L2_KEYS=100000; }
((ROUNDS >= 1 && THREADS >= 1 && MOCK_THREADS >= 1 && L2_KEYS >= 1000)) ||
  { echo "bench: bad numbers (--l2-keys: at least 1000)" >&2; exit 2; }
for s in ${SCENARIOS//,/ }; do
  [[ $s =~ ^(hits|misses|burst|conns|memory|l2)$ ]] || { echo "bench: unknown scenario $s" >&2; exit 2; }
done
# The memory fill is the slowest part: 3 rounds normally, 1 with --quick.
MEM_ROUNDS=$ROUNDS
((QUICK)) && MEM_ROUNDS=1

log() { printf '== %s\n' "$*" >&2; }
want() { [[ ,$SCENARIOS, == *,$1,* ]]; }  # want SCENARIO: was it asked for (--scenarios)?

# ---------------------------------------------------------------- dependencies and build
scripts/bootstrap.sh --bench
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
log "building rds-gateway and rds-mock (Release) in $BUILD_DIR"
mkdir -p "$BUILD_DIR"
BUILD_LOG=$BUILD_DIR/bench-build.log
if ! { cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release &&
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target rds-gateway rds-mock; } >"$BUILD_LOG" 2>&1; then
  tail -n 40 "$BUILD_LOG" >&2
  echo "bench: the build failed (whole log: $BUILD_LOG)" >&2
  exit 1
fi
tail -n 1 "$BUILD_LOG"
GW_BIN=$ROOT/$BUILD_DIR/rds-gateway
MOCK_BIN=$ROOT/$BUILD_DIR/tests/rds-mock
[[ $BUILD_DIR == /* ]] && GW_BIN=$BUILD_DIR/rds-gateway MOCK_BIN=$BUILD_DIR/tests/rds-mock
TOOL=(python3 "$ROOT/bench/benchtool.py")

# ---------------------------------------------------------------- processes and cleanup
TMP=$(mktemp -d /tmp/rdsgw-bench.XXXXXX)
# nginx's cache files go to a tmpfs when there is one: 100,000 small files on a slow shared disk make
# nginx's fills (and removing them) take minutes, and would measure the disk rather than nginx.
CACHE_DIR=$TMP/nginx-cache
SHM_DIR=""
if [[ -d /dev/shm && -w /dev/shm ]] && SHM_DIR=$(mktemp -d /dev/shm/rdsgw-bench.XXXXXX 2>/dev/null); then
  CACHE_DIR=$SHM_DIR/nginx-cache
fi
OUT_DIR=$ROOT/build/bench
mkdir -p "$OUT_DIR"
MOCK_PID="" GW_PID="" NG_PID="" L2A_PID="" REDIS_PID=""
stop_pid() {  # stop_pid PID: SIGTERM, then wait for it
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "${WRK_PID:-}"; stop_pid "$GW_PID"; stop_pid "$L2A_PID"; stop_pid "$NG_PID"; stop_pid "$MOCK_PID"
  stop_pid "$REDIS_PID"
  [[ -n $SHM_DIR ]] && rm -rf "$SHM_DIR"
  if ((rc == 0)); then rm -rf "$TMP"; else echo "bench: logs kept in $TMP" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
# A command that stops the script (set -e) names itself, with its line, in functions too (-E).
set -E
trap 'echo "bench: failed (exit status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# CPU placement: the proxy under test alone on its CPU(s), load generator and mock on the others, so
# that neither proxy competes with wrk or the mock for its core. Needs more CPUs than proxy threads.
NCPU=$(nproc)
PROXY_PIN=() LOAD_PIN=()
PIN_NOTE="none (--no-pin)"
if ((PIN)); then
  if ((NCPU > THREADS)); then
    PROXY_PIN=(taskset -c "0-$((THREADS - 1))")
    LOAD_PIN=(taskset -c "$THREADS-$((NCPU - 1))")
    PIN_NOTE="gateway/nginx on CPU 0-$((THREADS - 1)); wrk, rds-mock and the burst client on CPU $THREADS-$((NCPU - 1))"
  else
    PIN_NOTE="none ($NCPU CPUs are not enough to give $THREADS proxy threads their own CPUs)"
  fi
fi

read -r GW_PORT GW_ADMIN NG_PORT NG_NC_PORT NG_STATIC_PORT MOCK_PORT REDIS_PORT L2A_PORT L2A_ADMIN < <("${TOOL[@]}" ports 9)
RDS_AUTH_TOKEN="bench-token-$(openssl rand -hex 16)"
export RDS_AUTH_TOKEN
# The callers' API key: every request to every peer carries it (nginx ignores it), so all read the same bytes.
API_KEY="bench-key-$(openssl rand -hex 16)"
API_KEY_SHA=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
KEY_HDR=(-H "X-Api-Key: $API_KEY")
PROJECT=97b026aa9cc4417888c14c84a1ad9860
MOCK_BASE="{\"auth\":\"static\",\"static_token\":\"$RDS_AUTH_TOKEN\"}"
new_backup_id() { echo "$(openssl rand -hex 16)br01"; }
new_nonce() { echo $((RANDOM * 32768 + RANDOM)); }
bpath() { echo "/v3/$PROJECT/backup-files?backup_id=$1"; }

wait_http() {  # wait_http URL [tries]: until the URL answers 200
  local url=$1 tries=${2:-200}
  for _ in $(seq 1 "$tries"); do
    curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null | grep -q '^200$' && return 0
    sleep 0.05
  done
  echo "bench: $url never answered 200" >&2
  return 1
}
mock_post() {  # mock_post PATH JSON
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$MOCK_PORT$1"
}
mock_reset() {  # zero the counters (and the mock's per-backup table), then restore the base behaviour
  mock_post /_mock/reset '{}'
  mock_post /_mock/config "${1:-$MOCK_BASE}"
}
x_cache() {  # x_cache URL: the X-Cache header of a GET with the API key
  curl -s -o /dev/null -D - "${KEY_HDR[@]}" "$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}'
}
mock_stat() {
  curl -sf "http://127.0.0.1:$MOCK_PORT/_mock/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}
rss_kb() {  # rss_kb PID...: summed VmRSS
  local total=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
# shellcheck disable=SC2046  # one word per pid is the point
nginx_pids() { echo "$NG_PID" $(pgrep -P "$NG_PID" || true); }
cpu_ticks() {  # cpu_ticks PID...: summed user+system CPU time in clock ticks (all threads)
  local total=0 v
  for p in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
peer_pids() {
  case "$1" in
    gateway) echo "$GW_PID" ;;
    nginx | static) nginx_pids ;;
    mock) echo "$MOCK_PID" ;;
  esac
}
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- configurations
GW_ACCESS=off NG_ACCESS="access_log off;"
if [[ $ACCESS_LOG == file ]]; then
  GW_ACCESS=$TMP/gateway-access.log
  NG_ACCESS="access_log $TMP/nginx-access.log bench;"
fi
GW_CALLERS='{"required": false, "list": []}'
[[ $CALLERS == key ]] && GW_CALLERS="{\"required\": true, \"list\": [{\"name\": \"bench\", \"api_key_sha256\": [\"$API_KEY_SHA\"], \"projects\": [\"*\"], \"rate_per_s\": 10000000, \"burst\": 10000000}]}"
write_gw_config() {  # write_gw_config FILE PORT ADMIN_PORT [REDIS_BLOCK]: the bench gateway's config
  local redis_line=""
  [[ -n ${4:-} ]] && redis_line="\"redis\": $4,"
  cat >"$1" <<EOF
{
  "listen": {"address": "127.0.0.1", "port": $2, "threads": $THREADS},
  "admin": {"enabled": true, "address": "127.0.0.1", "port": $3},
  "upstream": {"base_url": "http://127.0.0.1:$MOCK_PORT", "pool_size": $KEEPALIVE},
  "auth": {"mode": "token", "token": {"env": "RDS_AUTH_TOKEN"}},
  "cache": {"enabled": true, "max_entries": $FILL},
  "callers": $GW_CALLERS,
  "limits": {"drain_timeout_ms": 2000},
  $redis_line
  "log": {"access": "$GW_ACCESS", "level": "warn"}
}
EOF
}
write_gw_config "$TMP/gateway.json" "$GW_PORT" "$GW_ADMIN"
USER_LINE=""
(($(id -u) == 0)) && USER_LINE="user root;"
# nginx.conf is written once the gateway is up: its static responder answers with the gateway's hit body.
write_nginx_conf() {  # write_nginx_conf BODY_FILE
  sed -e "s|@TMP@|$TMP|g" -e "s|@CACHE_DIR@|$CACHE_DIR|g" -e "s|@WORKERS@|$THREADS|g" -e "s|@MOCK_PORT@|$MOCK_PORT|g" -e "s|@KEEPALIVE@|$KEEPALIVE|g" \
    -e "s|@PORT_CACHE@|$NG_PORT|g" -e "s|@PORT_NOCACHE@|$NG_NC_PORT|g" -e "s|@PORT_STATIC@|$NG_STATIC_PORT|g" -e "s|@TOKEN@|$RDS_AUTH_TOKEN|g" \
    -e "s|@USER_LINE@|$USER_LINE|" -e "s|@ACCESS_LOG_LINE@|$NG_ACCESS|" bench/nginx.conf.in >"$TMP/nginx.conf.tmp"
  # The body goes in as an nginx string literal ('...' with \ and ' escaped); a '$' would be read as a variable.
  python3 - "$TMP/nginx.conf.tmp" "$1" "$TMP/nginx.conf" <<'PY'
import sys
conf, body = open(sys.argv[1]).read(), open(sys.argv[2]).read()
if "$" in body:
    sys.exit("bench: the hit body contains '$', which nginx's return would expand")
lit = "'" + body.replace("\\", "\\\\").replace("'", "\\'") + "'"
open(sys.argv[3], "w").write(conf.replace("@STATIC_BODY@", lit))
PY
  "$NGINX" -t -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" 2>"$TMP/nginx-t.log" ||
    { cat "$TMP/nginx-t.log" >&2; exit 1; }
}
GW_CMD=("${PROXY_PIN[@]}" "$GW_BIN" --config "$TMP/gateway.json")
NG_CMD=("${PROXY_PIN[@]}" "$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log")

start_mock() {
  "${LOAD_PIN[@]}" "$MOCK_BIN" --listen 127.0.0.1 --port "$MOCK_PORT" --threads "$MOCK_THREADS" \
    --config "$MOCK_BASE" >"$TMP/mock.log" 2>&1 &
  MOCK_PID=$!
  wait_http "http://127.0.0.1:$MOCK_PORT/_mock/stats"
}
start_gateway() {  # start_gateway [CONFIG]: the gateway under test (GW_PID) on GW_PORT, default config
  "${PROXY_PIN[@]}" "$GW_BIN" --config "${1:-$TMP/gateway.json}" >/dev/null 2>>"$TMP/gateway.log" &
  GW_PID=$!
  wait_http "http://127.0.0.1:$GW_PORT/readyz" || { tail -20 "$TMP/gateway.log" >&2; return 1; }
}
stop_gateway() { stop_pid "$GW_PID"; GW_PID=""; }
start_nginx() {
  rm -rf "$CACHE_DIR"
  "${NG_CMD[@]}" 2>>"$TMP/nginx-error.log" &
  NG_PID=$!
  wait_http "http://127.0.0.1:$NG_PORT/readyz" || { tail -20 "$TMP/nginx-error.log" >&2; return 1; }
}
stop_nginx() { stop_pid "$NG_PID"; NG_PID=""; }

check_alive() {  # check_alive NAME PID: fail loudly when a process under test has died
  local name=$1 pid=$2 rc=0
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null && return 0
  wait "$pid" 2>/dev/null || rc=$?
  echo "bench: $name (pid $pid) died, exit status $rc$( ((rc > 128)) && echo " (signal $((rc - 128)))")" >&2
  exit 1
}
alive() { check_alive rds-mock "$MOCK_PID"; check_alive rds-gateway "$GW_PID"; check_alive nginx "$NG_PID"; }

port_of() {  # port_of PEER SCENARIO
  case "$1" in
    gateway) echo "$GW_PORT" ;;
    nginx) [[ $2 == misses ]] && echo "$NG_NC_PORT" || echo "$NG_PORT" ;;
    static) echo "$NG_STATIC_PORT" ;;
    mock) echo "$MOCK_PORT" ;;
  esac
}
order() { (($1 % 2)) && echo "gateway nginx" || echo "nginx gateway"; }  # alternate who goes first
order3() {  # gateway, nginx and the static responder: each goes first in turn
  case $(($1 % 3)) in 1) echo "gateway nginx static" ;; 2) echo "nginx static gateway" ;; *) echo "static gateway nginx" ;; esac
}

RESULTS=$TMP/results.tsv
NOTES=$TMP/notes.txt
: >"$RESULTS"
: >"$NOTES"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
note() { echo "- $*" >>"$NOTES"; echo "bench: $*" >&2; }

truncate_logs() {  # the access logs grow by ~1 GB in a full run; both writers append (O_APPEND)
  [[ $ACCESS_LOG == file ]] || return 0
  : >"$TMP/gateway-access.log"
  : >"$TMP/nginx-access.log"
}

WRK_PID=""
wrk_until_markers() {  # wrk_until_markers OUT MARKER COMMAND...: run the wrk COMMAND (output to OUT) until
  # each of its $WRK_THREADS threads has created the file MARKER<thread> (the scripts' early stop: wrk itself
  # would wait out its -d), or until it ends by itself; then stop it with SIGINT (it prints its summary).
  local out=$1 marker=$2 rc=0 m=()
  shift 2
  "$@" >"$out" 2>&1 &
  WRK_PID=$!
  while kill -0 "$WRK_PID" 2>/dev/null; do
    shopt -s nullglob
    m=("$marker"*)
    shopt -u nullglob
    ((${#m[@]} >= WRK_THREADS)) && break
    sleep 0.02
  done
  kill -INT "$WRK_PID" 2>/dev/null || true
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  return "$rc"
}

LAST_WRK_OUT=""
run_wrk() {  # run_wrk SCENARIO PEER URL [wrk options...] [-- script args...] -> records rps and p99
  # With RUN_WRK_MARKER set, wrk stops early when its script's threads are done (wrk_until_markers).
  local scen=$1 peer=$2 url=$3 out opts=() sargs=() cmd
  shift 3
  while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
  (($#)) && sargs=("$@")  # starts with "--"
  out=$TMP/wrk-${scen%% *}-$peer-$(date +%s%N).txt
  LAST_WRK_OUT=$out
  local pids t0 c0 c1 t1 m0 m1
  pids=$(peer_pids "$peer")
  cmd=("${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${KEY_HDR[@]}" "${opts[@]}" "$url"
    "${sargs[@]}")
  c0=$(cpu_ticks $pids) m0=$(cpu_ticks "$MOCK_PID") t0=$(date +%s%N)
  if [[ -n ${RUN_WRK_MARKER:-} ]]; then
    wrk_until_markers "$out" "$RUN_WRK_MARKER" "${cmd[@]}" || { cat "$out" >&2; return 1; }
  else
    "${cmd[@]}" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
  fi
  c1=$(cpu_ticks $pids) m1=$(cpu_ticks "$MOCK_PID") t1=$(date +%s%N)
  truncate_logs
  local rps p99 non2xx errs total busy per_req p50
  read -r rps p99 non2xx errs total p50 < <("${TOOL[@]}" wrk "$out")
  # CPU the server used during the run: how busy it was (100% = one CPU) and its cost per request,
  # which stays comparable even when the load side, not the proxy, limits the rate.
  busy=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN {printf "%.1f", 100 * c / hz / (ns / 1e9)}')
  per_req=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$total" 'BEGIN {printf "%.2f", (n > 0 ? 1e6 * c / hz / n : 0)}')
  record "$scen" rps "$peer" "$rps"
  [[ $scen == l2* ]] && record "$scen" p50 "$peer" "$p50"
  record "$scen" p99 "$peer" "$p99"
  if [[ $peer == mock ]]; then
    record "$scen" "mock CPU busy" "$peer" "$busy"
  else
    record "$scen" "proxy CPU busy" "$peer" "$busy"
    record "$scen" "CPU per request" "$peer" "$per_req"
    [[ $scen == misses ]] && record "$scen" "mock CPU busy" "$peer" \
      "$(awk -v c=$((m1 - m0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN {printf "%.1f", 100 * c / hz / (ns / 1e9)}')"
  fi
  printf '   %-8s %-7s %10s rps   p99 %8s ms   CPU %6s%%  %6s us/req\n' "${scen%% *}" "$peer" "$rps" "$p99" \
    "$busy" "$per_req" >&2
  ((non2xx == 0)) || note "$scen/$peer: $non2xx answers were not 2xx (run $out)"
  ((errs == 0)) || note "$scen/$peer: $errs socket errors (run $out)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "ports: gateway $GW_PORT (admin $GW_ADMIN), nginx $NG_PORT (no cache: $NG_NC_PORT), mock $MOCK_PORT"
log "pinning: $PIN_NOTE; access log: $ACCESS_LOG for both; load average now $LOAD_BEFORE"
start_mock
start_gateway
HIT_ID=$(new_backup_id)
HIT_PATH=$(bpath "$HIT_ID")
# The static responder's body: the gateway's own answer for the hits' URL (its first request fills the cache).
curl -sf "${KEY_HDR[@]}" -o "$TMP/static-body.json" "http://127.0.0.1:$GW_PORT$HIT_PATH" ||
  { echo "bench: the gateway did not answer the hits' URL" >&2; exit 1; }
write_nginx_conf "$TMP/static-body.json"
start_nginx

# ---------------------------------------------------------------- 1. hits on one key
for peer in gateway nginx static; do
  url="http://127.0.0.1:$(port_of "$peer" hits)$HIT_PATH"
  code=$(curl -s -o /dev/null -w '%{http_code}' "${KEY_HDR[@]}" "$url")
  [[ $code == 200 ]] || { echo "bench: warm-up request to $peer answered $code" >&2; exit 1; }
  [[ $peer == static ]] && continue
  cache=$(x_cache "$url")
  [[ $cache == HIT ]] || note "hits/$peer: the second request said X-Cache: ${cache:-none}, not HIT"
done
cmp -s "$TMP/static-body.json" <(curl -s "${KEY_HDR[@]}" "http://127.0.0.1:$NG_STATIC_PORT$HIT_PATH") ||
  note "hits/static: nginx's static body differs from the gateway's"
want hits && log "1. cache hits: wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, one URL, $ROUNDS rounds (static: nginx return 200, same body)"
want hits && for r in $(seq 1 "$ROUNDS"); do
  for peer in $(order3 "$r"); do run_wrk "hits (1 key)" "$peer" "http://127.0.0.1:$(port_of "$peer" hits)$HIT_PATH"; done
done

# ---------------------------------------------------------------- 2. misses
alive
want misses && log "2. misses: a new backup_id per request (nginx: the server block without a cache), $ROUNDS rounds"
want misses && for r in $(seq 1 "$ROUNDS"); do
  for peer in $(order "$r") mock; do
    alive
    mock_reset  # frees the mock's per-backup table, which grows by one entry per request here
    extra=()
    [[ $peer == mock ]] && extra=(-H "X-Auth-Token: $RDS_AUTH_TOKEN")
    # The mock itself, straight from wrk: the ceiling of the load side (wrk + mock on their CPUs).
    run_wrk misses "$peer" "http://127.0.0.1:$(port_of "$peer" misses)" "${extra[@]}" -s bench/misses.lua \
      -- "$PROJECT" "$(new_nonce)"
    # New upstream connections during the run (the mock counts accepts since the reset).
    [[ $peer == mock ]] || record misses "upstream connections opened" "$peer" "$(mock_stat connections)"
  done
done
# Mock rows are references, not a competitor.
sed -i 's/^misses\t\([^\t]*\)\tmock\t/misses (mock alone, no proxy)\t\1\tmock\t/' "$RESULTS"

# ---------------------------------------------------------------- 3. cold burst
alive
want burst && log "3. cold burst: $BURST concurrent first requests for one new key, upstream latency 100 ms, $ROUNDS rounds"
want burst && for r in $(seq 1 "$ROUNDS"); do
  for peer in $(order "$r") mock; do
    alive
    mock_reset "{\"auth\":\"static\",\"static_token\":\"$RDS_AUTH_TOKEN\",\"latency_ms\":100}"
    hdr=()
    [[ $peer == mock ]] && hdr=(--header "X-Auth-Token: $RDS_AUTH_TOKEN")
    hdr+=(--header "X-Api-Key: $API_KEY")
    json=$("${LOAD_PIN[@]}" "${TOOL[@]}" burst --port "$(port_of "$peer" burst)" --path "$(bpath "$(new_backup_id)")" \
      -n "$BURST" "${hdr[@]}") || note "cold burst/$peer: not every request got 200: $json"
    [[ $json == "{"* ]] || { echo "bench: the burst client failed against $peer" >&2; alive; exit 1; }
    calls=$(mock_stat rds_requests)
    read -r p50 p99 < <(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get('p50_ms',-1), d.get('p99_ms',-1))" "$json")
    if [[ $peer == mock ]]; then
      record "cold burst (mock alone, every request 100 ms)" "p99 (client floor)" mock "$p99"
    else
      record "cold burst" "upstream calls" "$peer" "$calls"
      record "cold burst" p50 "$peer" "$p50"
      record "cold burst" p99 "$peer" "$p99"
    fi
    printf '   burst    %-7s upstream calls %4s   p50 %8s ms   p99 %8s ms\n' "$peer" "$calls" "$p50" "$p99" >&2
  done
done
mock_reset

# ---------------------------------------------------------------- 3b. idle connections
alive
want conns && log "3b. RSS per idle keep-alive connection: $IDLE_CONNS connections, one cached answer each (fresh process each round, $ROUNDS rounds)"
want conns && for r in $(seq 1 "$ROUNDS"); do
  for peer in $(order "$r"); do
    alive
    # A fresh process each round: memory a process freed stays in its RSS and would be reused by the next
    # round's connections.
    pid_args=()
    if [[ $peer == gateway ]]; then
      stop_gateway
      start_gateway
      pid_args=(--pid "$GW_PID")
    else
      stop_nginx
      start_nginx
      for p in $(nginx_pids); do pid_args+=(--pid "$p"); done
    fi
    json=$("${LOAD_PIN[@]}" "${TOOL[@]}" idle --port "$(port_of "$peer" hits)" --path "$HIT_PATH" -n "$IDLE_CONNS" \
      --header "X-Api-Key: $API_KEY" "${pid_args[@]}") || note "idle connections/$peer: not every request got 200: $json"
    [[ $json == "{"* ]] || { echo "bench: the idle-connection client failed against $peer" >&2; alive; exit 1; }
    per=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['bytes_per_conn'])" "$json")
    record "idle connections" "RSS per idle connection (bytes)" "$peer" "$per"
    printf '   idle     %-7s %8s bytes per connection\n' "$peer" "$per" >&2
  done
done

# ---------------------------------------------------------------- 4. memory and start-up
alive
want memory && log "4a. start to first /readyz 200 (fresh process each time)"
stop_gateway
stop_nginx
READY_ROUNDS=$((ROUNDS < 5 ? 5 : ROUNDS))
want memory && for r in $(seq 1 "$READY_ROUNDS"); do
  for peer in $(order "$r"); do
    if [[ $peer == gateway ]]; then
      ms=$("${LOAD_PIN[@]}" "${TOOL[@]}" ready --port "$GW_PORT" --path /readyz --log "$TMP/gateway.log" -- "${GW_CMD[@]}")
    else
      rm -rf "$CACHE_DIR"
      ms=$("${LOAD_PIN[@]}" "${TOOL[@]}" ready --port "$NG_PORT" --path /readyz --log "$TMP/nginx-error.log" -- "${NG_CMD[@]}")
    fi
    record memory "start to /readyz 200" "$peer" "$ms"
    printf '   ready    %-7s %8s ms\n' "$peer" "$ms" >&2
  done
done

want memory && log "4b. RSS after $FILL distinct cached entries (fresh process each round, $MEM_ROUNDS rounds)"
PER_THREAD=$(((FILL + WRK_THREADS - 1) / WRK_THREADS))
fill() {  # fill PORT: $FILL distinct misses through the proxy
  local out marker
  out=$TMP/fill-$1-$(date +%s%N).txt
  marker=$TMP/fill-done-$(date +%s%N)-
  # Each wrk thread stops after its share and leaves a marker file.
  wrk_until_markers "$out" "$marker" "${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d300s "${KEY_HDR[@]}" \
    -s bench/misses.lua "http://127.0.0.1:$1" -- "$PROJECT" "$(new_nonce)" "$PER_THREAD" "$marker" ||
    { cat "$out" >&2; return 1; }
  local non2xx
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  [[ -z $non2xx ]] || note "fill on port $1: $non2xx answers were not 2xx"
  awk '/requests in/ {print "   fill: " $0}' "$out" >&2
  truncate_logs
}
want memory && for r in $(seq 1 "$MEM_ROUNDS"); do
  for peer in $(order "$r"); do
    mock_reset
    if [[ $peer == gateway ]]; then
      start_gateway
      idle=$(rss_kb "$GW_PID")
      fill "$GW_PORT"
      entries=$(curl -s "http://127.0.0.1:$GW_ADMIN/metrics" | awk '/^rdsgw_cache_entries/ {print $2}')
      cbytes=$(curl -s "http://127.0.0.1:$GW_ADMIN/metrics" | awk '/^rdsgw_cache_bytes/ {print $2}')
      full=$(rss_kb "$GW_PID")
      [[ ${entries%.*} -ge $FILL ]] || note "memory/gateway: only ${entries} cache entries after the fill"
      record memory "RSS at 100k entries" gateway "$(echo "$full" | awk '{printf "%.1f", $1/1024}')"
      record memory "RSS idle (before the fill)" gateway "$(echo "$idle" | awk '{printf "%.1f", $1/1024}')"
      record memory "cache bytes (gateway's own accounting)" gateway "$(echo "${cbytes:-0}" | awk '{printf "%.1f", $1/1048576}')"
      record memory "RSS growth per cached entry (bytes)" gateway "$(awk -v f="$full" -v i="$idle" -v n="${entries%.*}" 'BEGIN {printf "%.0f", (n > 0 ? (f - i) * 1024 / n : 0)}')"
      printf '   memory   gateway idle %s kB, after fill %s kB, %s entries, %s cache bytes\n' "$idle" "$full" "$entries" "$cbytes" >&2
      stop_gateway
    else
      start_nginx
      # shellcheck disable=SC2046
      idle=$(rss_kb $(nginx_pids))
      fill "$NG_PORT"
      # shellcheck disable=SC2046
      full=$(rss_kb $(nginx_pids))
      disk=$(du -sk "$CACHE_DIR" | cut -f1)
      files=$(find "$CACHE_DIR" -type f | wc -l)
      record memory "RSS at 100k entries" nginx "$(echo "$full" | awk '{printf "%.1f", $1/1024}')"
      record memory "RSS idle (before the fill)" nginx "$(echo "$idle" | awk '{printf "%.1f", $1/1024}')"
      record memory "cache files (MB; nginx keeps bodies in files, not in RSS)" nginx "$(echo "$disk" | awk '{printf "%.1f", $1/1024}')"
      printf '   memory   nginx   idle %s kB, after fill %s kB (processes: %s), %s cache files, %s kB in them\n' \
        "$idle" "$full" "$(nginx_pids)" "$files" "$disk" >&2
      stop_nginx
    fi
  done
done

# ---------------------------------------------------------------- 5. the shared tier (Redis L2)
# Two gateways share a private redis-server: A (on the load side's CPUs) fills Redis with K keys, then B (the
# instance under test, pinned like the gateway above), restarted each round so its L1 is cold, answers the
# same keys, each at most once per round (bench/l2.lua): every answer an L1 miss and an L2 hit.
L2_SCEN="l2 hits (cold L1, each key once)"
L2_HITS_SCEN="hits (1 key), Redis configured"
L2_CALLS_SCEN="l2 upstream calls (K keys via A, then B)"
L2_NONCE="" L2_FILL_STARTED=0 L2_FILL_CALLS=0
start_redis() {
  mkdir -p "$TMP/redis"
  "${LOAD_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP/redis" \
    >"$TMP/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 200); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.05
  done
  tail -20 "$TMP/redis.log" >&2
  echo "bench: redis-server on port $REDIS_PORT never answered PING" >&2
  return 1
}
metric_sum() {  # metric_sum ADMIN_PORT REGEX: the sum of the /metrics samples whose name{labels} match REGEX
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v re="$2" '$1 ~ re {s += $2} END {printf "%d\n", s}'
}
wait_redis_up() {  # wait_redis_up ADMIN_PORT: until the instance's shared tier is connected (rdsgw_redis_up 1)
  for _ in $(seq 1 200); do
    [[ $(metric_sum "$1" '^rdsgw_redis_up$') == 1 ]] && return 0
    sleep 0.05
  done
  echo "bench: the gateway with admin port $1 never connected to Redis (rdsgw_redis_up)" >&2
  return 1
}
start_l2a() {  # start_l2a CONFIG: instance A, on the proxy's CPUs (it fills while B is down, idles while B runs)
  "${PROXY_PIN[@]}" "$GW_BIN" --config "$1" >/dev/null 2>>"$TMP/gateway-a.log" &
  L2A_PID=$!
  wait_http "http://127.0.0.1:$L2A_PORT/readyz" || { tail -20 "$TMP/gateway-a.log" >&2; return 1; }
}
alive_l2() { check_alive redis-server "$REDIS_PID"; check_alive "rds-gateway A" "$L2A_PID"; alive; }
settle_calls() {  # the mock's rds_requests once it stops moving (abandoned requests' fetches still land)
  local prev=-1 cur same=0
  for _ in $(seq 1 100); do
    cur=$(mock_stat rds_requests)
    if [[ $cur == "$prev" ]]; then ((++same >= 3)) && break; else same=0; fi
    prev=$cur
    sleep 0.1
  done
  echo "$cur"
}
l2_pass() {  # l2_pass PORT NONCE: each of the K keys of NONCE asked once through the gateway on PORT
  local out marker non2xx sent
  out=$TMP/l2-pass-$1-$(date +%s%N).txt
  marker=$TMP/l2-pass-done-$(date +%s%N)-
  wrk_until_markers "$out" "$marker" "${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d600s "${KEY_HDR[@]}" \
    -s bench/l2.lua "http://127.0.0.1:$1" -- "$PROJECT" "$2" "$L2_KEYS" "$WRK_THREADS" "$marker" ||
    { cat "$out" >&2; return 1; }
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  [[ -z $non2xx ]] || note "l2 pass on port $1: $non2xx answers were not 2xx"
  sent=$(awk '/^BENCH l2/ {print $4}' "$out")
  [[ ${sent:-0} -ge $L2_KEYS ]] || note "l2 pass on port $1: only ${sent:-0} of $L2_KEYS keys asked (run $out)"
  awk '/requests in/ {print "   pass:" $0} /^BENCH l2/ {print "   pass: " $0}' "$out" >&2
  truncate_logs
}
wait_puts() {  # wait_puts ADMIN_PORT N: until the instance has finished N Redis stores (its fetches' answers)
  # A store's first EVALSHA on a connection answers NOSCRIPT and is sent again with the script: not counted.
  local done=0 failed
  for _ in $(seq 1 600); do
    done=$(metric_sum "$1" '^rdsgw_redis_operations_total[{].*op="l2_put",result="[^n]')
    ((done >= $2)) && break
    sleep 0.05
  done
  ((done >= $2)) || note "l2: only $done of $2 answers were stored in Redis within 30 s"
  failed=$(curl -sf "http://127.0.0.1:$1/metrics" | awk '/^rdsgw_redis_operations_total[{].*op="l2_put"/ &&
    !/result="(ok|noscript)"/ && $2 > 0 {
      match($1, /result="[^"]*"/); printf "%s%s %d", sep, substr($1, RSTART + 8, RLENGTH - 9), $2; sep = ", "}')
  [[ -z $failed ]] || note "l2: Redis stores that failed during A's fill: $failed (those keys miss in Redis)"
}
l2_fill() {  # l2_fill: K new keys through A (a fresh nonce): Redis holds them all when it returns
  L2_NONCE=$(new_nonce)
  L2_FILL_STARTED=$SECONDS
  mock_reset
  l2_pass "$L2A_PORT" "$L2_NONCE"
  L2_FILL_CALLS=$(settle_calls)
  wait_puts "$L2A_ADMIN" "$(metric_sum "$L2A_ADMIN" '^rdsgw_cache_events_total[{]event="miss"[}]$')"
  local values
  values=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'rdsgw:*:v' | wc -l)
  ((values >= L2_KEYS)) || note "l2: Redis holds $values values after A's fill of $L2_KEYS keys"
  printf '   fill     A: %s upstream calls for %s keys in %s s; Redis: %s values, %s\n' "$L2_FILL_CALLS" "$L2_KEYS" \
    "$((SECONDS - L2_FILL_STARTED))" "$values" \
    "$(redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | awk -F: '$1 == "used_memory_human" {print $2}')" >&2
}
l2_fresh_enough() {  # l2_fresh_enough SECONDS: will A's fill still be in Redis (TTL 300 s) that long from now?
  ((SECONDS - L2_FILL_STARTED + $1 <= 270))
}
l2_round() {  # l2_round R: a fresh B answers the filled keys (L2 hits), then its L1 hit path on one key
  local r=$1 marker calls hits total sent repeats xc
  if ! l2_fresh_enough $((DURATION + 20)); then l2_fill; fi
  start_gateway "$TMP/gateway-l2b.json"
  wait_redis_up "$GW_ADMIN"
  mock_reset
  marker=$TMP/l2-done-$r-$(date +%s%N)-
  RUN_WRK_MARKER=$marker run_wrk "$L2_SCEN" gateway "http://127.0.0.1:$GW_PORT" -s bench/l2.lua \
    -- "$PROJECT" "$L2_NONCE" "$L2_KEYS" "$WRK_THREADS" "$marker"
  calls=$(settle_calls)
  hits=$(metric_sum "$GW_ADMIN" '^rdsgw_cache_events_total[{]event="l2_hit"[}]$')
  total=$("${TOOL[@]}" wrk "$LAST_WRK_OUT" | cut -d' ' -f5)
  read -r sent repeats xc < <(awk '/^BENCH l2/ {print $4, $6, "HIT", $8, "MISS", $10, "COALESCED", $12, "other", $14}' \
    "$LAST_WRK_OUT") || true
  record "$L2_SCEN" "upstream calls" gateway "$calls"
  record "$L2_SCEN" "L2 hits (rdsgw_cache_events_total l2_hit)" gateway "$hits"
  record "$L2_SCEN" "L2 hits per answer" gateway "$(awk -v h="$hits" -v n="$total" 'BEGIN {printf "%.4f", (n > 0 ? h / n : 0)}')"
  printf '   l2       B: %s answers, %s L2 hits (metrics), X-Cache: %s; %s upstream calls; %s of %s keys asked, %s repeats\n' \
    "$total" "$hits" "$xc" "$calls" "$sent" "$L2_KEYS" "$repeats" >&2
  ((sent < L2_KEYS)) || note "$L2_SCEN, round $r: every one of the $L2_KEYS keys was asked before -d ended (the round was shorter; --l2-keys makes it longer)"
  l2_l1_hits
  stop_gateway
}
l2_l1_hits() {  # B is warm: its L1 hit path on the hits' URL, with the same wrk settings as the hits rows
  local url="http://127.0.0.1:$GW_PORT$HIT_PATH" cache
  curl -sf -o /dev/null "${KEY_HDR[@]}" "$url" || { echo "bench: instance B did not answer the hits' URL" >&2; exit 1; }
  cache=$(x_cache "$url")
  [[ $cache == HIT ]] || note "$L2_HITS_SCEN: the second request said X-Cache: ${cache:-none}, not HIT"
  run_wrk "$L2_HITS_SCEN" gateway "$url"
}
l2_upstream_calls() {  # the K-key workload through A, then B: upstream calls with and without Redis
  local b_calls without nonce
  # With Redis: A's fill (fresh enough for B's whole pass) plus a fresh B asking every key once.
  if ! l2_fresh_enough 120; then l2_fill; fi
  start_gateway "$TMP/gateway-l2b.json"
  wait_redis_up "$GW_ADMIN"
  mock_reset
  l2_pass "$GW_PORT" "$L2_NONCE"
  b_calls=$(settle_calls)
  stop_gateway
  stop_pid "$L2A_PID"
  L2A_PID=""
  # Without Redis: the same two instances without the redis block, new keys.
  start_l2a "$TMP/gateway-l1a.json"
  start_gateway
  mock_reset
  nonce=$(new_nonce)
  l2_pass "$L2A_PORT" "$nonce"
  l2_pass "$GW_PORT" "$nonce"
  without=$(settle_calls)
  stop_gateway
  stop_pid "$L2A_PID"
  L2A_PID=""
  record "$L2_CALLS_SCEN" "keys (K)" gateway "$L2_KEYS"
  record "$L2_CALLS_SCEN" "with Redis" gateway "$((L2_FILL_CALLS + b_calls))"
  record "$L2_CALLS_SCEN" "without Redis" gateway "$without"
  printf '   calls    K = %s: with Redis %s (A %s + B %s), without Redis %s\n' "$L2_KEYS" \
    "$((L2_FILL_CALLS + b_calls))" "$L2_FILL_CALLS" "$b_calls" "$without" >&2
}

alive
if want l2; then
  log "5. shared tier (Redis L2): A fills $L2_KEYS keys, a fresh B answers them (wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, each key once), $ROUNDS rounds"
  RDSGW_L2_KEY=$(openssl rand -hex 32)
  export RDSGW_L2_KEY
  l2_block() {  # l2_block OP_TIMEOUT_MS: the redis block of A and B
    echo "{\"enabled\": true, \"address\": \"127.0.0.1:$REDIS_PORT\", \"op_timeout_ms\": $1, \"encryption_keys\": [{\"id\": \"bench\", \"key\": {\"env\": \"RDSGW_L2_KEY\"}}]}"
  }
  # B, measured: 50 ms per Redis operation (loopback). A only fills: 1 s, so that a busy machine does not
  # time its stores out (a missing value would send B upstream, a lock left behind would make B wait).
  write_gw_config "$TMP/gateway-l2a.json" "$L2A_PORT" "$L2A_ADMIN" "$(l2_block 1000)"
  write_gw_config "$TMP/gateway-l2b.json" "$GW_PORT" "$GW_ADMIN" "$(l2_block 50)"
  write_gw_config "$TMP/gateway-l1a.json" "$L2A_PORT" "$L2A_ADMIN"
  start_redis
  start_l2a "$TMP/gateway-l2a.json"
  wait_redis_up "$L2A_ADMIN"
  l2_fill
  for r in $(seq 1 "$ROUNDS"); do
    alive_l2
    l2_round "$r"
  done
  alive_l2
  l2_upstream_calls
  stop_pid "$REDIS_PID"
  REDIS_PID=""
fi

# ---------------------------------------------------------------- report
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# rds-gateway vs nginx ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ local changes)'); $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); load average $LOAD_BEFORE before, $LOAD_AFTER after"
  echo "- proxies: $THREADS thread(s) each (gateway listen.threads $THREADS; nginx worker_processes $THREADS); $("$NGINX" -v 2>&1 | sed 's/.*: //'); token injection; idle upstream connections kept: $KEEPALIVE (nginx keepalive, gateway upstream.pool_size); $([[ $CALLERS == key ]] && echo "gateway callers.required true: every request carries an API key the gateway checks (one caller, rate limit 10M/s; nginx checks none)" || echo "gateway callers.required false (no API key; nginx checks none either)")"
  echo "- static: the limit, nginx answering the gateway's hit body with \`return 200\` (same worker count and access log)"
  echo "- access log: $([[ $ACCESS_LOG == file ]] && echo 'to a file for both' || echo 'off for both'); rds-mock: plain HTTP, $MOCK_THREADS thread(s); pinning: $PIN_NOTE"
  echo "- wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --latency; $ROUNDS rounds (memory: $MEM_ROUNDS, start-up: $READY_ROUNDS), the two proxies alternating who goes first; medians"
  echo "- cold burst: $BURST connections opened first, then one GET each sent back to back; latency from each request's write to its answer's last byte"
  echo "- idle connections: $IDLE_CONNS keep-alive connections opened, each gets the hits URL's answer once and stays open; RSS (summed over the processes) after minus before, per connection"
  echo "- RSS: VmRSS; nginx = master + all its children (worker, cache manager, cache loader), shared pages counted in each; nginx cache files in $([[ -n $SHM_DIR ]] && echo "a tmpfs (/dev/shm)" || echo "the temp dir")"
  want l2 && echo "- l2: $(redis-server --version | awk '{print $1, $2, $3}') on loopback (no persistence), K = $L2_KEYS keys; instance B (measured) with redis.op_timeout_ms 50, instance A (fills) with 1000; $( ((${#LOAD_PIN[@]})) && echo "A and B pinned like the proxies, redis-server with wrk and the mock" || echo "nothing pinned")"
  if [[ -s $NOTES ]]; then echo; echo "Warnings:"; echo; cat "$NOTES"; fi
} >"$TMP/meta.txt"
OUT_NAME=results
((THREADS > 1)) && OUT_NAME=results-threads$THREADS
"${TOOL[@]}" table "$RESULTS" "$TMP/meta.txt" >"$OUT_DIR/$OUT_NAME.md"
cp "$RESULTS" "$OUT_DIR/$OUT_NAME.tsv"
echo
cat "$OUT_DIR/$OUT_NAME.md"
echo
echo "(written to build/bench/$OUT_NAME.md)"
