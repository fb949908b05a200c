//! Checks of the deployment files under `deploy/`, without Docker or Kubernetes: every YAML
//! document parses; the Compose stack and the Kubernetes manifests have the production
//! topology and are consistent with themselves (labels, selectors, ports, names, secrets);
//! every gateway configuration they ship is accepted by the gateway's own parser with the
//! environment the manifests give it; the Dockerfile and the systemd unit are hardened; the Helm
//! chart's templates read only values that exist and its configuration is accepted; the
//! dashboard and the alert rules name only metrics the gateway exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;
use sso_gateway::config::{ConfigError, ENV_OVERRIDES, Protocol, RedisMode, Settings};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// A value for `${VAR}` and secret references: URL-safe and longer than 16 characters.
const DUMMY: &str = "dummy0123456789abcdef0123";

// --- helpers -------------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// YAML files under deploy/, except Helm templates (Go templates that become YAML only when
/// rendered; see the Helm section).
fn yaml_files() -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&deploy(), &mut all);
    let mut yaml: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "templates"))
        .collect();
    yaml.sort();
    yaml
}

/// Resolves YAML merge keys (`<<`), including merges of mappings that merge others.
fn merge_keys(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            while let Some(merged) = mapping.remove("<<") {
                let sources = match merged {
                    Value::Mapping(m) => vec![m],
                    Value::Sequence(seq) => seq
                        .into_iter()
                        .map(|v| match v {
                            Value::Mapping(m) => m,
                            other => panic!("merge of a non-mapping: {other:?}"),
                        })
                        .collect(),
                    other => panic!("merge of a non-mapping: {other:?}"),
                };
                for source in sources {
                    for (k, v) in source {
                        mapping.entry(k).or_insert(v);
                    }
                }
            }
            for v in mapping.values_mut() {
                merge_keys(v);
            }
        }
        Value::Sequence(seq) => seq.iter_mut().for_each(merge_keys),
        Value::Tagged(t) => merge_keys(&mut t.value),
        _ => {}
    }
}

/// Every non-empty document of a (multi-document) YAML file, merge keys resolved.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let mut value = Value::deserialize(de)
            .unwrap_or_else(|e| panic!("{} document {i} is not valid YAML: {e}", path.display()));
        if value.is_null() {
            continue;
        }
        merge_keys(&mut value);
        docs.push(value);
    }
    docs
}

static NULL: Value = Value::Null;

/// `v["a"]["b"]…` for a dotted path; Null when absent.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| v.get(key).unwrap_or(&NULL))
}

/// A label of an object (label keys contain dots, so not through `at`).
fn label<'a>(object: &'a Value, key: &str) -> &'a Value {
    at(object, "metadata.labels").get(key).unwrap_or(&NULL)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => seq(v).iter().map(text).collect(),
    }
}

