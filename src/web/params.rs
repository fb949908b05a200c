//! Strict decoding of `application/x-www-form-urlencoded` parameters (query strings and form
//! bodies), the one decoder every endpoint that reads outside parameters goes through.
//!
//! The usual decoders are lenient: an invalid UTF-8 sequence silently becomes U+FFFD (so a
//! `state` comes back to the RP different from what it sent) and control characters pass
//! through into stored records, pages and upstream requests. Here both are refused, naming the
//! parameter, so the caller can answer with a clear 400.
//!
//! Owns: decoding and the character rules. Must not: know what a parameter means (repeated
//! parameters are reported by [`first_repeated`]; what to do about them is the caller's call).

use std::collections::HashSet;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ErrorPage;

/// Which control characters a parameter may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controls {
    /// None at all (every OAuth/OIDC parameter, ids, names).
    Refused,
    /// Tab, line feed and carriage return only (an XML document posted as a parameter).
    LineBreaks,
}

/// Why parameters could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter {0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("parameter {0} contains a control character")]
    Control(String),
    #[error("parameter {0} is repeated")]
    Repeated(String),
    #[error("malformed parameters: {0}")]
    Malformed(String),
}

impl ParamError {
    /// The bilingual 400 page for a browser endpoint.
    pub fn page(&self) -> ErrorPage {
        ErrorPage::new(StatusCode::BAD_REQUEST, "Yêu cầu không hợp lệ", "Invalid request").detail(
            "Yêu cầu chứa tham số không hợp lệ (lặp lại, sai mã hoá hoặc có ký tự điều khiển).",
            format!("The request carries an invalid parameter: {self}."),
        )
    }
}

/// A parameter name fit to show in an error (bounded, printable).
fn shown(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    if clean.is_empty() { "(unnamed)".into() } else { clean }
}

fn decode(raw: &[u8]) -> Option<String> {
    let plus_as_space: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus_as_space).decode_utf8().ok().map(|s| s.into_owned())
}

fn allowed(c: char, controls: Controls) -> bool {
    !c.is_control() || (controls == Controls::LineBreaks && matches!(c, '\t' | '\n' | '\r'))
}

/// Decodes every `name=value` pair of `raw` in order. Empty pairs (`a=1&&b=2`) are skipped, as
/// every form decoder does; a name or value that is not UTF-8 once percent-decoded, or that
/// carries a control character `controls` does not allow, is an error.
pub fn parse(raw: &[u8], controls: Controls) -> Result<Vec<(String, String)>, ParamError> {
    let mut pairs = Vec::new();
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode(name).ok_or_else(|| ParamError::NotUtf8("(a parameter name)".into()))?;
        if !name.chars().all(|c| allowed(c, Controls::Refused)) {
            return Err(ParamError::Control(shown(&name)));
        }
        let value = decode(value).ok_or_else(|| ParamError::NotUtf8(shown(&name)))?;
        if !value.chars().all(|c| allowed(c, controls)) {
            return Err(ParamError::Control(shown(&name)));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// The first parameter name that occurs more than once.
pub fn first_repeated(pairs: &[(String, String)]) -> Option<&str> {
    let mut seen = HashSet::new();
    pairs.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
}

/// Strictly decodes `raw`, refuses repeated parameters and deserializes the result into `T`.
pub fn deserialize<T: DeserializeOwned>(raw: &[u8], controls: Controls) -> Result<T, ParamError> {
    let pairs = parse(raw, controls)?;
    if let Some(k) = first_repeated(&pairs) {
        return Err(ParamError::Repeated(shown(k)));
    }
    // Re-encoded by the same rules the decoder undid: the values are now known to be clean.
    let canonical = serde_urlencoded::to_string(&pairs).map_err(|e| ParamError::Malformed(e.to_string()))?;
    serde_urlencoded::from_str(&canonical).map_err(|e| ParamError::Malformed(e.to_string()))
}

/// A browser endpoint's query string, strictly decoded; any fault is a bilingual 400 page.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ErrorPage;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        deserialize(raw.as_bytes(), Controls::Refused).map(Query).map_err(|e| e.page())
    }
}

