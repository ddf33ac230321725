"""A reference client for the evd agent's socket (docs/wire-format.md section 4.1).

Standard library only. Copy this file into a service, or use it as the model of a
client in another language:

    from evd_client import Client

    with Client("/run/evd/agent.sock") as client:
        seq = client.send({"type": "PageView", "ts": 1795000000000,
                           "user_id": "u1", "url": "/home"})
        results = client.send_many(events)   # pipelined; a seq or a Refused each

What it does for you:
- every event gets an ``event_id`` (a random UUID) unless it has one, so that a
  resend after a lost connection is stored once by the agent;
- lines are pipelined: up to ``window`` lines are written before their answers are
  read (the agent answers in order, after each line's fsync);
- a connection lost with lines unanswered (agent restart, crash) is reopened, with
  growing pauses, and every unanswered line is sent again, with the same event_id;
- ``spool_full`` (the agent's spool or disk is full) and ``shutting_down`` answers
  are retried after a pause that doubles up to ``max_backoff_s``: backpressure;
- answers that can never succeed (``json``, ``unknown_type``, ``schema``,
  ``too_large``, ``not_allowed``) are returned as :class:`Refused` (``send`` raises).

An event is durable in the agent's spool when its seq is returned; nothing before.
"""

import json
import socket
import time
import uuid

__all__ = ["Client", "Refused", "GaveUp"]

# The agent keeps reading while 4 chunks of 1,024 lines wait for their fsync; a
# larger window could stall the connection (docs/wire-format.md section 4.1).
MAX_WINDOW = 4096


class Refused(Exception):
    """The agent refused an event for good (``retryable`` is False) or, from
    ``send``, a retryable refusal outlived ``give_up_after_s``."""

    def __init__(self, code, error, retryable, event):
        super().__init__(error)
        self.code = code
        self.error = error
        self.retryable = retryable
        self.event = event

    def __repr__(self):
        return "Refused(%r, %r)" % (self.code, self.error)


class GaveUp(Exception):
    """Events were still unanswered after ``give_up_after_s``: their fate is unknown
    (resend them later with the same event_id to be sure)."""

    def __init__(self, message, unanswered):
        super().__init__(message)
        self.unanswered = unanswered


def _answer(text):
    """(seq, None) for an ok, (None, (code, error, retryable)) for a refusal."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None, ("internal", "unparseable answer: %r" % text, True)
    if isinstance(answer.get("ok"), int):
        return answer["ok"], None
    error = str(answer.get("error", "no error text"))
    # Agents before codes: the code is the error text's prefix.
    code = answer.get("code") or error.split(":", 1)[0]
    retryable = answer.get("retryable")
    if retryable is None:
        retryable = code in ("spool_full", "shutting_down", "internal")
    return None, (code, error, bool(retryable))


class Client:
    """One connection to an agent, reopened as needed. Not thread-safe: use one
    client per thread."""

    def __init__(self, path, window=1024, max_backoff_s=5.0, give_up_after_s=None,
                 connect_timeout_s=5.0):
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError("window must be 1..=%d" % MAX_WINDOW)
        self.path = path
        self.window = window
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnects = 0
        self.retries = 0
        self._sock = None
        self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock is not None:
            try:
                self._reader.close()
                self._sock.close()
            finally:
                self._sock = None
                self._reader = None

    def send(self, event):
        """Sends one event; returns its seq once durable, raises Refused."""
        result = self.send_many([event])[0]
        if isinstance(result, Refused):
            raise result
        return result

    def send_many(self, events):
        """Sends events pipelined; returns, per event and in order, its seq (durable)
        or a Refused. Retries what can be retried until it is answered for good, or
        until ``give_up_after_s`` (then raises GaveUp)."""
        lines = [self._line(e) for e in events]
        results = [None] * len(lines)
        todo = list(range(len(lines)))
        started = time.monotonic()
        backoff = 0.05
        while todo:
            if self.give_up_after_s is not None and time.monotonic() - started > self.give_up_after_s:
                raise GaveUp("%d events unanswered after %.0f s" % (len(todo), self.give_up_after_s), todo)
            retry = []
            progress = False
            try:
                self._connect()
                for start in range(0, len(todo), self.window):
                    chunk = todo[start:start + self.window]
                    self._sock.sendall(b"".join(lines[i] for i in chunk))
                    for n, i in enumerate(chunk):
                        text = self._reader.readline()
                        if not text:
                            raise ConnectionError("agent closed the connection")
                        seq, refusal = _answer(text)
                        if seq is not None:
                            results[i] = seq
                            progress = True
                            continue
                        code, error, retryable = refusal
                        if not retryable:
                            results[i] = Refused(code, error, False, events[i])
                            progress = True
                        elif code == "shutting_down":
                            # This line and all later ones on the connection were not taken.
                            retry.extend(chunk[n:])
                            retry.extend(todo[start + len(chunk):])
                            raise ConnectionError(error)
                        else:
                            retry.append(i)
                todo = retry
            except OSError:
                answered = {i for i in todo if results[i] is not None}
                todo = sorted(set(i for i in todo if i not in answered) | set(retry))
                self.close()
                self.reconnects += 1
            if todo:
                self.retries += len(todo)
                backoff = 0.05 if progress else min(backoff * 2, self.max_backoff_s)
                time.sleep(backoff)
        return results

    def _line(self, event):
        if isinstance(event, (bytes, str)):
            text = event.decode() if isinstance(event, bytes) else event
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                # Sent as one line: the agent answers with a `json` refusal.
                return text.rstrip("\n").replace("\n", " ").encode() + b"\n"
            event = parsed
        if "event_id" not in event:
            event = dict(event, event_id=uuid.uuid4().hex)
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    def _connect(self):
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout_s)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        self._sock = sock
        self._reader = sock.makefile("rb")
