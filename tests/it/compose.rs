//! The production deployment (`Dockerfile`, `docker-compose.yml`, `deploy/`) checked without a
//! Docker engine: every file parsed, and held against the binary (`--help`), the README and
//! each other. What Docker itself would only reveal at `docker compose up` fails here instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::{Mapping, Value};

use crate::harness::*;

/// The metrics the binary exports: the contract with the Grafana dashboard.
const CONTRACT_METRICS: &[&str] = &[
    "geobatch_rows_read_total",
    "geobatch_rows_published_total",
    "geobatch_rows_converted_total",
    "geobatch_rows_failed_total",
    "geobatch_rows_skipped_total",
    "geobatch_batches_total",
    "geobatch_jobs_merged_total",
    "geobatch_transform_seconds",
    "geobatch_consumer_lag",
    "geobatch_jobs",
    "geobatch_sheet_rows_total",
    "geobatch_sheet_rows_done",
];
/// Contract metrics that are histograms: PromQL sees them as `_bucket`, `_sum` and `_count`.
const CONTRACT_HISTOGRAMS: &[&str] = &["geobatch_transform_seconds"];

const KAFKA: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// A YAML file with `<<` merge keys applied, as Docker Compose reads it.
fn yaml(rel: &str) -> Value {
    let mut v: Value =
        serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
    v
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services(doc: &Value) -> &Mapping {
    doc["services"]
        .as_mapping()
        .expect("docker-compose.yml has a services mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    services(doc)
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn service_names(doc: &Value) -> BTreeSet<String> {
    services(doc)
        .keys()
        .map(|k| k.as_str().expect("service name").to_string())
        .collect()
}

/// Compose interpolation, always taking the default: `${VAR:-default}`, `${VAR-default}`,
/// `${VAR}` (empty) and `$$` (a literal `$`). The test must not depend on its own environment.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let inner = &r[..end];
            if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
                out.push_str(default);
            }
            rest = &r[end + 1..];
        } else {
            panic!("bare $ in {s:?}: write $$ or ${{…}}");
        }
    }
    out.push_str(rest);
    out
}

/// A scalar as Compose would turn it into a string (after interpolation).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => interpolate(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// `environment:` as a map, in either Compose form (mapping or `KEY=VALUE` list).
fn env_of(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().expect("env name").to_string(), scalar(v)))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => panic!("environment must be a mapping or a list: {other:?}"),
    }
}

/// `depends_on:` as target → condition, in either Compose form.
fn depends_on(svc: &Value) -> BTreeMap<String, String> {
    match &svc["depends_on"] {
        Value::Null => BTreeMap::new(),
        Value::Sequence(names) => names
            .iter()
            .map(|n| (scalar(n), "service_started".to_string()))
            .collect(),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let condition = match &v["condition"] {
                    Value::Null => "service_started".to_string(),
                    c => scalar(c),
                };
                (k.as_str().expect("depends_on name").to_string(), condition)
            })
            .collect(),
        other => panic!("depends_on must be a mapping or a list: {other:?}"),
    }
}

#[derive(Debug)]
struct Mount {
    /// `volume` (named), `anonymous` or `bind`.
    kind: &'static str,
    source: String,
    target: String,
}

fn is_host_path(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

/// `volumes:` of a service, short (`src:dst[:mode]`) or long syntax.
fn mounts(svc: &Value) -> Vec<Mount> {
    let Some(items) = svc["volumes"].as_sequence() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::Mapping(_) => {
                let source = scalar(&item["source"]);
                let target = scalar(&item["target"]);
                let kind = match scalar(&item["type"]).as_str() {
                    "bind" => "bind",
                    "volume" if source.is_empty() => "anonymous",
                    "volume" => "volume",
                    other => panic!("unexpected mount type {other:?}"),
                };
                Mount {
                    kind,
                    source,
                    target,
                }
            }
            _ => {
                let spec = scalar(item);
                let parts: Vec<&str> = spec.split(':').collect();
                match parts.as_slice() {
                    [target] => Mount {
                        kind: "anonymous",
                        source: String::new(),
                        target: target.to_string(),
                    },
                    [source, target, ..] => Mount {
                        kind: if is_host_path(source) {
                            "bind"
                        } else {
                            "volume"
                        },
                        source: source.to_string(),
                        target: target.to_string(),
                    },
                    [] => unreachable!(),
                }
            }
        })
        .collect()
}

