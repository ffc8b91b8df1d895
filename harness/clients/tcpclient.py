#!/usr/bin/env python3
"""Test clients that this project did not write the TCP side of: Python's stdlib sockets.

Every byte is judged at both ends: the client knows what it sent and checks, byte for byte,
what an echo service sends back. Timestamps are CLOCK_REALTIME nanoseconds (the capture's
clock), so that a test can line them up with the harness's events and the pcap.

  tcpclient.py stream --target HOST:PORT --bytes N [--end keep|shutdown|close] [--json FILE]
      One connection: send N bytes (seeded), read the echo and verify it. `--end shutdown`
      half-closes (SHUT_WR) once everything is sent and then expects the rest of the echo and
      a clean EOF; `--end close` calls close() once everything is sent, without reading the
      rest (the server's later segments meet a closed socket). `--pause-at B --pause-s S`
      stops reading for S seconds once B bytes came back (the server's output piles up).
  tcpclient.py kv-quit --target HOST:PORT --seconds S
      Against a kv service: SET, then QUIT, which closes the server's side (BYE, then its
      FIN); the client keeps sending lines for S seconds (the server must take them, not reset
      the connection), then closes and waits until every byte it sent is acknowledged.
  tcpclient.py requests --target HOST:PORT --connections N --interval-ms 100 --seconds S
      N connections on one selectors loop, each sending a SIZE-byte request every INTERVAL
      and waiting for its echo; reports every request slower than --slow-ms, with when it was
      sent.

Exit status 0 when every byte came back as sent (and EOF came where it should), 1 otherwise.
The JSON report says what happened.
"""

import argparse
import fcntl
import hashlib
import json
import random
import socket
import struct
import sys
import termios
import threading
import time


def now_ns():
    return time.time_ns()


