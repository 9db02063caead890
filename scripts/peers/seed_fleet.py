#!/usr/bin/env python3
"""Seed a deterministic demo fleet into a local SkyPilot API server's state.

Run with the venv's python (skypilot[server]==0.14.1) and HOME set to the
server's own home (never the real ~/.sky):

    HOME=$PEERS/NAME/home $VENV/bin/python seed_fleet.py \
        --clusters 10 --jobs 50 --seed 1 --out $PEERS/NAME/fleet.json \
        --keeper-pidfile $PEERS/NAME/keeper.pid

It must run BEFORE the API server starts (skypilot.sh `up` does that). It
writes, through SkyPilot's own modules (the SQLAlchemy tables and engines of
sky.global_user_state and sky.jobs.state, real sky.Resources and
CloudVmRayResourceHandle objects):

  * ~/.sky/catalogs/v8/{aws,gcp,lambda}/vms.csv -- minimal pricing catalogs with
    public-list-like prices and no .meta/*.md5 (so SkyPilot never re-downloads
    them). They are THE source of prices: `CATALOG` below. Kubernetes prices
    come from kubernetes.pricing in the server's ~/.sky/config.yaml when it
    has one (written by skypilot.sh before this runs), else 0; every price is
    checked against SkyPilot's own Resources.get_cost.
  * clusters (+ cluster_yaml, cluster_history, cluster_events) for the live
    user clusters, terminated clusters (history only) and managed-job clusters.
  * spot_jobs.db: job_info, spot (one row per task) and job_events.
  * a detached "keeper" process whose pid is the controller_pid of every active
    managed job, so the server's consolidation-mode HA recovery leaves them
    alone (see reference §9).

Everything is relative to NOW (the seeding time, integer epoch seconds) and
deterministic for a given --seed/--clusters/--jobs. Timestamps that decide
window membership (job submitted/start/end, a terminated cluster's last
activity) are kept >= 1 h (jobs) / >= 3 h (clusters) away from NOW-7d and
NOW-24h, so a collection at T within ~1 h of seeding is not sensitive to the
few seconds between the collector's T and the server's clock.

Ground truth: --out fleet.json, recorded from what this script wrote (not read
back from the server). Shape (all times epoch seconds; null = JSON null):

{
  "version": 1, "seed": int, "generated_at": NOW (int),
  "sizes": {"clusters": N, "jobs": M},
  "users": [{"name": str, "user_hash": str}],
  "workspaces": [str],
  "catalog": [{"cloud", "instance_type", "region", "zone"|null,
               "accelerator": str|null, "accelerator_count": int|null,
               "price": float, "spot_price": float|null}],
               # per node and hour; GCP GPU offerings = host VM + GPU rows;
               # Kubernetes: from k8s_pricing (0 without it)
  "clouds": [str],     # --clouds: the clouds the fleet uses
  "k8s_pricing": {context: {"cpu": float, "memory": float,
                            "accelerators": {name: float}}},
               # kubernetes.pricing merged with the context's override, as
               # read from the server's config; {} when it has none
  "keeper_pid": int,
  "clusters": [        # live NON-managed clusters (what /status returns)
     {"name", "cluster_hash", "status": "UP|INIT|STOPPED|AUTOSTOPPING",
      "nodes": int, "spot": bool, "accelerators": {name: count} ({} = CPU),
      "cloud": "AWS|GCP|Lambda|Kubernetes" (as SkyPilot displays it),
      "region" (Kubernetes: the context name), "zone"|null,
      "instance_type", "workspace", "user", "user_hash",
      "launched_at": int, "autostop": int, "to_down": bool}],
  "managed_clusters": [ # live is_managed=1 clusters of active managed jobs
     {same keys as clusters, plus "job_id", "task_id"}],
  "cost_records": [    # every cluster_history row written (live and terminated)
     {"name", "cluster_hash", "usage_intervals": [[start, end|null], ...],
      "num_nodes": int, "hourly_price_per_node": float, "spot": bool,
      "cloud", "region", "zone"|null, "instance_type",
      "accelerators": {name: count}, "workspace", "user", "user_hash",
      "live": bool,            # a clusters row with this hash exists
      "status": str|null,      # live status, null when terminated
      "is_managed": bool,
      "last_activity": int,    # end of last interval, or its start if open
      "job_id": int|null, "task_id": int|null}],  # for managed-job clusters
  "jobs": [            # one entry per managed job
     {"job_id", "job_name", "user", "user_hash", "workspace",
      "schedule_state", "priority", "pipeline": bool,
      "tasks": [
        {"job_id", "task_id", "job_name", "task_name", "status",
         "submitted_at": float, "start_at": float|null, "end_at": float|null,
         "last_recovered_at": float (-1 when never started),
         "job_duration": float,   # the STORED column value (see below)
         "recovery_count": int, "nodes": int, "spot": bool,
         "accelerators": {name: count}, "cloud", "region", "zone"|null,
         "instance_type", "launched": bool,   # ever got a cluster
         "cluster_name": str|null,  # live managed cluster, active tasks only
         "workspace", "user", "user_hash"}]}]
}

The server computes a task's job_duration at query time from the stored one:
RECOVERING -> stored; started (last_recovered_at - stored > 0) ->
(end_at or now) - (last_recovered_at - stored); else 0.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import time
import uuid
import zlib

# --------------------------------------------------------------------------
# The price catalog (per node, per hour, USD). Public-list-like values.
# --------------------------------------------------------------------------
# (instance_type, accelerator, count, vcpus, mem_gib, price, spot_price)
AWS_INSTANCES = [
    ('p4d.24xlarge', 'A100', 8, 96, 1152, 32.7726, 13.1090),
    ('p5.48xlarge', 'H100', 8, 192, 2048, 98.3200, 39.3280),
    ('g5.12xlarge', 'A10G', 4, 48, 192, 5.6720, 2.2688),
    ('g5.xlarge', 'A10G', 1, 4, 16, 1.0060, 0.4024),
    ('g6.xlarge', 'L4', 1, 4, 16, 0.8048, 0.3219),
    ('m6i.2xlarge', None, None, 8, 32, 0.3840, 0.1536),
    ('c6i.4xlarge', None, None, 16, 32, 0.6800, 0.2720),
]
AWS_REGIONS = {
    'us-east-1': (['us-east-1a', 'us-east-1b', 'us-east-1c'], 1.00),
    'us-west-2': (['us-west-2a', 'us-west-2b'], 1.00),
    'eu-west-1': (['eu-west-1a'], 1.12),
}
# GCP: host VM row (no accelerator) + accelerator row (no instance type);
# SkyPilot adds the two. (host, vcpus, mem, host_price, host_spot,
# accelerator, count, acc_price, acc_spot)
GCP_INSTANCES = [
    ('a2-highgpu-8g', 96, 680, 4.4054, 1.3216, 'A100', 8, 23.4696, 7.0400),
    ('a3-highgpu-8g', 208, 1872, 10.2180, 3.0654, 'H100', 8, 78.0240, 23.4072),
    ('g2-standard-48', 48, 192, 1.9568, 0.5870, 'L4', 4, 2.2400, 0.6720),
    ('g2-standard-8', 8, 32, 0.2945, 0.0884, 'L4', 1, 0.5600, 0.1680),
    ('n2-standard-8', 8, 32, 0.3885, 0.0942, None, None, 0.0, 0.0),
]
GCP_REGIONS = {
    'us-central1': (['us-central1-a', 'us-central1-b', 'us-central1-c'], 1.00),
    'europe-west4': (['europe-west4-a', 'europe-west4-b'], 1.10),
}
# Lambda: on-demand only, no zones.
LAMBDA_INSTANCES = [
    ('gpu_8x_h100_sxm5', 'H100', 8, 208, 1800, 23.9200),
    ('gpu_1x_h100_pcie', 'H100', 1, 26, 200, 2.4900),
    ('gpu_8x_a100_80gb_sxm4', 'A100-80GB', 8, 240, 1800, 14.3200),
    ('gpu_1x_a100_sxm4', 'A100', 1, 30, 200, 1.2900),
]
LAMBDA_REGIONS = {'us-east-1': 1.00, 'us-west-1': 1.00, 'us-south-1': 1.00}
# Kubernetes: virtual instance types <cpus>CPU--<mem>GB[--<acc>:<n>]. They cost
# 0 unless the server's ~/.sky/config.yaml has kubernetes.pricing (skypilot.sh
# up --extra-config); then the price is what that config says (k8s_hourly).
K8S_INSTANCES = [
    ('32CPU--256GB--H100:8', 'H100', 8, 32, 256),
    ('8CPU--32GB--L4:1', 'L4', 1, 8, 32),
    ('8CPU--64GB--A100:1', 'A100', 1, 8, 64),
    ('4CPU--16GB', None, None, 4, 16),
]
K8S_CONTEXTS = ['gke_ml-platform_us-central1_h100-pool',
                'eks_inference-prod_us-west-2']

# The resolved kubernetes.pricing per context, read from the server's config by
# load_k8s_pricing() before anything is priced; {} = no pricing anywhere.
K8S_PRICING = {}

USERS = ['alice', 'bob', 'carol', 'dave', 'erin']
WORKSPACES = ['default', 'ml-research']

CLUSTER_STATUSES = ['UP', 'INIT', 'STOPPED', 'AUTOSTOPPING']
JOB_STATUSES = [
    'PENDING', 'SUBMITTED', 'STARTING', 'RUNNING', 'WINDING_DOWN',
    'RECOVERING', 'CANCELLING', 'SUCCEEDED', 'CANCELLED', 'FAILED',
    'FAILED_SETUP', 'FAILED_PRECHECKS', 'FAILED_NO_RESOURCE',
    'FAILED_CONTROLLER'
]
TERMINAL = {
    'SUCCEEDED', 'CANCELLED', 'FAILED', 'FAILED_SETUP', 'FAILED_PRECHECKS',
    'FAILED_NO_RESOURCE', 'FAILED_CONTROLLER'
}
ACTIVE_WITH_CLUSTER = {'STARTING', 'RUNNING', 'WINDING_DOWN', 'RECOVERING',
                       'CANCELLING'}
SCHEDULE_STATE = {
    'PENDING': 'INACTIVE',
    'SUBMITTED': 'LAUNCHING',
    'STARTING': 'LAUNCHING',
    'RUNNING': 'ALIVE',
    'WINDING_DOWN': 'ALIVE',
    'CANCELLING': 'ALIVE',
    'RECOVERING': 'ALIVE_WAITING',
}
FAILURE_REASON = {
    'FAILED': 'Job failed with return code list: [1]',
    'FAILED_SETUP': 'Setup failed with return code 1: pip install -r '
                    'requirements.txt',
    'FAILED_PRECHECKS': 'Invalid task: cloud credentials are not configured '
                        'for the requested infra.',
    'FAILED_NO_RESOURCE': 'Failed to provision all possible launchable '
                          'resources. Relax the task\'s resource '
                          'requirements.',
    'FAILED_CONTROLLER': 'Controller process has exited abnormally '
                         '(Controller process is dead).',
}
TRAIN_BASES = ['llama-finetune', 'qwen-grpo', 'sft-mistral', 'pretrain-gpt',
               'rm-train', 'mistral-dpo', 'whisper-ft']
OTHER_BASES = ['batch-eval', 'etl-daily', 'embed-index', 'nightly-bench',
               'vllm-loadtest', 'data-dedup']
CLUSTER_PURPOSES = ['dev', 'llama-ft', 'notebook', 'eval', 'serve',
                    'data-prep', 'sweep']

DAY = 86400
HOUR = 3600


def user_hash(name):
    return hashlib.md5(name.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------
# Offerings (what a cluster/task can run on) and their prices.
# --------------------------------------------------------------------------
class Offering:
    """One instance type in one cloud; price depends on region/zone/spot."""

    def __init__(self, cloud, instance_type, acc, count, vcpus, mem):
        self.cloud = cloud
        self.instance_type = instance_type
        self.acc = acc
        self.count = count
        self.vcpus = vcpus
        self.mem = mem
        self.prices = {}  # region -> (price, spot_price or None)

    @property
    def display(self):
        """SkyPilot's name of the cloud, as /status and cost_report show it."""
        return {'aws': 'AWS', 'gcp': 'GCP', 'lambda': 'Lambda',
                'kubernetes': 'Kubernetes'}[self.cloud]

    @property
    def accelerators(self):
        return {self.acc: self.count} if self.acc else {}

    def locations(self):
        """List of (region, zone|None)."""
        if self.cloud == 'aws':
            return [(r, z) for r, (zs, _) in AWS_REGIONS.items() for z in zs]
        if self.cloud == 'gcp':
            return [(r, z) for r, (zs, _) in GCP_REGIONS.items() for z in zs]
        if self.cloud == 'lambda':
            return [(r, None) for r in LAMBDA_REGIONS]
        return [(c, None) for c in K8S_CONTEXTS]

    def spot_capable(self):
        return self.cloud in ('aws', 'gcp')

    def hourly(self, region, spot):
        if self.cloud == 'kubernetes':
            return k8s_hourly(K8S_PRICING.get(region, {}), self.vcpus,
                              self.mem, self.acc, self.count)
        price, spot_price = self.prices[region]
        return spot_price if spot else price


