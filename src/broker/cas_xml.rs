//! The XML the CAS protocol sends: ticket validation responses (`<cas:serviceResponse>`) and
//! single-logout requests (SAML 2.0 `<samlp:LogoutRequest>`).
//!
//! Parsed with a real XML parser (`quick-xml`, namespace-aware) into a small bounded tree.
//! Hardened for hostile input: a document type declaration is refused outright (so no entity
//! can be defined, expanded or fetched), only the five predefined entities and character
//! references are accepted, and depth, element count and attribute count are bounded. The
//! caller bounds the body size before it gets here.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde_json::{Map, Value};

/// XML namespace of the CAS protocol.
pub const CAS_NS: &str = "http://www.yale.edu/tp/cas";
/// SAML 2.0 protocol namespace (single-logout requests).
pub const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";

const MAX_DEPTH: usize = 16;
const MAX_ELEMENTS: usize = 2000;
const MAX_ATTRIBUTES: usize = 32;
/// Longest user name, ticket or session index accepted.
const MAX_ID_LEN: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("a document type declaration (DTD) is not accepted")]
    Doctype,
    #[error("entity reference &{0}; is not accepted")]
    Entity(String),
    #[error("nesting deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} elements or {MAX_ATTRIBUTES} attributes on one")]
    TooLarge,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("unexpected document: {0}")]
    Unexpected(String),
}

/// One element of the parsed tree.
#[derive(Debug, Default, Clone)]
struct Element {
    ns: Option<String>,
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }
    fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn trimmed_text(&self) -> &str {
        self.text.trim()
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses a whole document into its root element.
fn parse(xml: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(xml).map_err(|_| XmlError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                let ns = match ns {
                    ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(XmlError::Malformed(format!(
                            "undeclared namespace prefix {}",
                            String::from_utf8_lossy(&p)
                        )));
                    }
                };
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let mut attributes = Vec::new();
                for attr in start.attributes().with_checks(true) {
                    let attr = attr.map_err(malformed)?;
                    let key = attr.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    if attributes.len() >= MAX_ATTRIBUTES {
                        return Err(XmlError::TooLarge);
                    }
                    let value = attr.unescape_value().map_err(|e| match e {
                        quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(
                            _,
                            n,
                        )) => XmlError::Entity(n),
                        other => malformed(other),
                    })?;
                    let local = String::from_utf8_lossy(key.local_name().as_ref()).into_owned();
                    attributes.push((local, value.into_owned()));
                }
                stack.push(Element { ns, name, attributes, ..Element::default() });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(malformed)?;
                match stack.last_mut() {
                    Some(current) => current.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(XmlError::Malformed("text outside the root element".into())),
                }
            }
            Event::CData(c) => {
                let s = c.decode().map_err(malformed)?;
                match stack.last_mut() {
                    Some(current) => current.text.push_str(&s),
                    None => return Err(XmlError::Malformed("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(malformed)?
                } else {
                    let name = r.decode().map_err(malformed)?;
                    match name.as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        other => return Err(XmlError::Entity(other.chars().take(64).collect())),
                    }
                };
                let ch = ch.ok_or_else(|| XmlError::Malformed("invalid character reference".into()))?;
                match stack.last_mut() {
                    Some(current) => current.text.push(ch),
                    None => return Err(XmlError::Malformed("reference outside the root element".into())),
                }
            }
            Event::Decl(_) | Event::Comment(_) => {}
            Event::PI(_) => {
                return Err(XmlError::Malformed("processing instructions are not accepted".into()));
            }
            Event::Empty(_) => return Err(XmlError::Malformed("unexpected empty element event".into())),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or_else(|| XmlError::Malformed("no root element".into()))
}

/// What a CAS server answered to a ticket validation.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceResponse {
    Success {
        /// `<cas:user>`: the login name the server authenticated.
        user: String,
        /// `<cas:attributes>`: one entry per attribute; repeated ones become arrays.
        attributes: Map<String, Value>,
    },
    Failure {
        /// e.g. `INVALID_TICKET`, `INVALID_SERVICE`, `INVALID_REQUEST`.
        code: String,
        message: String,
    },
}

