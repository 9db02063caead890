#!/usr/bin/env python3
"""Load skydeck's generated SkyPilot tasks with SkyPilot's own task loader, offline.

The control plane writes one SkyPilot task YAML per node (skydeck-control's
`task::render`). This script proves that SkyPilot 0.14.1 accepts each of them
as the control plane means it: `sky.Task.from_yaml` must load the file (task
schema, `infra:` and `accelerators:` parsing), `Task.validate()` -- what
`sky.launch` runs next -- must pass (task name, run script, and per resources
the GPU name, the region against the cloud's catalog or the kubeconfig, spot,
disk, ports and labels for that cloud), and the loaded task must carry the
values the YAML was written with (envs, the agent token in `secrets:` and
redacted, the run and setup scripts, cloud/region/GPU/spot).

Run it with the SkyPilot venv's python (created by `scripts/peers/skypilot.sh
install`):

    target/peers/skypilot-venv/bin/python scripts/peers/check_tasks.py IN.json

IN.json:
    {"offerings": [...skydeck's offerings table, serialized...],
     "gpu_counts": [1, 2, 4, 8, 16],          # optional (offerings::GPU_COUNTS)
     "kube_contexts": [str, ...],             # optional: the kubeconfig's
                                              # contexts (default: the tasks')
     "tasks": [{"id": str, "yaml": str,
                "expect": {"provider", "region", "gpu", "gpu_count",
                           "use_spot"}   # optional
               }, ...]}

It prints one JSON report on stdout (SkyPilot's own log lines go to stderr)
and exits 0 only when every task loaded and passed its checks, 1 otherwise
(SKYDECK_CHECK_TASKS_TRACEBACK=1 adds tracebacks to the errors):

    {"ok": n, "failures": [{"id", "error"}],
     "skipped": [{"check", "ids", "reason"}],      # checks NOT done, and why
     "optimizer": {...},                           # informational, see below
     "network_attempts": [...]}                    # must be empty

Isolation. Before `sky` is imported, HOME is a fresh temporary directory
(never the real ~/.sky or ~/.kube), the working directory is that HOME (so no
project `.sky.yaml` is read), SkyPilot's own config/endpoint variables are
removed, usage collection is off and every proxy variable points at the
discard port 127.0.0.1:9 (as scripts/peers/skypilot.sh does). On top of that,
a Python audit hook refuses every socket connection and DNS lookup that is not
loopback; any such attempt is recorded and fails the run.

Catalogs. SkyPilot validates regions and GPUs against its pricing catalogs
(~/.sky/catalogs/v8/<cloud>/vms.csv), which it would otherwise download. This
script writes minimal ones, in the exact column layout 0.14.1 reads, for aws,
gcp, azure, lambda and oci, with one made-up offering per (region, GPU,
count) of skydeck's offerings, and no `.meta/*.md5` files (a catalog without
its md5 counts as "modified by the user" and is never re-fetched). Because
these catalogs are generated FROM the offerings, "region X exists" and "GPU
Y:n is sold in region X" are not independent facts here; they are checked
only for shape. What is independent:
  * the task schema and SkyPilot's parsing of every field skydeck writes;
  * `common/accelerators.csv`, written from a snapshot of SkyPilot's hosted
    v8 catalog (below), so each offered GPU name must be a name SkyPilot
    knows for that cloud (checked per offering, not just per task);
  * SkyPilot's hard-coded rules (e.g. which GPU counts GCP can attach),
    reported in the informational "optimizer" section.

Kubernetes. A Kubernetes region is a kubeconfig context. The venv has no
`kubernetes` SDK on purpose (scripts/peers/skypilot.sh refuses cloud SDKs), so
SkyPilot cannot read a kubeconfig here. The script writes a kubeconfig with
the deployment's contexts ("kube_contexts"; without it, the contexts the tasks
use, which makes "context exists" true by construction and leaves only its
parsing checked) and stands in for the SDK's kubeconfig reader
(patch_kubeconfig_reader). SkyPilot's validation of `ports:` also probes the
live cluster (spot node label, network type); with no cluster those probes
are answered "unreachable", as SkyPilot would see an unreachable cluster
(patch_kube_cluster_probes). The rest -- context membership, labels, ports,
spot, GPU names -- is SkyPilot's own code. The probes and the GPU
availability question (optimizer) are reported in "skipped".
"""
import csv
import json
import os
import shutil
import sys
import tempfile
import traceback