def load_k8s_pricing():
    """Reads kubernetes.pricing and each context's override from the
    server's config through SkyPilot's own config loader (which validates it
    against SkyPilot's schema), and merges them as 0.14.1 documents it: an
    override replaces cpu/memory and adds or replaces single accelerators.
    Runs after Sky() has imported sky."""
    from sky import skypilot_config
    base = skypilot_config.get_nested(('kubernetes', 'pricing'), None)
    out = {}
    for ctx in K8S_CONTEXTS:
        over = skypilot_config.get_nested(
            ('kubernetes', 'context_configs', ctx, 'pricing'), None)
        if base is None and over is None:
            continue
        merged = {'cpu': 0.0, 'memory': 0.0, 'accelerators': {}}
        for level in (base or {}, over or {}):
            for k in ('cpu', 'memory'):
                if k in level:
                    merged[k] = float(level[k])
            for acc, rate in (level.get('accelerators') or {}).items():
                merged['accelerators'][acc] = float(rate)
        out[ctx] = merged
    K8S_PRICING.clear()
    K8S_PRICING.update(out)


def k8s_hourly(pricing, vcpus, mem, acc, count):
    """Per pod (node) and hour: an accelerator pod costs count x its rate,
    all-in (cpu and memory are not added; an accelerator not listed costs 0);
    a CPU-only pod costs vcpus x cpu + GiB x memory."""
    if acc:
        rates = {k.lower(): v
                 for k, v in pricing.get('accelerators', {}).items()}
        return count * rates.get(acc.lower(), 0.0)
    return vcpus * pricing.get('cpu', 0.0) + mem * pricing.get('memory', 0.0)


