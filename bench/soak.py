"""Soak (not a test): drives a running workspaced with terminals, file
writes through the API, sync clients and proxied requests in a loop, and
samples the daemon's RSS, open file descriptors and threads. Prints the
samples and says whether each is flat at the end. Run through bench/soak.sh.
"""
import asyncio
import http.client
import json
import os
import sys
import time

import websockets

PORT = int(os.environ["WD_PORT"])
UPSTREAM = int(os.environ["UP_PORT"])
PID = int(os.environ["WD_PID"])
TOKEN = os.environ["TOKEN"]
DURATION = float(os.environ.get("SOAK_SECS", "1800"))
SAMPLE_EVERY = float(os.environ.get("SAMPLE_SECS", "10"))
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WS_AUTH = [("Authorization", f"Bearer {TOKEN}")]


def sample():
    rss = threads = 0
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{PID}/fd"))
    return rss, fds, threads


def call(conn, method, path, body=None, headers=None):
    h = dict(AUTH)
    h.update(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    return r.status, r.getheaders(), data


async def terminal_round(i):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    status, _, body = call(conn, "POST", "/api/v1/terminals", {"command": ["seq", "1", "3000"]})
    assert status == 201, (status, body)
    tid = json.loads(body)["id"]
    got = 0
    async with websockets.connect(
        f"ws://127.0.0.1:{PORT}/api/v1/terminals/{tid}/attach?offset=0",
        additional_headers=WS_AUTH, max_size=None,
    ) as ws:
        async for msg in ws:
            if isinstance(msg, bytes):
                got += len(msg)
            elif json.loads(msg).get("type") == "exit":
                break
    call(conn, "DELETE", f"/api/v1/terminals/{tid}")
    conn.close()
    return got


def files_round(i):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    path = f"soak/f{i}.txt"
    status, headers, body = call(conn, "PUT", f"/api/v1/files/{path}", (f"round {i}\n" * 200).encode(),
                                 {"If-None-Match": "*", "Content-Type": "application/octet-stream"})
    assert status in (200, 201), (status, body)
    etag = dict((k.lower(), v) for k, v in headers).get("etag", "").strip('"')
    status, _, body = call(conn, "POST", "/api/v1/sync/apply",
                           {"changes": [{"op": "delete", "path": path, "base": etag}]})
    assert status == 200, (status, body)
    conn.close()


async def sync_round():
    async with websockets.connect(f"ws://127.0.0.1:{PORT}/api/v1/sync",
                                  additional_headers=WS_AUTH, max_size=None) as ws:
        hello = json.loads(await ws.recv())
        assert hello.get("type") == "hello", hello


def proxy_round():
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    for _ in range(50):
        conn.request("GET", f"/proxy/{UPSTREAM}/", headers=AUTH)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
    conn.close()


async def main():
    start = time.monotonic()
    samples = []
    next_sample = start
    rounds = 0
    while time.monotonic() - start < DURATION:
        if time.monotonic() >= next_sample:
            s = sample()
            samples.append((time.monotonic() - start, *s))
            print(f"{samples[-1][0]:7.0f}s  rss {s[0]:7d} KiB  fds {s[1]:4d}  threads {s[2]:3d}  rounds {rounds}",
                  flush=True)
            next_sample += SAMPLE_EVERY
        # Four terminals at once, files, a sync client and proxied requests.
        got = await asyncio.gather(*(terminal_round(rounds * 4 + k) for k in range(4)))
        assert all(g > 0 for g in got)
        await asyncio.to_thread(files_round, rounds)
        await sync_round()
        await asyncio.to_thread(proxy_round)
        rounds += 1
    # Let lingering work settle (closed sockets, exited terminals) once.
    await asyncio.sleep(2)
    s = sample()
    samples.append((time.monotonic() - start, *s))
    print(f"{samples[-1][0]:7.0f}s  rss {s[0]:7d} KiB  fds {s[1]:4d}  threads {s[2]:3d}  rounds {rounds} (end)")
    # Flat: the last sample against the one at a quarter of the run (after
    # warm-up), within 10% (+2 MiB) for RSS and equal for fds and threads
    # (+2 for a connection or a blocking thread caught in passing).
    warm = samples[max(1, len(samples) // 4)]
    end = samples[-1]
    rss_flat = end[1] <= warm[1] * 1.10 + 2048
    fds_flat = end[2] <= warm[2] + 2
    thr_flat = end[3] <= warm[3] + 2
    print(f"rounds {rounds} in {end[0]:.0f}s; from {warm[0]:.0f}s to the end: "
          f"rss {warm[1]} -> {end[1]} KiB ({'flat' if rss_flat else 'GROWING'}), "
          f"fds {warm[2]} -> {end[2]} ({'flat' if fds_flat else 'GROWING'}), "
          f"threads {warm[3]} -> {end[3]} ({'flat' if thr_flat else 'GROWING'})")
    sys.exit(0 if rss_flat and fds_flat and thr_flat else 1)


asyncio.run(main())
