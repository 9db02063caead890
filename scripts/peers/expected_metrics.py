#!/usr/bin/env python3
"""Expected skydeck SkyPilot metrics, computed from a seeded fleet's ground truth.

    expected_metrics.py --fleet $PEERS/NAME/fleet.json --at T \
        [--training-pattern REGEX]

Reads fleet.json (written by seed_fleet.py; its shape is documented there) and
prints one JSON line per metric sample at collection time T (integer epoch
seconds):

    {"name": "skypilot.jobs.running", "tags": {}, "value": 7}
    {"name": "skypilot.jobs.count", "tags": {"status": "RUNNING"}, "value": 7}

Standard library only, and independent of skydeck's Rust code and of the
server's responses: it models what the server returns for the seeded state
and applies the metric definitions of issue 2 ("Metric definitions") with
these decisions where the table is loose:

* A managed job = all task rows with its job_id. Its status is the status of
  its lowest task_id that is not SUCCEEDED (SUCCEEDED if all are);
  submitted_at = min, start_at = earliest non-null, end_at = latest non-null
  and only when the job is terminal; job_duration and recovery_count = sums.
* A task's job_duration is what the server computes at query time from the
  stored column: RECOVERING -> stored value; started (last_recovered_at -
  stored > 0) -> (end_at or T) - (last_recovered_at - stored); else 0.
* jobs.count: one series per ManagedJobStatus (14, zeros included);
  clusters.count: one per ClusterStatus (INIT, UP, STOPPED, AUTOSTOPPING,
  PENDING), zeros included.
* Means over an empty set (avg_duration_minutes, avg_queue_time_minutes,
  cost_per_job_avg, training.avg_cost_per_run) and success_rate_7d with a
  zero denominator are NOT emitted; longest_running_hours is 0 when nothing
  runs.
* Clusters = the live non-managed clusters (what /status returns; managed-job
  clusters are hidden there).
* instances.running = nodes of UP and AUTOSTOPPING clusters + for every job
  whose status is RUNNING, the nodes of each of its task rows whose own status
  is RUNNING (the leading <n>x of that row's cluster_resources). spot /
  on_demand split the same set by the spot flag; gpus.running = sum of
  accelerator count x nodes over the same set.
* Cost: the records cost_report(days=7) returns are every live cluster
  (managed ones included) plus terminated ones whose last activity (end of the
  last usage interval, or its start when open) is >= T - 7 days
  (sky/global_user_state.py:get_clusters_from_history). For each, like the
  server: duration = sum of int(end or T) - int(start) over its intervals,
  total_cost = hourly price per node x num_nodes x duration / 3600. Cost over
  [W, T] = total_cost x overlap(intervals, [W, T]) / duration (open intervals
  end at T). burn_rate_hourly = sum of total_cost / duration x 3600 over
  records with an open interval. estimated_monthly_cost = cost_7d / 7 x 30.
* cost_per_job_avg: over completed_7d jobs, a job's cost = sum of total_cost
  of the 7-day records named "<task name>-<job_id>" for any of its tasks;
  jobs with no such record are left out of the mean.
* Training runs: job name matches the pattern (re.search). runs_active =
  training jobs whose status is RUNNING; runs_completed_7d and
  avg_cost_per_run as completed_7d / cost_per_job_avg restricted to them.
* clusters.unpriced, tagged cloud: the running clusters whose cost is $0 in
  the cost report. Running = UP or AUTOSTOPPING in /status, or a live record
  (managed ones and INIT included) with an open usage interval. Unpriced =
  no record for it, or total_cost (as above) 0 while duration > 0: a
  Kubernetes cluster when the server's config has no kubernetes.pricing, or
  one whose accelerator that pricing does not list (the record's
  hourly_price_per_node is 0). One series per cloud of any /status cluster
  or 7-day record, zeros included ({"cloud": "none"} 0 when there is none).
* Not emitted: clusters.idle, clusters.queue_unreachable,
  clusters.avg_utilization_percent, storage.cost_7d.
"""
import argparse
import json
import re
import sys

DEFAULT_TRAINING_PATTERN = (
    r'(?i)train|finetune|fine-tune|sft|pretrain|grpo|dpo|ppo|rlhf|-ft')

JOB_STATUSES = [
    'PENDING', 'SUBMITTED', 'STARTING', 'RUNNING', 'WINDING_DOWN',
    'RECOVERING', 'CANCELLING', 'SUCCEEDED', 'CANCELLED', 'FAILED',
    'FAILED_SETUP', 'FAILED_PRECHECKS', 'FAILED_NO_RESOURCE',
    'FAILED_CONTROLLER'
]
FAILED = {
    'FAILED', 'FAILED_SETUP', 'FAILED_PRECHECKS', 'FAILED_NO_RESOURCE',
    'FAILED_CONTROLLER'
}
TERMINAL = FAILED | {'SUCCEEDED', 'CANCELLED'}
QUEUED = {'PENDING', 'SUBMITTED', 'STARTING'}
CLUSTER_STATUSES = ['INIT', 'UP', 'STOPPED', 'AUTOSTOPPING', 'PENDING']
DAY = 86400


