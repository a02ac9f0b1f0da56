#!/usr/bin/env bash
# Runs the whole test suite: bootstrap, a Release build and an ASan+UBSan build (each with every unit and
# integration test under ctest), the alert rules (promtool), the status page in headless Chromium, the Debian
# package, the concurrency units under ThreadSanitizer, and each libFuzzer target for a short bounded time.
# Exits non-zero on any failure.
#   FUZZ_SECONDS=N   seconds per fuzzer (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
GEN=(-G Ninja)
status=0

configure_build() {  # dir, cmake args... ; builds all targets
  local dir=$1; shift
  cmake -S . -B "build/$dir" "${GEN[@]}" "$@" >/dev/null
  cmake --build "build/$dir" -j"$JOBS"
}

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "release build"
configure_build release -DCMAKE_BUILD_TYPE=Release
step "release tests"
(cd build/release && ctest --output-on-failure -j2 --timeout 600) || status=1

step "alert rules (promtool)"
promtool check rules conf/prometheus/rds-gateway.rules.yml || status=1
promtool test rules conf/prometheus/rds-gateway.rules.test.yml || status=1

step "status page in headless Chromium"
python3 tests/browser/status_page.py build/release || status=1

step "Debian package (cpack, dpkg-deb, lintian, systemd-analyze verify)"
PKG_BUILD_DIR=build/release scripts/package-test.sh || status=1

step "asan+ubsan build"
# Sanitizer builds at -Og -g1 (optimized for debugging; line numbers in reports are kept): compiling Asio and
# Beast under ASan+UBSan at -O2 -g took about 16 minutes on 2 cores, at -O1 about 15; -Og compiles the heaviest
# files about 40 % faster than -O1 and runs the tests about as fast.
SAN_FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-Og -g1 -DNDEBUG")
configure_build asan "${SAN_FLAGS[@]}" -DRDSGW_SANITIZE=address,undefined
step "asan+ubsan tests"
(cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j2 --timeout 900) || status=1

step "tsan build (the concurrency units: cache, single-flight, resilience, status board, Redis client and tier)"
# These tests link rdsgw_base only (tests/CMakeLists.txt), so this tree compiles none of the gateway's own
# pipeline, sessions or listeners.
TSAN_TESTS=(test_cache test_singleflight test_resilience test_status test_redis_client test_redis)
cmake -S . -B build/tsan "${GEN[@]}" "${SAN_FLAGS[@]}" -DRDSGW_SANITIZE=thread >/dev/null
cmake --build build/tsan -j"$JOBS" --target "${TSAN_TESTS[@]}"
step "tsan tests"
for t in "${TSAN_TESTS[@]}"; do
  TSAN_OPTIONS=halt_on_error=1 "build/tsan/tests/$t" --log_level=message --report_level=short || status=1
done

if [[ "$FUZZ_SECONDS" != "0" ]]; then
  step "fuzz build (clang, libFuzzer + ASan)"
  cmake -S . -B build/fuzz "${GEN[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRDSGW_SANITIZE=address,fuzzer-no-link -DRDSGW_FUZZ=ON -DRDSGW_TESTS=OFF -DRDSGW_BENCH=OFF >/dev/null
  # The fuzz targets link rdsgw_pure only: build just them, not the gateway.
  FUZZ_TARGETS=()
  for src in fuzz/fuzz_*.cpp; do FUZZ_TARGETS+=("$(basename "${src%.cpp}")"); done
  cmake --build build/fuzz -j"$JOBS" --target "${FUZZ_TARGETS[@]}"
  for f in build/fuzz/fuzz/fuzz_*; do
    [[ -x "$f" ]] || continue
    name=$(basename "$f")
    step "fuzz $name for ${FUZZ_SECONDS}s"
    corpus="build/fuzz/corpus/$name"; mkdir -p "$corpus"
    seeds=(); [[ -d "fuzz/seeds/${name#fuzz_}" ]] && seeds=("fuzz/seeds/${name#fuzz_}")
    if "$f" -max_total_time="$FUZZ_SECONDS" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 "$corpus" \
         "${seeds[@]}" >"build/fuzz/$name.log" 2>&1; then
      grep -E "stat::number_of_executed_units" "build/fuzz/$name.log" || true
    else
      tail -40 "build/fuzz/$name.log"; status=1
    fi
  done
fi

if [[ $status -eq 0 ]]; then echo; echo "ALL TESTS PASSED"; else echo; echo "SOME TESTS FAILED"; fi
exit $status
