//! Helpers for tests against the real kube-apiserver peer (`scripts/peers/kube.sh up NAME`,
//! v1.20.2 with etcd, control plane only) and for the hosts its pod proxy reaches.
//!
//! [`KubePeer`] reads the peer directory (`endpoint`, `ca.crt`, `admin-token`, `reader-token`,
//! `norights-token`) and creates what the GPU Operator or the dcgm-exporter chart would:
//! namespaces, Services, Endpoints (there is no controller-manager, so nothing else makes
//! them), Pods with a `status.podIP` written through the status subresource (there is no
//! kubelet), and RBAC for the reader. Every call is blocking and runs its request on a private
//! thread with its own runtime, so it works from plain tests and from inside `#[tokio::test]`.
//! [`write_kubeconfig`] writes a kubeconfig with several contexts. [`NetnsHost`] is a network
//! namespace with a veth pair in 10.250.X.0/24 (the API server refuses to proxy to loopback),
//! able to run a process such as a DCGM page server; both are removed on drop. Names from
//! [`unique_name`] differ between tests running in parallel processes.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The environment variable that points at the peer directory.
pub const ENV: &str = "SKYDECK_TEST_KUBE";

/// A name unique to this process and call: `<prefix>-<pid>-<n>` (lowercase, DNS-safe).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One address of an Endpoints object.
#[derive(Debug, Clone)]
pub struct EndpointAddr {
    /// The pod IP.
    pub ip: String,
    /// `nodeName`, if any.
    pub node: Option<String>,
    /// The pod of `targetRef`, if any.
    pub pod: Option<String>,
}

/// One exporter for [`KubePeer::create_exporter`].
#[derive(Debug, Clone, Copy)]
pub struct ExporterSpec<'a> {
    /// Service name (`nvidia-dcgm-exporter`, `<release>-dcgm-exporter`).
    pub service: &'a str,
    /// Labels of the Service and the Pod.
    pub labels: &'a [(&'a str, &'a str)],
    /// Annotations of the Service (`prometheus.io/scrape`, …).
    pub annotations: &'a [(&'a str, &'a str)],
    /// The port's name and number.
    pub port: (&'a str, u16),
    /// Pod name.
    pub pod: &'a str,
    /// Node name.
    pub node: &'a str,
    /// The pod's IP (a network-namespace test host's).
    pub ip: &'a str,
}

/// The real kube-apiserver peer.
#[derive(Debug, Clone)]
pub struct KubePeer {
    dir: PathBuf,
    endpoint: String,
    ca_pem: Vec<u8>,
    admin_token: String,
    reader_token: String,
    norights_token: String,
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("kube peer {}: cannot read {name}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// Runs `fut` to completion on a fresh thread with its own runtime.
fn block_on<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(fut)
        })
        .join()
        .expect("kube peer request thread")
    })
}

impl KubePeer {
    /// The peer named by `$SKYDECK_TEST_KUBE`; panics with how to start one when unset.
    pub fn from_env() -> KubePeer {
        let dir = std::env::var_os(ENV).unwrap_or_else(|| {
            panic!(
                "{ENV} is not set: this test needs the real kube-apiserver peer. Start one with \
                 `scripts/peers/kube.sh install && scripts/peers/kube.sh up test` and run with \
                 {ENV}=target/peers/kube-test (scripts/test.sh does this)"
            )
        });
        KubePeer::open(Path::new(&dir))
    }

    /// The peer in `dir`.
    pub fn open(dir: &Path) -> KubePeer {
        assert!(
            dir.join("endpoint").exists(),
            "no endpoint file in {}: is the peer up (scripts/peers/kube.sh up NAME)?",
            dir.display()
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        KubePeer {
            dir: dir.to_path_buf(),
            endpoint: read(dir, "endpoint"),
            ca_pem: std::fs::read(dir.join("ca.crt")).expect("ca.crt"),
            admin_token: read(dir, "admin-token"),
            reader_token: read(dir, "reader-token"),
            norights_token: read(dir, "norights-token"),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    /// The CA file to trust for the endpoint.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// The peer directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Token of `admin` (system:masters).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
    /// Token of user `skydeck-reader` (rights only after [`KubePeer::grant_reader`]).
    pub fn reader_token(&self) -> &str {
        &self.reader_token
    }
    /// Token of user `nobody` (no rights at all).
    pub fn norights_token(&self) -> &str {
        &self.norights_token
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca_pem).expect("ca.crt is PEM")])
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client")
    }

