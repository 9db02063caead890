#!/usr/bin/env python3
"""Measurement and report halves of scripts/bench/collect.sh (stdlib only).

    bench.py measure --size small --url URL --control-port CTRL --runs N \
        --skydeck BIN --python PY --work DIR --out RESULT.json
    bench.py report --results R1.json [R2.json ...] --machine MACHINE.json \
        --command "scripts/bench/collect.sh ..." --markdown docs/benchmarks.md

`measure` runs, against one server (through the byte-counting proxy at URL):
  a) `skydeck collect --endpoint URL --format json`
  b) scripts/bench/seed_collector.py (one Python process, the SkyPilot SDK)
  c) scripts/bench/floor.py (each bare request alone)
one untimed warm-up round of a) and c), then N rounds, alternating the order
(a, b, c / c, b, a). a) and b) run under GNU time (`/usr/bin/time -f '%e %M'`:
wall seconds and peak RSS in KiB; the RSS of a process tree as wait4 reports
it) with a throwaway HOME and a minimal environment; bytes come from the proxy.
Every child is bounded by --timeout and killed with its process group.

`report` renders the table and the targets as Markdown, to stdout and a file.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FLOOR_PATHS = ["/api/health", "/status", "/jobs/queue/v2", "/cost_report"]


# ----------------------------------------------------------------- measure

def counters(ctrl):
    with urllib.request.urlopen(f"http://127.0.0.1:{ctrl}/", timeout=10) as r:
        return json.loads(r.read())


def settled(ctrl):
    """The proxy's counters once all proxied connections have closed (≤ 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        c = counters(ctrl)
        if c["open"] == 0 or time.monotonic() > deadline:
            return c
        time.sleep(0.02)


def run_bounded(argv, env, stdout_path, stderr_path, timeout):
    """Runs argv in its own process group; kills the group at the timeout."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            return None
        except BaseException:
            kill_group(p)
            raise


def kill_group(p):
    """SIGTERM, then SIGKILL after 5 s, to the child's whole process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def base_env(home):
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TERM")
           if k in os.environ}
    env["HOME"] = home
    # Never let a collector pick up a token or endpoint from this machine.
    return env


def timed(label, argv, env, work, ctrl, timeout):
    """One process under /usr/bin/time: wall s, peak RSS KiB, bytes via proxy."""
    tfile = os.path.join(work, f"{label}.time")
    before = settled(ctrl)
    t0 = time.perf_counter()
    rc = run_bounded(["/usr/bin/time", "-f", "%e %M", "-o", tfile] + argv, env,
                     os.path.join(work, f"{label}.stdout"),
                     os.path.join(work, f"{label}.stderr"), timeout)
    outer = time.perf_counter() - t0
    after = settled(ctrl)
    wall, rss = outer, None
    try:
        with open(tfile) as f:
            last = f.read().strip().splitlines()[-1].split()
        wall, rss = float(last[0]), int(last[1])
    except (OSError, IndexError, ValueError):
        pass
    with open(os.path.join(work, f"{label}.stdout"), "rb") as f:
        lines = sum(1 for line in f if line.strip())
    return {"rc": rc, "wall": wall, "outer": outer, "rss_kib": rss,
            "down": after["down"] - before["down"],
            "up": after["up"] - before["up"], "lines": lines}


