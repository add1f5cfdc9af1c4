"""Client for `vigil run` (docs/run.md): the previous run's verdict and the
work ledger, standard library only.

Under `vigil run` the program's environment has VIGIL_PREVIOUS_RUN,
VIGIL_PREVIOUS_RUN_FILE, VIGIL_STOP_BUDGET_MS and VIGIL_LEDGER. Without
them (not under vigil) every ledger call is a no-op: begin/end/resolve
return at once and interrupted() is empty, so the same program runs
unchanged outside vigil.

Blocking::

    ledger = vigil.Ledger()
    with ledger.work("session-1", "turn-7"):
        ...  # durable `begin` before, durable `end` after

asyncio::

    ledger = await vigil.AsyncLedger.connect()
    for session, ids in (await ledger.interrupted()).items(): ...
    await ledger.begin(session, turn_id); ...; await ledger.end(session, turn_id)
"""

import asyncio
import collections
import contextlib
import json
import os
import socket
import threading

__all__ = [
    "LedgerError", "Ledger", "AsyncLedger",
    "under_vigil", "previous_run", "previous_run_info", "stop_budget_ms",
]


class LedgerError(Exception):
    """The ledger refused a request: ``code`` is the answer's code
    (already_open, not_open, not_durable, bad_json, ...)."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def under_vigil(environ=None):
    """True when this process was started by `vigil run` (VIGIL_LEDGER set)."""
    return bool((environ if environ is not None else os.environ).get("VIGIL_LEDGER"))


def previous_run(environ=None):
    """How the previous run ended: first-start, clean, cut-short,
    killed-during-drain, crash or corrupt; None when not under vigil."""
    return (environ if environ is not None else os.environ).get("VIGIL_PREVIOUS_RUN") or None


def previous_run_info(environ=None):
    """The object `vigilctl last-shutdown --json` prints (with "interrupted"),
    read from VIGIL_PREVIOUS_RUN_FILE; None when not under vigil."""
    path = (environ if environ is not None else os.environ).get("VIGIL_PREVIOUS_RUN_FILE")
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def stop_budget_ms(environ=None):
    """The program's share of the stop budget in milliseconds (None when not
    under vigil): finish or give up on work within it after the stop signal."""
    text = (environ if environ is not None else os.environ).get("VIGIL_STOP_BUDGET_MS")
    return int(text) if text else None


def _request(op, session=None, id=None):
    r = {"op": op}
    if session is not None:
        r["session"] = session
    if id is not None:
        r["id"] = id
    return (json.dumps(r, separators=(",", ":")) + "\n").encode()


def _result(answer, id=None):
    if answer.get("op") == "error":
        raise LedgerError(answer.get("code", "error"), answer.get("message", ""))
    if id is not None and answer.get("id") != id:
        # Answers come in request order: another id means the connection
        # is out of step, and this `ok` is not this request's.
        raise ConnectionError("the ledger answered %r for id %r: out of step" % (answer, id))
    return answer


# The longest answer line accepted (an `interrupted` answer lists every
# interrupted id, each up to 1 KiB): far beyond any real one.
_MAX_ANSWER = 1 << 30


def _sessions(answer):
    return {s["session"]: list(s["ids"]) for s in answer.get("sessions", [])}


class Ledger:
    """Blocking ledger client. Thread-safe (one request at a time). With
    ``path=None`` it uses $VIGIL_LEDGER; without it, a no-op ledger."""

    def __init__(self, path=None, timeout=None):
        self.path = path if path is not None else os.environ.get("VIGIL_LEDGER") or None
        self.timeout = timeout
        self._sock = None
        self._file = None
        self._lock = threading.Lock()

    @property
    def enabled(self):
        """False in no-op mode (not under vigil)."""
        return self.path is not None

    def _call(self, line, id=None):
        with self._lock:
            if self._sock is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(self.path)
                self._sock, self._file = s, s.makefile("rb")
            try:
                self._sock.sendall(line)
                answer = self._file.readline()
            except BaseException:
                # Whatever interrupted us (a timeout, KeyboardInterrupt from
                # SIGINT) left an answer unread: a later call on this
                # connection would read it as its own. Start afresh.
                self._close_locked()
                raise
            if not answer:
                self._close_locked()
                raise ConnectionError("the ledger closed the connection (vigil is stopping or gone)")
            try:
                return _result(json.loads(answer), id)
            except ConnectionError:
                self._close_locked()
                raise

    def begin(self, session, id):
        """Records that work `id` of `session` began; returns once durable."""
        if self.enabled:
            self._call(_request("begin", session, id), id)

    def end(self, session, id):
        """Records that work `id` of `session` ended; returns once durable."""
        if self.enabled:
            self._call(_request("end", session, id), id)

    def interrupted(self):
        """{session: [ids]}: work begun and never ended in earlier runs, not yet resolved."""
        if not self.enabled:
            return {}
        return _sessions(self._call(_request("interrupted")))

    def resolve(self, session):
        """The program has dealt with `session`'s interrupted work; durable on return."""
        if self.enabled:
            self._call(_request("resolve", session))

    @contextlib.contextmanager
    def work(self, session, id):
        """begin before the block, end after it — only when it completes:
        work cut off by an exception stays open (the next run sees it
        interrupted) unless the exception is handled inside."""
        self.begin(session, id)
        yield
        self.end(session, id)

    def close(self):
        with self._lock:
            self._close_locked()

    def _close_locked(self):
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncLedger:
    """asyncio ledger client: requests may be issued concurrently from many
    tasks over one connection (answers come in request order). Create it
    with ``await AsyncLedger.connect()``; no-op when not under vigil."""

    def __init__(self, path=None):
        self.path = path if path is not None else os.environ.get("VIGIL_LEDGER") or None
        self._reader = None
        self._writer = None
        self._waiting = collections.deque()
        self._reading = None

    @classmethod
    async def connect(cls, path=None):
        ledger = cls(path)
        if ledger.enabled:
            ledger._reader, ledger._writer = await asyncio.open_unix_connection(ledger.path, limit=_MAX_ANSWER)
            ledger._reading = asyncio.ensure_future(ledger._read_answers())
        return ledger

    @property
    def enabled(self):
        return self.path is not None

    async def _read_answers(self):
        error = ConnectionError("the ledger closed the connection (vigil is stopping or gone)")
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                future = self._waiting.popleft()
                if not future.done():
                    future.set_result(json.loads(line))
        except Exception as e:  # a broken connection fails every waiter
            error = e
        while self._waiting:
            f = self._waiting.popleft()
            if not f.done():
                f.set_exception(error)

    async def _call(self, line, id=None):
        if self._writer is None or self._reading.done():
            raise ConnectionError("the ledger connection is closed")
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._writer.write(line)
        await self._writer.drain()
        return _result(await future, id)

    async def begin(self, session, id):
        if self.enabled:
            await self._call(_request("begin", session, id), id)

    async def end(self, session, id):
        if self.enabled:
            await self._call(_request("end", session, id), id)

    async def interrupted(self):
        if not self.enabled:
            return {}
        return _sessions(await self._call(_request("interrupted")))

    async def resolve(self, session):
        if self.enabled:
            await self._call(_request("resolve", session))

    @contextlib.asynccontextmanager
    async def work(self, session, id):
        """As Ledger.work, for `async with`."""
        await self.begin(session, id)
        yield
        await self.end(session, id)

    async def close(self):
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            await asyncio.gather(self._reading, return_exceptions=True)
            self._writer = None
