"""Hostile clients against one workspaced binary (not a test): its memory
around a 600 MiB file that a listing, a patch, a rename and a delete touch;
its RSS fresh, with 2,000 half-sent request heads open, and after they were
closed; and how long a proxied WebSocket client that never reads is kept.
Prints one Markdown row per measure. Run through bench/robust.sh.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
LABEL = sys.argv[2]
TOKEN = "bench-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MIB = 1 << 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daemon:
    def __init__(self, work):
        self.ws = os.path.join(work, "ws")
        os.makedirs(self.ws)
        os.makedirs(os.path.join(work, "state"))
        self.port = free_port()
        env = dict(os.environ, WORKSPACED_TOKEN=TOKEN, RUST_LOG="warn", WORKSPACED_WS_PING_INTERVAL="1s")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--workspace", self.ws,
             "--state-dir", os.path.join(work, "state"), "--header-timeout", "5m"],
            env=env, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                self.call("GET", "/api/v1/status")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the daemon did not answer")

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        h = dict(AUTH)
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def mem(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def big_file(d):
    path = os.path.join(d.ws, "big.bin")
    with open(path, "wb") as f:
        f.truncate(600 * MIB)
    oid = subprocess.check_output(["git", "hash-object", path], text=True).strip()
    fresh = d.mem()["VmRSS"]
    t0 = time.monotonic()
    status_tree, _ = d.call("GET", "/api/v1/tree")
    status_patch, body = d.call("POST", "/api/v1/sync/apply", {"changes": [
        {"op": "patch", "path": "big.bin", "base": oid, "diff": "@@ -1 +1 @@\n-a\n+b\n"}]})
    code = json.loads(body).get("error", {}).get("code")
    status_del, _ = d.call("POST", "/api/v1/sync/apply", {"changes": [
        {"op": "delete", "path": "big.bin", "base": oid}]})
    took = time.monotonic() - t0
    m = d.mem()
    print(f"| {LABEL} | 600 MiB file: tree {status_tree}, patch {status_patch} {code}, delete {status_del} "
          f"| RSS fresh {fresh:.1f} MiB, peak {m['VmHWM']:.1f} MiB | {took:.1f} s |", flush=True)


def connections(d, n=2000):
    fresh = d.mem()["VmRSS"]
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    time.sleep(2)
    opened = d.mem()["VmRSS"]
    for s in socks:
        s.close()
    time.sleep(3)
    after = d.mem()["VmRSS"]
    print(f"| {LABEL} | {n} half heads | RSS fresh {fresh:.1f}, open {opened:.1f}, "
          f"3 s after closing {after:.1f} MiB | |", flush=True)


def never_reading(d):
    # An app that floods each WebSocket client.
    app = socket.socket()
    app.bind(("127.0.0.1", 0))
    app.listen(8)
    port = app.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = app.accept()
            except OSError:
                return
            def flood(c=c):
                c.recv(65536)
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                frame = b"\x82\x7f" + (65536).to_bytes(8, "big") + b"f" * 65536
                try:
                    while True:
                        c.sendall(frame)
                except OSError:
                    c.close()
            threading.Thread(target=flood, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    for _ in range(100):
        st, body = d.call("GET", "/api/v1/ports")
        if f'"port":{port}' in body.decode():
            break
        time.sleep(0.2)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", d.port))
    s.sendall((f"GET /proxy/{port}/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    t0 = time.monotonic()
    dropped = None
    while time.monotonic() - t0 < 15:
        try:
            s.sendall(b"\x8a\x80\x01\x02\x03\x04")
        except OSError:
            dropped = time.monotonic() - t0
            break
        time.sleep(0.1)
    rss = d.mem()["VmRSS"]
    app.close()
    what = f"dropped after {dropped:.1f} s" if dropped else "still open after 15 s"
    print(f"| {LABEL} | proxied WebSocket client that never reads (ping interval 1 s) | {what} | RSS {rss:.1f} MiB |",
          flush=True)


with tempfile.TemporaryDirectory() as work:
    for i, measure in enumerate([big_file, connections, never_reading]):
        d = Daemon(os.path.join(work, str(i)))
        try:
            measure(d)
        finally:
            d.stop()
