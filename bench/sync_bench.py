"""Measures a running workspaced on a git checkout; called by bench/sync.sh."""
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from websockets.sync.client import connect

addr, token, repo = sys.argv[1], sys.argv[2], sys.argv[3]
before = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
auth = {"Authorization": f"Bearer {token}"}


def oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_bytes(at=addr):
    req = urllib.request.Request(f"http://{at}/api/v1/tree?recursive=true", headers=auth)
    with urllib.request.urlopen(req) as r:
        return r.read()


def status():
    subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True)


entries = len(json.loads(tree_bytes())["entries"])
# Alternating, so that the machine's load falls on every side alike.
peers = [("git status --porcelain", status), ("tree", tree_bytes)]
if before:
    assert len(json.loads(tree_bytes(before))["entries"]) == entries
    peers.append(("tree before", lambda: tree_bytes(before)))
runs = {name: [] for name, _ in peers}
for _ in range(7):
    for name, f in peers:
        t = time.perf_counter()
        f()
        runs[name].append(time.perf_counter() - t)
git_ms = statistics.median(runs["git status --porcelain"]) * 1000
print(f"tree: {entries} entries, alternating runs, median of 7")
for name, _ in peers:
    ms = statistics.median(runs[name]) * 1000
    print(f"  {name}: {ms:.0f} ms, {ms / git_ms:.2f}x git status")

# Write-to-event latency: one write per quiet period (the common case).
os.makedirs(os.path.join(repo, "bench-lat"), exist_ok=True)
lat = []
with connect(f"ws://{addr}/api/v1/sync", additional_headers=auth, max_size=None) as ws:
    json.loads(ws.recv())  # hello
    for i in range(200):
        data = f"write {i} {time.time()}\n".encode()
        want = oid(data)
        path = f"bench-lat/f{i % 10}"
        t0 = time.perf_counter()
        with open(os.path.join(repo, path), "wb") as f:
            f.write(data)
        while True:
            ev = json.loads(ws.recv(timeout=10))
            if ev.get("type") == "changed" and ev.get("path") == path and ev.get("oid") == want:
                break
        lat.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.1)
lat.sort()
p50 = lat[len(lat) // 2]
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
print(f"write-to-event latency over {len(lat)} writes: p50 {p50:.1f} ms, p99 {p99:.1f} ms")

# Apply throughput: 1,000 new files of 1 KiB in one atomic batch.
changes = [{"op": "write", "path": f"bench-apply/f{i:04}", "base": None,
            "content": (f"{i:04} " * 205)[:1024]} for i in range(1000)]
body = json.dumps({"changes": changes}).encode()
req = urllib.request.Request(f"http://{addr}/api/v1/sync/apply", data=body, method="POST",
                             headers={**auth, "Content-Type": "application/json"})
t = time.perf_counter()
with urllib.request.urlopen(req) as r:
    assert r.status == 200
elapsed = time.perf_counter() - t
print(f"apply of 1,000 files (1 KiB each, fsync'd): {elapsed*1000:.0f} ms, {1000/elapsed:.0f} files/s")
