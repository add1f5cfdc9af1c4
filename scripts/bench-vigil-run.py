#!/usr/bin/env python3
"""Benchmarks of `vigil run` (docs/benchmarks.md, section "vigil run").

  scripts/bench-vigil-run.py [--vigil .build/release/vigil] [--dir /tmp/bench-vr]
                             [--trials 40] [--requests 4000]

1. SIGTERM -> the program receives its stop signal: median and p99 over
   --trials runs, with --stop-delay 0 and 0.1. The program stamps
   CLOCK_MONOTONIC in its handler; the sender stamps it before kill().
2. Ledger begin -> ok latency (p50, p99) at 1 and 64 concurrent clients,
   and begin+end throughput, against the floor of one fdatasync per record
   measured in the same directory, in the same run.
3. vigil's own CPU while idle: utime+stime over 10 s.
Standard library only; the ledger client is clients/python.
"""
import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import vigil  # noqa: E402


def start(args, state, program, extra=()):
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID")}
    env["VIGIL_LOG_LEVEL"] = "warning"
    return subprocess.Popen([args.vigil, "run", "--state-dir", state, *extra, "--", *program],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def stop_signal_latency(args, delay):
    stamp = os.path.join(args.dir, "stamp")
    prog = [sys.executable, "-c",
            "import signal,time,os,sys\n"
            "def h(*a):\n"
            "    t=time.monotonic_ns(); open(sys.argv[1],'w').write(str(t)); os._exit(0)\n"
            "signal.signal(signal.SIGTERM,h)\n"
            "print('up',flush=True)\n"
            "while True: time.sleep(1)\n", stamp]
    lat = []
    for i in range(args.trials):
        state = os.path.join(args.dir, "sig-state")
        p = start(args, state, prog, ("--stop-timeout", "5", "--stop-delay", str(delay)))
        p.stdout.readline()
        time.sleep(0.05)
        if os.path.exists(stamp):
            os.unlink(stamp)
        t0 = time.monotonic_ns()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        lat.append((int(open(stamp).read()) - t0) / 1e6)
    return lat


async def ledger_latency(path, clients, per_client):
    ledgers = [await vigil.AsyncLedger.connect(path) for _ in range(clients)]
    lat = []

    async def one(k, ledger):
        for i in range(per_client):
            t0 = time.perf_counter_ns()
            await ledger.begin("c%d" % k, "t%d" % i)
            lat.append((time.perf_counter_ns() - t0) / 1e3)
            await ledger.end("c%d" % k, "t%d" % i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k, l) for k, l in enumerate(ledgers)))
    took = time.perf_counter() - t0
    for l in ledgers:
        await l.close()
    return lat, 2 * clients * per_client / took


def _worker(path, first, clients, per_client, queue):
    async def run():
        ledgers = [await vigil.AsyncLedger.connect(path) for _ in range(clients)]
        lat = []

        async def one(k, ledger):
            for i in range(per_client):
                t0 = time.perf_counter_ns()
                await ledger.begin("c%d" % k, "t%d" % i)
                lat.append((time.perf_counter_ns() - t0) / 1e3)
                await ledger.end("c%d" % k, "t%d" % i)
        await asyncio.gather(*(one(first + k, l) for k, l in enumerate(ledgers)))
        for l in ledgers:
            await l.close()
        return lat
    queue.put(asyncio.run(run()))


def ledger_load(path, clients, per_client, processes):
    """`clients` connections spread over `processes` client processes
    (one Python process cannot keep 64 connections busy)."""
    if processes <= 1:
        return asyncio.run(ledger_latency(path, clients, per_client))
    queue = multiprocessing.Queue()
    share = clients // processes
    procs = [multiprocessing.Process(target=_worker, args=(path, i * share, share, per_client, queue)) for i in range(processes)]
    t0 = time.perf_counter()
    for pr in procs:
        pr.start()
    lat = []
    for _ in procs:
        lat += queue.get()
    took = time.perf_counter() - t0
    for pr in procs:
        pr.join()
    return lat, 2 * share * processes * per_client / took


def fdatasync_floor(directory, n=300):
    path = os.path.join(directory, "floor")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, b"x" * 48)
        os.fdatasync(fd)
    took = time.perf_counter() - t0
    os.close(fd)
    os.unlink(path)
    return n / took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", default=os.path.join(ROOT, ".build", "release", "vigil"))
    ap.add_argument("--dir", default="/tmp/bench-vigil-run")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--processes", type=int, default=1, help="client processes for the 64-client load")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)

    for delay in (0, 0.1):
        lat = stop_signal_latency(args, delay)
        print("SIGTERM -> program's stop signal, --stop-delay %s: median %.2f ms, p99 %.2f ms, min %.2f, max %.2f (%d trials)"
              % (delay, statistics.median(lat), pct(lat, 99), min(lat), max(lat), len(lat)))

    state = os.path.join(args.dir, "ledger-state")
    p = start(args, state, ["sleep", "600"], ("--stop-timeout", "5"))
    path = os.path.join(state, "ledger.sock")
    while not os.path.exists(path):
        time.sleep(0.01)
    time.sleep(0.2)
    floor = fdatasync_floor(state)
    print("floor: one fdatasync per record in %s: %.0f records/s" % (state, floor))
    for clients in (1, 64):
        procs = args.processes if clients > 1 else 1
        lat, rate = ledger_load(path, clients, max(1, args.requests // clients), procs)
        print("ledger, %d client(s) in %d process(es): begin->ok p50 %.0f us, p99 %.0f us; %.0f records/s (%.1fx the floor)"
              % (clients, procs, pct(lat, 50), pct(lat, 99), rate, rate / floor))
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu():
        f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / ticks
    c0 = cpu()
    time.sleep(10)
    print("vigil idle for 10 s: %.3f s of CPU" % (cpu() - c0))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)


if __name__ == "__main__":
    main()
