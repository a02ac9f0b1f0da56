#!/usr/bin/env python3
"""Helpers for scripts/bench.sh (Python 3 standard library only).

  benchtool.py ports N                       print N free loopback TCP ports
  benchtool.py burst --port P --path PATH [-n 500] [--header 'Name: value']...
                                             open N connections, then send one GET on each at once;
                                             print JSON: statuses, p50/p99/max latency in ms
  benchtool.py ready --port P [--path /readyz] [--log FILE] -- ARGV...
                                             start ARGV, poll GET PATH until 200, print the ms from
                                             just before the start to the first 200, stop ARGV
  benchtool.py idle --port P --path PATH [-n 500] [--header 'Name: value']... [--pid PID]...
                                             RSS (summed over the PIDs) per idle keep-alive connection:
                                             N connections get one answer each and stay open; print JSON
  benchtool.py wrk FILE                      parse wrk --latency output: print
                                             "rps p99_ms non2xx socket_errors requests p50_ms"
  benchtool.py table RESULTS.tsv META.txt    print the markdown report for the collected results
"""
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


class Conn:
    __slots__ = ("sock", "buf", "t_send", "t_done", "status", "need")

    def __init__(self, sock):
        self.sock, self.buf, self.t_send, self.t_done, self.status, self.need = sock, b"", 0.0, 0.0, 0, -1


def get_request(args):
    head = "".join(h + "\r\n" for h in args["headers"])
    return (f"GET {args['path']} HTTP/1.1\r\nHost: 127.0.0.1:{args['port']}\r\n{head}\r\n").encode()


def read_answers(ep, by_fd, deadline):
    """Reads one answer on each connection registered in `ep` (by_fd: fd -> Conn), until all are in or the
    deadline (time.perf_counter()): its status, Content-Length body and c.t_done, the instant it was complete
    (or the connection closed without a full answer: status -1). A connection with no answer keeps t_done 0."""
    clock = time.perf_counter
    pending = len(by_fd)
    while pending and clock() < deadline:
        for fd, _ in ep.poll(0.5):
            c = by_fd[fd]
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            now = clock()
            if not data:
                c.status, c.t_done = -1, now  # closed without a (full) answer
                ep.unregister(fd)
                pending -= 1
                continue
            c.buf += data
            if c.need < 0:
                end = c.buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                lines = c.buf[:end].decode("latin-1").split("\r\n")
                c.status = int(lines[0].split()[1])
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                c.need = end + 4 + length
            if len(c.buf) >= c.need:
                c.t_done = now
                ep.unregister(fd)
                pending -= 1


def burst(args):
    """N first requests at (nearly) the same instant. Every connection is opened (and accepted by the
    server) before the burst, so the numbers are about the requests, not about accepting sockets. The
    requests are written back to back in one loop (a few ms for 500) and each latency runs from its own
    write to the last byte of its answer; answers are read with epoll, so the client adds little."""
    host, port, n = "127.0.0.1", args["port"], args["n"]
    req = get_request(args)
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns.append(Conn(s))
    # The server accepts the connections asynchronously; give it a moment so the burst measures requests.
    # (This pause is part of the scenario, not a synchronization.)
    time.sleep(0.3)
    ep = select.epoll(n + 1)
    by_fd = {}
    for c in conns:
        ep.register(c.sock.fileno(), select.EPOLLIN)
        by_fd[c.sock.fileno()] = c
    clock = time.perf_counter
    for c in conns:
        c.t_send = clock()
        c.sock.send(req)
    read_answers(ep, by_fd, clock() + args["timeout"])
    for c in conns:
        c.sock.close()
    done = [c for c in conns if c.t_done > 0]
    lat = [(c.t_done - c.t_send) * 1000.0 for c in done]
    statuses = {}
    for c in conns:
        key = str(c.status if c.t_done > 0 else "timeout")
        statuses[key] = statuses.get(key, 0) + 1
    out = {"n": n, "statuses": statuses, "ok": statuses.get("200", 0)}
    if lat:
        out.update(p50_ms=round(percentile(lat, 50), 2), p99_ms=round(percentile(lat, 99), 2),
                   max_ms=round(max(lat), 2), min_ms=round(min(lat), 2))
    print(json.dumps(out))
    return 0 if statuses.get("200", 0) == n else 1


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def idle(args):
    """RSS per idle keep-alive connection: N connections, each asks for the same (cached) answer once and
    then stays open and idle; the server's RSS (summed over --pid) before and after, per connection. The
    answers are read with epoll; a connection that gets no 200 is counted and reported."""
    host, port, n = "127.0.0.1", args["port"], args["n"]
    req = get_request(args)
    pids = [int(p) for p in args["pids"]]
    # One answered request first: whatever the first request allocates once is not a connection's cost.
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(req)
        s.recv(65536)
    before = rss_kb(pids)
    conns, by_fd = [], {}
    ep = select.epoll(n + 1)
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        c = Conn(s)
        conns.append(c)
        by_fd[s.fileno()] = c
        ep.register(s.fileno(), select.EPOLLIN)
        s.send(req)
    read_answers(ep, by_fd, time.perf_counter() + args["timeout"])
    after = rss_kb(pids)
    ok = sum(1 for c in conns if c.t_done > 0 and c.status == 200)
    for c in conns:
        c.sock.close()
    print(json.dumps({"n": n, "ok": ok, "rss_before_kb": before, "rss_after_kb": after,
                      "bytes_per_conn": round((after - before) * 1024 / max(1, n))}))
    return 0 if ok == n else 1


