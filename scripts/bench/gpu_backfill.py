#!/usr/bin/env python3
"""History for scripts/bench/gpu.sh's Prometheus, as OpenMetrics text for
`promtool tsdb create-blocks-from openmetrics`.

    gpu_backfill.py --base URL --targets targets.json --job JOB \
        --start UNIX --end UNIX --interval SECONDS > history.om

Reads the file_sd target groups Prometheus scrapes (one target each, labels `instance`,
`__metrics_path__`, `skypilot_cluster`), fetches each target's page once from the DCGM
stand-in at --base, and writes DCGM_FI_PROF_GR_ENGINE_ACTIVE and DCGM_FI_DEV_GPU_UTIL for
every GPU series from --start to --end every --interval seconds, with exactly the labels
Prometheus gives the scraped series (the page's labels plus `job`, `instance` and the target
group's labels), so the backfilled history and the live scrape are one series per GPU. A GPU
idle on the page (under 3 %) stays idle in the history, a busy one busy; values vary.
Only these two metrics are backfilled (the ones skydeck queries); the live scrape stores all.
"""

import argparse
import json
import re
import sys
import urllib.request

WANTED = ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL")
LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)\{(.*)\}\s+(\S+)")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unit(a, b):
    x = (a * 0x9E3779B97F4A7C15 + b * 0xC2B2AE3D27D4EB4F) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33
    return (x >> 11) / float(1 << 53)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--job", required=True)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--end", type=int, required=True)
    ap.add_argument("--interval", type=int, required=True)
    a = ap.parse_args()

    series = {m: [] for m in WANTED}  # metric -> [(labels text, idle)]
    with open(a.targets) as f:
        groups = json.load(f)
    for g in groups:
        labels = g["labels"]
        path = labels["__metrics_path__"]
        extra = {k: v for k, v in labels.items() if not k.startswith("__")}
        extra["job"] = a.job
        with urllib.request.urlopen(a.base.rstrip("/") + path, timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            m = LINE.match(line)
            if not m or m.group(1) not in WANTED:
                continue
            lab = dict(LABEL.findall(m.group(2)))
            lab.update(extra)
            v = float(m.group(3))
            pct = v * 100 if m.group(1) == WANTED[0] else v
            body = ",".join(f'{k}="{lab[k]}"' for k in sorted(lab))
            series[m.group(1)].append((body, pct < 3))

    out = sys.stdout
    n = 0
    for metric in WANTED:
        out.write(f"# HELP {metric} {metric}.\n# TYPE {metric} gauge\n")
        ratio = metric == WANTED[0]
        for t in range(a.start, a.end + 1, a.interval):
            for i, (body, idle) in enumerate(series[metric]):
                r = unit(i, t)
                pct = r * 3.0 if idle else 35.0 + r * 65.0
                v = f"{pct / 100:.6f}" if ratio else f"{round(pct)}"
                out.write(f"{metric}{{{body}}} {v} {t}\n")
                n += 1
    out.write("# EOF\n")
    print(
        f"gpu_backfill: {len(series[WANTED[0]])} + {len(series[WANTED[1]])} series, {n} samples",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