def measure(args):
    work = args.work
    os.makedirs(work, exist_ok=True)
    home = tempfile.mkdtemp(prefix="home-", dir=work)
    sky_env = base_env(home)
    py_env = dict(sky_env, SKYPILOT_API_SERVER_ENDPOINT=args.url)
    if args.disable_usage:
        py_env["SKYPILOT_DISABLE_USAGE_COLLECTION"] = "1"
    skydeck = [args.skydeck, "collect", "--endpoint", args.url, "--format", "json"]
    seed = [args.python, os.path.join(HERE, "seed_collector.py")]
    floor = [args.python, os.path.join(HERE, "floor.py"), "--url", args.url,
             "--control-port", str(args.control_port), "--timeout",
             str(args.timeout), "--concurrent"]

    def run_skydeck(tag):
        r = timed(f"skydeck-{tag}", skydeck, sky_env, work, args.control_port,
                  args.timeout)
        with open(os.path.join(work, f"skydeck-{tag}.stderr"), errors="replace") as f:
            err = f.read()
        r["stderr_tail"] = err[-600:]
        m = re.search(r"skypilot: \d+ metrics in ([0-9.]+) s", err)
        if m:
            r["collector_s"] = float(m.group(1))
        return r

    def run_seed(tag):
        r = timed(f"python-{tag}", seed, py_env, work, args.control_port,
                  args.timeout)
        with open(os.path.join(work, f"python-{tag}.stderr"), errors="replace") as f:
            err = f.read()
        r["stderr_tail"] = err[-600:]
        for line in err.splitlines():
            if line.startswith("# timings "):
                r["timings"] = json.loads(line[len("# timings "):])
        return r

    def run_floor(tag):
        out = os.path.join(work, f"floor-{tag}.stdout")
        rc = run_bounded(floor, sky_env, out,
                         os.path.join(work, f"floor-{tag}.stderr"),
                         args.timeout * 5)
        try:
            with open(out) as f:
                data = json.load(f)
            reqs, conc = data["requests"], data.get("concurrent")
        except (OSError, ValueError, KeyError):
            reqs, conc = {}, None
        return {"rc": rc, "requests": reqs, "concurrent": conc}

    runners = {"skydeck": run_skydeck, "python": run_seed, "floor": run_floor}
    res = {"size": args.size, "clusters": args.clusters, "jobs": args.jobs,
           "runs": [], "warmup": {}}
    if args.warmup:
        log(f"[{args.size}] warm-up: skydeck, floor")
        res["warmup"]["skydeck"] = run_skydeck("warmup")
        res["warmup"]["floor"] = run_floor("warmup")
    order = ["skydeck", "python", "floor"]
    for i in range(args.runs):
        seq = order if i % 2 == 0 else order[::-1]
        run = {"order": seq}
        for name in seq:
            log(f"[{args.size}] run {i + 1}/{args.runs}: {name}")
            run[name] = runners[name](f"{i + 1}")
            summary = run[name].get("wall")
            if name == "floor":
                summary = {k: round(v["s"], 2)
                           for k, v in run[name]["requests"].items()}
                if run[name]["concurrent"]:
                    summary["concurrent"] = round(run[name]["concurrent"]["s"], 2)
            log(f"[{args.size}]   -> {summary}")
        res["runs"].append(run)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def span(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(xs))}–{fmt(max(xs))})"


def f_s(x):
    return f"{x:.2f} s"


def f_mb(kib):
    return f"{kib * 1024 / 1e6:.1f} MB"


def f_bytes(b):
    if b >= 1e6:
        return f"{b / 1e6:.2f} MB"
    if b >= 1e3:
        return f"{b / 1e3:.1f} KB"
    return f"{b} B"


def f_x(x):
    return f"{x:.2f}×"


def straddle(xs, threshold):
    xs = [x for x in xs if x is not None]
    if xs and min(xs) < threshold < max(xs):
        return "; the runs fall on both sides of the threshold"
    return ""


def size_stats(res):
    runs = res["runs"]
    sk = [r["skydeck"] for r in runs]
    py = [r["python"] for r in runs]
    fl = [r["floor"]["requests"] for r in runs]
    st = {
        "sk_wall": [r["wall"] for r in sk],
        "sk_rss": [r["rss_kib"] for r in sk],
        "sk_down": [r["down"] for r in sk],
        "sk_rc": [r["rc"] for r in sk],
        "sk_lines": [r["lines"] for r in sk],
        "py_wall": [r["wall"] for r in py],
        "py_rss": [r["rss_kib"] for r in py],
        "py_down": [r["down"] for r in py],
        "py_rc": [r["rc"] for r in py],
        "py_lines": [r["lines"] for r in py],
        "sk_collector": [r.get("collector_s") for r in sk],
        "py_t": {k: [r.get("timings", {}).get(k) for r in py]
                 for k in ("import", "status", "jobs_queue", "cost_report", "compute")},
        "floor": {p: [f.get(p, {}).get("s") for f in fl] for p in FLOOR_PATHS},
        "floor_down": {p: [f.get(p, {}).get("down") for f in fl]
                       for p in FLOOR_PATHS},
        "floor_http": {p: [f.get(p, {}).get("http") for f in fl]
                       for p in FLOOR_PATHS},
    }
    st["slowest"] = [max((f[p]["s"] for p in FLOOR_PATHS if p in f), default=None)
                     for f in fl]
    st["slowest_path"] = [max((p for p in FLOOR_PATHS if p in f),
                              key=lambda p: f[p]["s"], default=None) for f in fl]
    st["floor_sum"] = [sum(f[p]["s"] for p in FLOOR_PATHS if p in f) or None
                       for f in fl]
    st["floor_down_sum"] = [sum(f[p]["down"] for p in FLOOR_PATHS if p in f)
                            for f in fl]
    conc = [r["floor"].get("concurrent") or {} for r in runs]
    st["conc"] = [c.get("s") for c in conc]
    st["conc_down"] = [c.get("down") for c in conc]
    st["r_sk_conc"] = [a / b for a, b in zip(st["sk_wall"], st["conc"]) if a and b]
    st["r_sk_floor"] = [a / b for a, b in zip(st["sk_wall"], st["slowest"])
                        if a and b]
    st["r_py_sk"] = [b / a for a, b in zip(st["sk_wall"], st["py_wall"])
                     if a and b]
    return st


