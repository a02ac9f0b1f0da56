#!/usr/bin/env python3
"""Browser test of the status page (issue 19), Python 3 standard library only.

Starts rds-mock and rds-gateway from a build tree, makes a little traffic (misses, hits, a burst on one
key, 401s, a caller's 429s, an answer the contract refuses), loads GET /admin/status in headless Chromium
and checks that the numbers the page rendered (elements with data-testid; the raw value is in data-value)
equal /admin/status.json and /metrics. Greps the rendered page, its files and status.json for every secret
the test planted (upstream token, callers' API keys, download links' query strings). Saves screenshots at
1280 px and 390 px widths under build/artifacts/, and runs `promtool check metrics` on the scrape when
promtool is installed.

usage: tests/browser/status_page.py [--soak SECONDS] [BUILD_DIR]   (default build/release; exit 0 = passed)
  --soak SECONDS   first make light mixed traffic for that long (charts with some history, e.g. for the
                   README's screenshot)
"""
import argparse
import base64
import concurrent.futures
import fcntl
import hashlib
import html.parser
import json
import os
import re
import random
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = "97b026aa9cc4417888c14c84a1ad9860"
TIMEOUT_S = 60

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def wait_line(path, prefix, proc, timeout=TIMEOUT_S):
    """The first line of the process's output that starts with prefix (polls the output file)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(path, errors="replace") as f:
        sys.exit(f"{prefix!r} not seen; output of {proc.args[0]}:\n{f.read()[-4000:]}")


def wait_listening(path, proc, timeout=TIMEOUT_S):
    """The gateway's ports from its JSON "listening" record (port, admin_port)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, errors="replace") as f:
            for line in f:
                if '"event":"listening"' in line:
                    rec = json.loads(line)
                    return rec["port"], rec.get("admin_port", 0)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(path, errors="replace") as f:
        sys.exit(f"no listening record; output of {proc.args[0]}:\n{f.read()[-4000:]}")


def http(port, target, headers=None, method="GET"):
    """(status, headers, body text) of one request to 127.0.0.1:port."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{target}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text scrape."""
    out = []
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        m = sample.match(line)
        if m:
            out.append((m.group(1), dict(label.findall(m.group(2) or "")), float(m.group(3))))
    return out


def msum(samples, name, **labels):
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


