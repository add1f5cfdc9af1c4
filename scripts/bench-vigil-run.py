#!/usr/bin/env python3
"""Benchmarks of `vigil run` (docs/benchmarks.md, section "vigil run").

  scripts/bench-vigil-run.py [--vigil .build/release/vigil] [--bench .build/release/vigil-bench]
                             [--dir /tmp/bench-vigil-run] [--only signal,ledger,idle] [--trials 40]
                             [--rounds 5] [--duration 3] [--warmup 0.5] [--clients "1 64"]
                             [--floor-records 1000] [--binaries "NAME=PATH ..."]
                             [--vigil-cpus LIST] [--load-cpus LIST]

1. SIGTERM -> the program receives its stop signal: median and p99 over
   --trials runs, with --stop-delay 0 and 0.1. The program stamps
   CLOCK_MONOTONIC in its handler; the sender stamps it before kill().
2. Ledger begin -> ok latency (p50, p99) at 1 and 64 concurrent clients,
   and records/s (begin and end records, each durable before its ok),
   against the floor of one fdatasync per 48-byte record measured in the
   same directory, in the same run: `vigil-bench ledger` (native, one
   thread, one request outstanding per client) and `vigil-bench
   fsync-floor`, alternating: per round, floor, each client count, floor.
   --binaries compares vigil builds, alternating within each round.
3. vigil's own CPU while idle: utime+stime over 10 s.
Standard library only; build vigil and vigil-bench first
(swift build -c release). Markdown table on stdout, per round on stderr.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


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


def cpu_list(text):
    return ["taskset", "-c", text] if text else []


def bench(args, *argv, cpus=None):
    """One vigil-bench run; its JSON object."""
    out = subprocess.run(cpu_list(cpus) + [args.bench, *argv, "--json"], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_ledger_vigil(args, name, binary, state):
    """vigil run -- sleep, for the ledger load; its Popen and socket path."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID")}
    env["VIGIL_LOG_LEVEL"] = "warning"
    p = subprocess.Popen(cpu_list(args.vigil_cpus) + [binary, "run", "--state-dir", state, "--stop-timeout", "5", "--",
                                                      "sleep", "3600"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    path = os.path.join(state, "ledger.sock")
    for _ in range(1000):
        if os.path.exists(path):
            break
        if p.poll() is not None:
            sys.exit("bench-vigil-run: %s (%s) exited %d before its ledger socket appeared" % (name, binary, p.returncode))
        time.sleep(0.01)
    time.sleep(0.2)
    return p, path


def ledger_rounds(args, binaries):
    """--rounds rounds; in each, every binary in turn: vigil run started,
    then floor, ledger at each client count, floor again, SIGTERM. Returns
    {name: [round results]}: floors (records/s, before and after) and per
    client count the vigil-bench ledger JSON."""
    results = {name: [] for name, _ in binaries}
    for r in range(args.rounds):
        for name, binary in binaries:
            state = os.path.join(args.dir, "ledger-" + name)
            p, path = start_ledger_vigil(args, name, binary, state)
            rec = {"floor": [], "ledger": {}}
            rec["floor"].append(bench(args, "fsync-floor", "--dir", state, "--records", str(args.floor_records),
                                      cpus=args.load_cpus))
            for clients in args.clients:
                rec["ledger"][clients] = bench(args, "ledger", "--connect", "unix:" + path, "--clients", str(clients),
                                               "--duration", str(args.duration), "--warmup", str(args.warmup),
                                               "--prefix", "r%d" % r, "--server-pid", str(p.pid), cpus=args.load_cpus)
            rec["floor"].append(bench(args, "fsync-floor", "--dir", state, "--records", str(args.floor_records),
                                      cpus=args.load_cpus))
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
            floor = statistics.mean(f["records_per_s"] for f in rec["floor"])
            line = "round %d %s: floor %.0f/s (%s)" % (r + 1, name, floor, ", ".join("%.0f" % f["records_per_s"] for f in rec["floor"]))
            for clients in args.clients:
                l = rec["ledger"][clients]
                line += "; %d client(s) %.0f/s = %.1fx, begin p50 %.0f p99 %.0f us, vigil cpu %.2f, other cpu %.2f" % (
                    clients, l["records_per_s"], l["records_per_s"] / floor, l["begin_us"]["p50"], l["begin_us"]["p99"],
                    l.get("server_cpu", 0), l.get("other_cpu", 0))
            print(line, file=sys.stderr, flush=True)
            results[name].append(rec)
    return results


def report_ledger(args, binaries, results, load_before, load_after):
    def med(xs):
        return statistics.median(xs)

    def rng(xs):
        return "%s–%s" % (fmt(min(xs)), fmt(max(xs)))

    def fmt(x):
        return "%.1f" % x if x < 100 else "%.0f" % x
    print()
    print("Ledger: %d rounds, binaries alternating within each round (%s); per round: floor, %s, floor; "
          "vigil-bench ledger --duration %s --warmup %s; fsync-floor --records %d (48-byte records); "
          "vigil on CPUs %s, load on CPUs %s; loadavg before %s, after %s"
          % (args.rounds, ", ".join(n for n, _ in binaries), ", ".join("%d client(s)" % c for c in args.clients),
             args.duration, args.warmup, args.floor_records, args.vigil_cpus or "any", args.load_cpus or "any",
             load_before, load_after))
    print()
    print("| vigil | clients | records/s median (range) | × floor median (range) | begin→ok p50 µs median (range) | p99 µs median (range) "
          "| end→ok p50 / p99 µs median | vigil CPU (cores) | µs CPU / record | other CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in binaries:
        rounds = results[name]
        floors = [statistics.mean(f["records_per_s"] for f in r["floor"]) for r in rounds]
        for clients in args.clients:
            ls = [r["ledger"][clients] for r in rounds]
            rates = [l["records_per_s"] for l in ls]
            ratios = [l["records_per_s"] / f for l, f in zip(ls, floors)]
            p50 = [l["begin_us"]["p50"] for l in ls]
            p99 = [l["begin_us"]["p99"] for l in ls]
            print("| %s | %d | %s (%s) | %.1f (%s) | %s (%s) | %s (%s) | %s / %s | %.2f | %.1f | %.2f |" % (
                name, clients, fmt(med(rates)), rng(rates), med(ratios), rng(ratios), fmt(med(p50)), rng(p50),
                fmt(med(p99)), rng(p99), fmt(med([l["end_us"]["p50"] for l in ls])), fmt(med([l["end_us"]["p99"] for l in ls])),
                med([l.get("server_cpu", 0) for l in ls]), med([l.get("server_us_per_record", 0) for l in ls]),
                med([l.get("other_cpu", 0) for l in ls])))
        print("| %s | floor | %s (%s) | 1 | | | | | | |" % (name, fmt(med(floors)), rng(floors)))
    if 64 in args.clients:
        name = binaries[0][0]
        rounds = results[name]
        ratios = [r["ledger"][64]["records_per_s"] / statistics.mean(f["records_per_s"] for f in r["floor"]) for r in rounds]
        print()
        print("Goal (%s, 64 clients ≥ 10× one fdatasync per record, median over rounds): %.1f× — %s; %d of %d rounds ≥ 10×"
              % (name, med(ratios), "met" if med(ratios) >= 10 else "NOT met", sum(x >= 10 for x in ratios), len(ratios)))


def idle_cpu(args):
    state = os.path.join(args.dir, "idle-state")
    p = start(args, state, ["sleep", "600"], ("--stop-timeout", "5"))
    path = os.path.join(state, "ledger.sock")
    while not os.path.exists(path):
        time.sleep(0.01)
    time.sleep(0.2)
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu():
        f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / ticks
    c0 = cpu()
    time.sleep(10)
    print("vigil idle for 10 s: %.3f s of CPU" % (cpu() - c0))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vigil", default=os.path.join(ROOT, ".build", "release", "vigil"))
    ap.add_argument("--bench", default=os.path.join(ROOT, ".build", "release", "vigil-bench"))
    ap.add_argument("--dir", default="/tmp/bench-vigil-run")
    ap.add_argument("--only", default="signal,ledger,idle", help="comma-separated parts: signal, ledger, idle")
    ap.add_argument("--trials", type=int, default=40, help="stop-signal trials per --stop-delay")
    ap.add_argument("--rounds", type=int, default=5, help="ledger rounds (each: floor, loads, floor)")
    ap.add_argument("--duration", type=float, default=3, help="seconds measured per ledger load")
    ap.add_argument("--warmup", type=float, default=0.5, help="seconds of load before measuring")
    ap.add_argument("--clients", default="1 64", help="ledger client counts")
    ap.add_argument("--floor-records", type=int, default=1000, help="records per fsync-floor run")
    ap.add_argument("--binaries", default="", help="'NAME=PATH ...': vigil builds compared in the ledger part, alternating")
    ap.add_argument("--vigil-cpus", default="", help="taskset CPU list for vigil in the ledger part (default: any)")
    ap.add_argument("--load-cpus", default="", help="taskset CPU list for vigil-bench in the ledger part (default: any)")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split()]
    parts = set(args.only.split(","))
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    print("machine: %d CPUs, kernel %s, loadavg %s; files in %s" % (os.cpu_count(), os.uname().release,
          open("/proc/loadavg").read().split(" ", 3)[:3], args.dir), file=sys.stderr)

    if "signal" in parts:
        for delay in (0, 0.1):
            lat = stop_signal_latency(args, delay)
            print("SIGTERM -> program's stop signal, --stop-delay %s: median %.2f ms, p99 %.2f ms, min %.2f, max %.2f (%d trials)"
                  % (delay, statistics.median(lat), pct(lat, 99), min(lat), max(lat), len(lat)))
    if "ledger" in parts:
        binaries = [tuple(b.split("=", 1)) for b in args.binaries.split()] or [("vigil", args.vigil)]
        load_before = " ".join(open("/proc/loadavg").read().split()[:3])
        results = ledger_rounds(args, binaries)
        load_after = " ".join(open("/proc/loadavg").read().split()[:3])
        report_ledger(args, binaries, results, load_before, load_after)
    if "idle" in parts:
        idle_cpu(args)


if __name__ == "__main__":
    main()