    /// Sends `method path` with `token` and an optional JSON body; returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let client = self.client();
        let url = format!("{}{path}", self.endpoint);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        block_on(async move {
            let mut req = client.request(method, &url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("kube peer request {url}: {e}"));
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    }

    /// As admin; panics unless the status is 2xx (or listed in `ok`).
    fn admin(&self, method: &str, path: &str, body: Option<Value>, ok: &[u16]) -> Value {
        let (status, text) = self.request(method, path, &self.admin_token, body);
        assert!(
            (200..300).contains(&status) || ok.contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates namespace `name` (fine if it exists).
    pub fn create_namespace(&self, name: &str) {
        self.admin(
            "POST",
            "/api/v1/namespaces",
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
            &[409],
        );
    }

    /// Creates any object by POSTing `body` to `collection_path` as admin.
    pub fn create(&self, collection_path: &str, body: Value) -> Value {
        self.admin("POST", collection_path, Some(body), &[])
    }

    /// Creates a Service with `labels`, `annotations` and named `ports` (`(name, port)`).
    pub fn create_service(
        &self,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        ports: &[(&str, u16)],
    ) -> Value {
        let map = |kv: &[(&str, &str)]| {
            Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect(),
            )
        };
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, p)| json!({"name": n, "port": p, "targetPort": p, "protocol": "TCP"}))
            .collect();
        self.create(
            &format!("/api/v1/namespaces/{ns}/services"),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)},
                "spec": {"selector": map(labels), "ports": ports}
            }),
        )
    }

    /// Creates the core/v1 Endpoints of Service `name`.
    pub fn create_endpoints(
        &self,
        ns: &str,
        name: &str,
        addresses: &[EndpointAddr],
        ports: &[(&str, u16)],
    ) -> Value {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|a| {
                let mut v = json!({"ip": a.ip});
                if let Some(n) = &a.node {
                    v["nodeName"] = n.as_str().into();
                }
                if let Some(p) = &a.pod {
                    v["targetRef"] = json!({"kind": "Pod", "name": p, "namespace": ns});
                }
                v
            })
            .collect();
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP"}))
            .collect();
        self.create(
            &format!("/api/v1/namespaces/{ns}/endpoints"),
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name},
                "subsets": [{"addresses": addresses, "ports": ports}]
            }),
        )
    }

    /// Creates a Pod (a dcgm-exporter container, bound to `node`) and, when `pod_ip` is given,
    /// writes `status.podIP` and phase Running through the status subresource.
    pub fn create_pod(
        &self,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        node: Option<&str>,
        pod_ip: Option<&str>,
    ) -> Value {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let mut spec = json!({"containers": [{
            "name": "nvidia-dcgm-exporter",
            "image": "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04",
            "ports": [{"name": "metrics", "containerPort": 9400}]
        }]});
        if let Some(n) = node {
            spec["nodeName"] = n.into();
        }
        let pod = self.create(
            &format!("/api/v1/namespaces/{ns}/pods"),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "labels": labels}, "spec": spec}),
        );
        match pod_ip {
            Some(ip) => self.set_pod_ip(ns, name, ip),
            None => pod,
        }
    }

    /// One exporter pod behind its Service, as the GPU Operator or the dcgm-exporter chart
    /// make them: a Pod on `spec.node` whose `status.podIP` is `spec.ip`, the Service with the
    /// labels, annotations and one named port, and its Endpoints naming the pod.
    pub fn create_exporter(&self, ns: &str, spec: &ExporterSpec<'_>) {
        let (port_name, port) = spec.port;
        self.create_service(
            ns,
            spec.service,
            spec.labels,
            spec.annotations,
            &[(port_name, port)],
        );
        self.create_pod(ns, spec.pod, spec.labels, Some(spec.node), Some(spec.ip));
        self.create_endpoints(
            ns,
            spec.service,
            &[EndpointAddr {
                ip: spec.ip.to_string(),
                node: Some(spec.node.to_string()),
                pod: Some(spec.pod.to_string()),
            }],
            &[(port_name, port)],
        );
    }

    /// Writes `status.podIP` (and phase Running, Ready) of an existing Pod.
    pub fn set_pod_ip(&self, ns: &str, name: &str, ip: &str) -> Value {
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}/status");
        let mut pod = self.admin("GET", &path, None, &[]);
        pod["status"] = json!({
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}]
        });
        self.admin("PUT", &path, Some(pod), &[])
    }

    /// Deletes the object at `path` (fine if it is gone).
    pub fn delete(&self, path: &str) {
        self.admin("DELETE", path, None, &[404]);
    }

    /// Deletes namespace `name` (asynchronous on the server; fine if it is gone).
    pub fn delete_namespace(&self, name: &str) {
        self.delete(&format!("/api/v1/namespaces/{name}"));
    }

    /// Creates the ClusterRole `skydeck-discovery` (list/watch services, endpoints,
    /// endpointslices, pods; get pods/proxy) and binds it to user `skydeck-reader`. Idempotent.
    pub fn grant_reader(&self) {
        self.admin(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            Some(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "skydeck-discovery"},
                "rules": [
                    {"apiGroups": [""], "resources": ["services", "endpoints", "pods"],
                     "verbs": ["get", "list", "watch"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                     "verbs": ["get", "list", "watch"]},
                    {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}
                ]
            })),
            &[409],
        );
        self.admin(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "skydeck-discovery-reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "skydeck-discovery"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": "skydeck-reader"}]
            })),
            &[409],
        );
        // RBAC changes reach the authorizer's cache shortly after they are stored.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let (s, _) = self.request(
                "GET",
                "/api/v1/namespaces/default/services",
                &self.reader_token,
                None,
            );
            if s == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the reader was not allowed to list services 10 s after the RBAC was created");
    }
}