/// Host ports a service publishes (`None` for a container-only port, which Docker maps to a
/// random host port and so does not stop scaling).
fn published_ports(svc: &Value) -> Vec<(Option<u16>, u16)> {
    let Some(items) = svc["ports"].as_sequence() else {
        return Vec::new();
    };
    let port = |s: &str| -> u16 {
        let s = s.split('/').next().unwrap_or(s);
        s.parse()
            .unwrap_or_else(|_| panic!("port {s:?} is not a single port number"))
    };
    items
        .iter()
        .map(|item| match item {
            Value::Mapping(_) => {
                let published = match &item["published"] {
                    Value::Null => None,
                    p => Some(port(&scalar(p))),
                };
                (published, port(&scalar(&item["target"])))
            }
            _ => {
                let spec = scalar(item);
                let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
                match parts.as_slice() {
                    [container] => (None, port(container)),
                    [container, "", ..] => (None, port(container)),
                    [container, host, ..] => (Some(port(host)), port(container)),
                    [] => unreachable!(),
                }
            }
        })
        .collect()
}

/// The healthcheck's command as one string; `None` when there is none or it is disabled.
fn healthcheck(svc: &Value) -> Option<String> {
    let hc = &svc["healthcheck"];
    if hc.is_null() || hc["disable"].as_bool() == Some(true) {
        return None;
    }
    let test = match &hc["test"] {
        Value::Sequence(items) => {
            let words: Vec<String> = items.iter().map(scalar).collect();
            match words.first().map(String::as_str) {
                Some("NONE") => return None,
                Some("CMD") | Some("CMD-SHELL") => words[1..].join(" "),
                _ => panic!("healthcheck test must start with CMD or CMD-SHELL: {words:?}"),
            }
        }
        Value::String(s) => s.clone(),
        other => panic!("healthcheck without a test: {other:?}"),
    };
    Some(test)
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr:?} is not an address: {e}"))
        .port()
}

