#!/usr/bin/env python3
"""A seed-style SkyPilot metrics collector: the baseline of the benchmark.

It does what the Python collector of the seed deployment did, in one process:
`import sky`, then sequentially

    sky.get(sky.status(all_users=True))                      # refresh NONE
    sky.get(sky.jobs.queue_v2(refresh=False, all_users=True,
                              skip_finished=False, fields=FIELDS))
    sky.get(sky.cost_report(days=7))

and computes the same metric table as `skydeck collect` (the definitions of
issue 2), printing one `name value` line per metric. It is not meant to be
byte-identical to skydeck; it has to fetch the same data and do the same work.

`fields` is the list skydeck asks for: the SDK's default field list lacks
`start_at`, `cluster_resources` and `accelerators`, which the metrics need.

Run it with the SkyPilot venv's python, pointed at the server with
SKYPILOT_API_SERVER_ENDPOINT and a throwaway HOME (never the real ~/.sky):

    HOME=$(mktemp -d) SKYPILOT_API_SERVER_ENDPOINT=http://127.0.0.1:PORT \
        target/peers/skypilot-venv/bin/python scripts/bench/seed_collector.py
"""

import json
import os
import re
import sys
import time

T_START = time.perf_counter()

if not os.environ.get("SKYPILOT_API_SERVER_ENDPOINT"):
    sys.exit("seed_collector: set SKYPILOT_API_SERVER_ENDPOINT (it must never "
             "start a local server)")

import sky  # noqa: E402  (the import is part of what is measured)

T_IMPORTED = time.perf_counter()

FIELDS = [
    "job_id", "task_id", "status", "job_name", "task_name", "submitted_at",
    "start_at", "end_at", "job_duration", "recovery_count", "resources",
    "cluster_resources", "accelerators", "cloud", "region", "workspace",
    "user_name",
]
TERMINAL = {
    "SUCCEEDED", "CANCELLED", "FAILED", "FAILED_SETUP", "FAILED_PRECHECKS",
    "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"
}
TRAINING = re.compile(r"(?i)train|finetune|fine-tune|sft|pretrain|grpo|dpo|ppo|rlhf|-ft")
NODES = re.compile(r"^\s*(\d+)x")
ACC = re.compile(r"'([^']+)'\s*:\s*([0-9.]+)")


def sval(v):
    """An enum's value, or the string itself."""
    return getattr(v, "value", v)


def nodes_of(resources_str):
    m = NODES.match(resources_str or "")
    return int(m.group(1)) if m else 1


def gpus_of(acc):
    if not acc:
        return 0.0
    if isinstance(acc, dict):
        return float(sum(acc.values()))
    return float(sum(float(n) for _, n in ACC.findall(str(acc))))


def overlap(intervals, lo, hi):
    total = 0.0
    for start, end in intervals or []:
        end = hi if end is None else end
        total += max(0.0, min(end, hi) - max(start, lo))
    return total