/// One context of a kubeconfig written by [`write_kubeconfig`].
#[derive(Debug, Clone)]
pub struct KubeContext {
    /// Context (and cluster and user) name.
    pub name: String,
    /// API server URL.
    pub server: String,
    /// CA file; `None` with `insecure` = skip verification, `None` without = system roots.
    pub ca_file: Option<PathBuf>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Default namespace, if any.
    pub namespace: Option<String>,
}

impl KubeContext {
    /// A context for `peer` with `token`, trusting the peer's CA.
    pub fn for_peer(name: &str, peer: &KubePeer, token: &str) -> KubeContext {
        KubeContext {
            name: name.to_string(),
            server: peer.endpoint().to_string(),
            ca_file: Some(peer.ca_path()),
            insecure: false,
            token: Some(token.to_string()),
            namespace: None,
        }
    }

    /// A plain-HTTP context (for in-process fakes) with a token.
    pub fn http(name: &str, server: &str, token: &str) -> KubeContext {
        KubeContext {
            name: name.to_string(),
            server: server.to_string(),
            ca_file: None,
            insecure: false,
            token: Some(token.to_string()),
            namespace: None,
        }
    }
}

/// Writes a kubeconfig (JSON, which is YAML) with `contexts` to `path`.
pub fn write_kubeconfig(path: &Path, contexts: &[KubeContext], current: Option<&str>) {
    let clusters: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let mut cluster = json!({"server": c.server});
            if let Some(ca) = &c.ca_file {
                cluster["certificate-authority"] = ca.display().to_string().into();
            }
            if c.insecure {
                cluster["insecure-skip-tls-verify"] = true.into();
            }
            json!({"name": c.name, "cluster": cluster})
        })
        .collect();
    let users: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let user = match &c.token {
                Some(t) => json!({"token": t}),
                None => json!({}),
            };
            json!({"name": c.name, "user": user})
        })
        .collect();
    let ctxs: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let mut ctx = json!({"cluster": c.name, "user": c.name});
            if let Some(ns) = &c.namespace {
                ctx["namespace"] = ns.as_str().into();
            }
            json!({"name": c.name, "context": ctx})
        })
        .collect();
    let mut doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": clusters, "users": users, "contexts": ctxs, "preferences": {}
    });
    if let Some(c) = current {
        doc["current-context"] = c.into();
    }
    let mut f = std::fs::File::create(path).expect("create kubeconfig");
    f.write_all(serde_json::to_string_pretty(&doc).unwrap().as_bytes())
        .expect("write kubeconfig");
}

/// A dcgm-exporter page (text format, Kubernetes pod mapping on) for one GPU.
pub fn dcgm_metrics_text(hostname: &str, pod: &str, namespace: &str) -> String {
    let labels = format!(
        "gpu=\"0\",UUID=\"GPU-5f2c2d6e-6b1a-4d3e-9c1b-0a7d2e9f1c33\",device=\"nvidia0\",\
         modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"{hostname}\",\
         DCGM_FI_DRIVER_VERSION=\"550.54.15\",pod=\"{pod}\",namespace=\"{namespace}\",\
         container=\"trainer\""
    );
    format!(
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n\
         # TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
         DCGM_FI_DEV_GPU_UTIL{{{labels}}} 87\n\
         # HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).\n\
         # TYPE DCGM_FI_DEV_FB_USED gauge\n\
         DCGM_FI_DEV_FB_USED{{{labels}}} 61234\n\
         # HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
         # TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
         DCGM_FI_DEV_POWER_USAGE{{{labels}}} 612.5\n\
         # HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).\n\
         # TYPE DCGM_FI_DEV_GPU_TEMP gauge\n\
         DCGM_FI_DEV_GPU_TEMP{{{labels}}} 64\n"
    )
}