/// The services built from this repository (the geobatch image).
fn geobatch_services(doc: &Value) -> Vec<String> {
    services(doc)
        .iter()
        .filter(|(_, svc)| !svc["build"].is_null())
        .map(|(name, _)| name.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn compose_has_the_services_and_no_zookeeper() {
    let doc = compose();
    assert!(
        doc.get("version").is_none(),
        "the Compose Specification has no `version:` key"
    );
    let names = service_names(&doc);
    for required in KAFKA
        .iter()
        .chain(&["postgis", "geobatch", "worker", "prometheus", "grafana"])
    {
        assert!(
            names.contains(*required),
            "no service {required:?}: {names:?}"
        );
    }
    for (name, svc) in services(&doc) {
        let name = name.as_str().unwrap();
        let image = scalar(&svc["image"]);
        assert!(
            !name.contains("zookeeper") && !image.contains("zookeeper"),
            "{name}: no ZooKeeper, the brokers run KRaft"
        );
        assert!(
            env_of(svc).keys().all(|k| !k.contains("ZOOKEEPER")),
            "{name}: a ZooKeeper setting"
        );
        assert!(
            !svc["build"].is_null() || !image.is_empty(),
            "{name}: neither image nor build"
        );
    }
    assert_eq!(
        geobatch_services(&doc),
        ["geobatch", "worker"],
        "the services built from this repository"
    );
    let image = |n: &str| scalar(&service(&doc, n)["image"]);
    assert_eq!(image("postgis"), "postgis/postgis:16-3.4");
    assert!(image("prometheus").starts_with("prom/prometheus"));
    assert!(image("grafana").starts_with("grafana/grafana"));
    assert_eq!(scalar(&service(&doc, "geobatch")["command"][0]), "serve");
    assert_eq!(scalar(&service(&doc, "worker")["command"][0]), "worker");
}

#[test]
fn compose_kafka_is_kraft_with_replication_3_and_min_isr_2() {
    let doc = compose();
    let mut cluster_ids = BTreeSet::new();
    let mut voter_lists = BTreeSet::new();
    for (i, name) in KAFKA.iter().enumerate() {
        let svc = service(&doc, name);
        let id = i + 1;
        let image = scalar(&svc["image"]);
        assert!(
            image.starts_with("apache/kafka:3.") || image.starts_with("apache/kafka:4."),
            "{name}: image {image}"
        );
        let env = env_of(svc);
        let get = |k: &str| {
            env.get(k)
                .unwrap_or_else(|| panic!("{name}: {k} is not set"))
                .as_str()
        };
        let roles: BTreeSet<&str> = get("KAFKA_PROCESS_ROLES").split(',').collect();
        assert_eq!(
            roles,
            BTreeSet::from(["broker", "controller"]),
            "{name}: combined mode"
        );
        assert_eq!(get("KAFKA_NODE_ID"), id.to_string(), "{name}: node id");
        let voters = get("KAFKA_CONTROLLER_QUORUM_VOTERS");
        let parsed: Vec<(String, String)> = voters
            .split(',')
            .map(|v| {
                let (vid, addr) = v.split_once('@').unwrap_or_else(|| panic!("voter {v:?}"));
                (vid.to_string(), addr.to_string())
            })
            .collect();
        let expected: Vec<(String, String)> = (1..=3)
            .map(|n| (n.to_string(), format!("kafka-{n}:9093")))
            .collect();
        assert_eq!(parsed, expected, "{name}: 3 voters, kafka-N:9093");
        voter_lists.insert(voters.to_string());
        let cluster = get("CLUSTER_ID");
        assert!(
            cluster.len() == 22
                && cluster
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}: CLUSTER_ID must be a base64url UUID (22 characters): {cluster:?}"
        );
        cluster_ids.insert(cluster.to_string());

        let listeners: BTreeSet<&str> = get("KAFKA_LISTENERS").split(',').collect();
        assert!(
            listeners.contains("PLAINTEXT://:9092")
                || listeners.contains("PLAINTEXT://0.0.0.0:9092"),
            "{name}: PLAINTEXT on 9092: {listeners:?}"
        );
        assert!(
            listeners.contains("CONTROLLER://:9093")
                || listeners.contains("CONTROLLER://0.0.0.0:9093"),
            "{name}: CONTROLLER on 9093: {listeners:?}"
        );
        assert_eq!(get("KAFKA_CONTROLLER_LISTENER_NAMES"), "CONTROLLER");
        assert_eq!(
            get("KAFKA_ADVERTISED_LISTENERS"),
            format!("PLAINTEXT://{name}:9092")
        );
        let protocols = get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP");
        for l in ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"] {
            assert!(protocols.split(',').any(|p| p == l), "{name}: {l}");
        }
        for (k, v) in [
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
            ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
        ] {
            assert_eq!(get(k), v, "{name}: {k}");
        }
        let hc = healthcheck(svc).unwrap_or_else(|| panic!("{name}: no healthcheck"));
        assert!(
            hc.contains("/opt/kafka/bin/kafka-broker-api-versions.sh")
                && hc.contains("--bootstrap-server localhost:9092"),
            "{name}: healthcheck {hc:?}"
        );
        // The log directory is on the broker's own named volume.
        let log_dir = get("KAFKA_LOG_DIRS");
        let m = mounts(svc);
        assert!(
            m.iter().any(|m| m.kind == "volume" && m.target == log_dir),
            "{name}: {log_dir} must be a named volume: {m:?}"
        );
        assert!(
            published_ports(svc).is_empty(),
            "{name}: the brokers advertise kafka-N:9092, which only the compose network resolves"
        );
    }
    assert_eq!(cluster_ids.len(), 1, "one CLUSTER_ID on all brokers");
    assert_eq!(voter_lists.len(), 1, "the same voters on all brokers");
    let volumes: BTreeSet<String> = KAFKA
        .iter()
        .flat_map(|n| mounts(service(&doc, n)))
        .filter(|m| m.kind == "volume")
        .map(|m| m.source)
        .collect();
    assert_eq!(volumes.len(), 3, "a volume of its own for each broker");
}

#[test]
fn compose_dependencies_exist_and_wait_for_health() {
    let doc = compose();
    let names = service_names(&doc);
    let backends: Vec<&str> = KAFKA.iter().copied().chain(["postgis"]).collect();
    for (name, svc) in services(&doc) {
        let name = name.as_str().unwrap();
        for (target, condition) in depends_on(svc) {
            assert!(
                names.contains(&target),
                "{name} depends on {target:?}, which is no service"
            );
            assert!(
                [
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully"
                ]
                .contains(&condition.as_str()),
                "{name} → {target}: condition {condition:?}"
            );
            if backends.contains(&target.as_str()) {
                assert_eq!(
                    condition, "service_healthy",
                    "{name} must wait until {target} is healthy"
                );
            }
            if condition == "service_healthy" {
                assert!(
                    healthcheck(service(&doc, &target)).is_some(),
                    "{name} waits for {target} to be healthy, but {target} has no healthcheck"
                );
            }
        }
    }
    for svc in ["geobatch", "worker"] {
        let deps = depends_on(service(&doc, svc));
        for b in &backends {
            assert_eq!(
                deps.get(*b).map(String::as_str),
                Some("service_healthy"),
                "{svc} must depend on a healthy {b}"
            );
        }
    }
    assert!(
        depends_on(service(&doc, "worker")).contains_key("geobatch"),
        "worker starts after geobatch"
    );
    let pg = healthcheck(service(&doc, "postgis")).expect("postgis healthcheck");
    assert!(pg.contains("pg_isready"), "postgis healthcheck: {pg}");
    let env = env_of(service(&doc, "postgis"));
    for k in ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"] {
        assert_eq!(
            env.get(k).map(String::as_str),
            Some("geobatch"),
            "postgis {k}"
        );
    }
}

