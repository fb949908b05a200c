//! A real OpenLDAP server per test: `slapd` from Debian's packages, started on a free loopback
//! port with a generated `slapd.conf` and a database loaded by `slapadd` from
//! `config/samples/officials.ldif`. Never a system service; stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use sso_test_services::{Error, OrExit, Server, Spec, free_port};

pub const SUFFIX: &str = "dc=tphcm,dc=gov,dc=vn";
pub const SERVICE_DN: &str = "cn=sso-gateway,ou=services,dc=tphcm,dc=gov,dc=vn";
pub const SERVICE_PASSWORD: &str = "gateway-dir-secret";

pub struct Slapd {
    pub port: u16,
    /// slapd's `stats` log (connections, operations, results), one line per event.
    log: PathBuf,
    /// PEM of the CA that signed the server certificate (TLS mode).
    pub ca_file: Option<PathBuf>,
    /// Stopped (dropped) before its folder goes.
    _server: Server,
    _dir: tempfile::TempDir,
}

fn binary(name: &'static str) -> PathBuf {
    sso_test_services::binary(name, "slapd").or_exit()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command line.
fn make_certificates(dir: &Path) -> PathBuf {
    let d = |f: &str| dir.join(f).display().to_string();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Test Directory CA",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.crt"),
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &d("server.key"),
        "-out",
        &d("server.csr"),
    ]));
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &d("server.csr"),
        "-CA",
        &d("ca.crt"),
        "-CAkey",
        &d("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &d("san.ext"),
        "-out",
        &d("server.crt"),
    ]));
    dir.join("ca.crt")
}

impl Slapd {
    /// Starts a directory seeded with the officials of the three former provinces; with
    /// `tls`, it also offers StartTLS with a certificate from a private CA.
    pub async fn start(tls: bool) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let ca_file = tls.then(|| make_certificates(dir.path()));
        let tls_conf = if tls {
            format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            )
        } else {
            String::new()
        };
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
logfile {dir}/slapd.log
{tls_conf}
database mdb
maxsize 33554432
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
directory {data}
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by self read
  by * none
"#,
            dir = dir.path().display(),
            data = data.display(),
        );
        let conf_path = dir.path().join("slapd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let ldif = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/officials.ldif");
        run(Command::new(binary("slapadd")).arg("-f").arg(&conf_path).arg("-l").arg(&ldif).arg("-q"));
        let log = dir.path().join("slapd.log");
        let mut last = None;
        for _ in 0..5 {
            let port = free_port().or_exit();
            let spec = Spec {
                program: binary("slapd"),
                // Debug level 256 (`stats`) logs every operation, to stderr (where the start is
                // awaited) and to `slapd.log` (written before slapd answers, so counts are exact).
                args: vec![
                    "-f".into(),
                    conf_path.clone().into(),
                    "-h".into(),
                    format!("ldap://127.0.0.1:{port}/").into(),
                    "-d".into(),
                    "256".into(),
                ],
                ready: "slapd starting",
                stop: "TERM",
                user: None,
                remove: None,
            };
            match Server::start(spec) {
                Ok(server) => return Slapd { port, log, ca_file, _server: server, _dir: dir },
                Err(e @ Error::NotReady { .. }) => last = Some(e),
                Err(e) => Err::<(), _>(e).or_exit(),
            }
        }
        panic!("slapd did not start: {}", last.map(|e| e.to_string()).unwrap_or_default());
    }

    /// How many simple binds the directory received for `dn` so far (its `stats` log lines
    /// `BIND dn="…" method=128`; DNs compared case-insensitively, as the directory does).
    pub fn binds_as(&self, dn: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let wanted = format!("bind dn=\"{}\" method=128", dn.to_lowercase());
        log.lines().filter(|l| l.to_lowercase().contains(&wanted)).count()
    }

    /// An `[[upstreams]]` block for this directory (`extra` goes into `[upstreams.ldap]`).
    pub fn upstream_config(&self, id: &str, extra: &str) -> String {
        let (url, tls) = match &self.ca_file {
            Some(ca) => (
                format!("ldap://127.0.0.1:{}", self.port),
                format!("starttls = true\nca_file = \"{}\"\n", ca.display()),
            ),
            None => (format!("ldap://127.0.0.1:{}", self.port), String::new()),
        };
        format!(
            r#"
[[upstreams]]
id = "{id}"
kind = "ldap"
name_vi = "Danh bạ cán bộ, công chức Thành phố"
name_en = "City officials' directory"
[upstreams.ldap]
url = "{url}"
{tls}bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
user_base = "ou=people,{SUFFIX}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
group_base = "ou=groups,{SUFFIX}"
{extra}
[upstreams.claims]
name = "displayName"
username = "uid"
email = "mail"
official_code = "employeeNumber"
org_unit = "departmentNumber"
position = "title"
roles = "groups"
"#
        )
    }
}
