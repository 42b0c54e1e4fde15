#!/usr/bin/env python3
"""Turns bench/mesh/run.sh's raw outputs (a temp dir) into bench/mesh/RESULTS.md on stdout.

  report.py DIR row... -- idle_row...
Per row and run k: DIR/ROW.k.ka.txt (wrk --latency), ROW.k.close.txt (wrk, Connection: close),
ROW.k.iperf.txt (iperf3 client), ROW.k.cpu ("ticks ticks ticks": proxy CPU during each);
per idle row: DIR/ROW.idle ("rss0_kB rss1_kB N held seconds status... | holder's last line").
Medians over runs.
"""
import glob
import os
import re
import statistics
import sys

NAMES = {
    "direct": "backend direct",
    "shoal": "Shoal mesh",
    "haproxy": "HAProxy {haproxy} (mode tcp, nbthread 1)",
    "nginx": "nginx {nginx} stream (1 worker)",
    "socat": "socat {socat} (fork)",
    "haproxy-splice": "HAProxy {haproxy} (mode tcp, nbthread 1, option splice-auto)",
}


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def to_us(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    if not m:
        return None
    x = float(m.group(1))
    return x * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def parse_wrk(text):
    if not text:
        return None
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return None
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    r["requests"] = int(m.group(1)) if m else None
    for p in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % p, text, re.M)
        r["p" + p] = to_us(m.group(1)) if m else None
    errs = []
    m = re.search(r"Socket errors: (.*)", text)
    if m:
        errs.append("socket errors: " + m.group(1).strip())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs.append("non-2xx: " + m.group(1))
    r["errors"] = errs
    return r


def parse_iperf(text):
    if not text:
        return None
    rate = None
    for line in text.splitlines():
        m = re.search(r"([\d.]+)\s+(G|M|K)bits/sec.*receiver", line)
        if m:
            rate = float(m.group(1)) * {"G": 1, "M": 1e-3, "K": 1e-6}[m.group(2)]
    return rate


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1, scale=1.0, suffix=""):
    if x is None:
        return "—"
    return ("%." + str(nd) + "f%s") % (x / scale, suffix)


def kfmt(x):
    return fmt(x, 1, 1e3, "k") if x is not None else "—"