#[test]
fn compose_volumes_are_declared_and_bind_sources_exist() {
    let doc = compose();
    let declared: BTreeSet<String> = doc["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let mut used = BTreeSet::new();
    for (name, svc) in services(&doc) {
        let name = name.as_str().unwrap();
        for m in mounts(svc) {
            match m.kind {
                "volume" => {
                    assert!(
                        declared.contains(&m.source),
                        "{name} mounts volume {:?}, which the top-level volumes: does not declare",
                        m.source
                    );
                    used.insert(m.source);
                }
                "bind" if m.source.starts_with("./deploy/") => assert!(
                    root().join(&m.source).exists(),
                    "{name} mounts {}, which is not in the repository",
                    m.source
                ),
                _ => {}
            }
        }
    }
    let unused: Vec<_> = declared.difference(&used).collect();
    assert!(unused.is_empty(), "declared but never mounted: {unused:?}");
    for n in [
        "postgis-data",
        "geobatch-data",
        "prometheus-data",
        "grafana-data",
    ] {
        assert!(used.contains(n), "volume {n}");
    }
    let serve = mounts(service(&doc, "geobatch"));
    let env = env_of(service(&doc, "geobatch"));
    let data = &env["GEOBATCH_DATA_DIR"];
    let watch = &env["GEOBATCH_WATCH_DIR"];
    assert!(
        serve
            .iter()
            .any(|m| m.kind == "volume" && &m.target == data),
        "geobatch's data dir {data} on a named volume"
    );
    assert!(
        serve
            .iter()
            .any(|m| m.kind == "bind" && m.source == "./watch" && &m.target == watch),
        "./watch bound at the watched folder {watch}"
    );
}

#[test]
fn compose_worker_can_scale() {
    let doc = compose();
    let worker = service(&doc, "worker");
    let fixed: Vec<_> = published_ports(worker)
        .into_iter()
        .filter(|(host, _)| host.is_some())
        .collect();
    assert!(
        fixed.is_empty(),
        "worker publishes fixed host ports {fixed:?}: `--scale worker=N` would collide"
    );
    assert!(
        worker["container_name"].is_null(),
        "a container_name stops `--scale worker=N`"
    );
    let env = env_of(worker);
    assert_eq!(env["GEOBATCH_WORKERS"], "2");
    let serve_env = env_of(service(&doc, "geobatch"));
    assert_eq!(
        serve_env["GEOBATCH_WORKERS"], "0",
        "serve converts nothing itself"
    );
    for k in [
        "GEOBATCH_KAFKA_BROKERS",
        "GEOBATCH_TOPIC_REPLICATION",
        "GEOBATCH_TOPIC_PARTITIONS",
        "DATABASE_URL",
    ] {
        assert_eq!(
            env.get(k),
            serve_env.get(k),
            "worker and serve agree on {k}"
        );
    }
    // The worker's healthcheck probes its metrics port: it has no HTTP API.
    let metrics = port_of(&env["GEOBATCH_METRICS_ADDR"]);
    let hc = healthcheck(worker).expect("worker healthcheck");
    assert!(
        hc.contains(&metrics.to_string()) && hc.contains("/metrics"),
        "worker healthcheck {hc:?}"
    );
}

/// Every `[env: NAME=` marker clap prints in the help of the binary and its subcommands.
fn env_vars_the_binary_reads() -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["worker", "--help"],
        &["convert", "--help"],
        &["broker", "--help"],
    ] {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("GEOBATCH_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        let out = cmd.args(args).output().expect("run geobatch --help");
        assert!(out.status.success(), "geobatch {args:?} failed");
        // Help text may wrap at any space, "[env:" and the name included.
        let text = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for part in text.split("[env: ").skip(1) {
            // `[env: NAME=value]`, or `[env: NAME]` where the value is hidden (secrets).
            let name = part.split(['=', ']']).next().unwrap_or("");
            assert!(
                !name.is_empty() && !name.contains(' '),
                "unreadable env marker: {part:?}"
            );
            known.insert(name.to_string());
        }
    }
    known
}

