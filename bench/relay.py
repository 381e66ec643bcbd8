"""Relay benchmark: a terminal of another container, through the first
daemon's relay, against a terminal of the first daemon itself.

Two release daemons: B (the other container) and A with `[containers] db = B`.
Side by side in one run, alternating: output throughput to one WebSocket
client (64 MiB of base64) and keystroke echo latency (p50/p99 over 2,000
keys to `cat`), for a terminal of A attached at A, and a terminal of B
attached at A (relayed: one more loopback hop and a re-framing). Prints a
Markdown table. Run through bench/relay.sh.
"""
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import urllib.request

import websockets

from terminals import MIB, TOKEN, WORKSPACED, Workspaced, echo_latency, free_port, throughput, wait_healthy


class Relayed(Workspaced):
    """Daemon A, whose terminals are created in container `db` (daemon B)."""

    name = "relayed"

    def __init__(self, other_port, container):
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        self.container = container
        config = os.path.join(self.dir, "workspaced.toml")
        with open(config, "w") as f:
            f.write(f'[containers]\ndb = "http://127.0.0.1:{other_port}"\n')
        self.cmd = [WORKSPACED, "serve", "--listen", f"127.0.0.1:{self.port}", "--workspace", self.dir,
                    "--state-dir", os.path.join(self.dir, ".state"), "--config", config]
        self.proc = subprocess.Popen(self.cmd, env=dict(os.environ, WORKSPACED_TOKEN=TOKEN, RUST_LOG="warn"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(self.port, self.proc)

    def create(self, command):
        body = {"command": command}
        if self.container:
            body["container"] = self.container
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/terminals", data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req) as r:
            return json.load(r)["id"]


async def main():
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    b = Workspaced()
    a_local = Relayed(b.port, None)
    a_relay = Relayed(b.port, "db")  # the same kind of daemon, creating in db
    tp = {"local": [], "relayed": []}
    echo = {"local": [], "relayed": []}
    for _ in range(runs):
        tp["local"].append(await throughput(a_local))
        tp["relayed"].append(await throughput(a_relay))
        echo["local"].append(await echo_latency(a_local))
        echo["relayed"].append(await echo_latency(a_relay))
    for d in (a_local, a_relay, b):
        d.stop()
    t = {k: statistics.median(v) for k, v in tp.items()}
    p50 = {k: statistics.median(x[0] for x in v) for k, v in echo.items()}
    p99 = {k: statistics.median(x[1] for x in v) for k, v in echo.items()}
    print("| measure | terminal of the first daemon | relayed terminal (other container) | relayed vs local |")
    print("| --- | --- | --- | --- |")
    print(f"| throughput, 64 MiB base64 (MiB/s, median of {runs}) | {t['local']:.0f} | {t['relayed']:.0f} | {t['relayed']/t['local']:.2f}x |")
    print(f"| echo p50 (µs, 2000 keys, median of {runs}) | {p50['local']:.0f} | {p50['relayed']:.0f} | {p50['relayed']-p50['local']:+.0f} µs |")
    print(f"| echo p99 (µs) | {p99['local']:.0f} | {p99['relayed']:.0f} | {p99['relayed']-p99['local']:+.0f} µs |")


if __name__ == "__main__":
    asyncio.run(main())