def main():
    d = sys.argv[1]
    args = sys.argv[2:]
    sep = args.index("--") if "--" in args else len(args)
    rows, idle_rows = args[:sep], args[sep + 1:]
    meta = dict(l.split("=", 1) for l in (read(os.path.join(d, "meta")) or "").splitlines() if "=" in l)
    tick = float(meta.get("tick", 100))
    dur = float(meta.get("duration", 10))
    not_run = set(l.split()[0] for l in (read(os.path.join(d, "status")) or "").splitlines() if l.strip())

    res = {}
    allruns = {}
    notes = []
    for r in rows:
        runs = sorted(glob.glob(os.path.join(d, "%s.*.ka.txt" % r)))
        ks = [os.path.basename(p).split(".")[1] for p in runs]
        per = []
        for k in ks:
            base = os.path.join(d, "%s.%s" % (r, k))
            ka = parse_wrk(read(base + ".ka.txt"))
            cl = parse_wrk(read(base + ".close.txt"))
            bulk = parse_iperf(read(base + ".iperf.txt"))
            cpu = [int(x) / tick for x in (read(base + ".cpu") or "0 0 0").split()]
            one = {
                "ka": ka["rps"] if ka else None,
                "p50": ka["p50"] if ka else None,
                "p99": ka["p99"] if ka else None,
                "close": cl["rps"] if cl else None,
                "bulk": bulk,
                "cpu_ka": cpu[0], "cpu_close": cpu[1], "cpu_bulk": cpu[2],
            }
            if r != "direct":
                one["ka_per_cpu"] = ka["requests"] / cpu[0] if ka and ka["requests"] and cpu[0] > 0 else None
                one["close_per_cpu"] = cl["requests"] / cpu[1] if cl and cl["requests"] and cpu[1] > 0 else None
                one["bulk_per_cpu"] = bulk * dur / cpu[2] if bulk and cpu[2] > 0 else None
            for name, w in (("keep-alive", ka), ("Connection: close", cl)):
                if w and w["errors"]:
                    notes.append("%s, run %s, %s: %s" % (r, k, name, "; ".join(w["errors"])))
            one["k"] = k
            per.append(one)
        allruns[r] = per
        if per:
            res[r] = {key: med([p.get(key) for p in per]) for key in per[0] if key != "k"}
            res[r]["runs"] = len(per)

    def label(r):
        return NAMES.get(r, r).format(**{k: meta.get(k, "?") for k in ("haproxy", "nginx", "socat")})

    out = []
    w = out.append
    w("# Routing mesh (L4 proxy) benchmark results")
    w("")
    w("`bash bench/mesh/run.sh`, %s, commit %s, %s vCPUs (%s), kernel %s. Loopback only. Each proxy"
      % (meta.get("date", "?"), meta.get("commit", "?"), meta.get("cpus", "?"), meta.get("model", "?"), meta.get("kernel", "?")))
    w("pinned to CPU1 (`taskset -c 1`); wrk %s, iperf3 %s, and the backends (nginx %s, one worker, a"
      % (meta.get("wrk", "?"), meta.get("iperf3", "?"), meta.get("nginx", "?")))
    w("128-byte file, keep-alive, no access log; `iperf3 -s`) on CPU0. `wrk -t1 -c50 -d%ss`; iperf3 one"
      % meta.get("duration", "?"))
    w("stream, %s s; %s run(s) of every row, medians. Proxy CPU = utime+stime of the proxy's"
      % (meta.get("duration", "?"), meta.get("runs", "?")))
    w("processes (/proc/PID/stat) during each run. No proxy logs. Load average before the run: %s; after: %s."
      % (meta.get("load", "?"), meta.get("load_after", "?")))
    w("The machine is shared (other engineers build and test on the same two cores): absolute")
    w("figures are noisy; compare rows measured side by side in this one run. Every process of the")
    w("benchmark ran at niceness %s%s." % (meta.get("nice", "0"), " (NICE=…: other work on the machine yields to it)" if meta.get("nice", "0") != "0" else ""))
    w("Proxy CPU per unit of work is the steadiest figure: a proxy that loses its core to other")
    w("work serves fewer requests per second, but the same number per core-second.")
    w("")
    if "shoal" in rows and ("shoal" not in res or "shoal" in not_run):
        w("**Shoal row: not built** (the release build failed, `shoal mesh run` does not exist in it, or it")
        w("did not start; see the script's output).")
        w("")
    w("## Throughput and latency")
    w("")
    w("| target | keep-alive req/s | p50 / p99 µs | new conn/s (`Connection: close`) | iperf3 Gb/s |")
    w("|---|---|---|---|---|")
    for r in rows:
        x = res.get(r)
        if not x or r in not_run:
            w("| %s | not built | | | |" % label(r) if r == "shoal" else "| %s | did not run | | | |" % label(r))
            continue
        w("| %s | %s | %s / %s | %s | %s |" % (label(r), kfmt(x["ka"]), fmt(x["p50"], 0), fmt(x["p99"], 0),
                                              kfmt(x["close"]), fmt(x["bulk"], 2)))
    w("")
    w("## Proxy CPU per unit of work")
    w("")
    w("| proxy | CPU s: keep-alive / close / bulk | keep-alive req per core-s | connections per core-s | Gbit per core-s |")
    w("|---|---|---|---|---|")
    for r in rows:
        x = res.get(r)
        if r == "direct" or not x or r in not_run:
            continue
        w("| %s | %s / %s / %s | %s | %s | %s |" % (label(r), fmt(x["cpu_ka"], 2), fmt(x["cpu_close"], 2), fmt(x["cpu_bulk"], 2),
                                                  kfmt(x.get("ka_per_cpu")), kfmt(x.get("close_per_cpu")), fmt(x.get("bulk_per_cpu"), 1)))
    w("")

    idle = {}
    if idle_rows and meta.get("idle_conns", "0") != "0":
        w("## Idle connections held through the proxy: memory per connection")
        w("")
        w("A fresh proxy; `bench/mesh/holder.py connect` opens N connections (10k per source address,")
        w("127.0.0.2 and up) and holds them idle; the proxy spreads them round-robin over 8 backend")
        w("ports of `holder.py serve`, which accepts and holds. RSS = VmRSS of the proxy's processes")
        w("(userspace memory; the kernel's socket buffers are not in it) before and once the backend")
        w("holds all N (opened in two halves: RSS also at N/2, and the slope from N/2 to N, which leaves")
        w("out one-time costs such as the first pool allocations).")
        w("")
        if meta.get("idle_asked") and meta.get("idle_asked") != meta.get("idle_conns"):
            w("**N is %s, not the %s asked for**: this machine's hard RLIMIT_NOFILE is %s and cannot be raised"
              % (meta.get("idle_conns"), meta.get("idle_asked"), meta.get("nofile")))
            w("(CAP_SYS_RESOURCE: %s; raising it needs the capability), and a proxy holds two descriptors per"
              % ("yes" if meta.get("cap_sys_resource") == "1" else "no"))
            w("connection. Per-connection memory is a slope, so it carries over to 100k; holding 100k itself")
            w("needs a machine where `ulimit -Hn` can reach 2N + 2000.")
            w("")
        w("| proxy | N | held at backend | seconds to open | RSS MiB: before / N/2 / N | bytes per connection (0 → N) | slope N/2 → N, bytes |")
        w("|---|---|---|---|---|---|---|")
        for r in idle_rows:
            t = read(os.path.join(d, "%s.idle" % r))
            if not t or t.startswith("not-run"):
                if r in ("direct", "socat"):
                    continue
                w("| %s | not %s | | | | | |" % (label(r), "built" if r == "shoal" else "run"))
                continue
            head, _, tail = t.partition("|")
            f = head.split()
            rss0, rss1, n, held, secs, rssh, half = (int(x) for x in f[:7])
            per = (rss1 - rss0) * 1024 / held if held else None
            slope = (rss1 - rssh) * 1024 / (held - half) if held > half else None
            idle[r] = per
            w("| %s | %d | %d | %d | %.1f / %.1f / %.1f | %s | %s |" % (label(r), n, held, secs, rss0 / 1024, rssh / 1024,
                                                                      rss1 / 1024, fmt(per, 0), fmt(slope, 0)))
            hs = [tuple(map(int, m)) for m in re.findall(r"(\d+) connected, (\d+) failed, (\d+) still open", tail)]
            summary = "holders: %d connected, %d failed, %d still open when the holders stopped" % tuple(
                sum(h[i] for h in hs) for i in range(3)) if hs else "holders: no summary (%s)" % tail.strip()
            if held < n:
                notes.append("idle %s: only %d of %d connections reached the backend; %s" % (r, held, n, summary))
            else:
                notes.append("idle %s: %s" % (r, summary))
        w("")

    if int(meta.get("runs", "1")) > 1:
        w("## Every run (the medians above come from these; rows interleaved within each run)")
        w("")
        w("| target | run | keep-alive req/s | p99 µs | new conn/s | iperf3 Gb/s | proxy CPU s: ka / close / bulk |")
        w("|---|---|---|---|---|---|---|")
        for r in rows:
            for x in allruns.get(r, []):
                if r in not_run:
                    continue
                cpu = "—" if r == "direct" else "%s / %s / %s" % (fmt(x["cpu_ka"], 2), fmt(x["cpu_close"], 2), fmt(x["cpu_bulk"], 2))
                w("| %s | %s | %s | %s | %s | %s | %s |" % (r, x["k"], kfmt(x["ka"]), fmt(x["p99"], 0), kfmt(x["close"]),
                                                          fmt(x["bulk"], 2), cpu))
        w("")
    w("## Ratios to HAProxy and the targets of issue 3")
    w("")
    base = res.get("haproxy") if "haproxy" not in not_run else None
    others = [r for r in rows if r not in ("haproxy", "direct")]
    w("| metric | " + " | ".join("%s / HAProxy" % r for r in others) + " | target (Shoal) | met? |")
    w("|---|" + "---|" * len(others) + "---|---|")

    def ratio(r, key, src=res):
        a = src.get(r)
        b = src.get("haproxy")
        if isinstance(a, dict):
            a, b = a.get(key), (b or {}).get(key)
        if a is None or b is None or b == 0 or r in not_run:
            return None
        return a / b

    targets = {"ka": (">=", 1.2), "p99": ("<=", 0.8), "close": (">=", 1.3), "bulk": (">=", 1.5)}
    metrics = [("keep-alive req/s", "ka"), ("keep-alive p50 latency", "p50"), ("keep-alive p99 latency", "p99"),
               ("new connections/s", "close"), ("iperf3 Gb/s", "bulk"), ("keep-alive req per core-s", "ka_per_cpu"),
               ("connections per core-s", "close_per_cpu"), ("Gbit per core-s", "bulk_per_cpu")]
    for name, key in metrics:
        cells = []
        for r in others:
            v = ratio(r, key)
            cells.append("—" if v is None else "%.2f×" % v)
        tgt, met = "", ""
        if key in targets:
            op, lim = targets[key]
            tgt = "%s %.1f×" % ("≥" if op == ">=" else "≤", lim)
            v = ratio("shoal", key) if base else None
            met = "—" if v is None else ("yes" if (v >= lim if op == ">=" else v <= lim) else "no")
        w("| %s | %s | %s | %s |" % (name, " | ".join(cells), tgt, met))
    if idle:
        cells = []
        for r in others:
            a, b = idle.get(r), idle.get("haproxy")
            cells.append("—" if a is None or not b else "%.2f×" % (a / b))
        s = idle.get("shoal")
        w("| bytes per idle connection | %s | ≤ 1024 B (absolute) | %s |" % (" | ".join(cells), "—" if s is None else ("yes" if s <= 1024 else "no")))
    w("")
    if notes:
        w("Notes from the run:")
        for n in notes:
            w("- " + n)
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