def build_catalog():
    offerings = []
    rows = {'aws': [], 'gcp': [], 'lambda': []}
    flat = []
    for it, acc, cnt, cpu, mem, p, sp in AWS_INSTANCES:
        o = Offering('aws', it, acc, cnt, cpu, mem)
        for region, (zones, mult) in AWS_REGIONS.items():
            rp, rsp = round(p * mult, 4), round(sp * mult, 4)
            o.prices[region] = (rp, rsp)
            for z in zones:
                rows['aws'].append([
                    it, acc or '', cnt if cnt else '', cpu, mem,
                    f"{{'Gpus': [{{'Name': '{acc}', 'Count': {cnt}}}]}}"
                    if acc else '', rp, rsp, region, z, 'x86_64'
                ])
                flat.append(dict(cloud='AWS', instance_type=it, region=region,
                                 zone=z, accelerator=acc,
                                 accelerator_count=cnt, price=rp,
                                 spot_price=rsp))
        offerings.append(o)
    for (it, cpu, mem, hp, hsp, acc, cnt, ap, asp) in GCP_INSTANCES:
        o = Offering('gcp', it, acc, cnt, cpu, mem)
        for region, (zones, mult) in GCP_REGIONS.items():
            rhp, rhsp = round(hp * mult, 4), round(hsp * mult, 4)
            rap, rasp = round(ap * mult, 4), round(asp * mult, 4)
            o.prices[region] = (round(rhp + rap, 4), round(rhsp + rasp, 4))
            for z in zones:
                rows['gcp'].append(
                    [it, '', '', cpu, mem, '', rhp, rhsp, region, z])
                if acc:
                    rows['gcp'].append(
                        ['', acc, cnt, '', '', acc, rap, rasp, region, z])
                flat.append(dict(cloud='GCP', instance_type=it, region=region,
                                 zone=z, accelerator=acc,
                                 accelerator_count=cnt,
                                 price=o.prices[region][0],
                                 spot_price=o.prices[region][1]))
        offerings.append(o)
    for it, acc, cnt, cpu, mem, p in LAMBDA_INSTANCES:
        o = Offering('lambda', it, acc, cnt, cpu, mem)
        for region, mult in LAMBDA_REGIONS.items():
            rp = round(p * mult, 4)
            o.prices[region] = (rp, None)
            rows['lambda'].append([it, acc, cnt, cpu, mem, rp, region,
                                   f"{{'gpus': [{{'name': '{acc}'}}]}}", ''])
            flat.append(dict(cloud='Lambda', instance_type=it, region=region,
                             zone=None, accelerator=acc, accelerator_count=cnt,
                             price=rp, spot_price=None))
        offerings.append(o)
    for it, acc, cnt, cpu, mem in K8S_INSTANCES:
        o = Offering('kubernetes', it, acc, cnt, cpu, mem)
        for ctx in K8S_CONTEXTS:
            flat.append(dict(cloud='Kubernetes', instance_type=it, region=ctx,
                             zone=None, accelerator=acc, accelerator_count=cnt,
                             price=o.hourly(ctx, False), spot_price=None))
        offerings.append(o)
    return offerings, rows, flat


def write_catalogs(rows):
    from sky.catalog import common as catalog_common
    headers = {
        'aws': ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs',
                'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice', 'Region',
                'AvailabilityZone', 'Arch'],
        'gcp': ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs',
                'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice', 'Region',
                'AvailabilityZone'],
        'lambda': ['InstanceType', 'AcceleratorName', 'AcceleratorCount',
                   'vCPUs', 'MemoryGiB', 'Price', 'Region', 'GpuInfo',
                   'SpotPrice'],
    }
    for cloud, hdr in headers.items():
        path = catalog_common.get_catalog_path(f'{cloud}/vms.csv')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', newline='', encoding='utf-8') as f:
            w = csv.writer(f)
            w.writerow(hdr)
            w.writerows(rows[cloud])
        meta = catalog_common.get_catalog_path(f'.meta/{cloud}/vms.csv.md5')
        if os.path.exists(meta):
            os.remove(meta)


# --------------------------------------------------------------------------
# Helpers around SkyPilot objects (cached: Resources validation is slow).
# --------------------------------------------------------------------------
class Sky:

    def __init__(self):
        import sky  # noqa: F401  (import after HOME is set)
        from sky import resources as resources_lib
        from sky.backends import cloud_vm_ray_backend
        self.resources_lib = resources_lib
        self.handle_cls = cloud_vm_ray_backend.CloudVmRayResourceHandle
        self._res = {}
        self._res_pickle = {}

    def resources(self, off, region, zone, spot):
        key = (off.cloud, off.instance_type, region, zone, spot)
        if key not in self._res:
            infra = f'{off.cloud}/{region}' + (f'/{zone}' if zone else '')
            r = self.resources_lib.Resources(
                infra=infra,
                instance_type=off.instance_type,
                accelerators=off.accelerators or None,
                use_spot=spot)
            # The catalog above is the single source of prices: check that
            # SkyPilot prices this offering exactly as we record it.
            ours = off.hourly(region, spot)
            theirs = r.get_cost(3600)
            if abs(ours - theirs) > 1e-6 * max(1.0, ours):
                raise SystemExit(
                    f'price mismatch for {key}: catalog {ours} vs SkyPilot '
                    f'{theirs}')
            self._res[key] = r
            self._res_pickle[key] = pickle.dumps(r)
        return self._res[key], self._res_pickle[key]

    def handle(self, name, name_on_cloud, nodes, res):
        hv = zlib.crc32(name.encode())
        ips = [(f'10.{(hv >> 8) % 200}.{i // 250}.{i % 250 + 2}',
                f'203.0.113.{(hv + i) % 250 + 2}') for i in range(nodes)]
        h = self.handle_cls(cluster_name=name,
                            cluster_name_on_cloud=name_on_cloud,
                            cluster_yaml=f'~/.sky/generated/{name}.yml',
                            launched_nodes=nodes,
                            launched_resources=res,
                            stable_internal_external_ips=ips,
                            stable_ssh_ports=[22] * nodes)
        return h


def cluster_yaml(name_on_cloud, off, region, zone, nodes):
    module = {'aws': 'sky.provision.aws', 'gcp': 'sky.provision.gcp',
              'lambda': 'sky.provision.lambda_cloud',
              'kubernetes': 'sky.provision.kubernetes'}[off.cloud]
    lines = [
        f'cluster_name: {name_on_cloud}',
        f'max_workers: {nodes - 1}',
        'upscaling_speed: 0',
        'idle_timeout_minutes: 60',
        'provider:',
        '  type: external',
        f'  module: {module}',
        f'  region: {region}',
    ]
    if zone:
        lines.append(f'  availability_zone: {zone}')
    lines += [
        'auth:',
        '  ssh_user: ubuntu' if off.cloud != 'kubernetes' else
        '  ssh_user: sky',
        '  ssh_private_key: ~/.ssh/sky-key',
        'available_node_types:',
        '  ray_head_default:',
        '    resources: {}',
        '    node_config:',
        f'      InstanceType: {off.instance_type}',
        'head_node_type: ray_head_default',
    ]
    return '\n'.join(lines) + '\n'


