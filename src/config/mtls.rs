//! The typed forms of `[mtls]` and of the clients' `tls_client_auth_*` settings (RFC 8705):
//! a registered subject DN parsed at load, and the `tls_client_auth` CA bundle read.

use serde::Deserialize;

/// Attribute short names of RFC 4514 §3 and the ones Vietnamese CAs use, by OID.
const ATTRIBUTE_NAMES: [(&str, &str); 15] = [
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("T", "2.5.4.12"),
    ("TITLE", "2.5.4.12"),
    ("GIVENNAME", "2.5.4.42"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
];

/// A distinguished name as `tls_client_auth_subject_dn` registers it (RFC 4514 string, most
/// specific RDN first, e.g. `CN=portal,O=Sở TT&TT,C=VN`): the RDNs in that order, each a
/// sorted list of (attribute OID, value folded as directory strings compare: case and runs
/// of spaces do not matter).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SubjectDn(Vec<Vec<(String, String)>>);

impl TryFrom<String> for SubjectDn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl SubjectDn {
    /// RDNs (most specific first) of (attribute OID, value) as a certificate carries them.
    pub fn from_rdns(rdns: Vec<Vec<(String, String)>>) -> Self {
        SubjectDn(
            rdns.into_iter()
                .map(|mut rdn| {
                    for (_, v) in &mut rdn {
                        *v = Self::fold(v);
                    }
                    rdn.sort();
                    rdn
                })
                .collect(),
        )
    }

    /// An attribute value as it is compared.
    pub fn fold(value: &str) -> String {
        value.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
    }

    /// Parses an RFC 4514 string: RDNs split at unescaped `,`, attributes at unescaped `+`,
    /// `\` escapes (`\,`, `\2C`) undone. The `#hex` (BER) value form is refused: write the
    /// value as text.
    pub fn parse(dn: &str) -> Result<Self, String> {
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let mut current = String::new();
        let mut chars = dn.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let next = chars.next().ok_or("a subject DN cannot end with a lone \\")?;
                    if next.is_ascii_hexdigit() {
                        let low = chars.next().filter(char::is_ascii_hexdigit).ok_or("a bad \\ escape")?;
                        let byte =
                            u8::from_str_radix(&format!("{next}{low}"), 16).map_err(|e| e.to_string())?;
                        // Only escapes of ASCII are read; other characters are written as text.
                        if !byte.is_ascii() {
                            return Err("write non-ASCII characters as text, not as \\XX".into());
                        }
                        current.push(char::from(byte));
                    } else {
                        current.push(next);
                    }
                }
                '+' => rdn.push(Self::attribute(&std::mem::take(&mut current))?),
                ',' => {
                    rdn.push(Self::attribute(&std::mem::take(&mut current))?);
                    rdns.push(std::mem::take(&mut rdn));
                }
                c => current.push(c),
            }
        }
        rdn.push(Self::attribute(&current)?);
        rdns.push(rdn);
        Ok(Self::from_rdns(rdns))
    }

    fn attribute(text: &str) -> Result<(String, String), String> {
        let Some((name, value)) = text.split_once('=') else {
            return Err(format!("\"{}\" is not NAME=value", text.trim()));
        };
        let name = name.trim().to_ascii_uppercase();
        let oid = ATTRIBUTE_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, oid)| (*oid).to_string())
            .or_else(|| {
                let dotted = !name.is_empty() && name.chars().all(|c| c.is_ascii_digit() || c == '.');
                dotted.then(|| name.clone())
            })
            .ok_or_else(|| format!("unknown attribute {name:?} (use CN, O, OU, C, … or a dotted OID)"))?;
        let value = value.trim();
        if value.starts_with('#') {
            return Err(format!("the #hex form of {name} is not supported: write the value as text"));
        }
        if value.is_empty() {
            return Err(format!("{name} has no value"));
        }
        Ok((oid, value.to_string()))
    }
}

/// The trust anchors of a PEM bundle (`mtls.ca_file`): at least one certificate, each usable
/// as a root.
pub fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        store.add(cert).map_err(|e| format!("a certificate cannot be a root: {e}"))?;
    }
    if store.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_dns_are_read_as_rfc4514_strings() {
        let dn = SubjectDn::parse("CN=Cổng  dịch vụ công,OU=Sở TT\\2CTT+O=UBND TP.HCM, C=VN").unwrap();
        let pair = |oid: &str, v: &str| (oid.to_string(), v.to_string());
        assert_eq!(
            dn.0,
            vec![
                vec![pair("2.5.4.3", "cổng dịch vụ công")],
                vec![pair("2.5.4.10", "ubnd tp.hcm"), pair("2.5.4.11", "sở tt,tt")],
                vec![pair("2.5.4.6", "vn")],
            ]
        );
        assert_eq!(SubjectDn::parse("cn=a, 2.5.4.6=VN").unwrap(), SubjectDn::parse("CN=A,C=vn").unwrap());
        for bad in ["CN=x,NOPE=y", "CN=#0403616263", "just text", "CN=x\\", "CN=", "CN=\\C3\\A1", ""] {
            assert!(SubjectDn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_bundle_needs_a_certificate() {
        assert!(root_store(b"").is_err());
        assert!(root_store(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