SKYPILOT_VERSION = '0.14.1'

# The SkyPilot "cloud" names of skydeck's providers (sky.clouds.*).
CLOUD_NAMES = {
    'aws': 'AWS',
    'gcp': 'GCP',
    'azure': 'Azure',
    'lambda': 'Lambda',
    'oci': 'OCI',
    'kubernetes': 'Kubernetes',
}

# Snapshot of SkyPilot's hosted catalog `v8/common/accelerators.csv`
# (github.com/skypilot-org/skypilot-catalog, catalogs/v8/common/): each GPU
# name and the clouds SkyPilot lists it for. SkyPilot canonicalizes GPU names
# with this table. Only the rows for the NVIDIA names skydeck could offer are
# kept.
ACCELERATORS_SNAPSHOT = {
    'A10': ['Azure', 'Lambda', 'OCI'],
    'A100': ['AWS', 'Azure', 'Cudo', 'GCP', 'Lambda', 'OCI',
             'PrimeIntellect', 'Seeweb', 'Vast'],
    'A100-80GB': ['AWS', 'Azure', 'GCP', 'Lambda', 'OCI', 'Paperspace',
                  'PrimeIntellect', 'RunPod', 'scp'],
    'A10G': ['AWS'],
    'A6000': ['Lambda', 'PrimeIntellect'],
    'B200': ['AWS', 'Lambda', 'PrimeIntellect', 'RunPod', 'nebius'],
    'GH200': ['Lambda'],
    'H100': ['AWS', 'Azure', 'DO', 'GCP', 'Hyperbolic', 'Lambda', 'OCI',
             'Paperspace', 'PrimeIntellect', 'RunPod', 'Seeweb', 'Vast',
             'nebius'],
    'H100-MEGA': ['GCP'],
    'H200': ['AWS', 'GCP', 'OCI', 'PrimeIntellect', 'Seeweb', 'Vast',
             'nebius'],
    'L4': ['AWS', 'GCP', 'RunPod', 'Seeweb'],
    'L40S': ['AWS', 'Cudo', 'OCI', 'PrimeIntellect', 'RunPod', 'Seeweb',
             'Vast', 'nebius'],
    'P100': ['GCP', 'OCI'],
    'T4': ['AWS', 'Azure', 'GCP'],
    'V100': ['AWS', 'Azure', 'Cudo', 'GCP', 'IBM', 'Lambda', 'OCI',
             'Paperspace', 'PrimeIntellect', 'Vast'],
    'V100-32GB': ['AWS', 'Azure', 'Paperspace', 'scp'],
}

# GPU memory (MiB) for the GpuInfo column; any plausible value will do.
GPU_MEMORY_MIB = {
    'A10': 24576, 'A10G': 24576, 'A100': 40960, 'A100-80GB': 81920,
    'A6000': 49152, 'H100': 81920, 'H200': 144384, 'L4': 24576,
    'L40S': 49152, 'T4': 16384, 'V100': 16384,
}

# The envs every skydeck task must carry (task.rs), and its one secret.
REQUIRED_ENVS = [
    'SKYDECK_NODE_ID', 'SKYDECK_CLUSTER_NAME', 'SKYDECK_CONTROL_PLANE_URL',
    'SKYDECK_AGENT_SHA256', 'SKYDECK_MODEL', 'SKYDECK_ENGINE',
    'SKYDECK_ENGINE_PORT', 'SKYDECK_AGENT_METRICS_PORT'
]
# And those of each engine (the release its setup installs).
ENGINE_ENVS = {
    'vllm': ['SKYDECK_VLLM_VERSION'],
    'llamacpp': ['SKYDECK_LLAMACPP_VERSION', 'SKYDECK_LLAMACPP_SHA256'],
}
TOKEN_SECRET = 'SKYDECK_AGENT_TOKEN'

DEAD_PROXY = 'http://127.0.0.1:9'
LOOPBACK_HOSTS = {'127.0.0.1', '::1', 'localhost', '0.0.0.0', ''}