def node_names(off, nodes, rng):
    if off.cloud == 'aws':
        return ','.join('i-%017x' % rng.getrandbits(68) for _ in range(nodes))
    if off.cloud == 'kubernetes':
        return ','.join(f'pod-{rng.getrandbits(24):06x}' for _ in range(nodes))
    return ','.join(f'node-{rng.getrandbits(32):08x}' for _ in range(nodes))


def resources_str_requested(off, nodes, spot):
    """The `resources` column of the spot table, as SkyPilot formats it."""
    if off.acc:
        inner = f'{off.acc}:{off.count}'
    else:
        inner = f'CPU:{float(off.vcpus)}'
    return f'{nodes}x[{inner}]' + ('[Spot]' if spot else '')


def start_keeper(pidfile, home):
    """A detached sleep-forever process standing in as controller_pid."""
    code = ('import signal, time\n'
            'signal.signal(signal.SIGHUP, signal.SIG_IGN)\n'
            'while True:\n'
            '    time.sleep(3600)\n')
    proc = subprocess.Popen(
        [sys.executable, '-c', code, 'skydeck-keeper', home],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
        cwd='/')
    import psutil
    started = psutil.Process(proc.pid).create_time()
    with open(pidfile, 'w', encoding='utf-8') as f:
        f.write(f'{proc.pid}\n')
    return proc.pid, started


