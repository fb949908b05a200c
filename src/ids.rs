//! The identifiers that cross parts as types of their own: a relying party's [`ClientId`], a
//! former login system's [`UpstreamId`] and a registered [`RedirectUri`]. Each has one set of
//! rules, checked here once where configuration or a request brings it in, so that a function
//! taking two of them cannot be handed them the wrong way round and no part re-checks them.
//!
//! Their text is the one stored and sent before (`Display`, `AsRef<str>`, serde as a plain
//! string): no stored or wire format changes.
//!
//! Must not: know what a client or an upstream may do (that is `provider::clients` and the
//! broker); only what a well-formed id or URI is.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// Whether `url` points at this machine (`localhost` or a loopback address).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// What is wrong with an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty or has control characters or ':'")]
    ClientId,
    #[error("{0:?} is not a valid upstream id")]
    UpstreamId(String),
    #[error("{0:?} is not a URL: {1}")]
    NotAUrl(String, String),
    #[error("{0:?} has a fragment")]
    Fragment(String),
    #[error("{0:?} uses plain http")]
    PlainHttp(String),
}

impl IdError {
    /// What would have been right (for configuration problems).
    pub fn expecting(&self) -> &'static str {
        match self {
            IdError::ClientId => "a printable id",
            IdError::UpstreamId(_) => "[a-z0-9-]+",
            IdError::NotAUrl(..) => "an absolute URL compared exactly",
            IdError::Fragment(_) => "no #fragment",
            IdError::PlainHttp(_) => "https (http only for localhost/127.0.0.1)",
        }
    }
}

macro_rules! text_id {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

/// A relying party's `client_id`: printable, with no `:`.
///
/// Why no `:` in a registered id: a client authenticating with HTTP Basic sends `id:secret`,
/// split at the first `:` (RFC 7617), so an id with a `:` could not be told apart from its
/// secret. It also keeps the gateway's own clients apart: their ids are
/// `sso-gateway:<name>` ([`ClientId::gateway_own`]), which no operator-registered client can
/// take, and they never authenticate at the token endpoint, so Basic never sees them.
///
/// Parsed once where a `client_id` enters (a request, configuration); a value that cannot be
/// a client id is answered as an unknown client, since no registered client has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

/// The prefix of the gateway's own client ids (its account pages, its admin console).
pub const GATEWAY_OWN_PREFIX: &str = "sso-gateway:";

impl ClientId {
    /// A client id as an operator registers it or a request presents it.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() || raw.chars().any(|c| c.is_control() || c == ':') {
            return Err(IdError::ClientId);
        }
        Ok(ClientId(raw.to_string()))
    }

    /// The id of the gateway's own client `name` (a constant such as `"admin"`):
    /// `sso-gateway:<name>`, which [`ClientId::parse`] refuses, so no registered client and
    /// no request can claim it.
    pub fn gateway_own(name: &'static str) -> Self {
        ClientId(format!("{GATEWAY_OWN_PREFIX}{name}"))
    }
}

/// Registry lookups by `&str` for ids read back from the gateway's own records and tokens
/// (checked when they were written); `Hash`/`Eq` are the text's, as `Borrow` requires.
impl Borrow<str> for ClientId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        ClientId::parse(&raw)
    }
}

text_id!(ClientId);

/// An upstream's `id`: 1 to 64 of `a-z`, `0-9` and `-` (it appears in the gateway's URLs,
/// metric labels and store keys).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamId(String);

impl UpstreamId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(IdError::UpstreamId(raw.to_string()));
        }
        Ok(UpstreamId(raw.to_string()))
    }
}

impl TryFrom<String> for UpstreamId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        UpstreamId::parse(&raw)
    }
}

text_id!(UpstreamId);