def target(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def connect(addr, timeout):
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def stream(args):
    data = random.Random(args.seed).randbytes(args.bytes)
    rep = {
        "mode": "stream",
        "end": args.end,
        "bytes": args.bytes,
        "sent": 0,
        "received": 0,
        "verified": 0,
        "eof": False,
        "error": None,
        "send_error": None,
        "samples": [],
        "max_stall_ms": 0.0,
        "max_stall_at_ns": None,
        "sha256_sent": hashlib.sha256(data).hexdigest(),
        "sha256_received": None,
    }
    t_start = now_ns()
    s = connect(target(args.target), args.timeout)
    rep["local"] = "%s:%d" % s.getsockname()[:2]
    rep["connected_ns"] = now_ns()
    got = hashlib.sha256()
    done_sending = threading.Event()

    def sender():
        try:
            view = memoryview(data)
            off = 0
            while off < len(view):
                n = s.send(view[off : off + args.chunk])
                off += n
                rep["sent"] = off
                if args.pace_us:
                    time.sleep(args.pace_us / 1e6)
            if args.end == "shutdown":
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            rep["send_error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            done_sending.set()

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    last = now_ns()
    next_sample = last
    deadline = t_start + int(args.deadline * 1e9)
    try:
        while True:
            if now_ns() > deadline:
                rep["error"] = "deadline: %d of %d bytes after %.0f s" % (
                    rep["received"],
                    len(data),
                    args.deadline,
                )
                break
            if args.end == "close" and done_sending.is_set():
                s.close()
                rep["closed_ns"] = now_ns()
                break
            if args.read_pace_us:
                time.sleep(args.read_pace_us / 1e6)
            if args.pause_at is not None and "paused_ns" not in rep and rep["received"] >= args.pause_at:
                # A client that stopped reading: the server's output piles up unacknowledged.
                rep["paused_ns"] = now_ns()
                time.sleep(args.pause_s)
                rep["resumed_ns"] = last = now_ns()
                deadline += int(args.pause_s * 1e9)
            try:
                buf = s.recv(args.read_chunk)
            except socket.timeout:
                if args.end == "close":
                    continue
                raise
            t = now_ns()
            if not buf:
                rep["eof"] = True
                rep["eof_ns"] = t
                break
            at = rep["received"]
            if buf != data[at : at + len(buf)]:
                bad = next(i for i in range(len(buf)) if at + i >= len(data) or buf[i] != data[at + i])
                rep["error"] = "mismatch at byte %d" % (at + bad)
                break
            got.update(buf)
            rep["received"] = at + len(buf)
            rep["verified"] = rep["received"]
            stall = (t - last) / 1e6
            if stall > rep["max_stall_ms"]:
                rep["max_stall_ms"] = stall
                rep["max_stall_at_ns"] = last
            last = t
            if t >= next_sample:
                rep["samples"].append([t, rep["received"]])
                next_sample = t + 10_000_000
                if args.progress:
                    print("progress %d" % rep["received"], flush=True)
            if args.end == "keep" and rep["received"] == len(data):
                break
    except OSError as e:
        rep["error"] = "%s: %s" % (type(e).__name__, e)
    rep["samples"].append([now_ns(), rep["received"]])
    th.join(timeout=1)
    if args.end != "close":
        s.close()
    rep["sha256_received"] = got.hexdigest()
    rep["start_ns"] = t_start
    rep["end_ns"] = now_ns()
    if args.end == "close":
        ok = rep["send_error"] is None and rep["sent"] == args.bytes and rep["error"] is None
    else:
        ok = (
            rep["error"] is None
            and rep["send_error"] is None
            and rep["verified"] == args.bytes
            and rep["sha256_received"] == rep["sha256_sent"]
            and (rep["eof"] if args.end == "shutdown" else True)
        )
    rep["ok"] = ok
    return rep


def unacked(s):
    """Bytes of ours the peer has not acknowledged (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def kv_quit(args):
    rep = {"mode": "kv-quit", "answer": "", "eof": False, "sent_after_eof": 0, "error": None}
    s = connect(target(args.target), args.timeout)
    rep["local"] = "%s:%d" % s.getsockname()[:2]
    try:
        s.sendall(b"SET greeting hello\nQUIT\n")
        got = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
        rep["answer"] = got.decode(errors="replace")
        rep["eof"] = True
        rep["eof_ns"] = now_ns()
        print("progress closed", flush=True)
        end = now_ns() + int(args.seconds * 1e9)
        i = 0
        while now_ns() < end:
            line = b"SET k%d %s\n" % (i, b"x" * 100)
            s.sendall(line)
            rep["sent_after_eof"] += len(line)
            i += 1
            time.sleep(0.005)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + args.timeout
        while unacked(s) > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        rep["unacked_at_end"] = unacked(s)
    except OSError as e:
        rep["error"] = "%s: %s" % (type(e).__name__, e)
    s.close()
    rep["end_ns"] = now_ns()
    rep["ok"] = (
        rep["error"] is None
        and rep["answer"] == "OK\nBYE\n"
        and rep["sent_after_eof"] > 0
        and rep.get("unacked_at_end") == 0
    )
    return rep


def requests(args):
    """N connections on one selectors loop (lighter than asyncio streams: at 10,000 requests a
    second the client must not be what is measured). Each connection sends a request at its
    own tick (spread over the interval) and waits for the whole echo before the next."""
    import heapq
    import selectors

    addr = target(args.target)
    sel = selectors.DefaultSelector()
    slow = []
    errors = []
    requests = answered = mismatches = 0
    start = now_ns()
    conns = []
    for i in range(args.connections):
        try:
            s = connect(addr, args.timeout)
        except OSError as e:
            errors.append("conn %d: connect: %s" % (i, e))
            continue
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = {"i": i, "s": s, "rng": random.Random(args.seed + i), "req": None, "got": b"", "t0": 0}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    start = now_ns()
    stop_at = start + int(args.seconds * 1e9)
    interval = int(args.interval_ms * 1e6)
    ticks = [(start + interval * k // max(len(conns), 1), k) for k in range(len(conns))]
    heapq.heapify(ticks)
    timeout_ns = int(args.timeout * 1e9)

    def close(c, why):
        errors.append("conn %d: %s" % (c["i"], why))
        try:
            sel.unregister(c["s"])
        except (KeyError, ValueError):
            pass
        c["s"].close()
        c["dead"] = True

    while True:
        now = now_ns()
        if now >= stop_at and all(c["req"] is None or c.get("dead") for c in conns):
            break
        if now >= stop_at + timeout_ns:
            for c in conns:
                if c["req"] is not None and not c.get("dead"):
                    close(c, "no answer before the end")
            break
        while ticks and ticks[0][0] <= now and now < stop_at:
            _, k = heapq.heappop(ticks)
            c = conns[k]
            if c.get("dead"):
                continue
            if c["req"] is not None:
                # Still waiting: the next request goes when this one is answered.
                continue
            c["req"] = c["rng"].randbytes(args.size)
            c["got"] = b""
            c["t0"] = now_ns()
            try:
                c["s"].send(c["req"])
            except OSError as e:
                close(c, "send: %s" % e)
                continue
            requests += 1
        wait = (ticks[0][0] - now_ns()) / 1e9 if ticks and now < stop_at else 0.01
        for key, _ in sel.select(timeout=max(0.0, min(wait, 0.01))):
            c = key.data
            try:
                b = c["s"].recv(4096)
            except BlockingIOError:
                continue
            except OSError as e:
                close(c, "recv: %s" % e)
                continue
            if not b:
                close(c, "EOF")
                continue
            c["got"] += b
            if c["req"] is not None and len(c["got"]) >= len(c["req"]):
                t1 = now_ns()
                if c["got"] != c["req"]:
                    mismatches += 1
                    close(c, "echo differs")
                    continue
                answered += 1
                ms = (t1 - c["t0"]) / 1e6
                if ms >= args.slow_ms:
                    slow.append([c["i"], c["t0"], ms])
                c["req"] = None
                nxt = c["t0"] + interval
                heapq.heappush(ticks, (max(nxt, t1), c["i"]))
        for c in conns:
            if c["req"] is not None and not c.get("dead") and now_ns() - c["t0"] > timeout_ns:
                close(c, "no answer for %.0f s" % args.timeout)
    for c in conns:
        if not c.get("dead"):
            c["s"].close()
    return {
        "mode": "requests",
        "connections": args.connections,
        "start_ns": start,
        "end_ns": now_ns(),
        "requests": requests,
        "answered": answered,
        "mismatches": mismatches,
        "errors": errors[:50],
        "error_count": len(errors),
        "slow": slow,
        "ok": not errors and requests == answered,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    st = sub.add_parser("stream", help="one echo stream, verified byte for byte")
    st.add_argument("--target", required=True)
    st.add_argument("--bytes", type=int, default=20_000_000)
    st.add_argument("--chunk", type=int, default=65536)
    st.add_argument("--pace-us", type=int, default=0, help="pause between sends")
    st.add_argument("--read-chunk", type=int, default=1 << 18, help="bytes per recv")
    st.add_argument("--read-pace-us", type=int, default=0, help="pause between recvs (a slow reader)")
    st.add_argument("--progress", action="store_true", help="print 'progress N' every 10 ms")
    st.add_argument(
        "--pause-at",
        type=int,
        default=None,
        help="stop reading once this many bytes came back (0: before the first), for --pause-s",
    )
    st.add_argument("--pause-s", type=float, default=0.0, help="how long to stop reading")
    st.add_argument("--end", choices=["keep", "shutdown", "close"], default="keep")
    st.add_argument("--seed", type=int, default=1)
    st.add_argument("--timeout", type=float, default=20.0, help="seconds without progress")
    st.add_argument("--deadline", type=float, default=60.0, help="seconds in all")
    st.add_argument("--json")
    kq = sub.add_parser("kv-quit", help="the server closes first; the client keeps sending")
    kq.add_argument("--target", required=True)
    kq.add_argument("--seconds", type=float, default=1.0)
    kq.add_argument("--timeout", type=float, default=20.0)
    kq.add_argument("--json")
    rq = sub.add_parser("requests", help="many request/response connections (one selectors loop)")
    rq.add_argument("--target", required=True)
    rq.add_argument("--connections", type=int, default=1000)
    rq.add_argument("--interval-ms", type=float, default=100)
    rq.add_argument("--size", type=int, default=64)
    rq.add_argument("--seconds", type=float, default=10)
    rq.add_argument("--slow-ms", type=float, default=20)
    rq.add_argument("--seed", type=int, default=1)
    rq.add_argument("--timeout", type=float, default=20.0)
    rq.add_argument("--json")
    args = p.parse_args()
    if args.mode == "stream":
        rep = stream(args)
    elif args.mode == "kv-quit":
        rep = kv_quit(args)
    else:
        rep = requests(args)
    out = json.dumps(rep)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out)
    else:
        print(out)
    if not rep["ok"]:
        print("tcpclient: %s" % {k: v for k, v in rep.items() if k not in ("samples", "slow")}, file=sys.stderr)
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