fn map_of_strings(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Mapping(m) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                let s = text(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// True when every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = map_of_strings(selector);
    let labels = map_of_strings(labels);
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The value after `flag` in an argument list.
fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// An image reference with a digest, or a tag that names a release (not `latest`, not a bare
/// major version). Distroless publishes no version tags: its repository names the Debian
/// release (`cc-debian13`), the tag follows that release's security updates, and a digest pins
/// it for a reproducible build (see deploy/Dockerfile).
fn is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    if let Some(rest) = image.strip_prefix("gcr.io/distroless/") {
        let (repository, tag) = rest.split_once(':').unwrap_or((rest, ""));
        return repository.rsplit('-').next().is_some_and(|r| r.starts_with("debian") && r.len() > 6)
            && tag == "nonroot";
    }
    let name_end = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_end..].split_once(':') {
        Some((_, tag)) => tag != "latest" && tag.contains('.') && tag.chars().any(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// Every `{ env = "NAME" }` secret reference in a gateway TOML document.
fn env_references(toml_text: &str) -> BTreeSet<String> {
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                if t.len() == 1
                    && let Some(toml::Value::String(name)) = t.get("env")
                {
                    out.insert(name.clone());
                }
                t.values().for_each(|v| walk(v, out));
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let table: toml::Table = toml::from_str(toml_text).expect("gateway TOML parses");
    let mut out = BTreeSet::new();
    walk(&toml::Value::Table(table), &mut out);
    out
}

/// The gateway's parser and validator, with `env` as the process environment would be.
fn gateway_accepts(what: &str, toml_text: &str, env: &BTreeMap<String, String>) -> Settings {
    match Settings::from_toml_with_env(toml_text, env) {
        Ok(s) => s,
        Err(e) => panic!("{what}: the gateway rejects this configuration: {e}"),
    }
}

/// `SSO_GATEWAY_*` variables the gateway reads; anything else with the prefix is a typo.
fn known_gateway_variables() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = ENV_OVERRIDES.iter().map(|(name, _)| name.to_string()).collect();
    known.insert("SSO_GATEWAY_CONFIG".into());
    known.insert("SSO_GATEWAY_LOG_FORMAT".into());
    known
}

fn assert_known_variables(what: &str, names: impl IntoIterator<Item = String>) {
    let known = known_gateway_variables();
    for name in names {
        if name.starts_with("SSO_GATEWAY_") {
            assert!(known.contains(&name), "{what}: {name} is not a variable the gateway reads ({known:?})");
        }
    }
}

// --- every YAML document --------------------------------------------------------------------

#[test]
fn every_yaml_document_under_deploy_parses() {
    let files = yaml_files();
    assert!(files.len() >= 10, "expected the Compose file and the Kubernetes manifests, found {files:?}");
    for file in &files {
        let docs = yaml_documents(file);
        assert!(!docs.is_empty(), "{} has no document", file.display());
        for doc in &docs {
            assert!(doc.is_mapping(), "{}: a document is not a mapping", file.display());
        }
    }
}

// --- Compose --------------------------------------------------------------------------------

/// Compose variable interpolation: `$$`, `$NAME`, `${NAME}`, `${NAME:-x}`, `${NAME-x}`,
/// `${NAME:?x}`, `${NAME?x}`. Records every name used.
fn interpolate(s: &str, vars: &BTreeMap<String, String>, used: &mut BTreeSet<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let expr = &r[..end];
            let name_end =
                expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
            let (name, modifier) = expr.split_at(name_end);
            used.insert(name.to_string());
            let value = vars.get(name).cloned().filter(|v| !v.is_empty());
            out.push_str(&match (value, modifier) {
                (Some(v), _) => v,
                (None, m) if m.starts_with(":-") || m.starts_with('-') => {
                    m.trim_start_matches(':')[1..].into()
                }
                (None, m) => panic!("{name} is not set (modifier {m:?}) in {s:?}"),
            });
            rest = &r[end + 1..];
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..end];
            used.insert(name.to_string());
            out.push_str(vars.get(name).map(String::as_str).unwrap_or(""));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_value(v: &mut Value, vars: &BTreeMap<String, String>, used: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => *s = interpolate(s, vars, used),
        Value::Sequence(items) => items.iter_mut().for_each(|i| interpolate_value(i, vars, used)),
        Value::Mapping(m) => m.values_mut().for_each(|i| interpolate_value(i, vars, used)),
        _ => {}
    }
}

/// Variables documented in deploy/.env.example, each given a dummy value.
fn compose_variables() -> BTreeMap<String, String> {
    read(&deploy().join(".env.example"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| (l.split_once('=').map_or(l, |(k, _)| k).to_string(), DUMMY.to_string()))
        .collect()
}

struct Compose {
    doc: Value,
}

struct Volume {
    source: String,
    target: String,
    read_only: bool,
}

impl Compose {
    fn load() -> Compose {
        let path = deploy().join("docker-compose.yml");
        let mut docs = yaml_documents(&path);
        assert_eq!(docs.len(), 1, "docker-compose.yml is one document");
        let mut doc = docs.remove(0);
        let vars = compose_variables();
        let mut used = BTreeSet::new();
        interpolate_value(&mut doc, &vars, &mut used);
        for name in &used {
            assert!(
                vars.contains_key(name),
                "docker-compose.yml uses ${{{name}}}, not listed in deploy/.env.example"
            );
        }
        Compose { doc }
    }

    fn services(&self) -> Vec<(String, &Value)> {
        let services = at(&self.doc, "services").as_mapping().expect("services");
        services.iter().map(|(k, v)| (text(k), v)).collect()
    }

    fn service(&self, name: &str) -> &Value {
        let v = at(&self.doc, &format!("services.{name}"));
        assert!(v.is_mapping(), "service {name} missing");
        v
    }

    fn named(&self, pred: impl Fn(&str, &Value) -> bool) -> Vec<(String, &Value)> {
        self.services().into_iter().filter(|(n, s)| pred(n, s)).collect()
    }

    fn image_starting(&self, prefix: &str) -> (String, &Value) {
        let found = self.named(|_, s| text(at(s, "image")).starts_with(prefix));
        assert_eq!(found.len(), 1, "expected one service with image {prefix}*");
        found.into_iter().next().unwrap()
    }

    fn gateways(&self) -> Vec<(String, &Value)> {
        self.named(|_, s| strings(at(s, "command")).first().map(String::as_str) == Some("serve"))
    }

    fn legacy(&self) -> Vec<(String, &Value)> {
        self.named(|_, s| text(at(s, "build.target")) == "legacy-idp")
    }

    fn volumes(service: &Value) -> Vec<Volume> {
        seq(at(service, "volumes"))
            .iter()
            .map(|v| {
                let s = text(v);
                let parts: Vec<&str> = s.split(':').collect();
                assert!(parts.len() >= 2, "volume {s:?} needs source:target");
                Volume {
                    source: parts[0].into(),
                    target: parts[1].into(),
                    read_only: parts.get(2).is_some_and(|m| m.split(',').any(|o| o == "ro")),
                }
            })
            .collect()
    }

    /// The host file bind-mounted at `target` (relative to deploy/).
    fn mounted_file(service: &Value, target: &str) -> PathBuf {
        let v = Self::volumes(service)
            .into_iter()
            .find(|v| v.target == target)
            .unwrap_or_else(|| panic!("nothing mounted at {target}"));
        assert!(v.read_only, "{target} must be mounted read-only");
        let path = deploy().join(&v.source);
        assert!(path.is_file(), "{} (mounted at {target}) does not exist", path.display());
        path
    }

    /// Published ports (`[IP:]HOST:CONTAINER`): container port → host IP ("" for all).
    fn published(service: &Value) -> BTreeMap<u16, String> {
        seq(at(service, "ports"))
            .iter()
            .map(|p| {
                let s = text(p);
                let parts: Vec<&str> = s.split(':').collect();
                let container = parts.last().unwrap().split('/').next().unwrap();
                let ip = if parts.len() == 3 { parts[0] } else { "" };
                (container.parse().expect("numeric container port"), ip.to_string())
            })
            .collect()
    }
}

fn assert_hardened(name: &str, service: &Value) {
    assert_eq!(at(service, "read_only").as_bool(), Some(true), "{name}: read_only root filesystem");
    assert!(strings(at(service, "cap_drop")).contains(&"ALL".to_string()), "{name}: cap_drop ALL");
    assert!(
        strings(at(service, "security_opt")).iter().any(|o| o == "no-new-privileges:true"),
        "{name}: no-new-privileges"
    );
    let user = text(at(service, "user"));
    assert!(
        !user.is_empty() && user != "root" && !user.starts_with("0:") && user != "0",
        "{name}: non-root user"
    );
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap_or(0)
}

#[test]
fn compose_stack_has_the_production_topology() {
    let compose = Compose::load();

    // Everything that serves a URL shares the namespace of one service that publishes ports.
    let gateways = compose.gateways();
    assert_eq!(gateways.len(), 2, "two gateway replicas");
    let network_mode = text(at(gateways[0].1, "network_mode"));
    let netns_name = network_mode.strip_prefix("service:").expect("gateways share a network namespace");
    let netns = compose.service(netns_name);
    assert!(is_pinned(&text(at(netns, "image"))));
    let published = Compose::published(netns);
    for (port, host) in &published {
        assert_eq!(host, "127.0.0.1", "port {port} is published on the host's loopback only");
    }

    // Gateways: hardened, distinct listen addresses, health-checked on their own port.
    let mut listens = BTreeSet::new();
    for (name, gw) in &gateways {
        assert_hardened(name, gw);
        assert_eq!(text(at(gw, "network_mode")), network_mode, "{name} in the shared namespace");
        assert_eq!(
            text(at(gw, "image")),
            format!("sso-gateway:{VERSION}"),
            "{name}: image tag = crate version"
        );
        assert_eq!(text(at(gw, "build.target")), "runtime");
        let env = map_of_strings(at(gw, "environment"));
        let listen = env.get("SSO_GATEWAY_LISTEN").cloned().expect("SSO_GATEWAY_LISTEN per replica");
        assert!(
            listen.starts_with("127.0.0.1:"),
            "{name}: replicas are reachable only through the load balancer"
        );
        assert!(listens.insert(listen.clone()), "{name}: listen address {listen} used twice");
        let check = strings(at(gw, "healthcheck.test"));
        assert!(check.iter().any(|a| a.ends_with("/sso-gateway")) && check.contains(&"healthcheck".into()));
        let url = arg_after(&check, "--url").expect("healthcheck --url");
        assert_eq!(port_of(&url), port_of(&listen), "{name}: healthcheck probes its own port");
        for dep in ["redis", "postgres"] {
            assert_eq!(
                text(at(gw, &format!("depends_on.{dep}.condition"))),
                "service_healthy",
                "{name} waits for {dep}"
            );
        }
        assert!(!text(at(gw, "stop_grace_period")).is_empty(), "{name}: grace period for draining");
        assert_eq!(text(at(gw, "restart")), "unless-stopped");
    }

    // Load balancer: active checks on /readyz, both replicas, no stickiness, the issuer port.
    let (lb_name, lb) = compose.image_starting("haproxy:");
    assert_hardened(&lb_name, lb);
    assert_eq!(text(at(lb, "network_mode")), network_mode);
    let haproxy = read(&Compose::mounted_file(lb, "/usr/local/etc/haproxy/haproxy.cfg"));
    let lines: Vec<&str> =
        haproxy.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(lines.contains(&"option httpchk GET /readyz"), "HAProxy checks /readyz");
    let servers: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.starts_with("server "))
        .map(|l| {
            assert!(l.split_whitespace().any(|w| w == "check"), "{l}: health-checked");
            l.split_whitespace().nth(2).unwrap().to_string()
        })
        .collect();
    assert_eq!(servers, listens, "HAProxy balances over exactly the gateway replicas");
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("stick") || l.starts_with("cookie ") || l.starts_with("balance source")),
        "no session stickiness: replicas share state"
    );
    let lb_port = lines
        .iter()
        .filter_map(|l| l.strip_prefix("bind :"))
        .map(|p| p.parse::<u16>().unwrap())
        .next()
        .expect("a public frontend bind :PORT");
    assert!(published.contains_key(&lb_port), "the load balancer's port {lb_port} is published");

    // Redis with AOF and without eviction, on a persistent volume, password-protected.
    let (_, redis) = compose.image_starting("redis:");
    assert!(is_pinned(&text(at(redis, "image"))));
    let command = strings(at(redis, "command"));
    let conf_target = command.iter().find(|a| a.ends_with(".conf")).expect("redis-server CONFIG");
    let conf = read(&Compose::mounted_file(redis, conf_target));
    let directives: BTreeMap<String, String> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect();
    assert_eq!(directives.get("appendonly").map(String::as_str), Some("yes"), "Redis AOF on");
    assert!(
        matches!(directives.get("appendfsync").map(String::as_str), Some("everysec" | "always")),
        "appendfsync everysec or always"
    );
    assert_eq!(directives.get("maxmemory-policy").map(String::as_str), Some("noeviction"));
    let data_dir = directives.get("dir").cloned().unwrap_or_else(|| "/data".into());
    let named_volumes = at(&compose.doc, "volumes").as_mapping().expect("named volumes");
    let redis_volume =
        Compose::volumes(redis).into_iter().find(|v| v.target == data_dir).expect("Redis data volume");
    assert!(named_volumes.contains_key(redis_volume.source.as_str()), "Redis data on a named volume");
    let redis_password = arg_after(&command, "--requirepass").expect("Redis requires a password");
    assert!(strings(at(redis, "healthcheck.test")).iter().any(|a| a.contains("ping")));

    // PostgreSQL on a persistent volume, health-checked.
    let (_, postgres) = compose.image_starting("postgres:");
    assert!(is_pinned(&text(at(postgres, "image"))));
    let pg_env = map_of_strings(at(postgres, "environment"));
    assert!(Compose::volumes(postgres).iter().any(|v| named_volumes.contains_key(v.source.as_str())));
    assert!(strings(at(postgres, "healthcheck.test")).iter().any(|a| a == "pg_isready"));

    // Data stores are on an internal network, with nothing published.
    for (name, svc) in [("redis", redis), ("postgres", postgres)] {
        assert!(Compose::published(svc).is_empty(), "{name} publishes no port");
        for net in strings(at(svc, "networks")) {
            assert_eq!(
                at(&compose.doc, &format!("networks.{net}.internal")).as_bool(),
                Some(true),
                "{name} network"
            );
        }
    }

    // The gateways' URLs point at these very services, with their credentials.
    for (name, gw) in &gateways {
        let env = map_of_strings(at(gw, "environment"));
        let store = url::Url::parse(&env["SSO_GATEWAY_SESSION_STORE"]).unwrap();
        assert_eq!(store.scheme(), "redis");
        assert!(
            compose.services().iter().any(|(n, _)| Some(n.as_str()) == store.host_str()),
            "{name}: Redis host"
        );
        assert_eq!(store.password(), Some(redis_password.as_str()), "{name}: Redis password");
        let db = url::Url::parse(&env["SSO_GATEWAY_ACCOUNTS_URL"]).unwrap();
        assert_eq!(db.scheme(), "postgres");
        assert_eq!(db.host_str(), Some("postgres"));
        assert_eq!(db.username(), pg_env["POSTGRES_USER"], "{name}: database user");
        assert_eq!(db.password(), Some(pg_env["POSTGRES_PASSWORD"].as_str()), "{name}: database password");
        assert_eq!(db.path().trim_start_matches('/'), pg_env["POSTGRES_DB"], "{name}: database name");
    }

    // One-shot key generation writes into the volume the gateways mount read-only.
    let keygen =
        compose.named(|_, s| strings(at(s, "command")).starts_with(&["keys".into(), "generate".into()]));
    assert_eq!(keygen.len(), 1, "a keygen service");
    let (kg_name, kg) = &keygen[0];
    assert_hardened(kg_name, kg);
    assert!(!strings(at(kg, "profiles")).is_empty(), "keygen runs on demand only (profile)");
    let kg_dir = arg_after(&strings(at(kg, "command")), "--dir").unwrap();
    let kg_volume = Compose::volumes(kg).into_iter().find(|v| v.target == kg_dir).expect("keygen volume");
    for (name, gw) in &gateways {
        let v = Compose::volumes(gw).into_iter().find(|v| v.source == kg_volume.source).expect("keys volume");
        assert!(v.read_only && v.target == kg_dir, "{name} mounts the keys read-only at {kg_dir}");
    }

    // Locally built images come from existing Dockerfile stages; other images are pinned.
    let stages = dockerfile().stages.into_iter().map(|s| s.name).collect::<BTreeSet<_>>();
    for (name, svc) in compose.services() {
        let image = text(at(svc, "image"));
        assert!(is_pinned(&image), "{name}: image {image:?} is not pinned to a release");
        if at(svc, "build").is_mapping() {
            assert!(stages.contains(&text(at(svc, "build.target"))), "{name}: unknown build target");
            let context = deploy().join(text(at(svc, "build.context")));
            assert!(context.join(text(at(svc, "build.dockerfile"))).is_file(), "{name}: Dockerfile path");
        }
    }
}