/// A network namespace with a veth pair to the host, removed (with its processes) on drop.
pub struct NetnsHost {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
    children: Vec<Child>,
    _reservation: Option<Reservation>,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A claimed `10.250.X.0/24` subnet (a directory in the temp dir; cross-process safe).
struct Reservation(PathBuf);

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn reserve_subnet() -> (u8, Reservation) {
    let base = std::env::temp_dir();
    let start = (std::process::id() % 250) as u8;
    for i in 0..250u16 {
        let x = ((u16::from(start) + i) % 250 + 1) as u8;
        let dir = base.join(format!("skydeck-netns-10.250.{x}"));
        if std::fs::create_dir(&dir).is_ok() {
            let _ = std::fs::write(dir.join("pid"), std::process::id().to_string());
            return (x, Reservation(dir));
        }
        // A reservation whose owner died is taken over.
        let owner = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
        if !owner.is_empty() && !Path::new(&format!("/proc/{}", owner.trim())).exists() {
            let _ = std::fs::write(dir.join("pid"), std::process::id().to_string());
            return (x, Reservation(dir));
        }
    }
    panic!("no free 10.250.X.0/24 subnet for a test network namespace");
}

impl NetnsHost {
    /// A namespace on a free `10.250.X.0/24` (host `.1`, namespace `.2`) with a unique name.
    pub fn create_unique(prefix: &str) -> NetnsHost {
        let (x, reservation) = reserve_subnet();
        let mut h = NetnsHost::create(
            &unique_name(prefix),
            &format!("10.250.{x}.1"),
            &format!("10.250.{x}.2"),
        );
        h._reservation = Some(reservation);
        h
    }

    /// Creates namespace `name` with a veth pair `host_ip/24` (host side) ↔ `ns_ip/24`, both in
    /// 10.250.0.0/16, and `lo` up. Panics (with the command's error) when it cannot.
    pub fn create(name: &str, host_ip: &str, ns_ip: &str) -> NetnsHost {
        assert!(
            host_ip.starts_with("10.250.") && ns_ip.starts_with("10.250."),
            "test hosts use 10.250.0.0/16 addresses only"
        );
        // Interface names are limited to 15 bytes; derive short ones from a counter.
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{:x}{:x}",
            std::process::id() & 0xfffff,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let host_if = format!("skh{tag}");
        let ns_if = format!("skn{tag}");
        let h = NetnsHost {
            name: name.to_string(),
            host_if: host_if.clone(),
            host_ip: host_ip.to_string(),
            ns_ip: ns_ip.to_string(),
            children: Vec::new(),
            _reservation: None,
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["ip".into(), "netns".into(), "add".into(), name.into()],
            vec![
                "ip".into(),
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                ns_if.clone(),
            ],
            vec![
                "ip".into(),
                "link".into(),
                "set".into(),
                ns_if.clone(),
                "netns".into(),
                name.into(),
            ],
            vec![
                "ip".into(),
                "addr".into(),
                "add".into(),
                format!("{host_ip}/24"),
                "dev".into(),
                host_if.clone(),
            ],
            vec![
                "ip".into(),
                "link".into(),
                "set".into(),
                host_if.clone(),
                "up".into(),
            ],
            ip_in(
                name,
                &["addr", "add", &format!("{ns_ip}/24"), "dev", &ns_if],
            ),
            ip_in(name, &["link", "set", &ns_if, "up"]),
            ip_in(name, &["link", "set", "lo", "up"]),
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if let Err(e) = sh(&args) {
                panic!("creating network namespace {name}: {e} (needs root and iproute2)");
            }
        }
        h
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The address inside the namespace.
    pub fn ns_ip(&self) -> &str {
        &self.ns_ip
    }
    /// The host side's address.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// Starts `program args…` inside the namespace (`ip netns exec`); killed on drop.
    pub fn spawn(&mut self, program: &str, args: &[&str]) -> &mut Child {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name));
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    /// Serves `dir` on `ns_ip:port` with `python3 -m http.server`, and waits until it answers.
    pub fn serve_dir(&mut self, dir: &Path, port: u16) {
        let python = std::env::var("SKYDECK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port_s = port.to_string();
        let ns_ip = self.ns_ip.clone();
        let dir_s = dir.display().to_string();
        self.spawn(
            &python,
            &[
                "-m",
                "http.server",
                &port_s,
                "--bind",
                &ns_ip,
                "--directory",
                &dir_s,
            ],
        );
        let addr: SocketAddr = format!("{ns_ip}:{port}").parse().expect("address");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the server in network namespace {} did not listen on {addr}",
            self.name
        );
    }
}

fn ip_in(ns: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["ip", "netns", "exec", ns, "ip"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace removes its veth end and with it the host end.
        let _ = sh(&["ip", "link", "del", &self.host_if]);
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}