def report(args):
    with open(args.machine) as f:
        machine = json.load(f)
    results = []
    for p in args.results:
        with open(p) as f:
            results.append(json.load(f))
    L = []
    L.append("# Benchmarks: `skydeck collect` vs. a seed-style Python collector")
    L.append("")
    L.append(
        "One run of `scripts/bench/collect.sh` measures, side by side against the same "
        "seeded real SkyPilot API server (`skypilot[server]==0.14.1`, started and seeded "
        "by `scripts/peers/skypilot.sh up`, consolidation mode, 127.0.0.1):")
    L.append("")
    L.append("* **skydeck**: `target/release/skydeck collect --endpoint URL --format json` "
             "(a copy of the release binary taken when the run starts) "
             "(GET /api/health, then /status, /jobs/queue/v2 and /cost_report concurrently, "
             "each a submit POST + GET /api/get);")
    L.append("* **Python (seed-style)**: `scripts/bench/seed_collector.py`, one process: "
             "`import sky`, then sequentially `sky.get(sky.status(all_users=True))`, "
             "`sky.get(sky.jobs.queue_v2(refresh=False, all_users=True, skip_finished=False, "
             "fields=<skydeck's fields>))`, `sky.get(sky.cost_report(days=7))`, and the same "
             "metric table computed in Python (the SDK's `sky.status` has no "
             "`include_handle: false`, so it also receives and unpickles every cluster's "
             "handle);")
    L.append("* **floor**: `scripts/bench/floor.py`, each bare request skydeck needs, alone "
             "on a fresh connection (submit POST + GET /api/get, Python `http.client`); the "
             "slowest single request is the floor — the server's own time.")
    L.append("")
    L.append(
        "Wall time and peak RSS come from GNU time (`/usr/bin/time -f '%e %M'`, RSS of the "
        "process and its waited-for children; the SDK starts no child process). Bytes "
        "received are counted by a byte-counting TCP proxy (`scripts/bench/byteproxy.py`) "
        "on 127.0.0.1 in front of the server, the same way for all three. Each client gets "
        "a throwaway HOME. After one untimed warm-up (skydeck + floor) every measurement is "
        f"repeated {machine['runs']} times, alternating the order (skydeck, Python, floor / "
        "floor, Python, skydeck); cells show the median (min–max). The machine is small "
        "and shared, so the ratios, measured side by side, matter more than the absolute "
        "seconds.")
    L.append("")
    L.append(f"* date: {machine['date']}")
    L.append(f"* machine: {machine['nproc']} CPUs ({machine.get('cpu', '?')}), "
             f"{machine.get('mem', '?')} RAM, load average at start "
             f"{machine['loadavg_start']}, at end {machine.get('loadavg_end', '?')}")
    L.append(f"* skydeck: {machine.get('skydeck_version', '?')} "
             f"(git {machine.get('git', '?')}), release build")
    L.append(f"* SkyPilot: {machine.get('skypilot_version', '?')}, "
             f"{machine.get('python_version', '?')}")
    L.append("")
    L.append("Rerun:")
    L.append("")
    L.append("```sh")
    L.append(args.command)
    L.append("```")
    L.append("")

    targets = []
    for res in results:
        st = size_stats(res)
        title = (f"## {res['size']}: {res['clusters']} clusters / {res['jobs']} "
                 f"managed jobs")
        L.append(title)
        L.append("")
        L.append("| measurement | wall time | peak RSS | bytes received |")
        L.append("|---|---|---|---|")
        L.append(f"| skydeck collect | {span(st['sk_wall'], f_s)} | "
                 f"{span(st['sk_rss'], f_mb)} | {span(st['sk_down'], f_bytes)} |")
        L.append(f"| Python collector (seed-style) | {span(st['py_wall'], f_s)} | "
                 f"{span(st['py_rss'], f_mb)} | {span(st['py_down'], f_bytes)} |")
        if any(st["sk_collector"]):
            L.append(f"| … skydeck's own summary line (`✓ skypilot: … in X s`) | "
                     f"{span(st['sk_collector'], f_s)} | | |")
        if any(st["py_t"]["import"]):
            parts = {"import": "`import sky`", "status": "status",
                     "jobs_queue": "jobs queue", "cost_report": "cost report",
                     "compute": "metrics"}
            L.append("| … Python, of which (in order) | " + " + ".join(
                f"{parts[k]} {f_s(med(v))}" for k, v in st["py_t"].items()
                if med(v) is not None) + " | | |")
        for p in FLOOR_PATHS:
            codes = sorted({c for c in st["floor_http"][p] if c is not None})
            note = "" if codes == [200] else f" (HTTP {', '.join(map(str, codes))})"
            req = "GET" if p == "/api/health" else "POST + /api/get"
            L.append(f"| floor: {p} ({req}){note} | {span(st['floor'][p], f_s)} | | "
                     f"{span(st['floor_down'][p], f_bytes)} |")
        L.append(f"| **floor: slowest single request** | {span(st['slowest'], f_s)} | | |")
        L.append(f"| floor: sum of the requests, one after another | "
                 f"{span(st['floor_sum'], f_s)} | | {span(st['floor_down_sum'], f_bytes)} |")
        if any(st["conc"]):
            L.append(f"| floor, concurrent: skydeck's pattern with bare requests (health, then "
                     f"the three at once) | {span(st['conc'], f_s)} | | "
                     f"{span(st['conc_down'], f_bytes)} |")
        L.append(f"| ratio skydeck / slowest request (per run) | "
                 f"{span(st['r_sk_floor'], f_x)} | | |")
        if st["r_sk_conc"]:
            L.append(f"| ratio skydeck / concurrent bare requests (per run) | "
                     f"{span(st['r_sk_conc'], f_x)} | | |")
        L.append(f"| ratio Python / skydeck (per run) | {span(st['r_py_sk'], f_x)} | | |")
        L.append("")
        slow = sorted({p for p in st["slowest_path"] if p})
        bad_sk = [c for c in st["sk_rc"] if c != 0]
        bad_py = [c for c in st["py_rc"] if c != 0]
        L.append(f"Slowest request: {', '.join('`' + p + '`' for p in slow)}. "
                 f"skydeck printed {span(st['sk_lines'], lambda x: f'{x:.0f}')} samples, "
                 f"the Python collector {span(st['py_lines'], lambda x: f'{x:.0f}')} "
                 f"metrics. Exit status: skydeck "
                 f"{'0 every run' if not bad_sk else 'NOT 0: ' + repr(st['sk_rc'])}, "
                 f"Python {'0 every run' if not bad_py else 'NOT 0: ' + repr(st['py_rc'])}.")
        L.append("")
        sk, fl, py = med(st["sk_wall"]), med(st["slowest"]), med(st["py_wall"])
        # Verdicts use the median of the per-run ratios: each run measures the
        # two side by side, which cancels most of the machine's drifting load.
        if st["r_sk_floor"]:
            r = med(st["r_sk_floor"])
            targets.append((
                r <= 1.1,
                f"{res['size']}: skydeck wall time ≤ 1.1 × slowest single request: "
                f"{r:.2f}× (median of per-run ratios, range "
                f"{span(st['r_sk_floor'], f_x).split(' (')[-1].rstrip(')')}; medians "
                f"{sk:.2f} s vs {fl:.2f} s)" + straddle(st["r_sk_floor"], 1.1)))
        if st["r_py_sk"]:
            r = med(st["r_py_sk"])
            targets.append((
                r >= 1.5,
                f"{res['size']}: skydeck ≥ 1.5× faster than the Python collector: "
                f"{r:.2f}× (median of per-run ratios, range "
                f"{span(st['r_py_sk'], f_x).split(' (')[-1].rstrip(')')}; medians "
                f"{py:.2f} s vs {sk:.2f} s)" + straddle(st["r_py_sk"], 1.5)))
        rss = st["sk_rss"]
        if res["size"] == "large" and any(rss):
            mx = max(x for x in rss if x is not None)
            targets.append((
                mx * 1024 < 25e6,
                f"{res['size']}: skydeck peak RSS < 25 MB at {res['clusters']} clusters / "
                f"{res['jobs']} jobs: {f_mb(mx)} (max of the runs; median "
                f"{f_mb(med(rss))})"))
    L.append("## Where the time goes")
    L.append("")
    for res in results:
        st = size_stats(res)
        sk, fl, py = med(st["sk_wall"]), med(st["slowest"]), med(st["py_wall"])
        if not (sk and fl and py):
            continue
        slow = max(FLOOR_PATHS, key=lambda p: med(st["floor"][p]) or 0)
        others = sum(med(st["floor"][p]) or 0 for p in FLOOR_PATHS if p != slow)
        t = {k: med(v) for k, v in st["py_t"].items()}
        line = (f"* {res['size']}: skydeck {sk:.2f} s; its slowest request, `{slow}`, "
                f"takes {med(st['floor'][slow]):.2f} s alone, the others "
                f"{others:.2f} s alone (together), and skydeck runs them concurrently "
                f"with it; skydeck's time beyond the slowest single request "
                f"(median of per-run slowest): {sk - fl:+.2f} s.")
        if med(st["conc"]):
            line += (f" The same requests fired at once by a bare client take "
                     f"{med(st['conc']):.2f} s (skydeck / bare concurrent: "
                     f"{span(st['r_sk_conc'], f_x)} per run)")
            if sk > 1.1 * fl and med(st["r_sk_conc"]) <= 1.1:
                line += (": what skydeck takes beyond the slowest request is the "
                         "server's cost of answering the requests together, not "
                         "skydeck's own")
            line += "."
        if t.get("import") is not None:
            calls = sum(t.get(k) or 0 for k in ("status", "jobs_queue", "cost_report"))
            # The parts are medians of their own; the rest is the median of each
            # run's wall time minus that run's parts.
            rest = med([r["wall"] - sum(v for v in r.get("timings", {}).values())
                        for r in (run["python"] for run in res["runs"])
                        if r.get("wall") and r.get("timings")])
            line += (f" The Python collector spends {t['import']:.2f} s in `import sky` "
                     f"before its first request, {calls:.2f} s in the three SDK calls one "
                     f"after another (decoding included: the SDK unpickles every cluster "
                     f"handle and cost-report `resources`), {t.get('compute') or 0:.2f} s "
                     f"computing the metrics, and {rest:.2f} s starting and stopping the "
                     f"interpreter (medians).")
        L.append(line)
    L.append("")
    L.append("## Targets")
    L.append("")
    for ok, text in targets:
        L.append(f"* **{'met' if ok else 'not met'}** — {text}")
    if not any(r["size"] == "large" for r in results):
        L.append("* **not measured** — skydeck peak RSS < 25 MB at 200 clusters / 5000 "
                 "jobs (the large fleet was not part of this run)")
    L.append("")
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            L.append(f.read().rstrip())
        L.append("")
    text = "\n".join(L)
    print(text)
    if args.markdown:
        # Other benchmarks (the Datadog encoder's) live below this marker; keep them.
        marker = "<!-- other benchmarks: kept when scripts/bench/collect.sh rewrites this file -->"
        kept = ""
        if os.path.exists(args.markdown):
            with open(args.markdown) as f:
                old = f.read()
            if marker in old:
                kept = "\n" + marker + old.split(marker, 1)[1]
        tmp = args.markdown + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + kept)
        os.replace(tmp, args.markdown)


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--size", required=True)
    m.add_argument("--clusters", type=int, required=True)
    m.add_argument("--jobs", type=int, required=True)
    m.add_argument("--url", required=True)
    m.add_argument("--control-port", type=int, required=True)
    m.add_argument("--runs", type=int, default=3)
    m.add_argument("--skydeck", required=True)
    m.add_argument("--python", required=True)
    m.add_argument("--work", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--timeout", type=float, default=600)
    m.add_argument("--no-warmup", dest="warmup", action="store_false")
    m.add_argument("--disable-usage", action="store_true")
    r = sub.add_parser("report")
    r.add_argument("--results", nargs="+", required=True)
    r.add_argument("--machine", required=True)
    r.add_argument("--command", required=True)
    r.add_argument("--markdown")
    r.add_argument("--notes")
    args = ap.parse_args()
    if args.cmd == "measure":
        measure(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