/// A browser endpoint's form body, strictly decoded; any fault is a bilingual 400 page.
#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ErrorPage;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            ErrorPage::new(e.status(), "Yêu cầu không hợp lệ", "Invalid request")
                .detail("Không đọc được nội dung biểu mẫu.", "The form could not be read.")
        })?;
        deserialize(&body, Controls::Refused).map(Form).map_err(|e| e.page())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_like_a_form_decoder_for_clean_input() {
        let pairs = parse(b"a=1&b=x+y&c=%C3%A1&&d&e=", Controls::Refused).unwrap();
        let expected: Vec<(String, String)> = [("a", "1"), ("b", "x y"), ("c", "á"), ("d", ""), ("e", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn invalid_utf8_and_control_characters_are_refused_by_name() {
        assert_eq!(parse(b"state=%FF", Controls::Refused), Err(ParamError::NotUtf8("state".into())));
        assert_eq!(parse(b"state=%C0%AF", Controls::Refused), Err(ParamError::NotUtf8("state".into())));
        assert_eq!(parse(b"state=a%00b", Controls::Refused), Err(ParamError::Control("state".into())));
        assert_eq!(parse(b"state=a%0D%0A", Controls::Refused), Err(ParamError::Control("state".into())));
        assert_eq!(parse(b"x=%C2%85", Controls::Refused), Err(ParamError::Control("x".into())));
        assert!(matches!(parse(b"%FF=1", Controls::Refused), Err(ParamError::NotUtf8(_))));
        assert!(matches!(parse(b"a%00=1", Controls::Refused), Err(ParamError::Control(_))));
        // An XML document may break lines, but not carry other controls.
        assert!(parse(b"doc=%3Ca%3E%0D%0A%09%3C%2Fa%3E", Controls::LineBreaks).is_ok());
        assert!(parse(b"doc=%00", Controls::LineBreaks).is_err());
    }

    #[test]
    fn repeated_parameters_are_found_and_refused_when_deserializing() {
        #[derive(serde::Deserialize, Debug)]
        struct Q {
            #[allow(dead_code)]
            state: Option<String>,
        }
        let pairs = parse(b"a=1&state=x&state=y", Controls::Refused).unwrap();
        assert_eq!(first_repeated(&pairs), Some("state"));
        assert_eq!(
            deserialize::<Q>(b"state=x&state=y", Controls::Refused).unwrap_err(),
            ParamError::Repeated("state".into())
        );
        assert_eq!(
            deserialize::<Q>(b"state=a+b%26c", Controls::Refused).unwrap().state.as_deref(),
            Some("a b&c")
        );
    }

    #[test]
    fn the_error_page_is_a_bilingual_400() {
        let page = ParamError::Repeated("state".into()).page();
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.detail_en.contains("state"));
        assert!(!page.detail_vi.is_empty());
    }

    mod properties {
        use super::*;

        proptest! {
            #![proptest_config(crate::fuzzing::config(256))]

            #[test]
            fn never_panics_and_accepts_exactly_clean_text(raw in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(pairs) = parse(&raw, Controls::Refused) {
                    for (k, v) in &pairs {
                        prop_assert!(!k.chars().chain(v.chars()).any(char::is_control));
                    }
                }
                let _ = deserialize::<std::collections::HashMap<String, String>>(&raw, Controls::LineBreaks);
            }

            #[test]
            fn any_clean_pairs_round_trip(pairs in prop::collection::vec(("[^\\p{Cc}]{0,16}", "[^\\p{Cc}]{0,32}"), 0..8)) {
                let encoded = serde_urlencoded::to_string(&pairs).unwrap();
                let decoded = parse(encoded.as_bytes(), Controls::Refused).unwrap();
                prop_assert_eq!(decoded, pairs);
            }
        }
    }
}
