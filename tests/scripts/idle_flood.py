#!/usr/bin/env python3
"""Manual figure for SECURITY.md: an idle-connection flood against a running collector.

Opens N idle connections (half to the gRPC port with half an HTTP/2 preface, half to the HTTP
port with half a request head) from several worker processes (one process' descriptor limit is
too low for 25 000), from loopback sources 127.1.x.y (200 per source, below the default per-peer
cap). While they are held it measures a real agent delivery and a /metrics scrape, and counts
the collector's open descriptors; then it releases the flood and counts them again.

    python3 tests/scripts/idle_flood.py --grpc 127.0.0.1:50051 --http 127.0.0.1:9184 \
        --pid $(pidof dsreg-collector) --agent target/debug/dsreg-agent \
        --status endpoint-agent/testdata/dsregcmd/domain-joined-discover-0x801c001d-elevated-ws2022.txt \
        --connections 25000

Loopback only. Bounded: every connect has a 0.2 s timeout, a worker stops after 200 failed
connects in a row, and the flood is held for --hold seconds at most.
"""
import argparse
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import tempfile
import time

PER_SOURCE = 200


def worker(idx, count, grpc, http, ready, release, held_out):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, fails = [], 0
    for i in range(count):
        n = idx * count + i
        group = n // PER_SOURCE
        src = "127.1.%d.%d" % (group // 250, group % 250 + 1)
        to, head = (grpc, b"PRI * HTTP/2.0\r\n") if n % 2 == 0 else (http, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        s = socket.socket()
        s.settimeout(0.2)
        try:
            s.bind((src, 0))
            s.connect(to)
            s.send(head)
            socks.append(s)
            fails = 0
        except OSError:
            s.close()
            fails += 1
            if fails >= 200:
                break
    held_out.put(len(socks))
    ready.set()
    release.wait(600)
    for s in socks:
        s.close()


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def addr(s):
    h, p = s.rsplit(":", 1)
    return (h, int(p))


def measure(args):
    t = time.monotonic()
    r = subprocess.run(
        ["curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://%s/metrics" % args.http],
        capture_output=True, text=True)
    metrics = (r.stdout.strip(), time.monotonic() - t)
    spool = tempfile.mkdtemp()
    t = time.monotonic()
    try:
        a = subprocess.run(
            [args.agent, "send", "--collector", "http://%s" % args.grpc, "--status-file", args.status,
             "--machine-id", "flood-probe-%d" % int(time.time()), "--hostname", "FLOOD-PROBE",
             "--spool-dir", spool], capture_output=True, timeout=60)
        agent = (a.returncode, time.monotonic() - t)
    except subprocess.TimeoutExpired:
        agent = ("timeout", time.monotonic() - t)
    return metrics, agent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--connections", type=int, default=25000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--hold", type=float, default=20.0)
    args = p.parse_args()
    before = fds(args.pid)
    print("baseline: collector fds %d; /metrics and delivery: %s" % (before, measure(args)))
    per = args.connections // args.workers
    release = mp.Event()
    held = mp.Queue()
    readies, procs = [], []
    t0 = time.monotonic()
    for w in range(args.workers):
        ready = mp.Event()
        pr = mp.Process(target=worker, args=(w, per, addr(args.grpc), addr(args.http), ready, release, held))
        pr.start()
        readies.append(ready)
        procs.append(pr)
    for r in readies:
        r.wait(300)
    opened = sum(held.get() for _ in procs)
    print("flood: %d connections opened in %.1fs; collector fds %d" % (opened, time.monotonic() - t0, fds(args.pid)))
    (code, took), agent = measure(args)
    print("during flood: /metrics %s in %.3fs; agent send exit %s in %.2fs; collector fds %d"
          % (code, took, agent[0], agent[1], fds(args.pid)))
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        time.sleep(1)
    print("after holding %.0fs (flood still connected): collector fds %d" % (args.hold, fds(args.pid)))
    release.set()
    for pr in procs:
        pr.join(60)
    time.sleep(2)
    print("after release: collector fds %d; /metrics and delivery: %s" % (fds(args.pid), measure(args)))


if __name__ == "__main__":
    main()
