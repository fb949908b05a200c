//! The demo's certificate login: a demo certification authority, the certificate host's
//! TLS certificate and one official's signing certificate (Võ Thị Minh Thư, whose personal
//! number 074188002945 is also in the Ho Chi Minh City and Binh Duong demo systems), made
//! once with rcgen and kept in `{data_dir}/certificate/`, and the gateway configuration of a
//! certificate upstream on its own TLS listener.
//!
//! Demo tooling: owns the files under `{data_dir}/certificate/` and the configuration text
//! it adds; must not touch the gateway's other configuration or anything outside that
//! folder.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

/// The demo official's personal identification number (CCCD).
pub const OFFICIAL_CCCD: &str = "074188002945";
const OFFICIAL_NAME: &str = "Võ Thị Minh Thư";
/// The upstream's id.
pub const UPSTREAM: &str = "chu-ky-so";
/// Files, relative to the certificate folder.
const FILES: [&str; 6] =
    ["ca.pem", "host.pem", "host.key", "official.pem", "official.key", "official-identity.pem"];

/// The demo certificate folder of `data_dir`.
pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("certificate")
}

/// Makes the demo CA and certificates unless they are there already (a second start keeps
/// them, so a certificate imported into a browser keeps working).
pub fn prepare(data_dir: &Path) -> Result<(), String> {
    let dir = folder(data_dir);
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let fail = |what: &str, e: rcgen::Error| format!("demo certificate ({what}): {e}");
    let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", e))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sso-gateway DEMO CA (không dùng thật / not for real use)");
    ca.distinguished_name.push(DnType::CountryName, "VN");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| fail("CA certificate", e))?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let host_key = KeyPair::generate().map_err(|e| fail("host key", e))?;
    let mut host = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| fail("host", e))?;
    host.serial_number = Some(SerialNumber::from(1u64));
    let host_cert = host.signed_by(&host_key, &issuer).map_err(|e| fail("host certificate", e))?;

    let key = KeyPair::generate().map_err(|e| fail("official key", e))?;
    let mut official = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("official", e))?;
    official.distinguished_name = rcgen::DistinguishedName::new();
    official.distinguished_name.push(DnType::CommonName, OFFICIAL_NAME);
    // UID (0.9.2342.19200300.100.1.1) = CCCD:…, as Vietnamese signing certificates carry it.
    official
        .distinguished_name
        .push(DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]), format!("CCCD:{OFFICIAL_CCCD}"));
    official.distinguished_name.push(DnType::OrganizationName, "UBND Thành phố Hồ Chí Minh");
    official.distinguished_name.push(DnType::CountryName, "VN");
    official.serial_number = Some(SerialNumber::from(1001u64));
    official.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::EmailProtection];
    official.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
    let official_cert = official.signed_by(&key, &issuer).map_err(|e| fail("official certificate", e))?;

    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
    };
    write("ca.pem", &ca_cert.pem())?;
    write("host.pem", &host_cert.pem())?;
    write("host.key", &host_key.serialize_pem())?;
    write("official.pem", &official_cert.pem())?;
    write("official.key", &key.serialize_pem())?;
    write("official-identity.pem", &format!("{}{}", official_cert.pem(), key.serialize_pem()))
}

/// The configuration of the certificate host (`port`) and the certificate upstream. No CRL
/// is made for the demo CA: revocation is `fail_open`.
pub fn config(port: u16, data_dir: &Path) -> String {
    let d = folder(data_dir).display().to_string();
    format!(
        r#"
[certificate]
url = "https://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
tls_cert = "{d}/host.pem"
tls_key = "{d}/host.key"

[[upstreams]]
id = "{UPSTREAM}"
kind = "certificate"
name_vi = "Chữ ký số cán bộ, công chức (demo)"
name_en = "Officials' digital signature (demo)"
[upstreams.certificate]
ca_file = "{d}/ca.pem"
revocation = "fail_open"
ocsp = false
[upstreams.linking]
trust_national_id = true
"#
    )
}

/// What to tell the person running the demo.
pub fn instructions(port: u16, data_dir: &Path, portal_url: &str) -> String {
    let d = folder(data_dir).display().to_string();
    format!(
        "  Certificate login (chữ ký số): a demo certificate for {OFFICIAL_NAME} (CCCD {OFFICIAL_CCCD},\n  \
         also \"thu\" in the HCM demo system) is in {d}/.\n  \
         1. Make a PKCS#12 file for the browser (empty password is fine):\n       \
         openssl pkcs12 -export -in {d}/official.pem -inkey {d}/official.key -certfile {d}/ca.pem -out {d}/official.p12 -name \"{OFFICIAL_NAME}\"\n  \
         2. Import official.p12 into the browser (Firefox: Settings > Privacy & Security > View Certificates >\n     \
         Your Certificates > Import; Chrome: Settings > Privacy and security > Security > Manage certificates).\n     \
         Optionally import {d}/ca.pem as a trusted authority, or accept the warning for https://127.0.0.1:{port}.\n  \
         3. Open {portal_url}/, log in and choose \"Chữ ký số cán bộ, công chức (demo)\"; the browser asks for the\n     \
         certificate on https://127.0.0.1:{port} only.\n"
    )
}
