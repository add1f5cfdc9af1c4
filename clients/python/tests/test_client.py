"""Tests of the vigil client: the no-op mode, the environment helpers, and
both APIs against the real `vigil run` (skipped when it is not built:
`swift build --product vigil`, or set VIGIL_BIN)."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vigil  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
VIGIL = os.environ.get("VIGIL_BIN") or os.path.join(ROOT, ".build", "debug", "vigil")


class NoOpModeTests(unittest.TestCase):
    def test_helpers_without_vigil(self):
        self.assertFalse(vigil.under_vigil({}))
        self.assertIsNone(vigil.previous_run({}))
        self.assertIsNone(vigil.previous_run_info({}))
        self.assertIsNone(vigil.stop_budget_ms({}))

    def test_blocking_ledger_is_a_no_op(self):
        old = os.environ.pop("VIGIL_LEDGER", None)
        try:
            ledger = vigil.Ledger()
            self.assertFalse(ledger.enabled)
            ledger.begin("s", "t")
            with ledger.work("s", "u"):
                pass
            ledger.end("s", "t")
            ledger.resolve("s")
            self.assertEqual(ledger.interrupted(), {})
        finally:
            if old is not None:
                os.environ["VIGIL_LEDGER"] = old

    def test_async_ledger_is_a_no_op(self):
        async def go():
            ledger = await vigil.AsyncLedger.connect(path=None) if "VIGIL_LEDGER" not in os.environ else vigil.AsyncLedger(path=None)
            ledger.path = None
            await ledger.begin("s", "t")
            async with ledger.work("s", "u"):
                pass
            self.assertEqual(await ledger.interrupted(), {})
            await ledger.close()
        asyncio.run(go())

    def test_helpers_read_the_environment(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"classification":"crash","interrupted":[]}\n')
        env = {"VIGIL_LEDGER": "/x", "VIGIL_PREVIOUS_RUN": "crash", "VIGIL_PREVIOUS_RUN_FILE": f.name, "VIGIL_STOP_BUDGET_MS": "2700"}
        self.assertTrue(vigil.under_vigil(env))
        self.assertEqual(vigil.previous_run(env), "crash")
        self.assertEqual(vigil.previous_run_info(env)["classification"], "crash")
        self.assertEqual(vigil.stop_budget_ms(env), 2700)
        os.unlink(f.name)


@unittest.skipUnless(os.access(VIGIL, os.X_OK), "vigil is not built at %s" % VIGIL)
class AgainstVigilTests(unittest.TestCase):
    """The program under vigil is this test's own helper, so the client runs
    with the environment vigil gives it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vpy-", dir="/tmp")
        self.state = os.path.join(self.dir, "state")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_under_vigil(self, code, stop=False, expect=0):
        prog = os.path.join(self.dir, "prog.py")
        with open(prog, "w") as f:
            f.write("import sys, os, json, asyncio, signal, time\nsys.path.insert(0, %r)\nimport vigil\n" % os.path.join(ROOT, "clients", "python") + code)
        p = subprocess.Popen([VIGIL, "run", "--state-dir", self.state, "--stop-timeout", "3", "--", sys.executable, prog],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
        early = b""
        if stop:
            deadline = time.time() + 10
            line = b"x"
            while line and b"ready" not in line and time.time() < deadline:
                line = p.stdout.readline()
                early += line
            p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=20)
        out = early + out
        self.assertEqual(p.returncode, expect, out)
        return [json.loads(l) for l in out.decode().splitlines() if l.startswith("{")]

    def test_blocking_api_round_trip_and_recovery(self):
        first = self.run_under_vigil(
            "l = vigil.Ledger()\n"
            "print(json.dumps({'prev': vigil.previous_run(), 'budget': vigil.stop_budget_ms(), 'enabled': l.enabled}))\n"
            "l.begin('s1', 't1'); l.begin('s1', 't2'); l.begin('s2', 'x')\n"
            "l.end('s1', 't1')\n"
            "with l.work('s3', 'w'): pass\n"
            "try:\n    l.end('s1', 'nope')\nexcept vigil.LedgerError as e:\n    print(json.dumps({'code': e.code}))\n"
            "sys.stdout.flush(); os._exit(3)\n", expect=3)
        self.assertEqual(first[0], {"prev": "first-start", "budget": 2700, "enabled": True})
        self.assertEqual(first[1], {"code": "not_open"})
        second = self.run_under_vigil(
            "l = vigil.Ledger()\n"
            "info = vigil.previous_run_info()\n"
            "print(json.dumps({'prev': vigil.previous_run(), 'file': info['classification'], 'file_interrupted': info['interrupted'], 'interrupted': l.interrupted()}))\n"
            "l.resolve('s1')\n"
            "print(json.dumps({'after': l.interrupted()}))\n")
        self.assertEqual(second[0]["prev"], "crash")
        self.assertEqual(second[0]["file"], "crash")
        self.assertEqual(second[0]["interrupted"], {"s1": ["t2"], "s2": ["x"]})
        self.assertEqual(second[0]["file_interrupted"], [{"session": "s1", "turns": ["t2"]}, {"session": "s2", "turns": ["x"]}])
        self.assertEqual(second[1], {"after": {"s2": ["x"]}})

    def test_an_interrupted_call_does_not_put_the_connection_out_of_step(self):
        # KeyboardInterrupt (SIGINT) while `begin` waits for its answer: the
        # next call must not take that answer for its own.
        out = self.run_under_vigil(
            "l = vigil.Ledger()\n"
            "l.begin('s', 'B')\n"
            "def interrupted():\n    raise KeyboardInterrupt\n"
            "l._file.readline = interrupted\n"
            "try:\n    l.begin('s', 'A')\nexcept KeyboardInterrupt:\n    pass\n"
            "print(json.dumps({'closed': l._sock is None}))\n"
            "l.begin('s', 'C')\n"
            "l.end('s', 'B')\n"
            "print(json.dumps({'ok': True}))\n")
        self.assertEqual(out, [{"closed": True}, {"ok": True}], "the unread answer went with the connection")

    def test_long_interrupted_answers(self):
        # Over a megabyte of interrupted ids (each up to 1 KiB): both APIs.
        self.run_under_vigil(
            "l = vigil.Ledger()\n"
            "for i in range(1100):\n    l.begin('big', ('%04d' % i) * 250)\n"
            "sys.stdout.flush(); os._exit(1)\n", expect=1)
        out = self.run_under_vigil(
            "async def main():\n"
            "    a = await vigil.AsyncLedger.connect()\n"
            "    got = await a.interrupted()\n"
            "    await a.close()\n"
            "    print(json.dumps({'async': len(got['big']), 'blocking': len(vigil.Ledger().interrupted()['big'])}))\n"
            "asyncio.run(main())\n")
        self.assertEqual(out, [{"async": 1100, "blocking": 1100}])

    def test_asyncio_api_concurrent_requests_and_stop(self):
        out = self.run_under_vigil(
            "async def main():\n"
            "    l = await vigil.AsyncLedger.connect()\n"
            "    await asyncio.gather(*(l.begin('s', 't%d' % i) for i in range(50)))\n"
            "    await asyncio.gather(*(l.end('s', 't%d' % i) for i in range(0, 50, 2)))\n"
            "    try:\n        await l.begin('s', 't1')\n    except vigil.LedgerError as e:\n        print(json.dumps({'code': e.code}))\n"
            "    print('ready', flush=True)\n"
            "    stop = asyncio.Event()\n"
            "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)\n"
            "    await stop.wait()\n"
            "    await l.close()\n"
            "asyncio.run(main())\n", stop=True)
        self.assertEqual(out, [{"code": "already_open"}])
        nxt = self.run_under_vigil("print(json.dumps(vigil.Ledger().interrupted()))\n")
        self.assertEqual(nxt, [{"s": ["t%d" % i for i in range(1, 50, 2)]}])


if __name__ == "__main__":
    unittest.main()