#[test]
fn compose_gateway_config_is_accepted_by_the_gateway() {
    let compose = Compose::load();
    let published = {
        let gw = compose.gateways()[0].1;
        let netns = text(at(gw, "network_mode")).trim_start_matches("service:").to_string();
        Compose::published(compose.service(&netns))
    };
    for (name, gw) in compose.gateways() {
        let config = arg_after(&strings(at(gw, "command")), "--config").expect("serve --config PATH");
        let toml_text = read(&Compose::mounted_file(gw, &config));
        let env = map_of_strings(at(gw, "environment"));
        assert_known_variables(&name, env.keys().cloned());
        for var in env_references(&toml_text) {
            assert!(env.contains_key(&var), "{name}: the config reads {{ env = \"{var}\" }}, not set");
        }
        let settings = gateway_accepts(&name, &toml_text, &env);
        assert_eq!(settings.listen.to_string(), env["SSO_GATEWAY_LISTEN"]);
        assert!(settings.sessions.store.expose().starts_with("redis://"), "{name}: sessions in Redis");
        assert!(settings.accounts.url.expose().starts_with("postgres://"), "{name}: accounts in PostgreSQL");
        assert!(!settings.keys.generate_missing, "{name}: keys are never generated by a replica");
        let keys =
            Compose::volumes(gw).into_iter().find(|v| settings.keys.dir.as_path() == Path::new(&v.target));
        assert!(keys.is_some_and(|v| v.read_only), "{name}: key directory mounted read-only");
        let issuer = url::Url::parse(settings.issuer()).unwrap();
        assert_eq!(issuer.host_str(), Some("127.0.0.1"));
        assert!(published.contains_key(&issuer.port().unwrap()), "{name}: the issuer's port is published");
    }
}

#[test]
fn compose_legacy_systems_match_the_gateway_upstreams() {
    let compose = Compose::load();
    let (gw_name, gw) = compose.gateways().into_iter().next().unwrap();
    let config = arg_after(&strings(at(gw, "command")), "--config").unwrap();
    let settings = gateway_accepts(
        &gw_name,
        &read(&Compose::mounted_file(gw, &config)),
        &map_of_strings(at(gw, "environment")),
    );
    let netns = text(at(gw, "network_mode")).trim_start_matches("service:").to_string();
    let published = Compose::published(compose.service(&netns));

    let legacy = compose.legacy();
    let mut ids = BTreeSet::new();
    for (name, svc) in &legacy {
        assert_hardened(name, svc);
        assert_eq!(text(at(svc, "network_mode")), format!("service:{netns}"));
        assert_eq!(text(at(svc, "stop_signal")), "SIGINT", "{name}: legacy-idp stops on SIGINT");
        let args = strings(at(svc, "command"));
        let file = Compose::mounted_file(svc, &arg_after(&args, "--config").expect("--config"));
        assert!(
            file.starts_with(deploy().join("../config/legacy")),
            "{name}: users file from config/legacy/"
        );
        let listen = arg_after(&args, "--listen").expect("--listen");
        let port = port_of(&listen);
        assert!(published.contains_key(&port), "{name}: port {port} published for the browser");

        let users: toml::Table = toml::from_str(&read(&file)).unwrap();
        let id = users["id"].as_str().unwrap();
        let issuer_path = users.get("issuer_path").and_then(|v| v.as_str()).unwrap_or("/oidc");
        let upstream =
            settings.upstreams.iter().find(|u| u.id == id).unwrap_or_else(|| panic!("no upstream {id}"));
        if users.get("protocol").and_then(|v| v.as_str()) == Some("cas") {
            let server = match &upstream.protocol {
                Protocol::Cas(c) => Some(c.server.clone()),
                _ => None,
            };
            assert_eq!(server, Some(format!("http://127.0.0.1:{port}{issuer_path}")), "{name}: CAS server");
            ids.insert(id.to_string());
            continue;
        }
        let client = &users["clients"].as_array().unwrap()[0];
        let Protocol::Oidc(upstream) = &upstream.protocol else { panic!("{name}: not an OIDC upstream") };
        assert_eq!(upstream.issuer, format!("http://127.0.0.1:{port}{issuer_path}"), "{name}: issuer");
        assert_eq!(upstream.client_id, client["client_id"].as_str().unwrap(), "{name}: client id");
        assert_eq!(
            upstream.client_secret.as_ref().and_then(|s| s.value()),
            client["client_secret"].as_str(),
            "{name}: the gateway's client secret is the one the system registers"
        );
        ids.insert(id.to_string());
    }
    let expected: BTreeSet<String> = ["hcm", "bd", "brvt"].into_iter().map(String::from).collect();
    assert_eq!(ids, expected, "the three former provincial systems");
    assert_eq!(settings.upstreams.len(), 3);
}

// --- Kubernetes -----------------------------------------------------------------------------

struct K8s {
    objects: Vec<(String, Value)>,
}