def task_duration(task, at):
    stored = float(task['job_duration'])
    if task['status'] == 'RECOVERING':
        return stored
    origin = float(task['last_recovered_at']) - stored
    if origin > 0:
        end = task['end_at'] if task['end_at'] is not None else at
        return float(end) - origin
    return 0.0


def aggregate_job(job, at):
    tasks = sorted(job['tasks'], key=lambda t: t['task_id'])
    status = next((t['status'] for t in tasks if t['status'] != 'SUCCEEDED'),
                  'SUCCEEDED')
    starts = [t['start_at'] for t in tasks if t['start_at'] is not None]
    ends = [t['end_at'] for t in tasks if t['end_at'] is not None]
    return {
        'job_id': job['job_id'],
        'name': job['job_name'],
        'status': status,
        'submitted_at': min(t['submitted_at'] for t in tasks),
        'start_at': min(starts) if starts else None,
        'end_at': max(ends) if (ends and status in TERMINAL) else None,
        'job_duration': sum(task_duration(t, at) for t in tasks),
        'recovery_count': sum(t['recovery_count'] for t in tasks),
        'tasks': tasks,
    }


def record_duration(rec, at):
    total = 0
    for start, end in rec['usage_intervals']:
        if start is None:
            continue
        total += int(end if end is not None else at) - int(start)
    return total


def overlap(rec, lo, hi):
    total = 0.0
    for start, end in rec['usage_intervals']:
        if start is None:
            continue
        end = end if end is not None else hi
        total += max(0.0, min(float(end), hi) - max(float(start), lo))
    return total