# --------------------------------------------------------------------------
# Isolation: environment and a network guard, set up before `import sky`.
# --------------------------------------------------------------------------
def isolate_environment(home):
    """Point everything SkyPilot reads or writes at `home`; kill the network."""
    for key in list(os.environ):
        # SkyPilot's own knobs (SKYPILOT_CONFIG, SKYPILOT_API_SERVER_ENDPOINT,
        # SKY_RUNTIME_DIR, ...) and any kubeconfig of the caller.
        if key.startswith(('SKYPILOT_', 'SKY_')) or key == 'KUBECONFIG':
            del os.environ[key]
    os.environ.update({
        'HOME': home,
        'XDG_CONFIG_HOME': os.path.join(home, '.config'),
        'XDG_CACHE_HOME': os.path.join(home, '.cache'),
        'XDG_DATA_HOME': os.path.join(home, '.local', 'share'),
        'XDG_STATE_HOME': os.path.join(home, '.local', 'state'),
        'KUBECONFIG': os.path.join(home, '.kube', 'config'),
        'SKYPILOT_DISABLE_USAGE_COLLECTION': '1',
        'HTTP_PROXY': DEAD_PROXY, 'HTTPS_PROXY': DEAD_PROXY,
        'http_proxy': DEAD_PROXY, 'https_proxy': DEAD_PROXY,
        'ALL_PROXY': DEAD_PROXY, 'all_proxy': DEAD_PROXY,
        'NO_PROXY': '127.0.0.1,localhost,::1',
        'no_proxy': '127.0.0.1,localhost,::1',
        'PYTHONDONTWRITEBYTECODE': '1',
    })
    os.makedirs(os.path.join(home, '.sky'), exist_ok=True)
    # The API server client checks PyPI for a newer release once a day; a
    # cache far in the future keeps it from trying (as skypilot.sh does).
    with open(os.path.join(home, '.sky', 'version_cache.json'), 'w',
              encoding='utf-8') as f:
        json.dump({'release_version': SKYPILOT_VERSION,
                   'cached_at': 4102444800}, f)
    # No project config (.sky.yaml) from the caller's working directory.
    os.chdir(home)


NETWORK_ATTEMPTS = []


def install_network_guard():
    """Refuse (and record) every non-loopback connection or DNS lookup.

    The proxies above already make HTTP(S) through `requests` fail at once;
    this also catches raw sockets and name resolution. An audit hook cannot be
    removed, so it stays for the life of the process.
    """
    import socket

    def host_of(address):
        if isinstance(address, tuple) and address:
            return str(address[0])
        return None  # AF_UNIX paths and the like

    def hook(event, args):
        if event == 'socket.connect':
            sock, address = args
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host = host_of(address)
                if host not in LOOPBACK_HOSTS:
                    NETWORK_ATTEMPTS.append(f'connect {address!r}')
                    raise ConnectionRefusedError(
                        f'check_tasks.py: network access refused: {address!r}')
        elif event == 'socket.getaddrinfo':
            host = args[0]
            if isinstance(host, bytes):
                host = host.decode(errors='replace')
            if host is not None and str(host) not in LOOPBACK_HOSTS:
                NETWORK_ATTEMPTS.append(f'getaddrinfo {host!r}')
                raise socket.gaierror(
                    f'check_tasks.py: DNS lookup refused: {host!r}')

    sys.addaudithook(hook)


# --------------------------------------------------------------------------
# Catalogs and kubeconfig.
# --------------------------------------------------------------------------
def slug(gpu):
    return gpu.lower().replace('-', '')


def gpu_info(gpu, count):
    mib = GPU_MEMORY_MIB.get(gpu, 24576)
    return str({'Gpus': [{'Name': gpu, 'Manufacturer': 'NVIDIA',
                          'Count': count, 'MemoryInfo': {'SizeInMiB': mib}}],
                'TotalGpuMemoryInMiB': mib * count})


def price(gpu, count, region_index):
    """A made-up but deterministic hourly price."""
    base = 1.0 + (sum(map(ord, gpu)) % 37) / 10.0
    return round(base * count * (1 + region_index / 100.0), 4)