/// Parses a `/p3/serviceValidate` or `/serviceValidate` response.
pub fn parse_service_response(xml: &[u8]) -> Result<ServiceResponse, XmlError> {
    let root = parse(xml)?;
    if !root.is(CAS_NS, "serviceResponse") {
        return Err(XmlError::Unexpected(format!("root element {} is not cas:serviceResponse", root.name)));
    }
    let success = root.child(CAS_NS, "authenticationSuccess");
    let failure = root.child(CAS_NS, "authenticationFailure");
    match (success, failure) {
        (Some(s), None) => {
            let user = s
                .child(CAS_NS, "user")
                .map(Element::trimmed_text)
                .filter(|u| !u.is_empty() && u.len() <= MAX_ID_LEN)
                .ok_or_else(|| XmlError::Unexpected("no usable cas:user".into()))?
                .to_string();
            let mut attributes = Map::new();
            if let Some(attrs) = s.child(CAS_NS, "attributes") {
                for a in &attrs.children {
                    // CAS 3.0 style: <cas:mail>…</cas:mail>; older style:
                    // <cas:attribute name="mail" value="…"/>.
                    let (key, value) = match (a.name.as_str(), a.attribute("name"), a.attribute("value")) {
                        ("attribute", Some(n), Some(v)) => (n.to_string(), v.trim().to_string()),
                        _ => (a.name.clone(), a.trimmed_text().to_string()),
                    };
                    add_value(&mut attributes, key, value);
                }
            }
            Ok(ServiceResponse::Success { user, attributes })
        }
        (None, Some(f)) => Ok(ServiceResponse::Failure {
            code: f.attribute("code").unwrap_or("UNKNOWN").chars().take(64).collect(),
            message: f.trimmed_text().chars().take(256).collect(),
        }),
        (Some(_), Some(_)) => Err(XmlError::Unexpected("both success and failure".into())),
        (None, None) => Err(XmlError::Unexpected("neither success nor failure".into())),
    }
}

fn add_value(map: &mut Map<String, Value>, key: String, value: String) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, Value::String(value));
        }
        Some(Value::Array(items)) => items.push(Value::String(value)),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, Value::String(value)]);
        }
    }
}

