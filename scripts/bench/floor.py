#!/usr/bin/env python3
"""The floor of a collection: each HTTP request the metrics need, measured alone.

    floor.py --url http://127.0.0.1:PROXY --control-port CTRL [--timeout 300]

For each request skydeck sends (same bodies, same version headers), one at a
time on a fresh connection: GET /api/health, then for /status, /jobs/queue/v2
and /cost_report the submit POST followed by GET /api/get (which blocks until
the server has finished). Times are wall clock around the whole exchange; bytes
are what the byte-counting proxy saw (read from its control port before and
after each request), so they are counted exactly like skydeck's and the
Python collector's. Prints one JSON object: {"requests": {name: {"s", "down",
"up", "http"}}}; with --concurrent also "concurrent": {"s", "down", "http",
"each"}: skydeck's pattern done with bare requests (health, then the three at
once from threads), which separates the server's own cost of concurrency from
skydeck's. Stdlib only; every socket operation is bounded by --timeout.
"""

import argparse
import http.client
import json
import sys
import time
import urllib.parse

HEADERS = {
    "X-SkyPilot-API-Version": "62",
    "X-SkyPilot-Version": "0.14.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "skydeck-bench-floor",
}
FIELDS = [
    "job_id", "task_id", "status", "job_name", "task_name", "submitted_at",
    "start_at", "end_at", "job_duration", "recovery_count", "resources",
    "cluster_resources", "accelerators", "cloud", "region", "workspace",
    "user_name",
]
REQUESTS = [
    ("/status", {"cluster_names": None, "refresh": "NONE", "all_users": True,
                 "include_credentials": False, "include_handle": False}),
    ("/jobs/queue/v2", {"refresh": False, "skip_finished": False,
                        "all_users": True, "fields": FIELDS}),
    ("/cost_report", {"days": 7}),
]


def counters(port, timeout):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def settled(port, timeout):
    """Counters once every proxied connection has closed (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        c = counters(port, timeout)
        if c["open"] == 0 or time.monotonic() > deadline:
            return c
        time.sleep(0.01)


def one(host, port, path, body, timeout):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if body is None:
            conn.request("GET", path, headers=HEADERS)
            r = conn.getresponse()
            r.read()
            return r.status
        hdrs = dict(HEADERS, **{"Content-Type": "application/json"})
        conn.request("POST", path, body=json.dumps(body), headers=hdrs)
        r = conn.getresponse()
        r.read()
        rid = r.getheader("x-skypilot-request-id")
        if r.status != 200 or not rid:
            return r.status
        conn.request("GET", "/api/get?request_id=" + urllib.parse.quote(rid),
                      headers=HEADERS)
        r = conn.getresponse()
        payload = r.read()
        if r.status == 200:
            json.loads(payload)  # the client has to parse it too
        return r.status
    finally:
        conn.close()


def concurrent(host, port, timeout):
    """skydeck's pattern with bare requests: health, then the three at once."""
    import threading
    t0 = time.perf_counter()
    codes = {"/api/health": one(host, port, "/api/health", None, timeout)}
    times = {}

    def worker(path, body):
        t = time.perf_counter()
        codes[path] = one(host, port, path, body, timeout)
        times[path] = time.perf_counter() - t

    threads = [threading.Thread(target=worker, args=r, daemon=True) for r in REQUESTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return time.perf_counter() - t0, codes, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--concurrent", action="store_true",
                    help="also time skydeck's pattern with bare requests: "
                    "health, then the three requests at once (threads)")
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.url)
    out = {}
    for path, body in [("/api/health", None)] + REQUESTS:
        before = settled(args.control_port, args.timeout)
        t0 = time.perf_counter()
        status = one(u.hostname, u.port, path, body, args.timeout)
        dt = time.perf_counter() - t0
        after = settled(args.control_port, args.timeout)
        out[path] = {"s": dt, "down": after["down"] - before["down"],
                     "up": after["up"] - before["up"], "http": status}
        if status != 200:
            print(f"floor: {path} answered HTTP {status}", file=sys.stderr)
    result = {"requests": out}
    if args.concurrent:
        before = settled(args.control_port, args.timeout)
        dt, codes, times = concurrent(u.hostname, u.port, args.timeout)
        after = settled(args.control_port, args.timeout)
        result["concurrent"] = {"s": dt, "down": after["down"] - before["down"],
                                "http": codes, "each": times}
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
