#!/usr/bin/env python3
"""Opens and holds many idle TCP connections, for bench/mesh/run.sh's memory-per-connection test.

  holder.py serve HOST:PORT[,HOST:PORT...] --count-file F
      Accepts on every address and holds each accepted socket open, never reading. Writes the
      number accepted so far to F (every 0.2 s) so the caller can tell when all have arrived.

  holder.py connect HOST:PORT -n N --sources 127.0.0.2 --per-source 10000 --status-file F
      Opens N connections to HOST:PORT, non-blocking, at most --inflight connecting at once.
      Each socket binds a source address first (127.0.0.2, 127.0.0.3, ... one per --per-source
      connections) with IP_BIND_ADDRESS_NO_PORT, so the kernel picks the source port at connect
      time per (source, destination) pair: N is not bounded by one address's ephemeral range.
      Writes "connected C failed E" to F, then holds them until SIGTERM/SIGINT, and on exit
      prints how many were still open (a proxy that dropped idle connections shows here).

Raise RLIMIT_NOFILE before running (ulimit -n); both modes try to raise the soft limit to the hard one.
"""
import argparse
import errno
import ipaddress
import os
import resource
import selectors
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


stop = False


def on_signal(_sig, _frm):
    global stop
    stop = True


def serve(args):
    raise_nofile()
    sel = selectors.DefaultSelector()
    for a in args.listen.split(","):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(hostport(a))
        ls.listen(65535)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ)
    held = []
    last = 0.0
    write_atomic(args.count_file, "0")
    while not stop:
        for key, _ in sel.select(0.2):
            while True:
                try:
                    c, _ = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # EMFILE and friends: report, keep going
                    if e.errno in (errno.EMFILE, errno.ENFILE):
                        sys.stderr.write("holder serve: %s\n" % e)
                        time.sleep(0.1)
                        break
                    raise
                held.append(c)
        now = time.monotonic()
        if now - last >= 0.2:
            write_atomic(args.count_file, str(len(held)))
            last = now
    write_atomic(args.count_file, str(len(held)))


def connect(args):
    limit = raise_nofile()
    if limit < args.n + 100:
        sys.exit("holder connect: RLIMIT_NOFILE %d is below %d" % (limit, args.n + 100))
    dst = hostport(args.target)
    base = ipaddress.IPv4Address(args.sources)
    sel = selectors.DefaultSelector()
    held, failed, opened, pending = [], 0, 0, 0
    t0 = time.monotonic()
    while (opened < args.n or pending) and not stop:
        while opened < args.n and pending < args.inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((str(base + opened // args.per_source), 0))
            rc = s.connect_ex(dst)
            opened += 1
            if rc == 0:
                held.append(s)
            elif rc == errno.EINPROGRESS:
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                failed += 1
                s.close()
        for key, _ in sel.select(1.0):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                held.append(s)
            else:
                failed += 1
                s.close()
        if time.monotonic() - t0 > args.timeout:
            sys.stderr.write("holder connect: timeout with %d still connecting\n" % pending)
            break
    sel.close()
    write_atomic(args.status_file, "connected %d failed %d seconds %.1f" % (len(held), failed, time.monotonic() - t0))
    while not stop:
        time.sleep(0.2)
    # Still open? A socket the peer closed is readable with EOF (or an error).
    sel = selectors.DefaultSelector()
    for s in held:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    for key, _ in sel.select(0):
        try:
            if key.fileobj.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except OSError:
            closed += 1
    print("holder connect: %d connected, %d failed, %d still open at exit" % (len(held), failed, len(held) - closed))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("listen")
    s.add_argument("--count-file", required=True)
    c = sub.add_parser("connect")
    c.add_argument("target")
    c.add_argument("-n", type=int, default=100000)
    c.add_argument("--sources", default="127.0.0.2")
    c.add_argument("--per-source", type=int, default=10000)
    c.add_argument("--inflight", type=int, default=512)
    c.add_argument("--timeout", type=float, default=300)
    c.add_argument("--status-file", required=True)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve(args) if args.mode == "serve" else connect(args)


if __name__ == "__main__":
    main()