def http_status(port, path, timeout=1.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def ready(args):
    """Milliseconds from just before exec to the first 200 from PATH, polled in a tight loop (a refused
    connection costs microseconds on loopback; between attempts we yield for 0.2 ms)."""
    log = open(args["log"], "ab") if args["log"] else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(args["argv"], stdout=subprocess.DEVNULL, stderr=log, start_new_session=False)
    ms = None
    try:
        deadline = t0 + args["timeout"]
        while time.perf_counter() < deadline:
            try:
                if http_status(args["port"], args["path"]) == 200:
                    ms = (time.perf_counter() - t0) * 1000.0
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.0002)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if ms is None:
        print("ready: never answered 200 (exit status %s)" % proc.returncode, file=sys.stderr)
        return 1
    print("%.1f" % ms)
    return 0


def wrk_parse(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    rps, p99, p50, non2xx, errors, total = None, None, None, 0, 0, 0
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    for line in text.splitlines():
        f = line.split()
        if " requests in " in line:
            total = int(f[0])
        elif line.startswith("Requests/sec:"):
            rps = float(f[1])
        elif len(f) == 2 and f[0] in ("50%", "99%"):
            v = f[1]
            for u in ("us", "ms", "s", "m"):
                if v.endswith(u) and v[: -len(u)].replace(".", "", 1).isdigit():
                    if f[0] == "99%":
                        p99 = float(v[: -len(u)]) * units[u]
                    else:
                        p50 = float(v[: -len(u)]) * units[u]
                    break
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            non2xx = int(f[-1])
        elif line.strip().startswith("Socket errors:"):
            errors = sum(int(x.strip(",")) for x in f[2::2] if x.strip(",").isdigit())
    if rps is None or p99 is None or p50 is None:
        print("cannot parse wrk output " + path, file=sys.stderr)
        return 1
    print("%.1f %.3f %d %d %d %.3f" % (rps, p99, non2xx, errors, total, p50))
    return 0


# (scenario, metric, unit, kind, target text, check) with kind: "higher" or "lower" is better. check(g, n, a, s,
# ref): g and n the gateway's and nginx's medians, a the gateway's values, s the static responder's median (or
# None), ref(scenario, metric) the gateway's median of another row (or None); None from check: not measured.
L2 = "l2 hits (cold L1, each key once)"
L2_HITS = "hits (1 key), Redis configured"
L2_CALLS = "l2 upstream calls (K keys via A, then B)"


def ratio_to(ref, scen, metric, g, lo=None, hi=None):
    """g against another row's median: None when that row was not measured."""
    r = ref(scen, metric)
    if r is None or r == 0:
        return None
    return (lo is None or g >= lo * r) and (hi is None or g <= hi * r)


ROWS = [
    ("hits (1 key)", "rps", "", "higher", ">= 1.3x nginx, >= 0.9x static",
     lambda g, n, a, s, ref: g >= 1.3 * n and (s is None or g >= 0.9 * s)),
    ("hits (1 key)", "p99", "ms", "lower", "<= nginx", lambda g, n, a, s, ref: g <= n),
    ("hits (1 key)", "proxy CPU busy", "%", "lower", "", None),
    ("hits (1 key)", "CPU per request", "us", "lower", "<= 1.1x static",
     lambda g, n, a, s, ref: s is None or g <= 1.1 * s),
    (L2_HITS, "rps", "", "higher", ">= 0.9x the hits row",
     lambda g, n, a, s, ref: ratio_to(ref, "hits (1 key)", "rps", g, lo=0.9)),
    (L2_HITS, "p99", "ms", "lower", "", None),
    (L2_HITS, "CPU per request", "us", "lower", "<= 1.1x the hits row",
     lambda g, n, a, s, ref: ratio_to(ref, "hits (1 key)", "CPU per request", g, hi=1.1)),
    ("misses", "rps", "", "higher", ">= 1.0x nginx", lambda g, n, a, s, ref: g >= n),
    ("misses", "p99", "ms", "lower", "", None),
    ("misses", "proxy CPU busy", "%", "lower", "", None),
    ("misses", "CPU per request", "us", "lower", "<= 1.0x nginx", lambda g, n, a, s, ref: g <= n),
    ("cold burst", "upstream calls", "", "lower", "exactly 1 (every round)",
     lambda g, n, a, s, ref: all(v == 1 for v in a)),
    ("cold burst", "p50", "ms", "lower", "", None),
    ("cold burst", "p99", "ms", "lower", "<= 120 ms", lambda g, n, a, s, ref: g <= 120.0),
    ("idle connections", "RSS per idle connection (bytes)", "", "lower", "", None),
    ("memory", "RSS at 100k entries", "MB", "lower", "<= 100 MB", lambda g, n, a, s, ref: g <= 100.0),
    ("memory", "RSS growth per cached entry (bytes)", "", "lower", "", None),
    ("memory", "start to /readyz 200", "ms", "lower", "< 100 ms", lambda g, n, a, s, ref: g < 100.0),
    (L2, "rps", "", "higher", "", None),
    (L2, "p50", "ms", "lower", "", None),
    (L2, "p99", "ms", "lower", "", None),
    (L2, "CPU per request", "us", "lower", "", None),
    (L2, "L2 hits per answer", "", "higher", ">= 0.99 (every round)", lambda g, n, a, s, ref: min(a) >= 0.99),
    (L2, "upstream calls", "", "lower", "about 0 (<= 0.1% of K)",
     lambda g, n, a, s, ref: None if ref(L2_CALLS, "keys (K)") is None else max(a) <= 0.001 * ref(L2_CALLS, "keys (K)")),
    (L2_CALLS, "keys (K)", "", "lower", "", None),
    (L2_CALLS, "with Redis", "", "lower", "about K (<= 1.01 K)",
     lambda g, n, a, s, ref: ratio_to(ref, L2_CALLS, "keys (K)", g, hi=1.01)),
    (L2_CALLS, "without Redis", "", "lower", "about 2 K (reference)", None),
]


def fmt(v, unit):
    if v is None:
        return "—"
    if v == int(v) and abs(v) < 1e9:
        return "%d" % v + (" " + unit if unit else "")
    if unit == "" and abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 10:
        s = "%.1f" % v
    else:
        s = "%.2f" % v
    return s + (" " + unit if unit else "")


L2_NOTE = """The l2 rows (the shared tier): two gateway instances, A and B, share one redis-server on loopback \
(`redis.op_timeout_ms` 50). A asks each of K keys once, which fills Redis. **%s**: in each round a \
freshly started B (cold L1) is driven by wrk over the same keys, each key at most once (`bench/l2.lua`), \
so every answer is an L1 miss and an L2 hit. The rows give B's rps, latency and CPU time per request, \
B's `rdsgw_cache_events_total{event="l2_hit"}` per wrk answer, and the upstream calls B made in the round \
(`/_mock/stats`). **%s**: wrk on one key against the same B once it is warm (an L1 hit), with the same \
wrk settings as the hits row above it; compare the two. **%s**: the K-key pass through A and then through \
a fresh B, counted by the mock: with Redis it is about K (A's fetches; B finds every key in Redis), and \
without the redis block about 2 K (each instance fetches every key itself).""" % (L2, L2_HITS, L2_CALLS)


def table(results_path, meta_path):
    data = {}
    for line in open(results_path, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            continue
        scen, metric, peer, value = parts
        try:
            data.setdefault((scen, metric, peer), []).append(float(value))
        except ValueError:
            print("bench: ignoring the bad value %r for %s / %s / %s" % (value, scen, metric, peer), file=sys.stderr)
    out = []
    if os.path.exists(meta_path):
        out.append(open(meta_path, encoding="utf-8").read().rstrip("\n"))
        out.append("")
    out.append("| scenario | metric | gateway (median) | nginx (median) | static (median) | gw/nginx | gw/static "
               "| target | met? |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    all_met = True

    def ref(scen, metric):
        v = data.get((scen, metric, "gateway"))
        return statistics.median(v) if v else None

    for scen, metric, unit, kind, target, check in ROWS:
        g = data.get((scen, metric, "gateway"))
        n = data.get((scen, metric, "nginx"))
        st = data.get((scen, metric, "static"))
        gm = statistics.median(g) if g else None
        nm = statistics.median(n) if n else None
        sm = statistics.median(st) if st else None
        ratio = "%.2f" % (gm / nm) if gm is not None and nm else "—"
        sratio = "%.2f" % (gm / sm) if gm is not None and sm else "—"
        if check is None:
            met = "—"
        elif gm is None or (nm is None and "nginx" in target):
            met = "not measured"
            all_met = False
        else:
            ok = check(gm, nm, g, sm, ref)
            all_met = all_met and bool(ok)
            met = "not measured" if ok is None else "yes" if ok else "**no**"
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            scen, metric, fmt(gm, unit), fmt(nm, unit), fmt(sm, unit), ratio, sratio, target or "—", met))
    out.append("")
    out.append("Every target met: %s" % ("yes" if all_met else "no"))
    if any(k[0] in (L2, L2_HITS, L2_CALLS) for k in data):
        out.append("")
        out.append(L2_NOTE)
    # Reference rows and raw values.
    extra = sorted(k for k in data if k[2] not in ("gateway", "nginx", "static"))
    if extra:
        out.append("")
        out.append("Reference measurements (no proxy in between):")
        out.append("")
        out.append("| scenario | metric | who | median | values |")
        out.append("|---|---|---|---|---|")
        for k in extra:
            v = data[k]
            out.append("| %s | %s | %s | %s | %s |" % (k[0], k[1], k[2], fmt(statistics.median(v), ""),
                                                     ", ".join(fmt(x, "") for x in v)))
    out.append("")
    out.append("Every round (in run order):")
    out.append("")
    out.append("| scenario | metric | gateway | nginx | static |")
    out.append("|---|---|---|---|---|")
    for scen, metric, unit, _, _, _ in ROWS:
        vals = [data.get((scen, metric, p), []) for p in ("gateway", "nginx", "static")]
        out.append("| %s | %s | %s |" % (scen, metric, " | ".join(", ".join(fmt(x, "") for x in v) or "—"
                                                                 for v in vals)))
    for k in sorted(data):
        if k[2] in ("gateway", "nginx", "static") and not any(k[0] == r[0] and k[1] == r[1] for r in ROWS):
            out.append("| %s | %s (%s) | %s | |" % (k[0], k[1], k[2], ", ".join(fmt(x, "") for x in data[k])))
    print("\n".join(out))
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    cmd, rest = argv[1], argv[2:]
    if cmd == "ports":
        print(" ".join(str(p) for p in free_ports(int(rest[0]))))
        return 0
    if cmd == "wrk":
        return wrk_parse(rest[0])
    if cmd == "table":
        return table(rest[0], rest[1])
    opts = {"port": 0, "path": "/readyz", "n": 500, "headers": [], "timeout": 30.0, "log": "", "argv": [],
            "pids": []}
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--":
            opts["argv"] = rest[i + 1:]
            break
        val = rest[i + 1]
        if a == "--port":
            opts["port"] = int(val)
        elif a == "--path":
            opts["path"] = val
        elif a == "-n":
            opts["n"] = int(val)
        elif a == "--header":
            opts["headers"].append(val)
        elif a == "--timeout":
            opts["timeout"] = float(val)
        elif a == "--log":
            opts["log"] = val
        elif a == "--pid":
            opts["pids"].append(val)
        else:
            print("unknown option " + a, file=sys.stderr)
            return 2
        i += 2
    if cmd == "burst":
        return burst(opts)
    if cmd == "ready":
        return ready(opts)
    if cmd == "idle":
        return idle(opts)
    print("unknown command " + cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