class TestIds(html.parser.HTMLParser):
    """Collects data-testid elements: id -> {"value": data-value, "text": text content}."""

    def __init__(self):
        super().__init__()
        self.found, self.stack, self.body_attrs = {}, [], {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body_attrs = a
        if tag in ("br", "img", "input", "meta", "link", "hr"):
            return
        tid = a.get("data-testid")
        if tid:
            self.found[tid] = {"value": a.get("data-value"), "text": ""}
        self.stack.append(tid)

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for tid in self.stack:
            if tid:
                self.found[tid]["text"] += data


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
    separated by NUL bytes on file descriptors 3 and 4), so the page can be shown at a real phone width
    (a headless window is never narrower than 500 px) and waited for without guessing a time budget."""

    def __init__(self, profile):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            sys.exit("chromium not found (Debian package chromium)")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():  # in the child: commands on fd 3, answers on fd 4 (copied high first: no clash)
            r, w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "about:blank"]
        self.log = open(profile + ".log", "w")
        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4, to_chrome_r, from_chrome_w),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf, self.next_id = b"", 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method, params=None, session=None, timeout=TIMEOUT_S):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self.next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                with open(self.log.name, errors="replace") as f:
                    raise RuntimeError("chromium exited: " + f.read()[-2000:])
            self.buf += chunk

    def page(self, method, params=None):
        return self.call(method, params, self.session)

    def evaluate(self, expr):
        return self.page("Runtime.evaluate", {"expression": expr, "returnByValue": True})["result"].get("value")

    def open(self, url, width, height, mobile=False):
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile})
        self.evaluate("document.body && delete document.body.dataset.loaded")  # not the previous page's
        self.page("Page.navigate", {"url": url})

    def wait_for(self, expr, what, timeout=TIMEOUT_S):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.evaluate(expr):
                return True
            time.sleep(0.1)
        check(False, f"the page: {what} within {timeout} s")
        return False

    def screenshot(self, path):
        """The whole page, not just the viewport."""
        w, h = self.evaluate("[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
        shot = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                     "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)
        self.log.close()


def traffic(port, keys, mock_port):
    """The requests whose counts the page must show; returns the download links' query strings seen."""
    links = []

    def get(backup, key=None, extra=None):
        h = {"X-Api-Key": key} if key else {}
        h.update(extra or {})
        st, _, body = http(port, f"/v3/{PROJECT}/backup-files?backup_id={backup}", h)
        if st == 200:
            for f in json.loads(body)["files"]:
                links.append(f["download_link"].split("?", 1)[1])
        return st

    statuses = [get(f"stbackup{i}", keys["restore-svc"]) for i in range(6)]  # misses
    statuses += [get(f"stbackup{i % 6}", keys["restore-svc"]) for i in range(24)]  # hits
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # a burst on one key: one fetch, the rest wait
        statuses += list(pool.map(lambda _: get("stburst", keys["restore-svc"]), range(8)))
    statuses += [get("stbackup0", keys["batch-job"]) for _ in range(6)]  # burst 2: then 429s
    statuses += [get("stbackup1"), get("stbackup1", "wrong-key")]  # 401s
    req = urllib.request.Request(f"http://127.0.0.1:{mock_port}/_mock/config", method="POST",
                                 data=json.dumps({"script": [{"body_mode": "bad_size"}]}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    statuses.append(get("strefused", keys["restore-svc"]))  # the contract refuses it: 502
    print("traffic statuses:", {s: statuses.count(s) for s in sorted(set(statuses))})
    check(statuses.count(429) >= 4, "the batch job got answers 429 (burst 2, then 0.01 per s)")
    check(statuses.count(502) == 1, "the refused answer became one 502")
    return links


def soak(port, keys, seconds):
    """Light mixed traffic: mostly hits, some misses, a throttled caller, a few 401s."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        r = random.random()
        if r < 0.8:
            target, key = f"soak{random.randrange(20)}", keys["restore-svc"]
        elif r < 0.9:
            target, key = f"soaknew{n}", keys["restore-svc"]
        elif r < 0.97:
            target, key = "soak0", keys["batch-job"]
        else:
            target, key = "soak0", "not-a-key"
        http(port, f"/v3/{PROJECT}/backup-files?backup_id={target}", {"X-Api-Key": key})
        n += 1
        time.sleep(random.uniform(0.02, 0.3) if int(time.monotonic()) % 40 < 30 else 0.005)
    print(f"soak: {n} requests in {seconds} s")


def main():
    ap = argparse.ArgumentParser(description="Browser test of the status page")
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--soak", type=float, default=0)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    gw_bin, mock_bin = os.path.join(build, "rds-gateway"), os.path.join(build, "tests", "rds-mock")
    artifacts = os.path.join(ROOT, "build", "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    token = "TOKEN-recognizable-" + secrets.token_hex(8)
    keys = {"restore-svc": "key-restore-" + secrets.token_hex(8), "batch-job": "key-batch-" + secrets.token_hex(8)}
    procs = []
    with tempfile.TemporaryDirectory(prefix="rdsgw-browser-") as tmp:
        try:
            mock_out = os.path.join(tmp, "mock.out")
            with open(mock_out, "w") as out:
                mock = subprocess.Popen([mock_bin, "--threads", "1", "--config",
                                         json.dumps({"latency_ms": 20, "auth": "static", "static_token": token})],
                                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(mock)
            mock_port = int(wait_line(mock_out, "LISTENING ", mock).split()[1])
            callers = [{"name": name, "api_key_sha256": [hashlib.sha256(k.encode()).hexdigest()], "projects": ["*"]}
                       for name, k in keys.items()]
            callers[1].update({"rate_per_s": 0.01, "burst": 2})
            cfg = {"listen": {"address": "127.0.0.1", "port": 0, "threads": 2},
                   "admin": {"address": "127.0.0.1", "port": 0},
                   "upstream": {"base_url": f"http://127.0.0.1:{mock_port}"},
                   "auth": {"mode": "token", "token": {"env": "RDS_AUTH_TOKEN"}},
                   "callers": {"list": callers},
                   "log": {"access": os.path.join(tmp, "access.log"), "level": "info"}}
            with open(os.path.join(tmp, "gateway.json"), "w") as f:
                json.dump(cfg, f)
            gw_out = os.path.join(tmp, "gateway.out")
            with open(gw_out, "w") as out:
                gw = subprocess.Popen([gw_bin, "--config", os.path.join(tmp, "gateway.json")],
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=dict(os.environ, RDS_AUTH_TOKEN=token))
            procs.append(gw)
            port, admin = wait_listening(gw_out, gw)
            if args.soak > 0:
                soak(int(port), keys, args.soak)
            links = traffic(int(port), keys, mock_port)
            run_checks(int(admin), tmp, artifacts, [token, *keys.values(), "MOCKAK", "Signature=", *links])
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    if failures:
        print(f"\n{len(failures)} check(s) FAILED")
        return 1
    print("\nstatus page: all checks passed")
    return 0


def run_checks(admin, tmp, artifacts, planted):
    url = f"http://127.0.0.1:{admin}/admin/status"
    browser = Browser(os.path.join(tmp, "profile"))
    try:
        browser.open(url, 1280, 900)
        browser.wait_for("document.body.dataset.loaded === 'true'", "status.json shown")
        dom = browser.evaluate("document.documentElement.outerHTML")
        compare(dom, admin, planted)
        for width, height, mobile, name in ((1280, 900, False, "status-page.png"),
                                            (390, 844, True, "status-page-phone.png")):
            shot = os.path.join(artifacts, name)
            browser.open(url, width, height, mobile)
            browser.wait_for("document.body.dataset.loaded === 'true'", f"shown at {width} px")
            overflow = browser.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth"
                                        " || [...document.querySelectorAll('canvas')].some("
                                        "c => c.getBoundingClientRect().right > c.closest('figure')"
                                        ".getBoundingClientRect().right)")
            check(not overflow, f"nothing sticks out of the page or its cards at {width} px")
            browser.screenshot(shot)
            check(os.path.getsize(shot) > 10000, f"screenshot {os.path.relpath(shot, ROOT)} ({width} px wide)")
    finally:
        browser.close()


def compare(dom, admin, planted):
    _, _, status_text = http(admin, "/admin/status.json")
    _, _, scrape = http(admin, "/metrics")
    st = json.loads(status_text)
    m = parse_metrics(scrape)
    p = TestIds()
    p.feed(dom)
    ids = p.found
    check(p.body_attrs.get("data-loaded") == "true", "the page loaded status.json")
    check(ids.get("live", {}).get("value") is None and "live" in dom, "the live indicator is there")

    def shown(tid):
        return ids.get(tid, {}).get("value")

    def same(tid, json_value, metric_value, what):
        page = shown(tid)
        ok = page is not None and page != "" and float(page) == float(json_value) == float(metric_value)
        check(ok, f"{what}: page {page}, status.json {json_value}, /metrics {metric_value}")

    bf = {"route": "backup_files"}
    t = st["total"]
    same("requests-total", t["requests"], msum(m, "rdsgw_requests_total", **bf), "requests")
    same("hits-total", t["cache"]["HIT"], msum(m, "rdsgw_requests_total", cache="HIT", **bf), "cache hits")
    same("misses-total", t["cache"]["MISS"], msum(m, "rdsgw_requests_total", cache="MISS", **bf), "misses")
    same("coalesced-total", t["cache"]["COALESCED"],
         msum(m, "rdsgw_requests_total", cache="COALESCED", **bf), "coalesced")
    same("calls-saved-total", st["rates"]["upstream_calls_saved_total"],
         msum(m, "rdsgw_requests_total", cache="HIT", **bf) + msum(m, "rdsgw_requests_total", cache="COALESCED", **bf),
         "upstream calls saved")
    same("throttled-total", t["throttled"], msum(m, "rdsgw_caller_rate_limited_total"), "429 by rate limit")
    same("refused-total", sum(st["upstream"]["answers_refused_total"].values()),
         msum(m, "rdsgw_upstream_answers_refused_total", reason="contract"), "links refused by the contract")
    same("attempts-total", t["upstream_attempts"], msum(m, "rdsgw_upstream_requests_total"), "upstream attempts")
    same("cache-entries", st["cache"]["entries"], msum(m, "rdsgw_cache_entries"), "cache entries")
    same("cache-bytes", st["cache"]["bytes"], msum(m, "rdsgw_cache_bytes"), "cache bytes")
    same("log-dropped", st["access_log"]["dropped_lines_total"], msum(m, "rdsgw_access_log_dropped_lines_total"),
         "access-log lines dropped")
    check(t["cache"]["HIT"] >= 24 and t["cache"]["MISS"] >= 7 and t["throttled"] >= 4,
          f"the traffic is all counted (hits {t['cache']['HIT']}, misses {t['cache']['MISS']})")
    states = {0: "closed", 1: "half-open", 2: "open"}
    breaker = states.get(int(msum(m, "rdsgw_circuit_breaker_state")))
    check(shown("breaker-default") == st["upstream"]["breakers"][0]["state"] == breaker == "closed",
          f"breaker: page {shown('breaker-default')}, status.json {st['upstream']['breakers'][0]['state']}, "
          f"/metrics {breaker}")
    check(shown("credential-kind") == st["credential"]["kind"] == "token", "credential kind")
    check(shown("credential-expiry") == st["credential"]["expiry"] == "never"
          and msum(m, "rdsgw_credential_expiry_seconds") == float("inf"), "credential expiry: never")
    version = next((ls["version"] for n, ls, _ in m if n == "rdsgw_build_info"), None)
    check(shown("version") == st["version"] == version, f"version {shown('version')}")
    callers = {c["name"]: c for c in st["callers"]["top_by_requests"]}
    expect_rows = ",".join(f"{c['name']}={c['requests']}" for c in st["callers"]["top_by_requests"])
    check(shown("top-requests") == expect_rows and set(callers) >= {"restore-svc", "batch-job"},
          f"top callers by requests: page {shown('top-requests')}, status.json {expect_rows}")
    for name, c in callers.items():
        check(c["requests_total"] == msum(m, "rdsgw_caller_requests_total", caller=name),
              f"{name}: {c['requests_total']} requests in status.json and /metrics")
    throttled_rows = ",".join(f"{c['name']}={c['throttled']}" for c in st["callers"]["top_by_throttled"])
    check(shown("top-throttled") == throttled_rows and throttled_rows.startswith("batch-job="),
          f"top callers by 429: page {shown('top-throttled')}, status.json {throttled_rows}")
    check(shown("latency-samples") is not None and int(shown("latency-samples")) == t["upstream_fetches"],
          "latency samples: one per upstream fetch")
    p50 = st["upstream"]["latency_ms"]["p50"]
    check(p50 is not None and p50 >= 10 and float(shown("latency-p50") or "nan") == p50,
          f"upstream p50: page {shown('latency-p50')}, status.json {p50} ms (the mock takes 20 ms)")

    # No secret in anything the page is made of or shows.
    _, _, page = http(admin, "/admin/status")
    _, _, app = http(admin, "/admin/status/app.js")
    for s in planted:
        for what, text in (("rendered page", dom), ("status.json", status_text), ("page", page), ("app.js", app)):
            if s in text:
                check(False, f"secret {s[:12]}... appears in the {what}")
    check(len(planted) > 6, f"searched {len(planted)} planted secrets in the page, its files and status.json")

    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True)
        print(r.stdout + r.stderr)
        check(r.returncode == 0, "promtool check metrics accepts the scrape")


if __name__ == "__main__":
    sys.exit(main())