impl K8s {
    fn load() -> K8s {
        let dir = deploy().join("k8s");
        let mut objects = Vec::new();
        for file in yaml_files().into_iter().filter(|f| f.starts_with(&dir)) {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            for doc in yaml_documents(&file) {
                objects.push((name.clone(), doc));
            }
        }
        K8s { objects }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|(_, o)| text(at(o, "kind")) == kind).map(|(_, o)| o).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected exactly one {kind}");
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|o| text(at(o, "metadata.name")) == name)
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn container(&self) -> &Value {
        let containers = seq(at(self.deployment(), "spec.template.spec.containers"));
        assert_eq!(containers.len(), 1, "one container per pod");
        &containers[0]
    }

    fn pod_labels(&self) -> &Value {
        at(self.deployment(), "spec.template.metadata.labels")
    }

    /// Keys of a Secret (data and stringData).
    fn secret_keys(&self, name: &str) -> BTreeMap<String, String> {
        let secret = self.named("Secret", name);
        let mut keys = map_of_strings(at(secret, "stringData"));
        keys.extend(map_of_strings(at(secret, "data")));
        keys
    }

    fn config_path(&self) -> String {
        let args: Vec<String> = strings(at(self.container(), "command"))
            .into_iter()
            .chain(strings(at(self.container(), "args")))
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("serve"), "the container runs `serve`");
        arg_after(&args, "--config").expect("serve --config PATH")
    }

    fn volume_for_mount(&self, mount_path: &str) -> (&Value, &Value) {
        let mount = seq(at(self.container(), "volumeMounts"))
            .iter()
            .find(|m| text(at(m, "mountPath")) == mount_path)
            .unwrap_or_else(|| panic!("nothing mounted at {mount_path}"));
        let volume = seq(at(self.deployment(), "spec.template.spec.volumes"))
            .iter()
            .find(|v| text(at(v, "name")) == text(at(mount, "name")))
            .expect("volume of the mount");
        (mount, volume)
    }

    /// gateway.toml from the ConfigMap mounted where `serve --config` reads it.
    fn gateway_toml(&self) -> String {
        let path = PathBuf::from(self.config_path());
        let dir = path.parent().unwrap().to_str().unwrap();
        let file = path.file_name().unwrap().to_str().unwrap();
        let (mount, volume) = self.volume_for_mount(dir);
        assert_eq!(at(mount, "readOnly").as_bool(), Some(true));
        let cm_name = text(at(volume, "configMap.name"));
        assert!(!cm_name.is_empty(), "the configuration comes from a ConfigMap");
        let items = seq(at(volume, "configMap.items"));
        let key = items
            .iter()
            .find(|i| text(at(i, "path")) == file)
            .map(|i| text(at(i, "key")))
            .unwrap_or_else(|| file.to_string());
        let toml_text =
            text(at(self.named("ConfigMap", &cm_name), "data").get(key.as_str()).unwrap_or(&NULL));
        assert!(!toml_text.is_empty(), "ConfigMap {cm_name} has no {key}");
        toml_text
    }

    /// The container environment; secretKeyRef values through `secret_value`.
    fn env(&self, secret_value: impl Fn(&str, &str) -> String) -> BTreeMap<String, String> {
        seq(at(self.container(), "env"))
            .iter()
            .map(|e| {
                let name = text(at(e, "name"));
                let value = if at(e, "valueFrom").is_null() {
                    text(at(e, "value"))
                } else {
                    let r = at(e, "valueFrom.secretKeyRef");
                    assert!(r.is_mapping(), "{name}: only secretKeyRef is used");
                    secret_value(&text(at(r, "name")), &text(at(r, "key")))
                };
                (name, value)
            })
            .collect()
    }
}

#[test]
fn kubernetes_manifests_are_complete_and_consistent() {
    let k8s = K8s::load();
    let dir = deploy().join("k8s");

    // kustomization.yaml applies every manifest except the Secret template.
    let kustomization = k8s.one("Kustomization");
    let resources: BTreeSet<String> = strings(at(kustomization, "resources")).into_iter().collect();
    let on_disk: BTreeSet<String> =
        k8s.objects.iter().map(|(f, _)| f.clone()).filter(|f| f != "kustomization.yaml").collect();
    for r in &resources {
        assert!(dir.join(r).is_file(), "kustomization lists missing {r}");
    }
    let not_applied: Vec<&String> = on_disk.difference(&resources).collect();
    assert_eq!(not_applied, vec!["secret.yaml"], "only the Secret template stays out of the kustomization");
    let image = seq(at(kustomization, "images"))
        .iter()
        .find(|i| text(at(i, "name")) == "sso-gateway")
        .expect("kustomization sets the gateway image");
    assert_eq!(text(at(image, "newTag")), VERSION, "image tag = crate version");

    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HTTPRoute",
    ] {
        k8s.one(kind);
    }
    let namespace = text(at(k8s.one("Namespace"), "metadata.name"));
    assert_eq!(text(at(kustomization, "namespace")), namespace);
    assert_eq!(
        text(label(k8s.one("Namespace"), "pod-security.kubernetes.io/enforce")),
        "restricted",
        "Pod Security Admission enforces the restricted profile"
    );
    for (file, object) in &k8s.objects {
        let kind = text(at(object, "kind"));
        if kind == "Kustomization" {
            continue;
        }
        assert!(!text(at(object, "apiVersion")).is_empty(), "{file}: apiVersion");
        assert!(!text(at(object, "metadata.name")).is_empty(), "{file}: metadata.name");
        if kind != "Namespace" {
            assert_eq!(text(at(object, "metadata.namespace")), namespace, "{file}: {kind} namespace");
            assert_eq!(text(label(object, "app.kubernetes.io/part-of")), "sso-gateway", "{file}: labels");
        }
    }

    // Selectors: Deployment, Service, PDB, NetworkPolicy, topology spread all pick the pods.
    let deployment = k8s.deployment();
    assert_eq!(text(at(deployment, "apiVersion")), "apps/v1");
    let pod_labels = k8s.pod_labels();
    let selector = at(deployment, "spec.selector.matchLabels");
    assert!(selects(selector, pod_labels), "Deployment selector matches its pods");
    let service = k8s.one("Service");
    assert!(selects(at(service, "spec.selector"), pod_labels), "Service selects the pods");
    let pdb = k8s.one("PodDisruptionBudget");
    assert_eq!(text(at(pdb, "apiVersion")), "policy/v1");
    assert_eq!(at(pdb, "spec.selector.matchLabels"), selector, "PDB selector = Deployment selector");
    let netpol = k8s.one("NetworkPolicy");
    assert!(
        selects(at(netpol, "spec.podSelector.matchLabels"), pod_labels),
        "NetworkPolicy selects the pods"
    );

    // The HPA owns the replica count.
    let hpa = k8s.one("HorizontalPodAutoscaler");
    assert_eq!(text(at(hpa, "apiVersion")), "autoscaling/v2");
    assert_eq!(text(at(hpa, "spec.scaleTargetRef.kind")), "Deployment");
    assert_eq!(text(at(hpa, "spec.scaleTargetRef.apiVersion")), "apps/v1");
    assert_eq!(text(at(hpa, "spec.scaleTargetRef.name")), text(at(deployment, "metadata.name")));
    let min = at(hpa, "spec.minReplicas").as_u64().expect("minReplicas");
    let max = at(hpa, "spec.maxReplicas").as_u64().expect("maxReplicas");
    assert!(min >= 2 && max >= min, "HPA {min}..{max}: at least two replicas");
    assert!(!seq(at(hpa, "spec.metrics")).is_empty());
    assert!(at(deployment, "spec.replicas").is_null(), "no spec.replicas next to an HPA");
    // Disruptions leave at least one replica serving.
    match (at(pdb, "spec.maxUnavailable").as_u64(), at(pdb, "spec.minAvailable").as_u64()) {
        (Some(n), None) => assert!(n < min, "PDB maxUnavailable {n} < minReplicas {min}"),
        (None, Some(n)) => assert!(n >= 1 && n < min, "PDB minAvailable {n} between 1 and minReplicas"),
        other => panic!("PDB needs one integer maxUnavailable or minAvailable, got {other:?}"),
    }

    // Ports: the Service and the NetworkPolicy use the container's named port; the route
    // sends the issuer's host to the Service.
    let container_ports: BTreeMap<String, u64> = seq(at(k8s.container(), "ports"))
        .iter()
        .map(|p| (text(at(p, "name")), at(p, "containerPort").as_u64().unwrap()))
        .collect();
    let service_port = &seq(at(service, "spec.ports"))[0];
    let target = text(at(service_port, "targetPort"));
    assert!(
        container_ports.contains_key(&target) || container_ports.values().any(|p| p.to_string() == target),
        "Service targetPort {target} is a container port"
    );
    for rule in seq(at(netpol, "spec.ingress")) {
        for p in seq(at(rule, "ports")) {
            assert!(
                container_ports.contains_key(&text(at(p, "port"))),
                "NetworkPolicy admits the container port"
            );
        }
    }
    let egress_ports: BTreeSet<String> = seq(at(netpol, "spec.egress"))
        .iter()
        .flat_map(|r| seq(at(r, "ports")).iter().map(|p| text(at(p, "port"))))
        .collect();
    for port in ["53", "5432", "6379", "443"] {
        assert!(egress_ports.contains(port), "NetworkPolicy lets the gateway reach port {port}");
    }
    let route = k8s.one("HTTPRoute");
    let backends: Vec<&Value> =
        seq(at(route, "spec.rules")).iter().flat_map(|r| seq(at(r, "backendRefs")).iter()).collect();
    assert!(!backends.is_empty());
    for b in backends {
        assert_eq!(text(at(b, "name")), text(at(service, "metadata.name")), "route → Service");
        assert_eq!(at(b, "port"), at(service_port, "port"), "route → Service port");
    }
    let settings = k8s_settings(&k8s);
    let issuer_host = url::Url::parse(settings.issuer()).unwrap().host_str().unwrap().to_string();
    assert!(strings(at(route, "spec.hostnames")).contains(&issuer_host), "route serves the issuer's host");
    assert_eq!(
        settings.listen.port() as u64,
        container_ports["http"],
        "gateway listens on the container port"
    );

    // Objects the pod refers to exist.
    let pod = at(deployment, "spec.template.spec");
    k8s.named("ServiceAccount", &text(at(pod, "serviceAccountName")));
    for volume in seq(at(pod, "volumes")) {
        if let Some(name) = at(volume, "configMap.name").as_str() {
            k8s.named("ConfigMap", name);
        }
        if let Some(name) = at(volume, "secret.secretName").as_str()
            && at(volume, "secret.optional").as_bool() != Some(true)
        {
            k8s.named("Secret", name);
        }
    }
}