def gcp_host_rows(gcp_catalog, gpu, count):
    """GCP bills host VM and GPUs separately: the catalog needs a host row.

    SkyPilot's gcp_catalog hard-codes which host VM each GPU attaches to
    (_ACC_INSTANCE_TYPE_DICTS: A100 -> a2-highgpu-*, L4 -> g2-standard-*,
    ...) and picks an N1 host by vCPU count for the rest (V100, T4). The rows
    follow those tables so the optimizer check below can find a host; where
    SkyPilot's tables have no host for (gpu, count) none is written (that
    combination is then reported by the optimizer check, which is the point).
    Returns [(instance_type, vcpus, mem_gib)].
    """
    dicts = getattr(gcp_catalog, '_ACC_INSTANCE_TYPE_DICTS', {})
    if gpu in dicts:
        return [(it, 12 * count, 85 * count)
                for it in dicts[gpu].get(count, [])]
    cpu_table = getattr(gcp_catalog, '_NUM_ACC_TO_NUM_CPU', {})
    cpus = cpu_table.get(gpu, cpu_table.get('DEFAULT', {})).get(count)
    if cpus is None:
        return []
    # Both N1 families the real catalog has; SkyPilot asks for 4 GiB/vCPU.
    return [(f'n1-standard-{cpus}', cpus, round(cpus * 3.75, 2)),
            (f'n1-highmem-{cpus}', cpus, round(cpus * 6.5, 2))]


def write_catalogs(offerings, gpu_counts):
    """Minimal v8 catalogs for every (region, gpu, count) of the offerings."""
    from sky.catalog import common as catalog_common
    from sky.catalog import gcp_catalog  # pylint: disable=import-outside-toplevel
    # Column layouts of SkyPilot 0.14.1's catalogs (hosted v8 files; see
    # sky/catalog/*_catalog.py and sky/catalog/data_fetchers/fetch_*.py).
    headers = {
        'aws': ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs',
                'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice', 'Region',
                'AvailabilityZone', 'Arch'],
        'gcp': ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs',
                'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice', 'Region',
                'AvailabilityZone'],
        'azure': ['InstanceType', 'AcceleratorName', 'AcceleratorCount',
                  'vCPUs', 'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice',
                  'Region', 'Generation'],
        'lambda': ['InstanceType', 'AcceleratorName', 'AcceleratorCount',
                   'vCPUs', 'MemoryGiB', 'Price', 'Region', 'GpuInfo',
                   'SpotPrice'],
        'oci': ['InstanceType', 'AcceleratorName', 'AcceleratorCount', 'vCPUs',
                'MemoryGiB', 'GpuInfo', 'Price', 'SpotPrice', 'Region',
                'AvailabilityZone'],
    }
    rows = {cloud: [] for cloud in headers}
    for off in offerings:
        provider = off['provider']
        if provider not in rows:
            continue  # kubernetes: no pricing catalog
        counts = gpu_counts
        gcp_hosts_written = set()
        for ri, region in enumerate(off['regions']):
            for gpu in off['gpus']:
                for n in counts:
                    p = price(gpu, n, ri)
                    spot = round(p * 0.4, 4) if off['spot'] else ''
                    cpus, mem = 8 * n, 64 * n
                    info = gpu_info(gpu, n)
                    if provider == 'aws':
                        it = f'sd{n}.{slug(gpu)}.xlarge'
                        rows['aws'].append([it, gpu, n, cpus, mem, info, p,
                                            spot, region, f'{region}a',
                                            'x86_64'])
                    elif provider == 'gcp':
                        zone = f'{region}-a'
                        # The GPU row (no instance type) ...
                        rows['gcp'].append(['', gpu, n, '', '', gpu, p, spot,
                                            region, zone])
                        # ... and the host VMs SkyPilot attaches it to.
                        for it, hc, hm in gcp_host_rows(gcp_catalog, gpu, n):
                            if (it, region) in gcp_hosts_written:
                                continue
                            gcp_hosts_written.add((it, region))
                            rows['gcp'].append([it, '', '', hc, hm, '', 0.5,
                                                0.2 if off['spot'] else '',
                                                region, zone])
                    elif provider == 'azure':
                        it = f'Standard_ND{cpus}sd_{slug(gpu)}_v9'
                        rows['azure'].append([it, gpu, n, cpus, mem, gpu, p,
                                              spot, region, 'V1,V2'])
                    elif provider == 'lambda':
                        it = f'gpu_{n}x_{slug(gpu)}'
                        rows['lambda'].append([it, gpu, n, cpus, mem, p,
                                               region, info, ''])
                    elif provider == 'oci':
                        it = f'BM.GPU.{slug(gpu)}.{n}'
                        rows['oci'].append([it, gpu, n, cpus, mem, info, p,
                                            spot, region,
                                            f'{region.upper()}-AD-1'])
    for cloud, hdr in headers.items():
        _write_csv(catalog_common, f'{cloud}/vms.csv', hdr, rows[cloud])
    # GPU name canonicalization table (from the snapshot, not the offerings).
    _write_csv(catalog_common, 'common/accelerators.csv',
               ['AcceleratorName', 'Clouds'],
               [[name, str(clouds)]
                for name, clouds in sorted(ACCELERATORS_SNAPSHOT.items())])
    _write_csv(catalog_common, 'common/metadata.csv',
               ['GPU', 'MemoryGB', 'Manufacturer'],
               [[name, mib // 1024, 'NVIDIA']
                for name, mib in sorted(GPU_MEMORY_MIB.items())])


def _write_csv(catalog_common, filename, header, rows):
    path = catalog_common.get_catalog_path(filename)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    # No md5 next to it: SkyPilot then treats the file as user-modified and
    # never replaces it with a download.
    meta = catalog_common.get_catalog_path(f'.meta/{filename}.md5')
    if os.path.exists(meta):
        os.remove(meta)


def write_kubeconfig(home, contexts):
    """A kubeconfig with one (unreachable) cluster per context."""
    path = os.path.join(home, '.kube', 'config')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': f'cluster-{i}',
                      'cluster': {'server': f'https://127.0.0.1:{9}'}}
                     for i, _ in enumerate(contexts)],
        'users': [{'name': 'skydeck-test', 'user': {'token': 'unused'}}],
        'contexts': [{'name': ctx,
                      'context': {'cluster': f'cluster-{i}',
                                  'user': 'skydeck-test',
                                  'namespace': 'default'}}
                     for i, ctx in enumerate(contexts)],
        'current-context': contexts[0] if contexts else '',
    }
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(doc, f)  # JSON is YAML
    return path


