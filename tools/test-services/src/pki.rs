//! A certificate authority for tests of certificate login and mutual TLS: CA certificates,
//! certificates for people (with the subject attributes Vietnamese signing certificates
//! carry) and servers, and CRLs — made with rcgen, in memory. Generating keys costs
//! milliseconds each: a test binary makes its authorities once and shares them.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use time::OffsetDateTime;

/// The OID of the `UID` subject attribute (0.9.2342.19200300.100.1.1), where Vietnamese
/// signing certificates carry `CCCD:…` / `CMND:…`.
pub const UID: [u64; 7] = [0, 9, 2342, 19200300, 100, 1, 1];

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
}

/// A certificate and its private key.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub serial: u64,
}

impl Issued {
    /// Certificate then key, one PEM text (what `reqwest::Identity::from_pem` reads).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// What a person's certificate says and allows.
#[derive(Clone, Debug)]
pub struct Person {
    pub cn: String,
    /// Subject `UID`, e.g. `CCCD:079…` (rcgen writes one value per attribute type).
    pub uid: Option<String>,
    pub email: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub serial: u64,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Extended key usages; empty = the extension is left out.
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    /// Key usages; empty = the extension is left out.
    pub key_usage: Vec<KeyUsagePurpose>,
}

impl Person {
    /// A valid signing certificate of `cn` with personal number `cccd`, from a day ago for
    /// two years, for client authentication and e-mail protection, as CAs issue them.
    pub fn official(cn: &str, cccd: &str, serial: u64) -> Person {
        let now = now();
        Person {
            cn: cn.into(),
            uid: Some(format!("CCCD:{cccd}")),
            email: None,
            o: Some("UBND Thành phố Hồ Chí Minh".into()),
            ou: Some("Sở Nội vụ".into()),
            serial,
            not_before: now - 86_400,
            not_after: now + 2 * 365 * 86_400,
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::EmailProtection],
            key_usage: vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment],
        }
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A test authority that cannot make its certificates is a broken test: it stops there.
#[allow(clippy::panic)]
fn fail(what: &str, e: rcgen::Error) -> ! {
    panic!("test PKI: {what}: {e}")
}

impl Ca {
    /// A root CA named `cn`, valid from a year ago for twenty years.
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap_or_else(|e| fail("CA key", e));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail("CA", e));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::CountryName, "VN");
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now() - 365 * 86_400);
        params.not_after = at(now() + 20 * 365 * 86_400);
        let cert = params.self_signed(&key).unwrap_or_else(|e| fail("CA certificate", e));
        Ca { cert_pem: cert.pem(), cert_der: cert.der().to_vec(), issuer: Issuer::new(params, key) }
    }

    /// A person's certificate.
    pub fn issue(&self, person: &Person) -> Issued {
        self.issue_with(person, None)
    }

    fn issue_with(&self, person: &Person, ocsp_url: Option<&str>) -> Issued {
        let key = KeyPair::generate().unwrap_or_else(|e| fail("key", e));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail("params", e));
        params.distinguished_name.push(DnType::CommonName, person.cn.as_str());
        if let Some(uid) = &person.uid {
            params.distinguished_name.push(DnType::CustomDnType(UID.to_vec()), uid.as_str());
        }
        if let Some(o) = &person.o {
            params.distinguished_name.push(DnType::OrganizationName, o.as_str());
        }
        if let Some(ou) = &person.ou {
            params.distinguished_name.push(DnType::OrganizationalUnitName, ou.as_str());
        }
        params.distinguished_name.push(DnType::CountryName, "VN");
        if let Some(mail) = &person.email {
            let mail = mail.as_str().try_into().unwrap_or_else(|e| fail("e-mail", e));
            params.subject_alt_names.push(SanType::Rfc822Name(mail));
        }
        params.serial_number = Some(SerialNumber::from(person.serial));
        params.not_before = at(person.not_before);
        params.not_after = at(person.not_after);
        params.extended_key_usages = person.eku.clone();
        params.key_usages = person.key_usage.clone();
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = ocsp_url {
            params.custom_extensions.push(crate::ocsp::authority_info_access(url));
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(|e| fail("certificate", e));
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            serial: person.serial,
        }
    }

    /// A person's certificate naming `ocsp_url` as its OCSP responder (Authority
    /// Information Access).
    pub fn issue_with_ocsp(&self, person: &Person, ocsp_url: &str) -> Issued {
        self.issue_with(person, Some(ocsp_url))
    }

    /// A delegated OCSP responder certificate (id-kp-OCSPSigning) from this CA, and its key.
    pub fn ocsp_signer(&self) -> (Issued, KeyPair) {
        let key = KeyPair::generate().unwrap_or_else(|e| fail("OCSP signer key", e));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail("params", e));
        params.distinguished_name.push(DnType::CommonName, "OCSP responder (test)");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from(2u64));
        params.not_before = at(now() - 86_400);
        params.not_after = at(now() + 365 * 86_400);
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(|e| fail("OCSP signer", e));
        let issued = Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            serial: 2,
        };
        (issued, key)
    }

    /// The CA's own key (a copy), e.g. to sign OCSP answers.
    pub fn key_pair(&self) -> KeyPair {
        let der = self.issuer.key().serialize_der();
        KeyPair::try_from(der.as_slice()).unwrap_or_else(|e| fail("CA key copy", e))
    }

    /// A TLS server certificate for `names` (host names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap_or_else(|e| fail("server key", e));
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap_or_else(|e| fail("server", e));
        params.serial_number = Some(SerialNumber::from(1u64));
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(|e| fail("server certificate", e));
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            serial: 1,
        }
    }

    /// A CRL (DER) listing `revoked` serials, issued at `this_update` and due again at
    /// `next_update` (Unix seconds).
    pub fn crl(&self, revoked: &[u64], this_update: i64, next_update: i64) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: at(this_update),
            next_update: at(next_update),
            crl_number: SerialNumber::from(this_update.max(1) as u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: at(this_update - 60),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap_or_else(|e| fail("CRL", e)).der().to_vec()
    }

    /// A CRL listing `revoked`, issued an hour ago and due in a day.
    pub fn current_crl(&self, revoked: &[u64]) -> Vec<u8> {
        self.crl(revoked, now() - 3600, now() + 86_400)
    }
}