/// The ConfigMap's gateway.toml as the gateway would load it, with dummy secret values.
fn k8s_settings(k8s: &K8s) -> Settings {
    let env = k8s.env(|secret, key| {
        let template = k8s.secret_keys(secret);
        let placeholder = template.get(key).unwrap_or_else(|| panic!("Secret {secret} has no key {key}"));
        placeholder.replace("CHANGE-ME", DUMMY)
    });
    gateway_accepts("configmap.yaml", &k8s.gateway_toml(), &env)
}

#[test]
fn kubernetes_deployment_is_hardened_and_probed() {
    let k8s = K8s::load();
    let deployment = k8s.deployment();
    let pod = at(deployment, "spec.template.spec");
    let container = k8s.container();

    assert_eq!(
        text(at(container, "image")),
        format!("sso-gateway:{VERSION}"),
        "kustomization maps this name"
    );
    assert_eq!(at(pod, "automountServiceAccountToken").as_bool(), Some(false));
    assert_eq!(at(pod, "securityContext.runAsNonRoot").as_bool(), Some(true));
    assert!(at(pod, "securityContext.runAsUser").as_u64().is_some_and(|u| u != 0), "non-root UID");
    assert_eq!(text(at(pod, "securityContext.seccompProfile.type")), "RuntimeDefault");
    assert_eq!(at(container, "securityContext.allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(at(container, "securityContext.readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(strings(at(container, "securityContext.capabilities.drop")), vec!["ALL".to_string()]);

    let port_names: BTreeSet<String> =
        seq(at(container, "ports")).iter().map(|p| text(at(p, "name"))).collect();
    for (probe, path) in
        [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")]
    {
        assert_eq!(text(at(container, &format!("{probe}.httpGet.path"))), path, "{probe}");
        assert!(port_names.contains(&text(at(container, &format!("{probe}.httpGet.port")))), "{probe} port");
    }
    for resource in ["requests.cpu", "requests.memory", "limits.memory"] {
        assert!(!text(at(container, &format!("resources.{resource}"))).is_empty(), "resources.{resource}");
    }

    // Graceful termination: endpoints drop the pod during preStop, then SIGTERM drains
    // (requests are bounded by the gateway's 30 s timeout) within the grace period.
    let pre_stop = at(container, "lifecycle.preStop.sleep.seconds").as_u64().expect("preStop sleep");
    let grace = at(pod, "terminationGracePeriodSeconds").as_u64().expect("terminationGracePeriodSeconds");
    assert!(grace >= pre_stop + 30, "grace {grace}s < preStop {pre_stop}s + 30s drain");
    assert_eq!(text(at(deployment, "spec.strategy.rollingUpdate.maxUnavailable")), "0");

    let spread = seq(at(pod, "topologySpreadConstraints"));
    let keys: BTreeSet<String> = spread.iter().map(|c| text(at(c, "topologyKey"))).collect();
    assert!(keys.contains("kubernetes.io/hostname") && keys.contains("topology.kubernetes.io/zone"));
    for c in spread {
        assert!(
            selects(at(c, "labelSelector.matchLabels"), k8s.pod_labels()),
            "spread counts the gateway pods"
        );
    }

    // Keys: the Secret, read-only, at keys.dir; owner-only files.
    let settings = k8s_settings(&k8s);
    let (mount, volume) = k8s.volume_for_mount(settings.keys.dir.to_str().unwrap());
    assert_eq!(at(mount, "readOnly").as_bool(), Some(true));
    assert_eq!(text(at(volume, "secret.secretName")), "sso-gateway-keys");
    let mode = at(volume, "secret.defaultMode").as_u64().expect("defaultMode");
    assert_eq!(mode & 0o077 & !0o040, 0, "key files readable by owner (and fsGroup) only: {mode:o}");
    assert!(!settings.keys.generate_missing);
    let keys_secret = k8s.named("Secret", "sso-gateway-keys");
    assert!(map_of_strings(at(keys_secret, "data")).is_empty(), "no private key is committed");
}

#[test]
fn kubernetes_configmap_is_accepted_by_the_gateway_and_holds_no_secret() {
    let k8s = K8s::load();
    let toml_text = k8s.gateway_toml();
    let settings = k8s_settings(&k8s);
    assert!(settings.issuer().starts_with("https://"), "production issuer is https");
    assert!(settings.tls.is_none(), "TLS terminates at the cluster's Gateway");
    assert!(
        settings.sessions.store.expose().starts_with("redis://")
            || settings.sessions.store.expose().starts_with("rediss://")
    );
    assert_ne!(settings.sessions.redis.mode, RedisMode::Single, "Redis with its own HA");
    assert!(settings.accounts.url.expose().starts_with("postgres://"));
    assert_eq!(settings.upstreams.len(), 3);

    // Nothing secret in the ConfigMap: URLs with passwords and client secrets come from the
    // environment, which comes from Secrets.
    let table: toml::Table = toml::from_str(&toml_text).unwrap();
    assert!(table.get("accounts").and_then(|a| a.get("url")).is_none(), "accounts.url only from the Secret");
    assert!(
        table.get("sessions").and_then(|s| s.get("store")).is_none(),
        "sessions.store only from the Secret"
    );
    for node in &settings.sessions.redis.nodes {
        assert!(!node.expose().contains('@'), "no credentials in sessions.redis.nodes");
    }
    for section in ["upstreams", "clients"] {
        for item in table.get(section).and_then(|v| v.as_array()).into_iter().flatten() {
            if let Some(secret) = item.get("client_secret") {
                assert!(
                    secret.is_table(),
                    "{section}: client_secret must be {{ env = … }} or {{ file = … }}"
                );
            }
        }
    }
    for (_, cm) in k8s.objects.iter().filter(|(_, o)| text(at(o, "kind")) == "ConfigMap") {
        for (key, value) in map_of_strings(at(cm, "data")) {
            assert!(!value.contains("PRIVATE KEY"), "ConfigMap key {key} holds a private key");
        }
    }

    let env = k8s.env(|_, _| DUMMY.to_string());
    assert_known_variables("deployment.yaml", env.keys().cloned());
    let references = env_references(&toml_text);
    for var in &references {
        assert!(env.contains_key(var), "the config reads {{ env = \"{var}\" }}, not set in the Deployment");
    }
    for e in seq(at(k8s.container(), "env")) {
        let name = text(at(e, "name"));
        let sensitive = references.contains(&name)
            || name == "SSO_GATEWAY_ACCOUNTS_URL"
            || name == "SSO_GATEWAY_SESSION_STORE";
        if sensitive {
            assert!(at(e, "valueFrom.secretKeyRef").is_mapping(), "{name} must come from a Secret");
        }
    }
    // Every algorithm a client signs with needs a key in the keys Secret.
    let algs: Vec<String> = settings.algorithms_in_use().iter().map(|a| format!("{a:?}")).collect();
    let secret_doc = read(&deploy().join("k8s/secret.yaml"));
    for alg in algs {
        assert!(
            secret_doc.contains(&format!("--alg {alg}")),
            "secret.yaml explains how to make the {alg} key"
        );
    }
}

#[test]
fn kubernetes_secret_placeholders_fail_closed() {
    // The template's values, applied by mistake, must not give a working gateway with
    // secrets that are public in this repository.
    let k8s = K8s::load();
    let env = k8s.env(|secret, key| k8s.secret_keys(secret).get(key).cloned().unwrap_or_default());
    match Settings::from_toml_with_env(&k8s.gateway_toml(), &env) {
        Ok(_) => panic!("the gateway accepts the placeholder secrets of secret.yaml"),
        Err(ConfigError::Invalid(problems)) => {
            assert!(
                problems.iter().any(|p| p.path.starts_with("clients[") && p.path.ends_with("client_secret")),
                "{problems:?}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

// --- Dockerfile -----------------------------------------------------------------------------

struct Stage {
    name: String,
    image: String,
    instructions: Vec<(String, String)>,
}

struct Dockerfile {
    stages: Vec<Stage>,
}

fn dockerfile() -> Dockerfile {
    let raw = read(&deploy().join("Dockerfile"));
    // Join continuation lines; drop comments and blank lines.
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in raw.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical.into_iter().filter(|l| !l.is_empty()) {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        if instruction == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let mut image = words[0].to_string();
            for (k, v) in &args {
                image = image.replace(&format!("${{{k}}}"), v);
            }
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => format!("#{}", stages.len()),
            };
            stages.push(Stage { name, image, instructions: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((instruction, rest));
        } else if instruction == "ARG" {
            let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
            args.insert(k.to_string(), v.to_string());
        }
    }
    Dockerfile { stages }
}

impl Stage {
    fn all(&self, instruction: &str) -> Vec<&str> {
        self.instructions.iter().filter(|(i, _)| i == instruction).map(|(_, r)| r.as_str()).collect()
    }
    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last().copied()
    }
}

#[test]
fn dockerfile_builds_a_small_non_root_image() {
    let file = dockerfile();
    assert!(file.stages.len() >= 2, "multi-stage build");
    for stage in &file.stages {
        assert!(is_pinned(&stage.image), "stage {}: base image {} is not pinned", stage.name, stage.image);
    }

    let build = &file.stages[0];
    assert!(build.image.starts_with("rust:"), "build stage uses the Rust image");
    let rust_version =
        toml::from_str::<toml::Table>(&read(&repo().join("Cargo.toml"))).unwrap()["package"]["rust-version"]
            .as_str()
            .unwrap()
            .to_string();
    let version_of = |v: &str| -> Vec<u32> { v.split('.').take(2).filter_map(|p| p.parse().ok()).collect() };
    let image_version = build.image.split(':').nth(1).unwrap().split('-').next().unwrap();
    assert!(version_of(image_version) >= version_of(&rust_version), "Rust {image_version} < rust-version");
    let run = build.all("RUN").join(" ");
    assert!(run.contains("cargo build") && run.contains("--release") && run.contains("--locked"));

    // The build context holds what the build stage copies (BuildKit's per-Dockerfile ignore).
    let ignore = read(&deploy().join("Dockerfile.dockerignore"));
    let ignore: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(ignore.first(), Some(&"*"), "the context excludes everything by default (keys, data, target)");
    for copy in build.all("COPY") {
        let words: Vec<&str> = copy.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        for source in &words[..words.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(
                ignore.contains(&format!("!{source}").as_str())
                    || ignore.contains(&format!("!{source}/").as_str()),
                "{source} is copied but not in the build context"
            );
            assert!(repo().join(source).exists(), "{source} does not exist");
        }
    }

    let runtime = file.stages.last().unwrap();
    assert!(!runtime.image.starts_with("rust:"), "runtime image is not the toolchain");
    assert!(
        ["distroless", "alpine", "scratch", "chainguard"].iter().any(|small| runtime.image.contains(small)),
        "runtime image {} is a minimal base",
        runtime.image
    );
    let user = runtime.last("USER").expect("USER in the runtime stage");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "runtime USER {user} is not root");
    let healthcheck = runtime.last("HEALTHCHECK").expect("HEALTHCHECK");
    assert!(healthcheck.contains("sso-gateway") && healthcheck.contains("healthcheck"));
    let entrypoint = runtime.last("ENTRYPOINT").expect("ENTRYPOINT");
    assert!(entrypoint.contains("/sso-gateway\""), "{entrypoint}");
    assert!(runtime.all("EXPOSE").contains(&"8080"));
    assert!(runtime.last("STOPSIGNAL") == Some("SIGTERM"));
    let copies = runtime.all("COPY").join("\n");
    assert!(
        copies.contains("--from=build") && !copies.contains("legacy-idp"),
        "only the gateway in the runtime image"
    );
    assert!(runtime.last("CMD").is_some_and(|c| c.contains("\"serve\"")));
    assert!(file.stages.iter().any(|s| s.name == "legacy-idp"), "a legacy-idp stage for the Compose stack");
}

/// The product carries no tooling: the simulators reach the gateway only through the `demo`
/// feature (which the image build leaves off) or as a test dependency, and the benchmark's load
/// generator is no dependency of the gateway at all.
#[test]
fn the_production_build_has_no_simulator_and_no_bench_dependency() {
    let manifest: toml::Table = toml::from_str(&read(&repo().join("Cargo.toml"))).unwrap();
    let deps = manifest["dependencies"].as_table().unwrap();
    for bench_only in ["hyper", "hyper-util", "http-body-util"] {
        assert!(!deps.contains_key(bench_only), "{bench_only} is a dependency of the gateway");
    }
    assert_eq!(deps["legacy-idp"].get("optional").and_then(toml::Value::as_bool), Some(true));
    let features = manifest["features"].as_table().unwrap();
    // The demo feature turns on only optional dependencies: the simulators and what the demo
    // alone uses (rcgen, for the demo's certificate authority).
    let demo: Vec<&str> =
        features["demo"].as_array().unwrap().iter().filter_map(toml::Value::as_str).collect();
    assert!(demo.contains(&"dep:legacy-idp"), "{demo:?}");
    for entry in &demo {
        let dep =
            entry.strip_prefix("dep:").unwrap_or_else(|| panic!("{entry} is not an optional dependency"));
        assert_eq!(deps[dep].get("optional").and_then(toml::Value::as_bool), Some(true), "{dep}");
    }
    assert!(manifest["dev-dependencies"].as_table().unwrap().contains_key("legacy-idp"));

    let run = dockerfile().stages[0].all("RUN").join(" ");
    let gateway_build = run.split("&&").find(|c| c.contains("--bin sso-gateway")).unwrap();
    assert!(gateway_build.contains("--no-default-features"), "{gateway_build}");
}

// --- systemd --------------------------------------------------------------------------------

fn unit_sections(path: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in read(path).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{}: bad line {line:?}", path.display()));
        assert!(!current.is_empty(), "{line} outside a section");
        sections.entry(current.clone()).or_default().push((k.trim().into(), v.trim().into()));
    }
    sections
}

#[test]
fn systemd_unit_is_hardened() {
    let dir = deploy().join("systemd");
    let sections = unit_sections(&dir.join("sso-gateway.service"));
    let service = &sections["Service"];
    let get = |key: &str| -> Vec<&str> {
        service.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    };
    let one = |key: &str| -> &str {
        let values = get(key);
        assert!(!values.is_empty(), "[Service] {key}= missing");
        values[values.len() - 1]
    };

    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert!(exec[0].starts_with('/') && exec[0].ends_with("/sso-gateway"), "ExecStart runs the binary");
    assert_eq!(exec.get(1), Some(&"serve"));
    assert!(exec.contains(&"--config"));
    match get("DynamicUser").last() {
        Some(&"yes") => {}
        _ => {
            let user = one("User");
            assert!(!user.is_empty() && user != "root" && user != "0", "a dedicated user");
            let sysusers = read(&dir.join("sso-gateway.sysusers"));
            assert!(
                sysusers.lines().any(|l| l.split_whitespace().take(2).eq(["u", user])),
                "sso-gateway.sysusers creates {user}"
            );
        }
    }
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(one(key), value, "[Service] {key}");
    }
    assert!(get("SystemCallFilter").contains(&"@system-service"));
    assert!(!one("TimeoutStopSec").is_empty());
    assert!(sections["Install"].iter().any(|(k, v)| k == "WantedBy" && v == "multi-user.target"));

    // The environment file template names the variables the gateway reads, and every secret
    // the Kubernetes Deployment passes (same configuration on VMs and in the cluster).
    assert!(one("EnvironmentFile").starts_with("/etc/sso-gateway/"));
    let example = read(&dir.join("gateway.env.example"));
    let names: BTreeSet<String> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').expect("NAME=value").0.to_string())
        .collect();
    assert_known_variables("gateway.env.example", names.iter().cloned());
    let k8s = K8s::load();
    for e in seq(at(k8s.container(), "env")) {
        if at(e, "valueFrom.secretKeyRef").is_mapping() {
            assert!(
                names.contains(&text(at(e, "name"))),
                "gateway.env.example lacks {}",
                text(at(e, "name"))
            );
        }
    }
}

// --- README ---------------------------------------------------------------------------------

#[test]
fn readme_documents_production_deployment() {
    let readme = read(&repo().join("README.md"));
    let section =
        readme.split("\n## Production deployment").nth(1).expect("README section \"Production deployment\"");
    let section = section.split("\n## ").next().unwrap();
    for needle in
        ["BENCHMARKS.md", "appendonly", "appendfsync", "noeviction", "/readyz", "/healthz", "deploy/"]
    {
        assert!(section.contains(needle), "the production section mentions {needle}");
    }
}

// --- Helm chart -------------------------------------------------------------------------------
//
// `helm` is not packaged for Debian, so the chart is not rendered here. What is checked instead:
// Chart.yaml and values.yaml parse; every template's actions are balanced and read only values
// and helpers that exist; the templates declare the objects of the plain manifests with the
// same probes, sizing and hardening; and values.gatewayToml (which the ConfigMap carries
// verbatim) is accepted by the gateway with the environment the chart gives it.

fn chart() -> PathBuf {
    deploy().join("helm/sso-gateway")
}

fn chart_values() -> Value {
    let docs = yaml_documents(&chart().join("values.yaml"));
    assert_eq!(docs.len(), 1, "values.yaml is one document");
    docs.into_iter().next().unwrap()
}

/// (file name, text) of every template, helpers and notes included.
fn chart_templates() -> Vec<(String, String)> {
    let mut files = Vec::new();
    files_under(&chart().join("templates"), &mut files);
    files.sort();
    files.iter().map(|f| (f.file_name().unwrap().to_string_lossy().into_owned(), read(f))).collect()
}

/// The inside of every `{{ … }}` action, without the trim markers and comments.
fn template_actions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or_else(|| panic!("unclosed {{{{ in {rest}"));
        let action = after[..end].trim_start_matches('-').trim_end_matches('-').trim();
        if !action.starts_with("/*") {
            out.push(action.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// `.Values.a.b` paths an action reads (also through `$.Values`).
fn values_paths(action: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = action;
    while let Some(i) = rest.find(".Values.") {
        let tail = &rest[i + ".Values.".len()..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].trim_end_matches('.').split('.').map(str::to_string).collect());
        rest = &tail[end..];
    }
    out
}

#[test]
fn helm_chart_follows_the_gateway_version() {
    let docs = yaml_documents(&chart().join("Chart.yaml"));
    let meta = &docs[0];
    assert_eq!(text(at(meta, "apiVersion")), "v2", "Helm 3 chart");
    assert_eq!(text(at(meta, "name")), "sso-gateway");
    assert_eq!(text(at(meta, "version")), VERSION, "chart version = crate version");
    assert_eq!(text(at(meta, "appVersion")), VERSION, "appVersion = crate version (the default image tag)");
    assert!(text(at(meta, "kubeVersion")).contains("1.30"), "preStop sleep needs Kubernetes 1.30+");
}

#[test]
fn helm_templates_are_balanced_and_read_only_values_and_helpers_that_exist() {
    let values = chart_values();
    let templates = chart_templates();
    assert!(templates.len() >= 9, "{:?}", templates.iter().map(|t| &t.0).collect::<Vec<_>>());
    let mut defined = BTreeSet::new();
    let mut included = BTreeSet::new();
    let mut read_values = BTreeSet::new();
    for (file, body) in &templates {
        let mut depth = 0i32;
        for action in template_actions(body) {
            let word = action.split_whitespace().next().unwrap_or("");
            match word {
                "if" | "with" | "range" | "define" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{file}: {{{{ end }}}} without a block");
            if word == "define" {
                defined.insert(action.split('"').nth(1).unwrap().to_string());
            }
            for part in action.split("include \"").skip(1) {
                included.insert(part.split('"').next().unwrap().to_string());
            }
            for path in values_paths(&action) {
                let found = path.iter().fold(&values, |v, key| v.get(key.as_str()).unwrap_or(&NULL));
                assert!(
                    !found.is_null() || is_declared_empty(&values, &path),
                    "{file}: .Values.{} is not in values.yaml",
                    path.join(".")
                );
                read_values.insert(path.join("."));
            }
        }
        assert_eq!(depth, 0, "{file}: unbalanced if/with/range/define");
    }
    for name in &included {
        assert!(defined.contains(name), "include {name:?} is not defined in _helpers.tpl");
    }
    // Every top-level value is read by some template (a value nothing reads misleads).
    for key in values.as_mapping().unwrap().keys() {
        let key = text(key);
        assert!(
            read_values.iter().any(|p| p == &key || p.starts_with(&format!("{key}."))),
            "values.{key} is read by no template"
        );
    }
}

/// A key present in values.yaml with an empty value (`""`, `[]`, `{}`): declared, just empty.
fn is_declared_empty(values: &Value, path: &[String]) -> bool {
    let (last, parents) = path.split_last().unwrap();
    let parent = parents.iter().fold(values, |v, key| v.get(key.as_str()).unwrap_or(&NULL));
    parent.as_mapping().is_some_and(|m| m.contains_key(last.as_str()))
}

#[test]
fn helm_chart_has_the_objects_probes_and_sizing_of_the_plain_manifests() {
    let values = chart_values();
    let templates = chart_templates();
    let kinds: BTreeSet<String> = templates
        .iter()
        .flat_map(|(_, body)| {
            body.lines().filter_map(|l| l.strip_prefix("kind: ")).map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PodMonitor",
    ] {
        assert!(kinds.contains(kind), "the chart declares a {kind}");
    }
    for (file, body) in templates.iter().filter(|(f, _)| f.ends_with(".yaml")) {
        assert!(body.contains("namespace: {{ .Release.Namespace }}"), "{file}: namespaced to the release");
        assert!(body.contains("include \"sso-gateway.labels\""), "{file}: common labels");
    }
    let deployment = &templates.iter().find(|(f, _)| f == "deployment.yaml").unwrap().1;

    // Health probes: the gateway's real endpoints, readiness on /readyz, the rest on /healthz.
    let app = read(&repo().join("src/app.rs"));
    for (probe, path) in [("startup", "/healthz"), ("readiness", "/readyz"), ("liveness", "/healthz")] {
        assert_eq!(text(at(&values, &format!("probes.{probe}.path"))), path, "{probe} probe");
        assert!(app.contains(&format!(".route(\"{path}\"")), "the gateway serves {path}");
        assert!(
            deployment.contains(&format!("path: {{{{ .Values.probes.{probe}.path }}}}")),
            "{probe}Probe uses it"
        );
    }

    // Sizing and capacity as in the plain manifests (which follow BENCHMARKS.md).
    let k8s = K8s::load();
    assert_eq!(at(&values, "resources"), at(k8s.container(), "resources"), "resources = deploy/k8s");
    let hpa = k8s.one("HorizontalPodAutoscaler");
    assert_eq!(at(&values, "autoscaling.minReplicas"), at(hpa, "spec.minReplicas"));
    assert_eq!(at(&values, "autoscaling.maxReplicas"), at(hpa, "spec.maxReplicas"));
    assert_eq!(
        at(&values, "podDisruptionBudget.maxUnavailable"),
        at(k8s.one("PodDisruptionBudget"), "spec.maxUnavailable")
    );
    let min = at(&values, "autoscaling.minReplicas").as_u64().unwrap();
    assert!(at(&values, "podDisruptionBudget.maxUnavailable").as_u64().unwrap() < min);
    let grace = at(&values, "terminationGracePeriodSeconds").as_u64().unwrap();
    assert!(grace >= at(&values, "preStopSleepSeconds").as_u64().unwrap() + 30, "preStop + 30 s drain fit");

    // Hardening copied from the plain Deployment.
    for needle in [
        "automountServiceAccountToken: false",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [ALL]",
        "type: RuntimeDefault",
        "maxUnavailable: 0",
        "checksum/config: {{ .Values.gatewayToml | sha256sum }}",
    ] {
        assert!(deployment.contains(needle), "deployment.yaml: {needle}");
    }
    assert!(
        deployment.contains("{{- if not .Values.autoscaling.enabled }}\n  replicas:"),
        "no spec.replicas next to the HPA"
    );
}

#[test]
fn helm_gateway_config_is_accepted_with_the_charts_environment_and_holds_no_secret() {
    let values = chart_values();
    let toml_text = text(at(&values, "gatewayToml"));
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in seq(at(&values, "secretEnv")) {
        let name = text(at(e, "name"));
        assert!(!text(at(e, "key")).is_empty(), "{name}: a Secret key");
        let value = match name.as_str() {
            "SSO_GATEWAY_ACCOUNTS_URL" => format!("postgres://sso:{DUMMY}@db.sso-data:5432/sso"),
            "SSO_GATEWAY_SESSION_STORE" => format!("redis://:{DUMMY}@redis.sso-data:6379"),
            _ => DUMMY.to_string(),
        };
        env.insert(name, value);
    }
    assert!(env.contains_key("SSO_GATEWAY_ACCOUNTS_URL") && env.contains_key("SSO_GATEWAY_SESSION_STORE"));
    assert_known_variables("values.yaml secretEnv", env.keys().cloned());
    for var in env_references(&toml_text) {
        assert!(env.contains_key(&var), "gatewayToml reads {{ env = \"{var}\" }}, not in secretEnv");
    }
    let settings = gateway_accepts("values.yaml gatewayToml", &toml_text, &env);
    assert!(settings.issuer().starts_with("https://"));
    assert_eq!(settings.listen.port(), 8080, "the container port named http");
    let management = settings.management.listen.expect("[management] listen: /metrics for the dashboard");
    assert_eq!(Some(management.port() as u64), at(&values, "metrics.port").as_u64(), "metrics.port");
    assert_eq!(settings.keys.dir, PathBuf::from("/etc/sso-gateway/keys"), "where the keys Secret is mounted");
    assert!(!settings.keys.generate_missing);
    let mode = format!("{:?}", settings.sessions.redis.mode).to_lowercase();
    assert_eq!(mode, text(at(&values, "redis.mode")), "values.redis.mode agrees with [sessions.redis] mode");
    assert_ne!(settings.sessions.redis.mode, RedisMode::Single, "Redis with its own HA by default");
    let kinds: BTreeSet<&str> = settings.upstreams.iter().map(|u| u.kind().as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["cas", "ldap", "oidc"]), "an example of every upstream kind");

    let table: toml::Table = toml::from_str(&toml_text).unwrap();
    assert!(table.get("accounts").and_then(|a| a.get("url")).is_none(), "accounts.url only from the Secret");
    assert!(
        table.get("sessions").and_then(|s| s.get("store")).is_none(),
        "sessions.store only from the Secret"
    );
    for section in ["upstreams", "clients"] {
        for item in table.get(section).and_then(|v| v.as_array()).into_iter().flatten() {
            for key in ["client_secret", "bind_password"] {
                let value = item.get(key).or_else(|| item.get("ldap").and_then(|l| l.get(key)));
                if let Some(secret) = value {
                    assert!(secret.is_table(), "{section}: {key} must be {{ env = … }} or {{ file = … }}");
                }
            }
        }
    }
    // The documented Sentinel alternative is a configuration the gateway accepts.
    let raw = read(&chart().join("values.yaml"));
    let sentinel: String = raw
        .lines()
        .skip_while(|l| !l.contains("mode = \"sentinel\""))
        .take_while(|l| l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| l.trim_start().trim_start_matches('#').split(" # ").next().unwrap().to_string() + "\n")
        .collect();
    assert!(sentinel.contains("sentinel_master"), "values.yaml documents Sentinel: {sentinel}");
    let with_sentinel = toml_text.replace(
        "[sessions.redis]\nmode = \"cluster\"\nnodes = []\n",
        &format!("[sessions.redis]\n{sentinel}"),
    );
    assert_ne!(with_sentinel, toml_text);
    for var in env_references(&with_sentinel) {
        env.entry(var.clone()).or_insert_with(|| format!("redis://:{DUMMY}@sentinel.sso-data:26379"));
    }
    let s = gateway_accepts("values.yaml Sentinel example", &with_sentinel, &env);
    assert_eq!(s.sessions.redis.mode, RedisMode::Sentinel);
}

// --- Grafana dashboard and Prometheus alert rules ---------------------------------------------

/// Metric names the gateway records (`metrics::counter!("…"` and friends anywhere in src/),
/// histograms also under their `_bucket`, `_sum` and `_count` series.
fn exported_metrics() -> BTreeSet<String> {
    let mut files = Vec::new();
    files_under(&repo().join("src"), &mut files);
    let mut names = BTreeSet::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let source = read(file);
        for kind in ["counter", "gauge", "histogram"] {
            for part in source.split(&format!("metrics::{kind}!(")).skip(1) {
                let Some(name) = part.trim_start().strip_prefix('"').and_then(|p| p.split('"').next()) else {
                    continue;
                };
                names.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        }
    }
    names
}

/// Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges
/// and grouping clauses that are not functions, keywords or numbers.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    const WORDS: [&str; 28] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "clamp_min",
        "clamp_max",
        "by",
        "without",
        "and",
        "or",
        "unless",
        "offset",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "abs",
        "topk",
        "bottomk",
        "label_values",
        "vector",
        "time",
    ];
    // Drop strings, {…} matchers, […] ranges and (…) after by/without/on/ignoring.
    let mut cleaned = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for d in chars.by_ref() {
                    if d == '"' {
                        break;
                    }
                }
                cleaned.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                cleaned.push(' ');
            }
            _ => cleaned.push(c),
        }
    }
    for clause in ["by", "without", "on", "ignoring", "group_left", "group_right"] {
        let mut out = String::new();
        let mut rest = cleaned.as_str();
        while let Some(i) = rest.find(&format!("{clause} (")).or_else(|| rest.find(&format!("{clause}("))) {
            let before_ok = i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            let open = i + rest[i..].find('(').unwrap();
            if !before_ok {
                out.push_str(&rest[..open + 1]);
                rest = &rest[open + 1..];
                continue;
            }
            out.push_str(&rest[..i]);
            let close = open + rest[open..].find(')').unwrap();
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        cleaned = out;
    }
    cleaned
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit() || c == '$'))
        .filter(|w| !WORDS.contains(w) && !w.starts_with("__"))
        .map(str::to_string)
        .collect()
}

