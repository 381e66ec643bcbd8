"""Terminal benchmark: workspaced against terminado and a local PTY reader.

Measures, side by side in one run: output throughput to one WebSocket client
(64 MiB of `base64`, with the bytes each client received: a run that lost
bytes does not count), against reading the PTY in-process (local) and
against a bare relay process (the floor for any server in between),
keystroke echo latency (p50/p99 over 2,000 keys), RSS
idle and with 20 terminals, and the time from process start to the first 200
on /healthz. Prints a Markdown table. Run through bench/terminals.sh.
"""
import asyncio
import json
import os
import pty
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKSPACED = os.path.join(ROOT, "target", "release", "workspaced")
TOKEN = "bench-token"
MIB = 1 << 20
PAYLOAD = 48 * MIB  # base64 makes it 64 MiB (plus newlines)
MARKER = "__BENCH_END__"
# The flood starts when the client says so (a line of input), once it is
# attached: output made before anyone attaches is kept only up to the
# scrollback, and its time would not be counted.
THROUGHPUT_CMD = ["bash", "-c", f"read -r _; head -c {PAYLOAD} /dev/zero | base64 | cat; echo {MARKER}"]
KEYS = 2000


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_healthy(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
    raise RuntimeError("server did not become healthy")


def time_to_healthy(start_cmd, port, runs=10):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(start_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
        times.append(time.perf_counter() - t0)
        proc.terminate()
        proc.wait()
    return statistics.median(times)


class Workspaced:
    name = "workspaced"

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        self.cmd = [WORKSPACED, "serve", "--listen", f"127.0.0.1:{self.port}", "--workspace", self.dir,
                    "--state-dir", os.path.join(self.dir, ".state"), "--log-format", "json"]
        env = dict(os.environ, WORKSPACED_TOKEN=TOKEN, RUST_LOG="warn")
        self.env = env
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(self.port, self.proc)

    def create(self, command):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/terminals",
            data=json.dumps({"command": command}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST")
        with urllib.request.urlopen(req) as r:
            return json.load(r)["id"]

    async def connect(self, command):
        tid = self.create(command)
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/api/v1/terminals/{tid}/attach?offset=0",
            additional_headers={"Authorization": f"Bearer {TOKEN}"}, max_size=None, compression=None)
        await ws.recv()  # attached
        return ws

    lagged = 0

    async def read(self, ws):
        while True:
            m = await ws.recv()
            if isinstance(m, bytes):
                return m
            if json.loads(m).get("type") == "lagged":
                self.lagged += 1

    async def send(self, ws, data):
        await ws.send(data.encode())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Terminado:
    name = "terminado"

    def __init__(self, command=None):
        self.port = free_port()
        self.server = os.path.join(ROOT, "bench", "terminado_server.py")
        self.cmd = [sys.executable, self.server, str(self.port)]
        self.proc = None
        self.command = command

    def start(self, command):
        if self.proc:
            self.stop()
        self.proc = subprocess.Popen(self.cmd + command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(self.port, self.proc)

    async def connect(self, command):
        self.start(command)
        ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/websocket", max_size=None, compression=None)
        return ws

    async def read(self, ws):
        while True:
            msg = json.loads(await ws.recv())
            if msg[0] == "stdout":
                return msg[1].encode()

    async def send(self, ws, data):
        await ws.send(json.dumps(["stdin", data]))

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


async def throughput(server):
    ws = await server.connect(THROUGHPUT_CMD)
    t0 = time.perf_counter()
    await server.send(ws, "\r")
    total = 0
    tail = b""
    marker = MARKER.encode()
    while True:
        chunk = await server.read(ws)
        total += len(chunk)
        tail = (tail + chunk)[-64:]
        if marker in tail:
            break
    dt = time.perf_counter() - t0
    await ws.close()
    return total / dt / MIB, total


async def echo_latency(server):
    ws = await server.connect(["cat"])
    # Let the terminal settle (prompt-less cat prints nothing).
    await asyncio.sleep(0.3)
    lat = []
    for i in range(KEYS):
        ch = "abcdefghij"[i % 10]
        t0 = time.perf_counter()
        await server.send(ws, ch)
        got = b""
        while ch.encode() not in got:
            got += await server.read(ws)
        lat.append(time.perf_counter() - t0)
    await ws.close()
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def pty_reads(fd):
    """Each read of a PTY's master until its end (EOF, or EIO once the
    child side is closed)."""
    while True:
        try:
            b = os.read(fd, 65536)
        except OSError:
            return
        if not b:
            return
        yield b


def local_pty_throughput():
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(THROUGHPUT_CMD[0], THROUGHPUT_CMD)
    t0 = time.perf_counter()
    os.write(fd, b"\r")
    total = sum(len(b) for b in pty_reads(fd))
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return total / dt / MIB, total


def relay_pty_throughput():
    """The floor for any server between the PTY and the reader: a bare relay
    process (blocking read of the PTY, sendall to a socket; no protocol, no
    buffering) and the reader on the socket's other end."""
    ours, theirs = socket.socketpair()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(THROUGHPUT_CMD[0], THROUGHPUT_CMD)
    relay = os.fork()
    if relay == 0:
        ours.close()
        for b in pty_reads(fd):
            theirs.sendall(b)
        os._exit(0)
    theirs.close()
    t0 = time.perf_counter()
    os.write(fd, b"\r")
    os.close(fd)
    total = 0
    while True:
        b = ours.recv(1 << 20)
        if not b:
            break
        total += len(b)
    dt = time.perf_counter() - t0
    ours.close()
    os.waitpid(pid, 0)
    os.waitpid(relay, 0)
    return total / dt / MIB, total


def local_pty_echo():
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("cat", ["cat"])
    time.sleep(0.3)
    lat = []
    for i in range(KEYS):
        ch = b"abcdefghij"[i % 10:i % 10 + 1]
        t0 = time.perf_counter()
        os.write(fd, ch)
        got = b""
        while ch not in got:
            got += os.read(fd, 1024)
        lat.append(time.perf_counter() - t0)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


async def rss_with_terminals(server, n):
    socks = []
    for _ in range(n):
        socks.append(await server.connect(["bash", "--norc", "-i"]))
    await asyncio.sleep(1.0)
    pid = server.proc.pid
    rss = rss_kib(pid)
    for ws in socks:
        await ws.close()
    return rss


class TerminadoMany(Terminado):
    """terminado with one server for many terminals (UniqueTermManager)."""

    async def connect(self, command):
        if not self.proc:
            self.start(command)
        return await websockets.connect(f"ws://127.0.0.1:{self.port}/websocket", max_size=None)


async def main():
    rows = {}
    runs = int(os.environ.get("BENCH_RUNS", "3"))

    w = Workspaced()
    idle_w = rss_kib(w.proc.pid)
    t = Terminado()
    t.start(["bash"])
    time.sleep(0.5)
    idle_t = rss_kib(t.proc.pid)
    t.stop()

    tp = {"workspaced": [], "terminado": [], "local": [], "relay": []}
    got = {"workspaced": [], "terminado": [], "local": [], "relay": []}
    for _ in range(runs):
        for name, run in (("local", local_pty_throughput), ("workspaced", lambda: throughput(w)),
                          ("relay", relay_pty_throughput), ("terminado", lambda: throughput(t))):
            r = run()
            rate, total = (await r) if asyncio.iscoroutine(r) else r
            tp[name].append(rate)
            got[name].append(total)
    # Every run produces the same output: a client that got fewer bytes
    # than the PTY gave lost some, and that run does not count.
    want = max(got["local"])
    lost = {k: sum(want - n for n in v) for k, v in got.items()}
    rows["throughput"] = {k: statistics.median(v) for k, v in tp.items()}

    rows["echo"] = {"workspaced": await echo_latency(w), "terminado": await echo_latency(t), "local": local_pty_echo()}
    t.stop()
    w.stop()

    w20 = Workspaced()
    rss_w20 = await rss_with_terminals(w20, 20)
    w20.stop()
    tm = TerminadoMany()
    rss_t20 = await rss_with_terminals(tm, 20)
    tm.stop()

    wp = free_port()
    wdir = tempfile.mkdtemp()
    ready_w = time_to_healthy([WORKSPACED, "serve", "--listen", f"127.0.0.1:{wp}", "--workspace", wdir,
                               "--state-dir", os.path.join(wdir, ".state")], wp)
    tport = free_port()
    ready_t = time_to_healthy([sys.executable, os.path.join(ROOT, "bench", "terminado_server.py"), str(tport), "bash"], tport)

    th = rows["throughput"]
    e = rows["echo"]
    print(f"| measure | workspaced | terminado | local PTY | workspaced / peer |")
    print(f"| --- | --- | --- | --- | --- |")
    print(f"| throughput, 64 MiB base64 (MiB/s, median of {runs}) | {th['workspaced']:.0f} | {th['terminado']:.0f} | {th['local']:.0f} | {th['workspaced']/th['local']:.2f} of local, {th['workspaced']/th['terminado']:.2f}x terminado |")
    print(f"| throughput of a bare relay process (PTY, socket, reader; MiB/s) | | | {th['relay']:.0f} | {th['workspaced']/th['relay']:.2f} of the relay; the relay {th['relay']/th['local']:.2f} of local |")
    print(f"| bytes lost over the {runs} runs (of {want} each); `lagged` frames | {lost['workspaced']}; {w.lagged} | {lost['terminado']} | {lost['local']} | |")
    print(f"| echo p50 (µs, {KEYS} keys) | {e['workspaced'][0]:.0f} | {e['terminado'][0]:.0f} | {e['local'][0]:.0f} | {e['workspaced'][0]/e['terminado'][0]:.2f} of terminado |")
    print(f"| echo p99 (µs) | {e['workspaced'][1]:.0f} | {e['terminado'][1]:.0f} | {e['local'][1]:.0f} | {e['workspaced'][1]/e['terminado'][1]:.2f} of terminado |")
    print(f"| RSS idle (MiB) | {idle_w/1024:.1f} | {idle_t/1024:.1f} | | |")
    print(f"| RSS with 20 terminals (MiB) | {rss_w20/1024:.1f} | {rss_t20/1024:.1f} | | |")
    print(f"| start to first 200 on /healthz (ms, median of 10) | {ready_w*1000:.1f} | {ready_t*1000:.1f} | | |")


if __name__ == "__main__":
    asyncio.run(main())