def main():
    t = time.time()
    w7, w1 = t - 7 * 86400, t - 86400

    timings = {"import": T_IMPORTED - T_START}
    t0 = time.perf_counter()
    clusters = sky.get(sky.status(all_users=True))
    t1 = time.perf_counter()
    try:
        queue = sky.get(
            sky.jobs.queue_v2(refresh=False, all_users=True,
                              skip_finished=False, fields=FIELDS))
        tasks = queue[0] if isinstance(queue, tuple) else queue
    except sky.exceptions.ClusterNotUpError:
        tasks = []  # no jobs controller: an empty queue, as the CLI shows it
    t2 = time.perf_counter()
    costs = sky.get(sky.cost_report(days=7))
    t3 = time.perf_counter()
    timings.update(status=t1 - t0, jobs_queue=t2 - t1, cost_report=t3 - t2)

    m = {}

    # ---- managed jobs: group task rows by job_id ----
    jobs = {}
    for r in tasks:
        jobs.setdefault(r["job_id"], []).append(r)
    agg = []
    for jid, rows in jobs.items():
        rows.sort(key=lambda r: r["task_id"])
        status = "SUCCEEDED"
        for r in rows:
            if sval(r["status"]) != "SUCCEEDED":
                status = sval(r["status"])
                break
        starts = [r.get("start_at") for r in rows if r.get("start_at")]
        ends = [r.get("end_at") for r in rows if r.get("end_at")]
        agg.append({
            "id": jid,
            "status": status,
            "name": rows[0].get("job_name") or rows[0].get("task_name") or "",
            "submitted": min(r.get("submitted_at") or 0 for r in rows),
            "start": min(starts) if starts else None,
            "end": max(ends) if (ends and status in TERMINAL) else None,
            "duration": sum(r.get("job_duration") or 0 for r in rows),
            "recoveries": sum(r.get("recovery_count") or 0 for r in rows),
            "rows": rows,
        })

    counts = {}
    for j in agg:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    m["skypilot.jobs.running"] = counts.get("RUNNING", 0)
    m["skypilot.jobs.queued"] = sum(
        counts.get(s, 0) for s in ("PENDING", "SUBMITTED", "STARTING"))
    m["skypilot.jobs.recovering"] = counts.get("RECOVERING", 0)
    for s, n in sorted(counts.items()):
        m[f"skypilot.jobs.count{{status={s}}}"] = n
    done7 = [j for j in agg if j["status"] in TERMINAL and j["end"] and j["end"] >= w7]
    ok = sum(1 for j in done7 if j["status"] == "SUCCEEDED")
    failed = sum(1 for j in done7 if j["status"].startswith("FAILED"))
    m["skypilot.jobs.completed_7d"] = len(done7)
    m["skypilot.jobs.succeeded_7d"] = ok
    m["skypilot.jobs.failed_7d"] = failed
    m["skypilot.jobs.cancelled_7d"] = sum(1 for j in done7 if j["status"] == "CANCELLED")
    if ok + failed:
        m["skypilot.jobs.success_rate_7d"] = 100.0 * ok / (ok + failed)
    durs = [j["duration"] for j in done7 if j["start"]]
    if durs:
        m["skypilot.jobs.avg_duration_minutes"] = sum(durs) / len(durs) / 60
    qt = [j["start"] - j["submitted"] for j in agg if j["start"] and j["start"] >= w7]
    if qt:
        m["skypilot.jobs.avg_queue_time_minutes"] = sum(qt) / len(qt) / 60
    running = [j for j in agg if j["status"] == "RUNNING"]
    m["skypilot.jobs.longest_running_hours"] = max(
        (j["duration"] for j in running), default=0) / 3600
    m["skypilot.instances.preempted_7d"] = sum(
        j["recoveries"] for j in agg if j["submitted"] >= w7)

    # ---- clusters ----
    ccounts = {}
    inst = spot = gpus = 0.0
    for c in clusters:
        st = sval(c["status"])
        ccounts[st] = ccounts.get(st, 0) + 1
        if st in ("UP", "AUTOSTOPPING"):
            n = c.get("nodes") or 0
            inst += n
            if "[spot]" in (c.get("resources_str") or ""):
                spot += n
            gpus += gpus_of(c.get("accelerators")) * n
    m["skypilot.clusters.active"] = ccounts.get("UP", 0)
    for s, n in sorted(ccounts.items()):
        m[f"skypilot.clusters.count{{status={s}}}"] = n
    m["skypilot.clusters.total_nodes"] = sum(c.get("nodes") or 0 for c in clusters)
    for j in running:
        for r in j["rows"]:
            if sval(r["status"]) != "RUNNING":
                continue
            cr = r.get("cluster_resources") or ""
            n = nodes_of(cr)
            inst += n
            if "[spot]" in cr:
                spot += n
            gpus += gpus_of(r.get("accelerators")) * n
    m["skypilot.instances.running"] = inst
    m["skypilot.instances.spot"] = spot
    m["skypilot.instances.on_demand"] = inst - spot
    m["skypilot.gpus.running"] = gpus

    # ---- cost ----
    c24 = c7 = burn = 0.0
    by_name = {}
    for rec in costs:
        dur = rec.get("duration") or 0
        cost = rec.get("total_cost") or 0.0
        ivs = rec.get("usage_intervals") or []
        by_name[rec.get("name")] = by_name.get(rec.get("name"), 0.0) + cost
        if dur <= 0:
            continue
        c24 += cost * overlap(ivs, w1, t) / dur
        c7 += cost * overlap(ivs, w7, t) / dur
        if any(end is None for _, end in ivs):
            burn += cost / dur * 3600
    m["skypilot.compute.cost_24h"] = c24
    m["skypilot.compute.cost_7d"] = c7
    m["skypilot.compute.burn_rate_hourly"] = burn
    m["skypilot.compute.estimated_monthly_cost"] = c7 / 7 * 30

    def job_cost(j):
        names = {f"{r.get('task_name') or j['name']}-{j['id']}" for r in j["rows"]}
        found = [by_name[n] for n in names if n in by_name]
        return sum(found) if found else None

    jc = [c for c in (job_cost(j) for j in done7) if c is not None]
    if jc:
        m["skypilot.compute.cost_per_job_avg"] = sum(jc) / len(jc)
    train = [j for j in agg if TRAINING.search(j["name"])]
    m["skypilot.training.runs_active"] = sum(1 for j in train if j["status"] == "RUNNING")
    done_ids = {j["id"] for j in done7}
    tdone = [j for j in train if j["id"] in done_ids]
    m["skypilot.training.runs_completed_7d"] = len(tdone)
    tc = [c for c in (job_cost(j) for j in tdone) if c is not None]
    if tc:
        m["skypilot.training.avg_cost_per_run"] = sum(tc) / len(tc)

    timings["compute"] = time.perf_counter() - t3
    for k, v in m.items():
        print(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}")
    print(f"# {len(m)} metrics from {len(clusters)} clusters, {len(tasks)} task rows,"
          f" {len(costs)} cost records", file=sys.stderr)
    print("# timings " + json.dumps({k: round(v, 3) for k, v in timings.items()}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