/// Series Prometheus makes itself for every target.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

fn assert_exported(what: &str, expr: &str, exported: &BTreeSet<String>) {
    let names = promql_metrics(expr);
    assert!(!names.is_empty(), "{what}: no metric in {expr}");
    for name in names {
        assert!(
            exported.contains(&name) || PROMETHEUS_OWN.contains(&name.as_str()),
            "{what}: {name} is not a metric the gateway exports ({exported:?})\n{expr}"
        );
    }
}

#[test]
fn promql_metric_names_are_read_past_functions_labels_and_ranges() {
    let names = promql_metrics(
        r#"sum by (upstream) (rate(sso_logins_total{job=~"$job", x="a b"}[5m])) / clamp_min(sum(rate(http_requests_total[$__rate_interval])) + on (job) up, 1e-9) > 0.25"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["http_requests_total".to_string(), "sso_logins_total".into(), "up".into()])
    );
    let exported = exported_metrics();
    for name in ["http_requests_total", "http_request_duration_seconds_bucket", "sso_logins_total"] {
        assert!(exported.contains(name), "{name} in {exported:?}");
    }
}

#[test]
fn grafana_dashboard_shows_only_metrics_the_gateway_exports() {
    let path = deploy().join("grafana/sso-gateway-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path)).expect("dashboard JSON parses");
    let exported = exported_metrics();
    assert_eq!(dashboard["uid"], "sso-gateway");
    let mut shown = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            assert_exported(&format!("panel {title}"), expr, &exported);
            assert!(expr.contains("job=~\"$job\""), "panel {title}: filtered by the job variable: {expr}");
            shown.extend(promql_metrics(expr));
        }
    }
    // Every metric the gateway exports is on the dashboard.
    for name in exported.iter().filter(|n| !n.ends_with("_sum") && !n.ends_with("_count")) {
        let histogram_base = exported.contains(&format!("{name}_bucket"));
        assert!(shown.contains(name) || histogram_base, "the dashboard does not show {name}");
    }
}