/// The session index (the service ticket) of a CAS single-logout request.
pub fn parse_logout_request(xml: &[u8]) -> Result<String, XmlError> {
    let root = parse(xml)?;
    if !root.is(SAMLP_NS, "LogoutRequest") {
        return Err(XmlError::Unexpected(format!("root element {} is not samlp:LogoutRequest", root.name)));
    }
    root.child(SAMLP_NS, "SessionIndex")
        .map(Element::trimmed_text)
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
        .map(str::to_string)
        .ok_or_else(|| XmlError::Unexpected("no usable samlp:SessionIndex".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
  <cas:authenticationSuccess>
    <cas:user>hai</cas:user>
    <cas:attributes>
      <cas:fullName>Ngô Thanh Hải</cas:fullName>
      <cas:roles>officer</cas:roles>
      <cas:roles>receiver</cas:roles>
      <cas:note>A &amp; B &#x1EA2;</cas:note>
      <cas:isFromNewLogin>true</cas:isFromNewLogin>
    </cas:attributes>
  </cas:authenticationSuccess>
</cas:serviceResponse>"#;

    #[test]
    fn a_success_response_yields_user_and_attributes() {
        let ServiceResponse::Success { user, attributes } =
            parse_service_response(SUCCESS.as_bytes()).unwrap()
        else {
            panic!("expected success")
        };
        assert_eq!(user, "hai");
        assert_eq!(attributes["fullName"], "Ngô Thanh Hải");
        assert_eq!(attributes["roles"], serde_json::json!(["officer", "receiver"]));
        assert_eq!(attributes["note"], "A & B Ả");
        assert_eq!(attributes["isFromNewLogin"], "true");
    }

    #[test]
    fn another_prefix_for_the_same_namespace_is_the_same_document() {
        let xml = r#"<s:serviceResponse xmlns:s="http://www.yale.edu/tp/cas"><s:authenticationSuccess><s:user>u1</s:user><s:attributes><s:attribute name="mail" value="a@b.example"/></s:attributes></s:authenticationSuccess></s:serviceResponse>"#;
        let ServiceResponse::Success { user, attributes } = parse_service_response(xml.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(user, "u1");
        assert_eq!(attributes["mail"], "a@b.example");
    }

    #[test]
    fn a_failure_response_keeps_code_and_message() {
        let xml = r#"<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
            <cas:authenticationFailure code="INVALID_SERVICE">Ticket ST-1 was not issued for this service</cas:authenticationFailure>
        </cas:serviceResponse>"#;
        assert_eq!(
            parse_service_response(xml.as_bytes()).unwrap(),
            ServiceResponse::Failure {
                code: "INVALID_SERVICE".into(),
                message: "Ticket ST-1 was not issued for this service".into()
            }
        );
    }

    #[test]
    fn entity_expansion_and_external_entities_are_refused() {
        let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationSuccess><cas:user>&lol2;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"#;
        assert_eq!(parse_service_response(billion_laughs.as_bytes()), Err(XmlError::Doctype));
        let xxe = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"/>"#;
        assert_eq!(parse_service_response(xxe.as_bytes()), Err(XmlError::Doctype));
        // An entity used without any DTD is refused too, in text and in attributes.
        let undefined = r#"<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationSuccess><cas:user>&xxe;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"#;
        assert_eq!(parse_service_response(undefined.as_bytes()), Err(XmlError::Entity("xxe".into())));
        let in_attribute = r#"<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas"><cas:authenticationFailure code="&xxe;">x</cas:authenticationFailure></cas:serviceResponse>"#;
        assert!(parse_service_response(in_attribute.as_bytes()).is_err());
    }

    #[test]
    fn malformed_and_unexpected_documents_are_refused() {
        for bad in [
            "",
            "<html>oops</html>",
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">",
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"></cas:other>",
            "<x:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"/>",
            // The right local name in the wrong namespace is not a CAS response.
            "<cas:serviceResponse xmlns:cas=\"http://evil.example/cas\"><cas:authenticationSuccess><cas:user>admin</cas:user></cas:authenticationSuccess></cas:serviceResponse>",
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><cas:authenticationSuccess><cas:user>  </cas:user></cas:authenticationSuccess></cas:serviceResponse>",
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"><cas:authenticationSuccess><cas:user>a</cas:user></cas:authenticationSuccess><cas:authenticationFailure code=\"X\"/></cas:serviceResponse>",
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"/><second/>",
            "<?php evil ?><cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\"/>",
        ] {
            assert!(parse_service_response(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        assert_eq!(parse_service_response(&[0xff, 0xfe, b'<']), Err(XmlError::NotUtf8));
    }

    #[test]
    fn deep_or_huge_documents_are_refused_without_exhausting_anything() {
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert_eq!(parse_service_response(deep.as_bytes()), Err(XmlError::TooDeep));
        let wide = format!(
            "<cas:serviceResponse xmlns:cas=\"{CAS_NS}\"><cas:authenticationSuccess><cas:user>u</cas:user><cas:attributes>{}</cas:attributes></cas:authenticationSuccess></cas:serviceResponse>",
            "<cas:x>1</cas:x>".repeat(5000)
        );
        assert_eq!(parse_service_response(wide.as_bytes()), Err(XmlError::TooLarge));
        // Many elements one level too deep: the depth is what is refused (the first of them).
        let deep_and_wide = format!(
            "<cas:serviceResponse xmlns:cas=\"{CAS_NS}\">{}{}{}</cas:serviceResponse>",
            "<cas:x>".repeat(MAX_DEPTH - 1),
            "<cas:y/>".repeat(MAX_ELEMENTS),
            "</cas:x>".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(parse_service_response(deep_and_wide.as_bytes()), Err(XmlError::TooDeep));
        let long_user = format!(
            "<cas:serviceResponse xmlns:cas=\"{CAS_NS}\"><cas:authenticationSuccess><cas:user>{}</cas:user></cas:authenticationSuccess></cas:serviceResponse>",
            "u".repeat(1000)
        );
        assert!(parse_service_response(long_user.as_bytes()).is_err());
    }

    #[test]
    fn logout_requests_yield_the_session_index() {
        let xml = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="LR-1" Version="2.0" IssueInstant="2025-07-01T08:00:00Z"><saml:NameID>@NOT_USED@</saml:NameID><samlp:SessionIndex>ST-12345-abc</samlp:SessionIndex></samlp:LogoutRequest>"#;
        assert_eq!(parse_logout_request(xml.as_bytes()).unwrap(), "ST-12345-abc");
        let no_index = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>"#;
        assert!(parse_logout_request(no_index.as_bytes()).is_err());
        let dtd = r#"<!DOCTYPE x [<!ENTITY a "b">]><samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><samlp:SessionIndex>&a;</samlp:SessionIndex></samlp:LogoutRequest>"#;
        assert_eq!(parse_logout_request(dtd.as_bytes()), Err(XmlError::Doctype));
    }

    mod properties {
        #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

        use proptest::prelude::*;

        use super::super::*;

        /// Pieces hostile CAS answers are made of: the real tags, prefixes, entities, DTDs,
        /// CDATA, comments, processing instructions and plain noise.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">".to_string()),
                Just("</cas:serviceResponse>".to_string()),
                Just("<cas:authenticationSuccess>".to_string()),
                Just("</cas:authenticationSuccess>".to_string()),
                Just("<cas:authenticationFailure code=\"INVALID_TICKET\">".to_string()),
                Just("</cas:authenticationFailure>".to_string()),
                Just("<cas:user>".to_string()),
                Just("</cas:user>".to_string()),
                Just("<cas:attributes>".to_string()),
                Just("</cas:attributes>".to_string()),
                Just("<cas:attribute name=\"mail\" value=\"a@b\"/>".to_string()),
                Just(
                    "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\">".to_string()
                ),
                Just("</samlp:LogoutRequest>".to_string()),
                Just("<samlp:SessionIndex>".to_string()),
                Just("</samlp:SessionIndex>".to_string()),
                Just("<!DOCTYPE x [<!ENTITY a \"&b;&b;\">]>".to_string()),
                Just("<!ENTITY x SYSTEM \"file:///etc/passwd\">".to_string()),
                Just("&a;".to_string()),
                Just("&amp;&lt;&#x1EA2;&#0;&#xD800;&#99999999;".to_string()),
                Just("<![CDATA[ ]]> <!-- c --> <?pi x?>".to_string()),
                Just("<?xml version=\"1.0\" encoding=\"UTF-16\"?>".to_string()),
                Just("<a:b xmlns:a=\"\">".to_string()),
                "[a-zA-Z0-9 <>/=\"':&;#!?\\[\\]-]{0,24}",
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config(256))]

            #[test]
            fn arbitrary_bytes_are_an_error_or_a_bounded_answer(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                if let Ok(ServiceResponse::Success { user, .. }) = parse_service_response(&bytes) {
                    prop_assert!(!user.is_empty() && user.len() <= MAX_ID_LEN);
                }
                if let Ok(index) = parse_logout_request(&bytes) {
                    prop_assert!(!index.is_empty() && index.len() <= MAX_ID_LEN);
                }
            }

            #[test]
            fn documents_of_hostile_pieces_never_panic(pieces in prop::collection::vec(piece(), 0..48)) {
                let doc = pieces.concat();
                match parse_service_response(doc.as_bytes()) {
                    Ok(ServiceResponse::Success { user, .. }) => {
                        prop_assert!(!user.is_empty() && user.len() <= MAX_ID_LEN);
                        prop_assert!(!doc.contains("<!DOCTYPE"), "a DTD got through: {doc}");
                    }
                    Ok(ServiceResponse::Failure { code, message }) => {
                        prop_assert!(code.chars().count() <= 64 && message.chars().count() <= 256);
                    }
                    Err(_) => {}
                }
                if parse_logout_request(doc.as_bytes()).is_ok() {
                    prop_assert!(!doc.contains("<!DOCTYPE"), "a DTD got through: {doc}");
                }
            }

            #[test]
            fn deep_or_wide_documents_are_refused_not_overflowed(depth in 0usize..4000, width in 0usize..4000) {
                let open = "<cas:x>".repeat(depth);
                let close = "</cas:x>".repeat(depth);
                let wide = "<cas:y/>".repeat(width);
                let doc = format!(
                    "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">{open}{wide}{close}</cas:serviceResponse>"
                );
                let result = parse_service_response(doc.as_bytes());
                // The wide layer sits one level below the innermost `cas:x`.
                let deepest = depth + 1 + usize::from(width > 0);
                if deepest > MAX_DEPTH {
                    prop_assert_eq!(result.unwrap_err(), XmlError::TooDeep);
                } else if width + depth + 1 > MAX_ELEMENTS {
                    prop_assert_eq!(result.unwrap_err(), XmlError::TooLarge);
                }
            }
        }
    }
}