# --------------------------------------------------------------------------
# The fleet model.
# --------------------------------------------------------------------------
class Fleet:

    def __init__(self, args, now, sky_):
        self.rng = random.Random(args.seed)
        self.args = args
        self.now = now
        self.w7 = now - 7 * DAY
        self.w1 = now - DAY
        self.sky = sky_
        self.offerings, self.catalog_rows, self.catalog_flat = build_catalog()
        # --clouds: only these clouds' offerings are used (default: all).
        self.offerings = [o for o in self.offerings if o.cloud in args.clouds]
        self.first = [f for f in self.FIRST_CLUSTERS if f[0] in args.clouds]
        self.users = [(u, user_hash(u)) for u in USERS]
        # Output rows.
        self.cluster_rows = []
        self.yaml_rows = []
        self.history_rows = []
        self.event_rows = []
        self.job_info_rows = []
        self.spot_rows = []
        self.job_event_rows = []
        # Ground truth.
        self.gt_clusters = []
        self.gt_managed = []
        self.gt_cost = []
        self.gt_jobs = []
        self.live_names = set()
        self.terminal_slot = 0

    # ---- small utilities -------------------------------------------------
    def pick_location(self, off):
        return self.rng.choice(off.locations())

    def pick_user(self):
        return self.rng.choice(self.users)

    def pick_workspace(self):
        return 'ml-research' if self.rng.random() < 0.3 else 'default'

    def far(self, t, margin):
        """True when t is at least `margin` away from both window edges."""
        return abs(t - self.w7) >= margin and abs(t - self.w1) >= margin

    def add_history(self, *, name, chash, off, region, zone, spot, nodes,
                    intervals, user, ws, live, status, is_managed,
                    job_id=None, task_id=None):
        res, res_pickle = self.sky.resources(off, region, zone, spot)
        last = intervals[-1]
        last_activity = last[1] if last[1] is not None else last[0]
        self.history_rows.append(dict(
            cluster_hash=chash, name=name, num_nodes=nodes,
            requested_resources=pickle.dumps({res}),
            launched_resources=res_pickle,
            usage_intervals=pickle.dumps([tuple(iv) for iv in intervals]),
            user_hash=user[1], workspace=ws,
            last_activity_time=last_activity, launched_at=intervals[0][0],
            cloud=str(res.cloud), region=region, zone=zone,
            is_managed=int(is_managed),
            last_creation_yaml=None, last_creation_command=None,
            provision_log_path=None, node_names=None))
        self.gt_cost.append(dict(
            name=name, cluster_hash=chash,
            usage_intervals=[list(iv) for iv in intervals],
            num_nodes=nodes, hourly_price_per_node=off.hourly(region, spot),
            spot=spot, cloud=off.display, region=region, zone=zone,
            instance_type=off.instance_type, accelerators=off.accelerators,
            workspace=ws, user=user[0], user_hash=user[1], live=live,
            status=status, is_managed=is_managed,
            last_activity=last_activity, job_id=job_id, task_id=task_id))

    def add_live_cluster(self, *, name, off, region, zone, spot, nodes,
                         status, intervals, user, ws, is_managed, autostop=-1,
                         to_down=False, last_use, job_id=None, task_id=None):
        assert name not in self.live_names, name
        self.live_names.add(name)
        from sky.utils import common_utils
        name_on_cloud = common_utils.make_cluster_name_on_cloud(
            name, 35, add_user_hash=False) + '-' + user[1][:4]
        res, _ = self.sky.resources(off, region, zone, spot)
        handle = self.sky.handle(name, name_on_cloud, nodes, res)
        chash = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        launched_at = intervals[-1][0]
        yaml_str = cluster_yaml(name_on_cloud, off, region, zone, nodes)
        task_yaml = (f'name: {name}\nresources:\n  infra: {off.cloud}/{region}'
                     f'\n  accelerators: {off.acc}:{off.count}\n'
                     if off.acc else
                     f'name: {name}\nresources:\n  infra: {off.cloud}/{region}'
                     f'\n  cpus: {off.vcpus}\n')
        status_updated = (intervals[-1][1] if intervals[-1][1] is not None
                          else launched_at + 180)
        self.cluster_rows.append(dict(
            name=name, launched_at=launched_at, handle=pickle.dumps(handle),
            last_use=last_use, status=status, autostop=autostop,
            to_down=int(to_down), metadata='{}', owner=None,
            cluster_hash=chash, storage_mounts_metadata=pickle.dumps(None),
            cluster_ever_up=0 if status == 'INIT' else 1,
            status_updated_at=min(status_updated, self.now),
            config_hash=None, user_hash=user[1], workspace=ws,
            last_creation_yaml=task_yaml, last_creation_command=last_use,
            is_managed=int(is_managed), provision_log_path=None,
            cloud=str(res.cloud), region=region, zone=zone,
            node_names=node_names(off, nodes, self.rng)))
        self.yaml_rows.append(dict(cluster_name=name, yaml=yaml_str))
        # Events: launched (INIT), up, and the current status.
        ev = [(None, 'INIT', 'Cluster launch requested.', launched_at - 200)]
        if status != 'INIT':
            ev.append(('INIT', 'UP', 'Cluster launched successfully.',
                       launched_at))
        if status == 'STOPPED':
            ev.append(('UP', 'STOPPED', 'Cluster was stopped.',
                       intervals[-1][1]))
        if status == 'AUTOSTOPPING':
            ev.append(('UP', 'AUTOSTOPPING', 'Autostop triggered.',
                       self.now - self.rng.randint(30, 300)))
        for s, e, reason, at in ev:
            self.event_rows.append(dict(
                cluster_hash=chash, name=name, starting_status=s,
                ending_status=e, reason=reason, transitioned_at=int(at),
                type='STATUS_CHANGE', request_id=None))
        self.add_history(name=name, chash=chash, off=off, region=region,
                         zone=zone, spot=spot, nodes=nodes,
                         intervals=intervals, user=user, ws=ws, live=True,
                         status=status, is_managed=is_managed, job_id=job_id,
                         task_id=task_id)
        gt = dict(name=name, cluster_hash=chash, status=status, nodes=nodes,
                  spot=spot, accelerators=off.accelerators, cloud=off.display,
                  region=region, zone=zone, instance_type=off.instance_type,
                  workspace=ws, user=user[0], user_hash=user[1],
                  launched_at=launched_at, autostop=autostop,
                  to_down=bool(to_down))
        if is_managed:
            gt.update(job_id=job_id, task_id=task_id)
            self.gt_managed.append(gt)
        else:
            self.gt_clusters.append(gt)

    def add_terminated(self, *, name, off, region, zone, spot, nodes,
                       intervals, user, ws, is_managed, reason,
                       job_id=None, task_id=None):
        chash = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.add_history(name=name, chash=chash, off=off, region=region,
                         zone=zone, spot=spot, nodes=nodes,
                         intervals=intervals, user=user, ws=ws, live=False,
                         status=None, is_managed=is_managed, job_id=job_id,
                         task_id=task_id)
        self.event_rows.append(dict(
            cluster_hash=chash, name=name, starting_status='UP',
            ending_status=None, reason=reason,
            transitioned_at=int(intervals[-1][1]), type='TERMINAL',
            request_id=None))

    # ---- user clusters ---------------------------------------------------
    # The first live clusters cover every cloud and accelerator kind (and
    # CPU-only); the rest are random. (cloud, instance_type, spot)
    FIRST_CLUSTERS = [
        ('aws', 'p4d.24xlarge', True),  # UP, spot
        ('gcp', 'a3-highgpu-8g', False),  # INIT
        ('kubernetes', '8CPU--32GB--L4:1', False),  # STOPPED
        ('gcp', 'g2-standard-48', True),  # AUTOSTOPPING, spot
        ('aws', 'm6i.2xlarge', False),
        ('lambda', 'gpu_8x_h100_sxm5', False),
        ('aws', 'g5.12xlarge', False),
        ('kubernetes', '32CPU--256GB--H100:8', False),
        ('gcp', 'n2-standard-8', True),
        ('aws', 'g6.xlarge', False),
    ]

    def pick_offering(self, i):
        """(offering, forced spot flag or None)."""
        if i < len(self.first):
            cloud, it, spot = self.first[i]
            off = next(o for o in self.offerings
                       if o.cloud == cloud and o.instance_type == it)
            return off, spot
        return self.rng.choice(self.offerings), None

    def gen_live_clusters(self, n):
        for i in range(n):
            if i < len(CLUSTER_STATUSES):
                status = CLUSTER_STATUSES[i]
            else:
                status = self.rng.choices(CLUSTER_STATUSES,
                                          weights=[55, 8, 22, 15])[0]
            off, spot = self.pick_offering(i)
            region, zone = self.pick_location(off)
            if spot is None:
                spot = off.spot_capable() and self.rng.random() < 0.4
            nodes = self.rng.choice([1, 1, 1, 2, 2, 3, 4])
            user = self.pick_user()
            ws = self.pick_workspace()
            name = f'{user[0]}-{self.rng.choice(CLUSTER_PURPOSES)}-{i}'
            intervals = []
            if self.rng.random() < 0.35:
                # An earlier stop/start cycle.
                s0 = self.now - self.rng.randint(5 * DAY, 25 * DAY)
                intervals.append([s0, s0 + self.rng.randint(HOUR, 20 * HOUR)])
            if status in ('UP', 'AUTOSTOPPING'):
                lo = intervals[-1][1] + HOUR if intervals else self.now - 12 * DAY
                start = self.rng.randint(max(lo, self.now - 12 * DAY),
                                         self.now - 20 * 60)
                intervals.append([start, None])
            elif status == 'INIT':
                start = self.now - self.rng.randint(120, 1800)
                intervals.append([start, None])
            else:  # STOPPED
                lo = intervals[-1][1] + HOUR if intervals else self.now - 20 * DAY
                while True:
                    start = self.rng.randint(max(lo, self.now - 20 * DAY),
                                             self.now - 3 * HOUR)
                    end = min(start + self.rng.randint(HOUR, 2 * DAY),
                              self.now - HOUR)
                    if self.far(end, 3 * HOUR):
                        break
                intervals.append([start, end])
            autostop, to_down = -1, False
            if status == 'UP':
                autostop = self.rng.choice([-1, -1, 30, 60, 120])
                to_down = autostop > 0 and self.rng.random() < 0.3
            elif status == 'AUTOSTOPPING':
                autostop = self.rng.choice([10, 30, 60])
            spot_flag = ' --use-spot' if spot else ''
            self.add_live_cluster(
                name=name, off=off, region=region, zone=zone, spot=spot,
                nodes=nodes, status=status, intervals=intervals, user=user,
                ws=ws, is_managed=False, autostop=autostop, to_down=to_down,
                last_use=f'sky launch -c {name} task.yaml{spot_flag}')

    def gen_terminated_clusters(self, n):
        kinds = ['recent', 'days', 'old', 'cross7', 'cross24', 'multi']
        for i in range(n):
            kind = kinds[i % len(kinds)]
            off = self.rng.choice(self.offerings)
            region, zone = self.pick_location(off)
            spot = off.spot_capable() and self.rng.random() < 0.4
            nodes = self.rng.choice([1, 1, 2, 3, 4])
            user = self.pick_user()
            ws = self.pick_workspace()
            name = f'{user[0]}-{self.rng.choice(CLUSTER_PURPOSES)}-old-{i}'
            now = self.now
            while True:
                if kind == 'recent':
                    s = now - self.rng.randint(2 * HOUR, 20 * HOUR)
                    e = min(s + self.rng.randint(600, 3 * HOUR), now - 600)
                    iv = [[s, e]]
                elif kind == 'days':
                    e = now - self.rng.randint(DAY + HOUR, 7 * DAY - 4 * HOUR)
                    iv = [[e - self.rng.randint(HOUR, 30 * HOUR), e]]
                elif kind == 'old':
                    e = now - self.rng.randint(7 * DAY + 4 * HOUR, 29 * DAY)
                    iv = [[e - self.rng.randint(HOUR, 2 * DAY), e]]
                elif kind == 'cross7':
                    s = self.w7 - self.rng.randint(2 * HOUR, 2 * DAY)
                    e = self.w7 + self.rng.randint(4 * HOUR, DAY)
                    iv = [[s, e]]
                elif kind == 'cross24':
                    s = self.w1 - self.rng.randint(HOUR, 20 * HOUR)
                    e = self.w1 + self.rng.randint(HOUR, 20 * HOUR)
                    iv = [[s, e]]
                else:  # multi: stopped and restarted, across both windows
                    a = now - self.rng.randint(8 * DAY, 12 * DAY)
                    b = now - self.rng.randint(2 * DAY, 5 * DAY)
                    c = now - self.rng.randint(6 * HOUR, 20 * HOUR)
                    iv = [[a, a + self.rng.randint(HOUR, 10 * HOUR)],
                          [b, b + self.rng.randint(HOUR, 10 * HOUR)],
                          [c, c + self.rng.randint(600, 4 * HOUR)]]
                if self.far(iv[-1][1], 3 * HOUR):
                    break
            self.add_terminated(name=name, off=off, region=region, zone=zone,
                                spot=spot, nodes=nodes, intervals=iv,
                                user=user, ws=ws, is_managed=False,
                                reason='Cluster was terminated by user.')

    # ---- managed jobs ----------------------------------------------------
    def job_plan(self, m):
        """List of task-status tuples, one per job."""
        plan = [(s,) for s in JOB_STATUSES]
        plan += [('SUCCEEDED', 'RUNNING'), ('SUCCEEDED', 'SUCCEEDED'),
                 ('SUCCEEDED', 'FAILED'), ('RUNNING', 'PENDING'),
                 ('PENDING', 'PENDING'), ('SUCCEEDED', 'RECOVERING'),
                 ('FAILED', 'CANCELLED'), ('SUCCEEDED', 'CANCELLED')]
        weights = {
            'SUCCEEDED': 40, 'FAILED': 9, 'CANCELLED': 8, 'RUNNING': 8,
            'PENDING': 6, 'STARTING': 2, 'RECOVERING': 2, 'CANCELLING': 1,
            'FAILED_SETUP': 3, 'FAILED_PRECHECKS': 2, 'FAILED_NO_RESOURCE': 5,
            'FAILED_CONTROLLER': 2, 'SUBMITTED': 1, 'WINDING_DOWN': 1
        }
        pipelines = plan[len(JOB_STATUSES):]
        plan = plan[:m]
        while len(plan) < m:
            if self.rng.random() < 0.08:
                plan.append(self.rng.choice(pipelines))
            else:
                plan.append((self.rng.choices(list(weights),
                                              weights=list(weights.values()))[0],))
        # Shuffle so job ids do not follow the status order.
        self.rng.shuffle(plan)
        return plan

    def gen_jobs(self, m, keeper_pid, keeper_started):
        plan = self.job_plan(m)
        for idx, statuses in enumerate(plan):
            job_id = idx + 1
            for _attempt in range(200):
                job = self.try_job(job_id, statuses)
                if job is not None:
                    break
            else:
                raise SystemExit(f'could not place job {job_id} {statuses}')
            if all(s in TERMINAL for s in statuses):
                self.terminal_slot += 1
            self.emit_job(job, keeper_pid, keeper_started)

    def try_job(self, job_id, statuses):
        """Builds one job's timeline; None when it lands too close to a
        window edge (the caller retries)."""
        rng = self.rng
        now = self.now
        train = rng.random() < 0.5
        base = rng.choice(TRAIN_BASES if train else OTHER_BASES)
        job_name = f'{base}-{rng.randint(1, 999)}'
        user = self.pick_user()
        ws = self.pick_workspace()
        off = rng.choice(self.offerings)
        region, zone = self.pick_location(off)
        spot = off.spot_capable() and rng.random() < 0.5
        nodes = rng.choice([1, 1, 1, 2, 2, 4])
        pipeline = len(statuses) > 1
        first = statuses[0]
        job_terminal = all(s in TERMINAL for s in statuses)
        # When was it submitted?
        if all(s in ('PENDING', 'SUBMITTED') for s in statuses):
            submitted = now - rng.uniform(60, 3 * HOUR)
        elif first == 'STARTING' and not pipeline:
            submitted = now - rng.uniform(120, 40 * 60)
        elif job_terminal:
            # Of every 10 terminal jobs: 4 run inside the last 7 days, 1 is
            # submitted before the window and (mostly) ends inside it, 5 are
            # older.
            slot = self.terminal_slot % 10
            if slot in (0, 2, 4, 6):
                submitted = now - rng.uniform(2 * HOUR, 6.5 * DAY)
            elif slot == 8:
                submitted = self.w7 - rng.uniform(3 * HOUR, 20 * HOUR)
            else:
                submitted = now - rng.uniform(7.5 * DAY, 29 * DAY)
        else:  # active
            if rng.random() < 0.12:
                submitted = self.w7 - rng.uniform(3 * HOUR, 2 * DAY)
            else:
                submitted = now - rng.uniform(30 * 60, 4 * DAY)
        tasks = []
        t = submitted + rng.uniform(30, 1800)  # when the first task may start
        prev = None
        for task_id, st in enumerate(statuses):
            # In a pipeline, a task after a failed/cancelled/unfinished one
            # never starts.
            never_start = prev is not None and prev['status'] != 'SUCCEEDED'
            task = self.make_task(st, submitted, t, spot, never_start)
            if task is None:
                return None
            if never_start and st in TERMINAL:
                task['end_at'] = prev['end_at']
            task['task_id'] = task_id
            task['task_name'] = (job_name if not pipeline else
                                 f'{job_name}-{["prep", "train"][task_id]}')
            tasks.append(task)
            t = (task['end_at'] or now) + rng.uniform(20, 300)
            prev = task
        # Job-level timestamps must stay clear of the window edges.
        for task in tasks:
            for key in ('submitted_at', 'start_at', 'end_at'):
                v = task[key]
                if v is not None and not self.far(v, HOUR):
                    return None
            if task['end_at'] is not None and task['end_at'] > now - 60:
                return None
            if task['start_at'] is not None and task['start_at'] > now - 60:
                return None
        return dict(job_id=job_id, job_name=job_name, user=user, ws=ws,
                    off=off, region=region, zone=zone, spot=spot, nodes=nodes,
                    pipeline=pipeline, tasks=tasks, statuses=statuses,
                    train=train)

    def make_task(self, st, submitted, earliest_start, spot, never_start):
        """Timeline of one task in status `st`; None = does not fit, retry.

        A started task runs in k+1 segments separated by k recoveries
        (preemption -> relaunch gaps). The spot columns then are:
        last_recovered_at = start of the last segment, job_duration (stored) =
        length of the segments before it (for RECOVERING: of all the closed
        segments, the last one closed by the current preemption).
        """
        rng = self.rng
        now = self.now
        task = dict(status=st, submitted_at=submitted, start_at=None,
                    end_at=None, last_recovered_at=-1.0, job_duration=0.0,
                    recovery_count=0, attempts=[])
        started = st in ('RUNNING', 'WINDING_DOWN', 'RECOVERING', 'CANCELLING',
                         'SUCCEEDED', 'FAILED', 'FAILED_SETUP',
                         'FAILED_CONTROLLER')
        if st == 'CANCELLED':
            started = rng.random() < 0.6
        if never_start:
            started = False
        if not started:
            if st in TERMINAL:  # NO_RESOURCE, PRECHECKS, CANCELLED pending
                end = earliest_start + rng.uniform(60, 2 * HOUR)
                if end > now - 120:
                    return None
                task['end_at'] = end
            return task
        start = earliest_start
        if start > now - 600:
            return None
        task['start_at'] = start
        k = 0
        if spot and st != 'FAILED_SETUP':
            k = rng.choice([0, 0, 1, 1, 2, 3, 5])
        elif rng.random() < 0.08:
            k = 1
        gaps = [rng.uniform(120, 1200) for _ in range(k + 1)]
        weights = [rng.uniform(0.5, 1.5) for _ in range(k + 1)]
        if st in TERMINAL:
            room = now - 120 - start - sum(gaps[:k])
            if room < 120:
                return None
            run_total = (rng.uniform(60, 600) if st == 'FAILED_SETUP' else
                         rng.uniform(10 * 60, 30 * HOUR))
            run_total = min(run_total, room * rng.uniform(0.5, 0.95))
            lens = [run_total * w / sum(weights) for w in weights]
            t = start
            segs = []
            for i, ln in enumerate(lens):
                segs.append((t, t + ln))
                t = t + ln + (gaps[i] if i < k else 0)
            task['end_at'] = segs[-1][1]
            task['last_recovered_at'] = segs[-1][0]
            task['job_duration'] = float(sum(e - s for s, e in segs[:-1]))
            task['recovery_count'] = k
            task['attempts'] = segs
            return task
        # Active. RECOVERING: k+1 closed segments (the last one ended by the
        # current preemption), recovery_count = k completed recoveries.
        # Others: k closed segments + the open one.
        n_closed = k + 1 if st == 'RECOVERING' else k
        room = now - 300 - start
        budget = room * rng.uniform(0.5, 0.85)
        lens = [budget * w / sum(weights) for w in weights[:max(n_closed, 1)]]
        t = start
        segs = []
        for i in range(n_closed):
            gap = min(gaps[i], lens[i] * 0.3)
            segs.append((t, t + lens[i] - gap))
            t = t + lens[i]
        task['recovery_count'] = k
        if st == 'RECOVERING':
            task['last_recovered_at'] = segs[-1][0]
            task['job_duration'] = float(sum(e - s for s, e in segs))
            task['relaunch_at'] = max(segs[-1][1] + 60,
                                      now - rng.uniform(60, 600))
            task['attempts'] = segs
        else:
            task['last_recovered_at'] = t
            task['job_duration'] = float(sum(e - s for s, e in segs))
            task['attempts'] = segs + [(t, None)]
        if t > now - 300:
            return None
        return task

    def emit_job(self, job, keeper_pid, keeper_started):
        from sky.jobs import utils as jobs_utils
        rng = self.rng
        job_id = job['job_id']
        statuses = job['statuses']
        # Job status per the metric definition (lowest non-SUCCEEDED task).
        job_status = next((s for s in statuses if s != 'SUCCEEDED'),
                          'SUCCEEDED')
        active_task = None
        for t in job['tasks']:
            if t['status'] not in TERMINAL and t['status'] not in (
                    'PENDING', 'SUBMITTED'):
                active_task = t
                break
        sched = SCHEDULE_STATE.get(job_status, 'DONE')
        if job_status in TERMINAL:
            sched = 'DONE'
        has_pid = sched in ('LAUNCHING', 'ALIVE', 'ALIVE_WAITING')
        off, region, zone = job['off'], job['region'], job['zone']
        spot, nodes = job['spot'], job['nodes']
        user, ws = job['user'], job['ws']
        req = resources_str_requested(off, nodes, spot)
        current_cluster = None
        launched_any = any(t['start_at'] is not None or
                           t['status'] in ACTIVE_WITH_CLUSTER
                           for t in job['tasks'])
        gt_tasks = []
        for t in job['tasks']:
            cname = jobs_utils.generate_managed_job_cluster_name(
                t['task_name'], job_id)
            # The join key the metric uses: SkyPilot's name must equal it.
            assert cname == f"{t['task_name']}-{job_id}", cname
            live_cluster = None
            if t['status'] in ACTIVE_WITH_CLUSTER:
                live_cluster = cname
                if current_cluster is None or t is active_task:
                    current_cluster = cname
            # Cost history of earlier attempts (and of finished tasks).
            attempts = t.get('attempts', [])
            closed = [a for a in attempts if a[1] is not None]
            # Cost history of a task's attempts: a finished task keeps a
            # record 70% of the time (the rest have none, as after a history
            # cleanup). Usually only the last attempt's cluster is recorded;
            # 25% of tasks keep every attempt (several records, same name).
            record_closed = rng.random() < 0.7
            if record_closed and rng.random() >= 0.25:
                closed = closed[-1:]
            if record_closed:
                for s, e in closed:
                    iv = [[int(s - rng.uniform(90, 300)), int(e + 30)]]
                    if not self.far(iv[-1][1], 3 * HOUR):
                        # Keep the record's membership in the 7-day report
                        # unambiguous: drop it rather than risk a flip.
                        continue
                    self.add_terminated(
                        name=cname, off=off, region=region, zone=zone,
                        spot=spot, nodes=nodes, intervals=iv, user=user,
                        ws=ws, is_managed=True, job_id=job_id,
                        task_id=t['task_id'],
                        reason='Cluster was terminated by the jobs '
                        'controller.')
            if live_cluster is not None:
                if t['status'] == 'STARTING':
                    cl_status = 'INIT'
                    open_start = int(self.now - rng.uniform(60, 900))
                elif t['status'] == 'RECOVERING':
                    cl_status = 'INIT'
                    open_start = int(t['relaunch_at'])
                else:
                    cl_status = 'UP'
                    open_start = int(attempts[-1][0] - rng.uniform(90, 300))
                self.add_live_cluster(
                    name=cname, off=off, region=region, zone=zone, spot=spot,
                    nodes=nodes, status=cl_status,
                    intervals=[[open_start, None]], user=user, ws=ws,
                    is_managed=True, last_use=f'sky jobs launch -n '
                    f'{job["job_name"]} task.yaml', job_id=job_id,
                    task_id=t['task_id'])
            launched = bool(attempts) or live_cluster is not None
            gt_tasks.append(dict(
                job_id=job_id, task_id=t['task_id'],
                job_name=job['job_name'], task_name=t['task_name'],
                status=t['status'], submitted_at=t['submitted_at'],
                start_at=t['start_at'], end_at=t['end_at'],
                last_recovered_at=t['last_recovered_at'],
                job_duration=t['job_duration'],
                recovery_count=t['recovery_count'], nodes=nodes, spot=spot,
                accelerators=off.accelerators, cloud=off.display, region=region,
                zone=zone, instance_type=off.instance_type, launched=launched,
                cluster_name=live_cluster, workspace=ws, user=user[0],
                user_hash=user[1]))
            self.spot_rows.append(dict(
                job_name=t['task_name'], resources=req,
                submitted_at=t['submitted_at'], status=t['status'],
                run_timestamp=datetime.datetime.fromtimestamp(
                    t['submitted_at']).strftime('sky-%Y-%m-%d-%H-%M-%S-%f'),
                start_at=t['start_at'], end_at=t['end_at'],
                last_recovered_at=t['last_recovered_at'],
                recovery_count=t['recovery_count'],
                job_duration=t['job_duration'],
                failure_reason=FAILURE_REASON.get(t['status']),
                spot_job_id=job_id, task_id=t['task_id'],
                task_name=t['task_name'],
                specs=json.dumps({'max_restarts_on_errors': 0}),
                metadata='{}', created_at=t['submitted_at'],
                eligible_at=t['submitted_at'] if t['task_id'] == 0 else None))
            self.emit_job_events(job_id, t)
        pid = keeper_pid if has_pid else None
        pid_started = keeper_started if has_pid else None
        yaml_str = (f'name: {job["job_name"]}\nresources:\n'
                    f'  infra: {off.cloud}\n  accelerators: '
                    f'{off.acc}:{off.count}\n' if off.acc else
                    f'name: {job["job_name"]}\nresources:\n  infra: '
                    f'{off.cloud}\n  cpus: {off.vcpus}\n')
        if spot:
            yaml_str += '  use_spot: true\n'
        yaml_str += f'num_nodes: {nodes}\nrun: python main.py\n'
        self.job_info_rows.append(dict(
            spot_job_id=job_id, name=job['job_name'], schedule_state=sched,
            controller_pid=pid, controller_pid_started_at=pid_started,
            dag_yaml_path=f'~/.sky/managed_jobs/{job["job_name"]}-{job_id}.yaml',
            env_file_path=None, dag_yaml_content=yaml_str,
            user_hash=user[1], workspace=ws,
            priority=rng.choice([500, 500, 500, 100, 900]),
            entrypoint=f'sky jobs launch -n {job["job_name"]} task.yaml',
            original_user_yaml_content=yaml_str,
            current_cluster_name=current_cluster, execution='serial',
            cloud=str(self.sky.resources(off, region, zone, spot)[0].cloud)
            if launched_any else None,
            region=region if launched_any else None,
            zone=zone if launched_any else None))
        self.gt_jobs.append(dict(
            job_id=job_id, job_name=job['job_name'], user=user[0],
            user_hash=user[1], workspace=ws, schedule_state=sched,
            priority=self.job_info_rows[-1]['priority'],
            pipeline=job['pipeline'], tasks=gt_tasks))

    def emit_job_events(self, job_id, t):
        evs = [('PENDING', 'Job submitted to queue', t['submitted_at'])]
        if t['start_at'] is not None:
            evs.append(('STARTING', 'Launching cluster', t['start_at'] - 120))
            evs.append(('RUNNING', 'Job started', t['start_at']))
            for i, (s, e) in enumerate(t.get('attempts', [])[:-1]):
                evs.append(('RECOVERING', 'Cluster was preempted', e))
                evs.append(('RUNNING', 'Job recovered',
                            t['attempts'][i + 1][0]))
            if t['status'] == 'RECOVERING' and t.get('attempts'):
                evs.append(('RECOVERING', 'Cluster was preempted',
                            t['attempts'][-1][1]))
        if t['status'] not in ('PENDING', 'RUNNING', 'RECOVERING') and (
                t['status'] != 'STARTING' or t['start_at'] is None):
            when = t['end_at'] or (self.now - 30)
            evs.append((t['status'], FAILURE_REASON.get(t['status'],
                                                        t['status'].lower()),
                        when))
        for st, reason, ts in evs:
            self.job_event_rows.append(dict(
                spot_job_id=job_id, task_id=t['task_id'], new_status=st,
                code=None, reason=reason,
                timestamp=datetime.datetime.fromtimestamp(ts)))

    # ---- DB writes -------------------------------------------------------
    def write_db(self):
        from sqlalchemy import orm
        from sky import global_user_state as gus
        from sky import models
        from sky.jobs import state as jstate
        for name, h in self.users:
            gus.add_or_update_user(models.User(id=h, name=name,
                                               created_at=self.now - 40 * DAY))
        engine = gus._db_manager.get_engine()  # pylint: disable=protected-access
        with orm.Session(engine) as s:
            for table in (gus.cluster_table, gus.cluster_yaml_table,
                          gus.cluster_history_table, gus.cluster_event_table):
                s.execute(table.delete())
            if self.cluster_rows:
                s.execute(gus.cluster_table.insert(), self.cluster_rows)
                s.execute(gus.cluster_yaml_table.insert(), self.yaml_rows)
            s.execute(gus.cluster_history_table.insert(), self.history_rows)
            # (cluster_hash, reason, transitioned_at) is the primary key.
            seen, events = set(), []
            for e in self.event_rows:
                k = (e['cluster_hash'], e['reason'], e['transitioned_at'])
                if k not in seen:
                    seen.add(k)
                    events.append(e)
            s.execute(gus.cluster_event_table.insert(), events)
            s.commit()
        jengine = jstate._db_manager.get_engine()  # pylint: disable=protected-access
        with orm.Session(jengine) as s:
            for table in (jstate.job_events_table, jstate.spot_table,
                          jstate.job_info_table):
                s.execute(table.delete())
            s.execute(jstate.job_info_table.insert(), self.job_info_rows)
            s.execute(jstate.spot_table.insert(), self.spot_rows)
            s.execute(jstate.job_events_table.insert(), self.job_event_rows)
            s.commit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--clusters', type=int, default=10)
    ap.add_argument('--jobs', type=int, default=50)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--out', required=True, help='fleet.json path')
    ap.add_argument('--keeper-pidfile', required=True)
    ap.add_argument('--clouds', default='aws,gcp,lambda,kubernetes',
                    help='comma-separated clouds the fleet uses '
                    '(aws, gcp, lambda, kubernetes)')
    args = ap.parse_args()
    args.clouds = [c.strip() for c in args.clouds.split(',') if c.strip()]
    bad = set(args.clouds) - {'aws', 'gcp', 'lambda', 'kubernetes'}
    if bad or not args.clouds:
        raise SystemExit(f'seed_fleet.py: bad --clouds {sorted(bad)}')
    home = os.path.expanduser('~')
    import pwd
    real_home = pwd.getpwuid(os.getuid()).pw_dir
    if os.path.realpath(home) == os.path.realpath(real_home):
        raise SystemExit('seed_fleet.py: refusing to seed the real home '
                         f'({home}); set HOME to the server home')
    if args.clusters < 1 or args.jobs < 1:
        raise SystemExit('seed_fleet.py: --clusters and --jobs must be >= 1')
    t0 = time.time()
    now = int(time.time())
    # Catalogs must exist before sky.Resources validates anything.
    offerings, rows, _ = build_catalog()
    del offerings
    sky_ = Sky()
    load_k8s_pricing()
    write_catalogs(rows)
    fleet = Fleet(args, now, sky_)
    keeper_pid, keeper_started = start_keeper(args.keeper_pidfile, home)
    fleet.gen_live_clusters(args.clusters)
    fleet.gen_terminated_clusters(2 * args.clusters)
    fleet.gen_jobs(args.jobs, keeper_pid, keeper_started)
    fleet.write_db()
    out = dict(
        version=1, seed=args.seed, generated_at=now,
        sizes=dict(clusters=args.clusters, jobs=args.jobs),
        users=[dict(name=n, user_hash=h) for n, h in fleet.users],
        workspaces=WORKSPACES, catalog=fleet.catalog_flat,
        clouds=args.clouds, k8s_pricing=K8S_PRICING,
        keeper_pid=keeper_pid, clusters=fleet.gt_clusters,
        managed_clusters=fleet.gt_managed, cost_records=fleet.gt_cost,
        jobs=fleet.gt_jobs)
    tmp = args.out + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    n_tasks = sum(len(j['tasks']) for j in fleet.gt_jobs)
    print(f'seed_fleet: {len(fleet.gt_clusters)} clusters, '
          f'{len(fleet.gt_managed)} managed-job clusters, '
          f'{len(fleet.gt_cost)} cost-history rows, {len(fleet.gt_jobs)} jobs '
          f'({n_tasks} task rows) in {time.time() - t0:.1f} s; keeper pid '
          f'{keeper_pid}', file=sys.stderr)


if __name__ == '__main__':
    main()