#[test]
fn prometheus_alert_rules_cover_the_failure_signals_with_exported_metrics() {
    let docs = yaml_documents(&deploy().join("prometheus/sso-gateway-alerts.yaml"));
    let exported = exported_metrics();
    let rules: Vec<&Value> =
        seq(at(&docs[0], "groups")).iter().flat_map(|g| seq(at(g, "rules")).iter()).collect();
    let mut alerted = BTreeSet::new();
    for rule in &rules {
        let name = text(at(rule, "alert"));
        assert!(!name.is_empty(), "alerting rules only");
        let expr = text(at(rule, "expr"));
        assert_exported(&name, &expr, &exported);
        assert!(
            matches!(text(at(rule, "labels.severity")).as_str(), "warning" | "critical"),
            "{name}: severity"
        );
        assert!(!text(at(rule, "annotations.summary")).is_empty(), "{name}: summary");
        assert!(!text(at(rule, "annotations.description")).is_empty(), "{name}: description");
        alerted.extend(promql_metrics(&expr));
    }
    for signal in [
        "sso_upstream_login_failures_total",
        "sso_backchannel_logout_failures_total",
        "sso_state_store_errors_total",
        "sso_rate_limited_total",
    ] {
        assert!(alerted.contains(signal), "no alert on {signal}");
    }
}
