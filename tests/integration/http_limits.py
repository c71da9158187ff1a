#!/usr/bin/env python3
"""http_limits.py: raw-socket clients for http_limits_test.sh (stdlib only): malformed requests,
slow bodies, idle connections, keep-alive expiry, large-body memory probe."""
import json
import os
import re
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
KEY = os.environ.get("HTTP_KEY", "")
AUTH = b"Authorization: Bearer %s\r\n" % KEY.encode() if KEY else b""


def read_reply(s, timeout=10.0):
    """Reads one reply (head + Content-Length body) or until close: (status, headers, body) or
    (None, {}, b'') when the server closed without a status line."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except (socket.timeout, ConnectionResetError):
        pass
    if b"\r\n\r\n" not in buf:
        return None, {}, buf
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    try:
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                break
            rest += d
    except (socket.timeout, ConnectionResetError):
        pass
    return status, hdrs, rest[:n]


def send_raw(port, data, timeout=10.0):
    s = socket.create_connection((HOST, port))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = read_reply(s, timeout)
    s.close()
    return r


EDGES = {
    "cl_negative": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "cl_garbage": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
    "cl_conflict": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "cl_too_big": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
    "chunked": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "long_url": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "long_headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(40)) + b"\r\n",
    "http09": b"GET /healthz\r\n",
    "nul_header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "http2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http2_version": b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
    "bad_method": b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "folded": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n",
    "unknown_path": b"GET /nope/at/all HTTP/1.1\r\nHost: x\r\n\r\n",
    "healthz_10": b"GET /healthz HTTP/1.0\r\n\r\n",
}


def cmd_edge(port, name):
    st, h, body = send_raw(port, EDGES[name])
    print(json.dumps({"status": st, "ctype": h.get("content-type"), "connection": h.get("connection"),
                      "body": body.decode("utf-8", "replace")}))


def cmd_partial(port, wait_s):
    """A head that never completes: the reply after the header timeout."""
    s = socket.create_connection((HOST, port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    t0 = time.time()
    st, h, body = read_reply(s, float(wait_s))
    print(json.dumps({"status": st, "after_s": round(time.time() - t0, 2), "body": body.decode("utf-8", "replace")}))


def cmd_keepalive(port, idle_s):
    """Two requests on one connection, then idle: the server must close it."""
    s = socket.create_connection((HOST, port))
    out = {}
    for i in range(2):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, _ = read_reply(s)
        out["status%d" % i] = st
        out["connection%d" % i] = h.get("connection")
    t0 = time.time()
    s.settimeout(float(idle_s))
    try:
        d = s.recv(1)
        out["closed"] = d == b""
    except socket.timeout:
        out["closed"] = False
    except ConnectionResetError:
        out["closed"] = True
    out["after_s"] = round(time.time() - t0, 2)
    print(json.dumps(out))


def cmd_pipeline(port):
    """Two requests in one write: two replies in order on the same connection."""
    s = socket.create_connection((HOST, port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    buf = b""
    t_end = time.time() + 5
    while buf.count(b"HTTP/1.1 ") < 2 and time.time() < t_end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        buf += d
    st = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", buf)]
    print(json.dumps({"first": st[0] if st else None, "second": st[1] if len(st) > 1 else None}))


def cmd_slow(port, n, length, seconds):
    """n clients send a head with Content-Length: length, then one body byte per second. Prints the
    status each one got (None: none within seconds)."""
    n, length, seconds = int(n), int(length), float(seconds)
    res = [None] * n
    path = b"/v1/chat/completions"

    def one(i):
        try:
            s = socket.create_connection((HOST, port))
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (path, AUTH, length))
            s.settimeout(1.0)
            t_end = time.time() + seconds
            while time.time() < t_end:
                try:
                    s.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    st, h, body = read_reply(s, 1.0)
                    if st is not None:
                        res[i] = [st, json.loads(body or b"{}").get("error", {}).get("code")]
                        break
                except (BrokenPipeError, ConnectionResetError, ValueError):
                    break
            s.close()
        except OSError as e:
            res[i] = ["oserror", str(e)]

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    print("started", flush=True)
    for t in ths:
        t.join()
    print(json.dumps(res), flush=True)


def cmd_idle(port, n, hold, release=None):
    """Opens up to n idle connections (as many as this process may), holds them for hold seconds
    (or until the file release exists, at most hold seconds), then prints how many it opened and how
    many the server had closed by then."""
    n, hold = int(n), float(hold)
    socks = []
    err = ""
    for _ in range(n):
        try:
            s = socket.socket()
            s.setblocking(True)
            s.settimeout(5)
            s.connect((HOST, port))
            socks.append(s)
        except OSError as e:
            err = str(e)
            try:
                s.close()
            except OSError:
                pass
            break
    print(json.dumps({"opened": len(socks), "error": err}), flush=True)
    t_end = time.time() + hold
    while time.time() < t_end and not (release and os.path.exists(release)):
        time.sleep(0.1)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(4096)
            closed += 1  # EOF or a 503 then EOF
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print(json.dumps({"opened": len(socks), "closed_by_server": closed}), flush=True)


def cmd_bigbodies(port, n, size, rounds):
    """Memory probe: n concurrent clients each send a size-byte body the router rejects (invalid
    JSON; a valid JSON object with a huge string and an unknown model; a Content-Length over the
    cap), rounds times. Prints the statuses seen."""
    n, size, rounds = int(n), int(size), int(rounds)
    seen = {}
    lock = threading.Lock()
    bodies = [b"{" + b"x" * (size - 1),
              b'{"model":"no-such-model","messages":[{"role":"user","content":"' + b"y" * (size - 100) + b'"}]}']

    def one(i):
        for r in range(rounds):
            body = bodies[(i + r) % 2]
            try:
                st, _, _ = send_raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%sContent-Type: "
                                    b"application/json\r\nContent-Length: %d\r\n\r\n" % (AUTH, len(body)) + body, 60)
            except OSError:
                st = "oserror"
            with lock:
                seen[str(st)] = seen.get(str(st), 0) + 1

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    st, _, _ = send_raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n"
                        % (AUTH, 64 << 20))
    seen[str(st)] = seen.get(str(st), 0) + 1
    print(json.dumps(seen))


if __name__ == "__main__":
    cmds = {"edge": cmd_edge, "partial": cmd_partial, "keepalive": cmd_keepalive, "pipeline": cmd_pipeline,
            "slow": cmd_slow, "idle": cmd_idle, "bigbodies": cmd_bigbodies}
    port = int(sys.argv[2])
    cmds[sys.argv[1]](port, *sys.argv[3:])