def patch_kubeconfig_reader(kubeconfig_path):
    """Read the kubeconfig for SkyPilot, in place of the kubernetes SDK.

    SkyPilot lists kubeconfig contexts through one adaptor function,
    `sky.adaptors.kubernetes.list_kube_config_contexts()`, which calls the
    SDK's `kubernetes.config.list_kube_config_contexts(path)`. The venv lacks
    the SDK on purpose, so this stand-in returns the same shape -- (list of
    {'name', 'context'} dicts, the current one) -- read from our file. Every
    decision made from it (is the task's context in the kubeconfig?) is still
    SkyPilot's code (`Kubernetes.validate_region_zone`).
    """
    from sky.adaptors import kubernetes as kubernetes_adaptor

    def list_kube_config_contexts():
        with open(kubeconfig_path, encoding='utf-8') as f:
            doc = json.load(f)
        contexts = doc['contexts']
        current = next((c for c in contexts
                        if c['name'] == doc.get('current-context')), None)
        return contexts, current

    kubernetes_adaptor.list_kube_config_contexts = list_kube_config_contexts


KUBE_PROBES = []


def patch_kube_cluster_probes():
    """Make SkyPilot's live-cluster probes see an unreachable cluster.

    Validating `ports:` (and spot) on Kubernetes makes SkyPilot ask the cluster
    whether its nodes carry a spot label and which network it has
    (kubernetes_utils.get_spot_label, Kubernetes._detect_network_type). There
    is no cluster offline (and no SDK to ask one), so both raise SkyPilot's own
    KubeAPIUnreachableError -- what they raise for a cluster that does not
    answer -- and SkyPilot's code then applies its static rules (ports
    supported, spot not). Every probe is recorded and reported as skipped.
    """
    from sky import exceptions
    from sky.clouds import kubernetes as kubernetes_cloud
    from sky.provision.kubernetes import utils as kubernetes_utils

    def get_spot_label(context=None):
        KUBE_PROBES.append(('spot label', context))
        raise exceptions.KubeAPIUnreachableError(
            f'check_tasks.py: no live cluster for context {context!r}')

    def detect_network_type(cls, context, *args, **kwargs):
        del cls, args, kwargs
        KUBE_PROBES.append(('network type', context))
        raise exceptions.KubeAPIUnreachableError(
            f'check_tasks.py: no live cluster for context {context!r}')

    kubernetes_utils.get_spot_label = get_spot_label
    kubernetes_cloud.Kubernetes._detect_network_type = classmethod(  # pylint: disable=protected-access
        detect_network_type)