/// `ENV` settings of a Dockerfile (`ENV K=V K2=V2`, continuation lines joined).
fn dockerfile_env(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (op, args) in instructions {
        if op == "ENV" {
            for pair in args.split_whitespace() {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("write ENV as KEY=VALUE: {args:?}"));
                env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    env
}

#[test]
fn compose_sets_only_variables_the_binary_reads() {
    let known = env_vars_the_binary_reads();
    for must in [
        "GEOBATCH_DATA_DIR",
        "GEOBATCH_KAFKA_BROKERS",
        "GEOBATCH_HTTP_ADDR",
        "GEOBATCH_WATCH_DIR",
        "GEOBATCH_METRICS_ADDR",
    ] {
        assert!(
            known.contains(must),
            "help shows no {must}; found {known:?}"
        );
    }
    let doc = compose();
    let mut checked = Vec::new();
    let mut sources: Vec<(String, BTreeMap<String, String>)> = geobatch_services(&doc)
        .into_iter()
        .map(|n| {
            let env = env_of(service(&doc, &n));
            (format!("docker-compose.yml service {n}"), env)
        })
        .collect();
    sources.push((
        "Dockerfile".to_string(),
        dockerfile_env(&dockerfile_instructions()),
    ));
    for (source, env) in &sources {
        for (k, v) in env {
            if !(k.starts_with("GEOBATCH_") || k == "DATABASE_URL") {
                continue;
            }
            assert!(
                known.contains(k),
                "{source} sets {k}, which geobatch does not read (its --help lists {known:?})"
            );
            if k.ends_with("_ADDR") {
                port_of(v);
            }
            if [
                "GEOBATCH_WORKERS",
                "GEOBATCH_TOPIC_PARTITIONS",
                "GEOBATCH_TOPIC_REPLICATION",
            ]
            .contains(&k.as_str())
            {
                assert!(
                    v.parse::<u32>().is_ok(),
                    "{source}: {k}={v:?} is not a number"
                );
            }
            checked.push(k.clone());
        }
    }
    assert!(checked.len() >= 10, "checked {checked:?}");

    // The values that tie the services together.
    let serve = env_of(service(&doc, "geobatch"));
    assert_eq!(
        serve["GEOBATCH_KAFKA_BROKERS"],
        "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    );
    assert_eq!(serve["GEOBATCH_TOPIC_REPLICATION"], "3");
    assert_eq!(serve["GEOBATCH_TOPIC_PARTITIONS"], "12");
    assert_eq!(
        serve["DATABASE_URL"],
        "postgres://geobatch:geobatch@postgis:5432/geobatch"
    );
    assert_eq!(serve["GEOBATCH_WATCH_DIR"], "/watch");
    assert_eq!(serve["GEOBATCH_DATA_DIR"], "/data");
    let http = port_of(&serve["GEOBATCH_HTTP_ADDR"]);
    assert!(
        serve["GEOBATCH_HTTP_ADDR"].starts_with("0.0.0.0:"),
        "serve listens on all interfaces of its container"
    );
    assert!(
        published_ports(service(&doc, "geobatch")).contains(&(Some(8080), http)),
        "geobatch publishes 8080 to its HTTP port {http}"
    );
    let hc = healthcheck(service(&doc, "geobatch")).expect("geobatch healthcheck");
    assert!(
        hc.contains(&http.to_string()) && hc.contains("/healthz"),
        "geobatch healthcheck {hc:?} probes /healthz on {http}"
    );
    for n in ["geobatch", "worker"] {
        assert_eq!(
            port_of(&env_of(service(&doc, n))["GEOBATCH_METRICS_ADDR"]),
            9100,
            "{n}: metrics on 9100"
        );
    }
}

/// The README's "Production: docker compose" section.
fn readme_compose_section() -> String {
    let readme = read("README.md");
    let start = readme
        .find("\n## Production: docker compose")
        .expect("README has a \"## Production: docker compose\" section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    rest[..end].to_string()
}

#[test]
fn compose_readme_names_every_service_and_port() {
    let doc = compose();
    let section = readme_compose_section();
    for name in service_names(&doc) {
        assert!(
            section.contains(&format!("`{name}`")),
            "the README's compose section does not name service `{name}`"
        );
    }
    for (name, svc) in services(&doc) {
        for (host, _) in published_ports(svc) {
            let host = host.unwrap().to_string();
            assert!(
                section.contains(&host),
                "the README's compose section does not mention port {host} ({name:?})"
            );
        }
    }
    for phrase in [
        "docker compose up -d --build",
        "docker compose up -d --scale worker=4",
        "admin/admin",
        "watch/inbox/",
        "min.insync.replicas=2",
        "acks=all",
    ] {
        assert!(
            section.contains(phrase),
            "the README's compose section does not say {phrase:?}"
        );
    }
    // The variables it tells people to set are the ones compose interpolates.
    let raw = read("docker-compose.yml");
    for var in [
        "EXTERNAL_KAFKA_BROKERS",
        "TOPIC_REPLICATION",
        "EXTERNAL_DATABASE_URL",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        assert!(
            raw.contains(&format!("${{{var}:-")),
            "docker-compose.yml does not interpolate {var}"
        );
        assert!(section.contains(var), "the README does not explain {var}");
    }
}

#[test]
fn compose_prometheus_scrapes_geobatch_and_every_worker() {
    let doc = compose();
    let prom = service(&doc, "prometheus");
    assert!(
        mounts(prom).iter().any(|m| m.kind == "bind"
            && m.source == "./deploy/prometheus/prometheus.yml"
            && m.target == "/etc/prometheus/prometheus.yml"),
        "prometheus mounts deploy/prometheus/prometheus.yml"
    );
    assert!(published_ports(prom).contains(&(Some(9090), 9090)));
    let metrics = |n: &str| port_of(&env_of(service(&doc, n))["GEOBATCH_METRICS_ADDR"]);

    let cfg = yaml("deploy/prometheus/prometheus.yml");
    let jobs = cfg["scrape_configs"].as_sequence().expect("scrape_configs");
    let names = service_names(&doc);
    let mut static_targets = Vec::new();
    let mut dns = Vec::new();
    for job in jobs {
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            for t in sc["targets"].as_sequence().into_iter().flatten() {
                static_targets.push(scalar(t));
            }
        }
        for d in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            dns.push(d.clone());
        }
    }
    for t in &static_targets {
        let host = t.split(':').next().unwrap();
        assert!(names.contains(host), "scrape target {t}: no service {host}");
    }
    assert!(
        static_targets.contains(&format!("geobatch:{}", metrics("geobatch"))),
        "prometheus scrapes geobatch on its metrics port: {static_targets:?}"
    );
    let worker_port = u64::from(metrics("worker"));
    assert!(
        dns.iter().any(|d| {
            d["names"]
                .as_sequence()
                .is_some_and(|n| n.iter().any(|n| scalar(n) == "worker"))
                && scalar(&d["type"]) == "A"
                && d["port"].as_u64() == Some(worker_port)
        }),
        "prometheus finds every worker replica by DNS (names [worker], type A, port {worker_port}): {dns:?}"
    );
}

/// Metric names in a PromQL expression: identifiers that are not functions, aggregators,
/// keywords, label names (in `{…}`, `by (…)`, `on (…)`, …), strings, numbers or durations.
fn promql_metric_names(expr: &str) -> Vec<String> {
    const AGGREGATORS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
    ];
    let b: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_string = |i: &mut usize| {
        let q = b[*i];
        *i += 1;
        while *i < b.len() && b[*i] != q {
            if b[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    let skip_until = |i: &mut usize, close: char| {
        while *i < b.len() && b[*i] != close {
            if matches!(b[*i], '"' | '\'' | '`') {
                skip_string(i);
            } else {
                *i += 1;
            }
        }
        *i += 1;
    };
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < b.len() {
        let c = b[i];
        if matches!(c, '"' | '\'' | '`') {
            skip_string(&mut i);
        } else if c == '{' {
            skip_until(&mut i, '}');
        } else if c == '[' {
            skip_until(&mut i, ']');
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            i += 1;
            while i < b.len() && (ident(b[i]) || b[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let next = b.get(j).copied();
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if next == Some('(') {
                    i = j + 1;
                    skip_until(&mut i, ')');
                }
            } else if AGGREGATORS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str())
                || next == Some('(')
            {
                // a function, an aggregator or a keyword
            } else {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn compose_promql_metric_names_are_found() {
    assert_eq!(
        promql_metric_names(
            "histogram_quantile(0.95, sum by (le) (rate(geobatch_transform_seconds_bucket[5m])))"
        ),
        ["geobatch_transform_seconds_bucket"]
    );
    assert_eq!(
        promql_metric_names(
            "max by (job_id, sheet) (a_done) / on (job_id) max without(x) (b_total)"
        ),
        ["a_done", "b_total"]
    );
    assert_eq!(
        promql_metric_names(r#"sum(rate(foo{x="}", y=~"a|b"}[1m] offset 5m)) > bool 0.5e3"#),
        ["foo"]
    );
}

#[test]
fn compose_grafana_provisions_the_datasource_and_dashboard() {
    let doc = compose();
    let grafana = service(&doc, "grafana");
    assert!(published_ports(grafana).contains(&(Some(3000), 3000)));
    let m = mounts(grafana);
    let bound = |target: &str| -> String {
        m.iter()
            .find(|m| m.kind == "bind" && m.target == target)
            .unwrap_or_else(|| panic!("grafana: nothing bound at {target}: {m:?}"))
            .source
            .clone()
    };
    assert_eq!(
        bound("/etc/grafana/provisioning/datasources"),
        "./deploy/grafana/provisioning/datasources"
    );
    assert_eq!(
        bound("/etc/grafana/provisioning/dashboards"),
        "./deploy/grafana/provisioning/dashboards"
    );

    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let sources = ds["datasources"].as_sequence().expect("datasources");
    let prom = sources
        .iter()
        .find(|d| scalar(&d["uid"]) == "prometheus")
        .expect("a datasource with uid prometheus");
    assert_eq!(scalar(&prom["type"]), "prometheus");
    let url = scalar(&prom["url"]);
    let prom_port = published_ports(service(&doc, "prometheus"))[0].1;
    assert_eq!(
        url,
        format!("http://prometheus:{prom_port}"),
        "the datasource reaches the prometheus service"
    );

    let providers = yaml("deploy/grafana/provisioning/dashboards/geobatch.yml");
    let provider = &providers["providers"][0];
    assert_eq!(scalar(&provider["type"]), "file");
    let path = scalar(&provider["options"]["path"]);
    let source = bound(&path);
    assert_eq!(source, "./deploy/grafana/dashboards");
    let json_path = root().join(&source).join("geobatch.json");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path).expect("deploy/grafana/dashboards/geobatch.json"),
    )
    .expect("the dashboard is JSON");

    let mut exprs = Vec::new();
    let mut uids = Vec::new();
    collect_dashboard(&dashboard, &mut exprs, &mut uids);
    assert!(exprs.len() >= 6, "{exprs:?}");
    assert!(
        uids.iter().all(|u| u == "prometheus"),
        "every panel uses the provisioned datasource (uid prometheus): {uids:?}"
    );
    let allowed: BTreeSet<String> = CONTRACT_METRICS
        .iter()
        .map(|m| m.to_string())
        .chain(CONTRACT_HISTOGRAMS.iter().flat_map(|h| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(move |s| format!("{h}{s}"))
        }))
        .collect();
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = promql_metric_names(e);
        assert!(!names.is_empty(), "expr {e:?} names no metric");
        for n in names {
            assert!(
                allowed.contains(&n),
                "expr {e:?} uses {n}, which is not a metric geobatch exports"
            );
            used.insert(n);
        }
    }
    for needed in [
        "geobatch_rows_converted_total",
        "geobatch_rows_failed_total",
        "geobatch_consumer_lag",
        "geobatch_transform_seconds_bucket",
        "geobatch_jobs",
        "geobatch_sheet_rows_done",
        "geobatch_sheet_rows_total",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    let ids: Vec<u64> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| p["id"].as_u64().expect("panel id"))
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "panel ids are unique"
    );
}

fn collect_dashboard(v: &serde_json::Value, exprs: &mut Vec<String>, uids: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => exprs.push(s.clone()),
                    ("datasource", serde_json::Value::Object(d)) => {
                        uids.push(d.get("uid").and_then(|u| u.as_str()).unwrap_or("").into())
                    }
                    _ => collect_dashboard(v, exprs, uids),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_dashboard(v, exprs, uids);
            }
        }
        _ => {}
    }
}

/// The Dockerfile as (INSTRUCTION, arguments), comments dropped, continuation lines joined.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn compose_dockerfile_builds_in_stages_and_runs_unprivileged() {
    let ins = dockerfile_instructions();
    let stages: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(
        stages.len() >= 2,
        "a multi-stage build: {} FROM",
        stages.len()
    );
    let from = |i: usize| ins[stages[i]].1.clone();
    assert!(
        from(0).starts_with("rust:1-bookworm AS "),
        "build stage: {}",
        from(0)
    );
    let build_stage = from(0).rsplit(' ').next().unwrap().to_string();
    assert_eq!(from(stages.len() - 1), "debian:bookworm-slim");
    let build: Vec<&(String, String)> = ins[stages[0]..stages[1]].iter().collect();
    let runtime: Vec<&(String, String)> = ins[*stages.last().unwrap()..].iter().collect();
    let has = |part: &[&(String, String)], op: &str, needle: &str| {
        part.iter().any(|(o, a)| o == op && a.contains(needle))
    };
    for pkg in ["build-essential", "pkg-config", "zlib1g-dev"] {
        assert!(has(&build, "RUN", pkg), "the build stage installs {pkg}");
    }
    assert!(has(&build, "RUN", "cargo build --release --locked"));
    for pkg in ["ca-certificates", "zlib1g"] {
        assert!(
            has(&runtime, "RUN", pkg),
            "the runtime stage installs {pkg}"
        );
    }
    let user = runtime
        .iter()
        .rev()
        .find(|(o, _)| o == "USER")
        .map(|(_, a)| a.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as root: USER {user}");
    assert!(has(&runtime, "VOLUME", "/data"));
    let one = |op: &str| -> String {
        let found: Vec<_> = runtime.iter().filter(|(o, _)| o == op).collect();
        assert_eq!(found.len(), 1, "one {op} in the runtime stage");
        found[0].1.clone()
    };
    assert_eq!(one("ENTRYPOINT"), r#"["geobatch"]"#);
    assert_eq!(one("CMD"), r#"["serve"]"#);
    let exposed: BTreeSet<&str> = runtime
        .iter()
        .filter(|(o, _)| o == "EXPOSE")
        .flat_map(|(_, a)| a.split_whitespace())
        .collect();
    assert!(
        exposed.contains("8080") && exposed.contains("9100"),
        "EXPOSE {exposed:?}"
    );
    let hc = one("HEALTHCHECK");
    assert!(
        hc.contains("geobatch-healthcheck"),
        "HEALTHCHECK uses the bundled probe: {hc}"
    );

    // Every COPY from the build context exists and is not excluded by .dockerignore; every
    // COPY --from names the build stage; the probe is copied to where the HEALTHCHECK runs it.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_string())
        .collect();
    for needed in [".git", "target", "data"] {
        assert!(
            ignored.iter().any(|l| l == needed),
            ".dockerignore leaves out {needed}"
        );
    }
    let mut probe_copied = false;
    for (op, args) in &ins {
        if op != "COPY" {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        if let Some(stage) = words[0].strip_prefix("--from=") {
            assert_eq!(stage, build_stage, "COPY {args}");
            continue;
        }
        let (dest, sources) = words.split_last().unwrap();
        for src in sources {
            assert!(
                !src.starts_with("--"),
                "COPY {args}: an option this test does not know"
            );
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            let first = src.split('/').next().unwrap();
            assert!(
                !ignored.iter().any(|l| l == first || l == src),
                "COPY {src}: excluded by .dockerignore"
            );
            if *src == "deploy/docker/healthcheck.sh" {
                assert_eq!(*dest, "/usr/local/bin/geobatch-healthcheck");
                probe_copied = true;
            }
        }
    }
    assert!(
        probe_copied,
        "the Dockerfile copies deploy/docker/healthcheck.sh"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root().join("deploy/docker/healthcheck.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "healthcheck.sh must be executable (COPY keeps the mode)"
        );
    }
}

fn probe(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(root().join("deploy/docker/healthcheck.sh"));
    cmd.env_remove("GEOBATCH_HTTP_ADDR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("run healthcheck.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn compose_healthcheck_probe_talks_to_a_live_serve() {
    let dir = tempdir();
    let serve = Serve::start(&dir, &[]);
    let addr = serve.base.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();

    let (ok, err) = probe(&[&port, "/healthz"], &[]);
    assert!(ok, "GET /healthz on {addr}: {err}");
    // With no arguments it takes the port of GEOBATCH_HTTP_ADDR, as in the image.
    let (ok, err) = probe(&[], &[("GEOBATCH_HTTP_ADDR", &format!("0.0.0.0:{port}"))]);
    assert!(ok, "default port from GEOBATCH_HTTP_ADDR: {err}");
    let (ok, err) = probe(&[&port, "/no-such-page"], &[]);
    assert!(!ok, "a 404 is not healthy");
    assert!(err.contains("404"), "says what it got: {err}");

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let (ok, err) = probe(&[&closed_port], &[]);
    assert!(!ok, "nothing listens on {closed_port}, yet healthy: {err}");
}