def compute(fleet, at, pattern):
    w7 = at - 7 * DAY
    w1 = at - DAY
    train_re = re.compile(pattern)
    out = []

    def emit(name, value, tags=None):
        out.append({'name': name, 'tags': tags or {}, 'value': value})

    # ---- jobs ----------------------------------------------------------
    jobs = [aggregate_job(j, at) for j in fleet['jobs']]
    by_status = {s: 0 for s in JOB_STATUSES}
    for j in jobs:
        by_status[j['status']] += 1
    emit('skypilot.jobs.running', by_status['RUNNING'])
    emit('skypilot.jobs.queued', sum(by_status[s] for s in QUEUED))
    emit('skypilot.jobs.recovering', by_status['RECOVERING'])
    for s in JOB_STATUSES:
        emit('skypilot.jobs.count', by_status[s], {'status': s})
    completed = [
        j for j in jobs
        if j['status'] in TERMINAL and j['end_at'] is not None and
        j['end_at'] >= w7
    ]
    succeeded = sum(1 for j in completed if j['status'] == 'SUCCEEDED')
    failed = sum(1 for j in completed if j['status'] in FAILED)
    cancelled = sum(1 for j in completed if j['status'] == 'CANCELLED')
    emit('skypilot.jobs.completed_7d', len(completed))
    emit('skypilot.jobs.succeeded_7d', succeeded)
    emit('skypilot.jobs.failed_7d', failed)
    emit('skypilot.jobs.cancelled_7d', cancelled)
    if succeeded + failed > 0:
        emit('skypilot.jobs.success_rate_7d',
             100.0 * succeeded / (succeeded + failed))
    started = [j for j in completed if j['start_at'] is not None]
    if started:
        emit('skypilot.jobs.avg_duration_minutes',
             sum(j['job_duration'] for j in started) / len(started) / 60.0)
    queued = [
        j for j in jobs if j['start_at'] is not None and j['start_at'] >= w7
    ]
    if queued:
        emit('skypilot.jobs.avg_queue_time_minutes',
             sum(j['start_at'] - j['submitted_at'] for j in queued) /
             len(queued) / 60.0)
    running = [j for j in jobs if j['status'] == 'RUNNING']
    emit('skypilot.jobs.longest_running_hours',
         max((j['job_duration'] for j in running), default=0.0) / 3600.0)

    # ---- clusters ------------------------------------------------------
    clusters = fleet['clusters']
    cl_status = {s: 0 for s in CLUSTER_STATUSES}
    for c in clusters:
        cl_status[c['status']] += 1
    emit('skypilot.clusters.active', cl_status['UP'])
    for s in CLUSTER_STATUSES:
        emit('skypilot.clusters.count', cl_status[s], {'status': s})
    emit('skypilot.clusters.total_nodes', sum(c['nodes'] for c in clusters))

    # ---- instances / gpus ----------------------------------------------
    # (nodes, spot, gpus per node) of everything that runs.
    units = [(c['nodes'], c['spot'], sum(c['accelerators'].values()))
             for c in clusters if c['status'] in ('UP', 'AUTOSTOPPING')]
    for j in running:
        for t in j['tasks']:
            if t['status'] == 'RUNNING':
                units.append((t['nodes'], t['spot'],
                              sum(t['accelerators'].values())))
    emit('skypilot.instances.running', sum(u[0] for u in units))
    emit('skypilot.instances.spot', sum(u[0] for u in units if u[1]))
    emit('skypilot.instances.on_demand', sum(u[0] for u in units if not u[1]))
    emit('skypilot.instances.preempted_7d',
         sum(j['recovery_count'] for j in jobs if j['submitted_at'] >= w7))
    gpus = sum(u[0] * u[2] for u in units)
    emit('skypilot.gpus.running', int(gpus) if gpus == int(gpus) else gpus)

    # ---- cost ----------------------------------------------------------
    records = [
        r for r in fleet['cost_records'] if r['live'] or
        r['last_activity'] >= int(at) - 7 * DAY
    ]
    cost_24h = cost_7d = burn = 0.0
    total_by_name = {}
    for r in records:
        duration = record_duration(r, at)
        total = (r['hourly_price_per_node'] * r['num_nodes'] * duration /
                 3600.0)
        total_by_name[r['name']] = total_by_name.get(r['name'], 0.0) + total
        if duration <= 0:
            continue
        cost_7d += total * overlap(r, w7, at) / duration
        cost_24h += total * overlap(r, w1, at) / duration
        if any(end is None for _, end in r['usage_intervals']):
            burn += total / duration * 3600.0
    emit('skypilot.compute.cost_24h', cost_24h)
    emit('skypilot.compute.cost_7d', cost_7d)
    emit('skypilot.compute.burn_rate_hourly', burn)
    emit('skypilot.compute.estimated_monthly_cost', cost_7d / 7.0 * 30.0)

    def job_cost(j):
        names = {f"{t['task_name']}-{j['job_id']}" for t in j['tasks']}
        matched = [total_by_name[n] for n in names if n in total_by_name]
        return sum(matched) if matched else None

    # ---- unpriced clusters ----------------------------------------------
    clouds = {c['cloud'] for c in clusters} | {r['cloud'] for r in records}
    unpriced = {c: 0 for c in clouds} or {'none': 0}
    live = {r['cluster_hash']: r for r in records if r['live']}
    accruing = {c['cluster_hash']: c['cloud'] for c in clusters
               if c['status'] in ('UP', 'AUTOSTOPPING')}
    for h, r in live.items():
        if any(end is None for _, end in r['usage_intervals']):
            accruing.setdefault(h, r['cloud'])
    for h, cloud in accruing.items():
        r = live.get(h)
        if r is None:
            unpriced[cloud] += 1
            continue
        duration = record_duration(r, at)
        total = (r['hourly_price_per_node'] * r['num_nodes'] * duration /
                 3600.0)
        if total <= 0 and duration > 0:
            unpriced[r['cloud']] += 1
    for cloud, n in sorted(unpriced.items()):
        emit('skypilot.clusters.unpriced', n, {'cloud': cloud})

    costs = [c for c in (job_cost(j) for j in completed) if c is not None]
    if costs:
        emit('skypilot.compute.cost_per_job_avg', sum(costs) / len(costs))

    # ---- training ------------------------------------------------------
    def is_training(j):
        return train_re.search(j['name']) is not None

    emit('skypilot.training.runs_active',
         sum(1 for j in running if is_training(j)))
    t_completed = [j for j in completed if is_training(j)]
    emit('skypilot.training.runs_completed_7d', len(t_completed))
    t_costs = [
        c for c in (job_cost(j) for j in t_completed) if c is not None
    ]
    if t_costs:
        emit('skypilot.training.avg_cost_per_run',
             sum(t_costs) / len(t_costs))
    return out


def main():
    ap = argparse.ArgumentParser(
        description='Expected skydeck SkyPilot metrics from fleet.json.')
    ap.add_argument('--fleet', required=True, help='fleet.json (seed_fleet.py)')
    ap.add_argument('--at', required=True, type=int,
                    help='collection time T, integer epoch seconds')
    ap.add_argument('--training-pattern', default=DEFAULT_TRAINING_PATTERN,
                    help='regex (re.search) classifying training jobs by name')
    args = ap.parse_args()
    try:
        with open(args.fleet, encoding='utf-8') as f:
            fleet = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f'expected_metrics.py: cannot read {args.fleet}: {e}')
    try:
        pattern = re.compile(args.training_pattern).pattern
    except re.error as e:
        sys.exit(f'expected_metrics.py: bad --training-pattern: {e}')
    for sample in compute(fleet, args.at, pattern):
        print(json.dumps(sample))


if __name__ == '__main__':
    main()