# --------------------------------------------------------------------------
# Checks.
# --------------------------------------------------------------------------
def check_offerings(offerings):
    """GPU names must be names SkyPilot's accelerator table lists per cloud."""
    failures = []
    for off in offerings:
        cloud = CLOUD_NAMES.get(off['provider'])
        if cloud is None:
            failures.append({'id': f"offerings:{off['provider']}",
                             'error': 'unknown provider'})
            continue
        if off['provider'] == 'kubernetes':
            continue  # any GPU a cluster labels; checked per task below
        for gpu in off['gpus']:
            clouds = ACCELERATORS_SNAPSHOT.get(gpu)
            if clouds is None or cloud not in clouds:
                failures.append({
                    'id': f"offerings:{off['provider']}:{gpu}",
                    'error': (f'{gpu!r} is not a GPU SkyPilot lists for '
                              f'{cloud} (hosted v8 accelerators.csv: '
                              f'{clouds})')
                })
    return failures


def check_task(sky, yaml_utils, path, entry):
    """Loads one task and checks it; raises AssertionError/others on failure.

    Returns the loaded task's single Resources.
    """
    text = entry['yaml']
    raw = yaml_utils.safe_load(text)
    # Loading checks the task schema and builds the Resources; it does NOT
    # validate them (in 0.14.1 Resources() only parses). sky.launch then runs
    # Task.validate() (execution.py: `entrypoint.validate()`), which validates
    # the name and run script and, per Resources, canonicalizes the GPU name
    # and checks region (against the catalog / kubeconfig), instance type,
    # spot, disk, ports and labels for that cloud. Both are done here.
    task = sky.Task.from_yaml(path)
    task.validate()

    def want(cond, msg):
        if not cond:
            raise AssertionError(msg)

    # Name, scripts.
    want(task.name == raw['name'], f'name {task.name!r} != {raw["name"]!r}')
    want(task.run == raw['run'], 'run script changed by loading')
    want(task.setup == raw['setup'], 'setup script changed by loading')
    # envs: all present, as written.
    envs = dict(task.envs)
    engine = str(raw['envs'].get('SKYDECK_ENGINE', 'vllm'))
    want(engine in ENGINE_ENVS, f'unknown engine {engine!r}')
    missing = [k for k in REQUIRED_ENVS + ENGINE_ENVS.get(engine, [])
               if not envs.get(k)]
    want(not missing, f'envs missing or empty: {missing}')
    for k, v in raw['envs'].items():
        want(envs.get(k) == str(v), f'env {k}: {envs.get(k)!r} != {v!r}')
    # secrets: the token, and only there. SkyPilot holds secrets as pydantic
    # SecretStr, whose str()/repr() hide the value.
    secrets = dict(task.secrets)
    secret = secrets.get(TOKEN_SECRET)
    want(secret is not None,
         f'secrets has no {TOKEN_SECRET} (got {sorted(secrets)})')
    token = (secret.get_secret_value()
             if hasattr(secret, 'get_secret_value') else secret)
    want(token, f'{TOKEN_SECRET} is empty')
    want(token not in str(secret) and token not in repr(secret),
         'SkyPilot does not mask the loaded agent token')
    want(token == raw['secrets'][TOKEN_SECRET], 'agent token changed')
    want(TOKEN_SECRET not in envs, f'{TOKEN_SECRET} is in envs (visible)')
    want(token not in json.dumps(envs), 'agent token value appears in envs')
    want(token not in task.run and token not in task.setup,
         'agent token value appears in a script')
    # SkyPilot must treat it as a secret: redacted in the user's task YAML as
    # SkyPilot shows it back (dashboard, `sky status -v`).
    shown = task.to_yaml_config(use_user_specified_yaml=True)
    want(token not in json.dumps(shown, default=str),
         'SkyPilot does not redact the agent token in the task YAML it shows')
    want(shown.get('secrets', {}).get(TOKEN_SECRET) == '<redacted>',
         f'shown secrets: {shown.get("secrets")!r}')
    # The model travels only in envs, never in script text.
    model = envs['SKYDECK_MODEL']
    want(model not in task.run and model not in task.setup,
         f'model {model!r} appears in the run/setup script text')

    # resources: exactly one, interpreted as written.
    resources = list(task.resources)
    want(len(resources) == 1, f'{len(resources)} resources, expected 1')
    r = resources[0]
    rr = raw['resources']
    want(r.cloud is not None, 'no cloud')
    want(r.accelerators is not None, 'no accelerators')
    acc_name, acc_count = rr['accelerators'].split(':')
    want(dict(r.accelerators) == {acc_name: int(acc_count)},
         f'accelerators {dict(r.accelerators)} != {rr["accelerators"]!r}')
    want(r.use_spot == rr['use_spot'],
         f'use_spot {r.use_spot} != {rr["use_spot"]}')
    want(int(r.disk_size) == int(rr['disk_size']),
         f'disk_size {r.disk_size} != {rr["disk_size"]}')
    # skydeck writes a list (the engine's port, the agent's metrics port); one port is
    # still read as written before.
    raw_ports = rr['ports'] if isinstance(rr['ports'], list) else [rr['ports']]
    want(list(r.ports or []) == [str(p) for p in raw_ports],
         f'ports {r.ports} != {raw_ports!r}')
    if 'image_id' in rr:
        # SkyPilot keys the image by region; the value must be the one written.
        want(list((r.image_id or {}).values()) == [rr['image_id']],
             f'image_id {r.image_id} != {rr["image_id"]!r}')
    want(dict(r.labels or {}) == {k: str(v) for k, v in rr['labels'].items()},
         f'labels {r.labels} != {rr["labels"]}')
    exp = entry.get('expect')
    if exp:
        want(str(r.cloud) == CLOUD_NAMES[exp['provider']],
             f'cloud {r.cloud} != {CLOUD_NAMES[exp["provider"]]}')
        want(r.region == exp['region'],
             f'region {r.region!r} != {exp["region"]!r}')
        want(r.zone is None, f'zone {r.zone!r} set')
        want(dict(r.accelerators) == {exp['gpu']: exp['gpu_count']},
             f'accelerators {dict(r.accelerators)} != '
             f'{exp["gpu"]}:{exp["gpu_count"]}')
        want(r.use_spot == exp['use_spot'], 'use_spot differs from the spec')
    return r