/// A registered redirect URI (or post-logout redirect URI): absolute, without a fragment,
/// https unless it points at this machine. A presented URI matches only when it is the same
/// text exactly (OAuth 2.0 Security BCP, RFC 9700 §4.1.3): no normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Every problem of `raw` at once (a URI may have a fragment and use plain http).
    pub fn parse(raw: &str) -> Result<Self, Vec<IdError>> {
        let url = Url::parse(raw).map_err(|e| vec![IdError::NotAUrl(raw.to_string(), e.to_string())])?;
        let mut problems = Vec::new();
        if url.fragment().is_some() {
            problems.push(IdError::Fragment(raw.to_string()));
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            problems.push(IdError::PlainHttp(raw.to_string()));
        }
        if problems.is_empty() { Ok(RedirectUri(raw.to_string())) } else { Err(problems) }
    }

    /// Whether `presented` is this URI, compared exactly.
    pub fn matches(&self, presented: &str) -> bool {
        self.0 == presented
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        RedirectUri::parse(&raw).map_err(|mut problems| problems.remove(0))
    }
}

text_id!(RedirectUri);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_printable_and_has_no_colon() {
        assert_eq!(ClientId::parse("portal").unwrap().as_str(), "portal");
        assert!(ClientId::parse("dịch-vụ công").is_ok(), "any printable text");
        for bad in ["", "sso-gateway:pages", "a\nb", "tab\there"] {
            assert_eq!(ClientId::parse(bad), Err(IdError::ClientId), "{bad:?}");
        }
    }

    #[test]
    fn the_gateways_own_client_ids_are_out_of_reach_of_registration() {
        let admin = ClientId::gateway_own("admin");
        assert_eq!(admin, "sso-gateway:admin");
        assert_eq!(ClientId::parse(admin.as_str()), Err(IdError::ClientId), "no client can register it");
        assert_ne!(ClientId::gateway_own("account"), admin);
        assert_eq!(serde_json::to_string(&admin).unwrap(), "\"sso-gateway:admin\"", "sent as plain text");
    }

    #[test]
    fn a_client_id_is_found_by_its_text() {
        let map = std::collections::HashMap::from([(ClientId::parse("portal").unwrap(), 1)]);
        assert_eq!(map.get("portal"), Some(&1));
        assert_eq!(map.get(&ClientId::parse("portal").unwrap()), Some(&1));
        assert_eq!(map.get("Portal"), None);
    }

    #[test]
    fn an_upstream_id_is_short_lowercase_ascii() {
        for good in ["hcm", "binh-duong", "brvt2", &"a".repeat(64)] {
            assert_eq!(UpstreamId::parse(good).unwrap().to_string(), good);
        }
        for bad in ["", "HCM", "bình-dương", "a_b", "a/b", "a b", &"a".repeat(65)] {
            assert!(UpstreamId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_redirect_uri_is_absolute_without_fragment_and_https_unless_local() {
        for good in [
            "https://portal.example/cb",
            "http://localhost:8080/cb",
            "http://127.0.0.1/cb",
            "http://[::1]/cb",
            "com.example.app:/cb",
        ] {
            assert!(RedirectUri::parse(good).is_ok(), "{good}");
        }
        assert!(matches!(RedirectUri::parse("/cb").unwrap_err()[..], [IdError::NotAUrl(..)]));
        assert_eq!(
            RedirectUri::parse("http://rp.example/cb#x").unwrap_err(),
            vec![
                IdError::Fragment("http://rp.example/cb#x".into()),
                IdError::PlainHttp("http://rp.example/cb#x".into())
            ],
            "every problem at once"
        );
    }

    #[test]
    fn a_redirect_uri_matches_only_the_same_text() {
        let uri = RedirectUri::parse("https://portal.example/cb").unwrap();
        assert!(uri.matches("https://portal.example/cb"));
        for other in [
            "https://portal.example/cb/",
            "https://portal.example/cb?x=1",
            "https://PORTAL.example/cb",
            "https://portal.example:443/cb",
        ] {
            assert!(!uri.matches(other), "{other}");
        }
    }

    #[test]
    fn the_ids_are_stored_and_sent_as_plain_strings() {
        let id = UpstreamId::parse("hcm").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"hcm\"");
        assert_eq!(serde_json::from_str::<ClientId>("\"portal\"").unwrap(), "portal");
        assert!(serde_json::from_str::<UpstreamId>("\"HCM\"").is_err(), "read through the same rules");
        assert!(serde_json::from_str::<RedirectUri>("\"http://rp.example/cb\"").is_err());
    }
}
