#!/usr/bin/env bash
# Builds the Debian package with CPack (build/package, Release, no tests) and checks it: the file list and
# control fields (dpkg-deb), lintian (no errors; warnings are listed), the extracted binary's --version, the
# packaged reference config against the packaged binary (-t), and `systemd-analyze verify` on the packaged
# unit. Exits non-zero on any failure. Needs dpkg-dev, lintian and systemd (all in Debian 12).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
# PKG_BUILD_DIR: package an existing Release tree (scripts/test.sh passes build/release) instead of building
# build/package from scratch.
B=${PKG_BUILD_DIR:-build/package}
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }

if [[ -z "${PKG_BUILD_DIR:-}" ]]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRDSGW_TESTS=OFF -DRDSGW_BENCH=OFF >/dev/null
fi
cmake --build "$B" -j"$JOBS" --target rds-gateway
rm -f "$B"/rds-gateway_*.deb
(cd "$B" && cpack -G DEB >/dev/null)
VERSION=$(sed -n 's/^project(rds-gateway VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
DEB="$B/rds-gateway_${VERSION}_amd64.deb"
[[ -f $DEB ]] || fail "no $DEB"
echo "== $DEB"

echo "== dpkg-deb -c"
LIST=$(dpkg-deb -c "$DEB")
echo "$LIST"
for f in ./usr/bin/rds-gateway ./lib/systemd/system/rds-gateway.service ./etc/rds-gateway/gateway.json \
         ./usr/share/man/man8/rds-gateway.8.gz ./usr/share/doc/rds-gateway/copyright \
         ./usr/share/doc/rds-gateway/changelog.gz; do
  grep -qE " ${f//./\\.}\$" <<<"$LIST" || fail "missing $f"
done
if awk '{print $2}' <<<"$LIST" | grep -qv '^root/root$'; then fail "files not owned by root/root"; fi
grep -E ' \./usr/bin/rds-gateway$' <<<"$LIST" | grep -q '^-rwxr-xr-x' || fail "binary mode is not 0755"

echo "== control"
dpkg-deb -f "$DEB"
[[ $(dpkg-deb -f "$DEB" Package) == rds-gateway ]] || fail "Package"
[[ $(dpkg-deb -f "$DEB" Version) == "$VERSION" ]] || fail "Version"
[[ $(dpkg-deb -f "$DEB" Architecture) == amd64 ]] || fail "Architecture"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for lib in libc6 libssl3 libsystemd0 libjemalloc2 libboost-json1.81.0 libprometheus-cpp-core1.0; do
  grep -q "$lib" <<<"$DEPENDS" || fail "Depends lacks $lib (dpkg-shlibdeps): $DEPENDS"
done
CTRL=$(mktemp -d); trap 'rm -rf "$CTRL" "${X:-}"' EXIT
dpkg-deb -e "$DEB" "$CTRL"
[[ $(cat "$CTRL/conffiles") == /etc/rds-gateway/gateway.json ]] || fail "conffiles: $(cat "$CTRL/conffiles")"

echo "== lintian"
set +e
LINTIAN=$(lintian --fail-on error --display-info --tag-display-limit 0 "$DEB" 2>&1); rc=$?
set -e
echo "${LINTIAN:-(no tags)}"
[[ $rc -eq 0 ]] || fail "lintian reports errors"
echo "lintian: $(grep -c '^E: ' <<<"$LINTIAN" || true) errors, $(grep -c '^W: ' <<<"$LINTIAN" || true) warnings"

echo "== extracted binary"
X=$(mktemp -d)
dpkg-deb -x "$DEB" "$X"
OUT=$("$X/usr/bin/rds-gateway" --version)
echo "$OUT"
grep -q "^rds-gateway $VERSION (malloc: " <<<"$OUT" || fail "--version"
# The packaged reference config passes the packaged binary's check once its token credential exists.
mkdir -p "$X/creds"; echo "package-test-token" > "$X/creds/rds-token"
CREDENTIALS_DIRECTORY="$X/creds" "$X/usr/bin/rds-gateway" -t -c "$X/etc/rds-gateway/gateway.json" ||
  fail "the packaged gateway.json does not pass -t"

echo "== systemd-analyze verify"
# The unit names /usr/bin/rds-gateway, which is not installed here: verify a copy pointing at the
# extracted binary, with the packaged man page on MANPATH (Documentation=man:rds-gateway(8)).
sed "s|/usr/bin/rds-gateway|$X/usr/bin/rds-gateway|g" "$X/lib/systemd/system/rds-gateway.service" \
  > "$X/rds-gateway.service"
# It exits 0 on unknown keys (it only prints them): any output is a failure too.
set +e
VERIFY=$(MANPATH="$X/usr/share/man:" systemd-analyze verify "$X/rds-gateway.service" 2>&1); rc=$?
set -e
[[ $rc -eq 0 && -z $VERIFY ]] || fail "systemd-analyze verify: $VERIFY"
echo "package-test: OK ($DEB)"