def check_feasible(r):
    """SkyPilot's optimizer step: can (cloud, region, GPU:count, spot) map to
    an instance type? Returns None if yes, else a reason string."""
    try:
        feasible = r.cloud.get_feasible_launchable_resources(r, num_nodes=1)
    except Exception as e:  # pylint: disable=broad-except
        return f'{type(e).__name__}: {e}'
    if feasible.resources_list:
        return None
    hint = feasible.hint or ''
    fuzzy = feasible.fuzzy_candidate_list or []
    return (f'no launchable instance type for {r.accelerators} in '
            f'{r.cloud}/{r.region} (spot={r.use_spot}); hint: {hint!r}; '
            f'candidates: {fuzzy[:8]}')


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        print('usage: check_tasks.py IN.json', file=sys.stderr)
        return 2
    with open(argv[1], encoding='utf-8') as f:
        spec = json.load(f)
    offerings = spec['offerings']
    tasks = spec['tasks']

    # stdout is for the report only: SkyPilot logs to stdout, so while it runs
    # file descriptor 1 points at stderr and the report goes to the saved one.
    sys.stdout.flush()
    report_fd = os.dup(1)
    os.dup2(2, 1)

    home = tempfile.mkdtemp(prefix='skydeck-check-tasks-')
    report = {'ok': 0, 'failures': [], 'skipped': [], 'optimizer': {},
              'network_attempts': []}
    try:
        isolate_environment(home)
        install_network_guard()

        import sky  # noqa: E402  (only now: HOME is the scratch directory)
        from sky.utils import yaml_utils
        if sky.__version__ != SKYPILOT_VERSION:
            raise SystemExit(f'skypilot {sky.__version__} is installed, '
                             f'expected {SKYPILOT_VERSION}')
        write_catalogs(offerings, spec.get('gpu_counts') or [1, 2, 4, 8, 16])

        # The kubeconfig: the deployment's contexts when the input names them
        # ("kube_contexts"), else the contexts the tasks use (then "context
        # exists" holds by construction; only its parsing is checked).
        contexts = list(spec.get('kube_contexts') or [])
        for t in tasks if not contexts else []:
            try:
                infra = yaml_utils.safe_load(t['yaml'])['resources']['infra']
            except Exception:  # pylint: disable=broad-except
                continue  # the loader reports the broken YAML below
            if isinstance(infra, str) and infra.split('/')[0] in ('k8s',
                                                                  'kubernetes'):
                ctx = infra.split('/', 1)[1] if '/' in infra else None
                if ctx and ctx not in contexts:
                    contexts.append(ctx)
        kubeconfig = write_kubeconfig(home, contexts)
        patch_kubeconfig_reader(kubeconfig)
        patch_kube_cluster_probes()

        report['failures'].extend(check_offerings(offerings))

        task_dir = os.path.join(home, 'tasks')
        os.makedirs(task_dir)
        k8s_ids, infeasible, checked = [], [], 0
        for i, entry in enumerate(tasks):
            path = os.path.join(task_dir, f'{i}.yaml')
            with open(path, 'w', encoding='utf-8') as f:
                f.write(entry['yaml'])
            try:
                r = check_task(sky, yaml_utils, path, entry)
            except BaseException as e:  # pylint: disable=broad-except
                if isinstance(e, KeyboardInterrupt):
                    raise
                msg = f'{type(e).__name__}: {e}'.strip()
                if os.environ.get('SKYDECK_CHECK_TASKS_TRACEBACK'):
                    msg += '\n' + traceback.format_exc()
                report['failures'].append({'id': entry['id'], 'error': msg})
                continue
            report['ok'] += 1
            if str(r.cloud) == 'Kubernetes':
                k8s_ids.append(entry['id'])
                continue
            checked += 1
            why = check_feasible(r)
            if why:
                infeasible.append({'id': entry['id'], 'reason': why})

        if k8s_ids:
            report['skipped'].append({
                'check': 'kubernetes cluster probes and GPU availability',
                'ids': k8s_ids,
                'reason': ('needs a live cluster (and the kubernetes SDK, '
                           'which the venv must not have): SkyPilot\'s probes '
                           'for spot node labels and network type were '
                           f'answered "cluster unreachable" '
                           f'({len(KUBE_PROBES)} probes), and whether the '
                           'cluster has the GPUs (optimizer) was not asked. '
                           'Schema, infra/context (against the kubeconfig '
                           'written here), GPU name, labels, ports and spot '
                           'were validated by SkyPilot.'),
            })
        report['skipped'].append({
            'check': 'real-world region and GPU:count availability',
            'ids': [],
            'reason': ('the pricing catalogs are written from the offerings '
                       'themselves (offline, made-up prices), so region '
                       'names and GPU:count offerings are checked for shape '
                       'only; GPU names are checked against a snapshot of '
                       "SkyPilot's hosted accelerators.csv."),
        })
        report['optimizer'] = {
            'note': ('informational, not a failure: whether SkyPilot can map '
                     'each GPU:count to an instance type. With synthetic '
                     'catalogs only SkyPilot\'s hard-coded rules (e.g. GCP '
                     'host-VM tables) can make this fail.'),
            'checked': checked,
            'infeasible': infeasible,
        }
    except BaseException as e:  # pylint: disable=broad-except
        if isinstance(e, KeyboardInterrupt):
            raise
        report['failures'].append({
            'id': '<setup>',
            'error': f'{type(e).__name__}: {e}\n{traceback.format_exc()}'
        })
    finally:
        os.chdir('/')
        shutil.rmtree(home, ignore_errors=True)

    report['network_attempts'] = NETWORK_ATTEMPTS
    if NETWORK_ATTEMPTS:
        report['failures'].append({
            'id': '<network>',
            'error': f'SkyPilot tried to reach the network: {NETWORK_ATTEMPTS}'
        })
    sys.stdout.flush()
    with os.fdopen(report_fd, 'w', encoding='utf-8') as out:
        out.write(json.dumps(report, indent=1) + '\n')
    return 1 if report['failures'] else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
