//! Probe of an OpenID Connect upstream (Keycloak, VNeID): discovery and the fields the
//! gateway's OIDC client requires, the issuer, the key set, and — without a user — whether the
//! upstream knows our client id and redirect URI (an authorization request it does not
//! refuse) and accepts our client authentication (a token request with a made-up code is
//! refused as `invalid_grant`, not `invalid_client`).

use http::StatusCode;
use serde_json::Value;
use url::Url;

use super::{Check, UpstreamHttp, chain, upstream_url};
use crate::config::{OidcSettings, UpstreamSettings};

/// The fields `openidconnect` (the gateway's OIDC client) needs in a discovery document.
const REQUIRED: [&str; 6] = [
    "issuer",
    "authorization_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
];

/// Signature algorithms the gateway verifies upstream ID tokens with.
const ACCEPTED_ALGS: [&str; 7] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];

/// A code no upstream issued, for the client-authentication check.
const PROBE_CODE: &str = "sso-gateway-probe-not-a-code";
/// A well-formed PKCE verifier (43 characters), sent with the made-up code.
const PROBE_VERIFIER: &str = "sso-gateway-probe-verifier-0123456789abcdefgh";

pub(super) async fn probe(
    u: &UpstreamSettings,
    o: &OidcSettings,
    http: &UpstreamHttp,
    issuer: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let discovery_url = format!("{}/.well-known/openid-configuration", o.issuer.trim_end_matches('/'));
    let doc = match get_json(http, &discovery_url).await {
        Ok(doc) => {
            checks.push(Check::ok("discovery", format!("{discovery_url} answered")));
            doc
        }
        Err(e) => {
            checks.push(Check::fail("discovery", format!("{discovery_url}: {e}")));
            return checks;
        }
    };
    checks.extend(check_metadata(&o.issuer, o.use_userinfo, &doc));
    if let Some(jwks_uri) = doc.get("jwks_uri").and_then(Value::as_str) {
        checks.push(match get_json(http, jwks_uri).await {
            Ok(jwks) => check_jwks(&jwks),
            Err(e) => Check::fail("keys", format!("{jwks_uri}: {e}")),
        });
    }
    let redirect_uri = upstream_url(issuer, &u.id, "callback");
    if let Some(endpoint) = doc.get("authorization_endpoint").and_then(Value::as_str) {
        checks.push(authorization_request(o, http, endpoint, &redirect_uri).await);
    }
    if let Some(endpoint) = doc.get("token_endpoint").and_then(Value::as_str) {
        checks.push(token_request(o, http, endpoint, &redirect_uri).await);
    }
    checks
}

/// GETs a JSON document within the upstream's timeout.
async fn get_json(http: &UpstreamHttp, url: &str) -> Result<Value, String> {
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let response = http.send(request).await.map_err(|e| chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    serde_json::from_slice(response.body()).map_err(|e| format!("not JSON: {e}"))
}

/// Issuer, required fields, the code flow with PKCE, logout support.
pub(super) fn check_metadata(configured_issuer: &str, use_userinfo: bool, doc: &Value) -> Vec<Check> {
    let mut checks = Vec::new();
    let field = |name: &str| doc.get(name).filter(|v| !v.is_null());
    let text = |name: &str| doc.get(name).and_then(Value::as_str);
    let list = |name: &str| -> Vec<&str> {
        doc.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    checks.push(match text("issuer") {
        Some(i) if i == configured_issuer => Check::ok("issuer", format!("{i} matches the configuration")),
        Some(i) if i.trim_end_matches('/') == configured_issuer.trim_end_matches('/') => Check::fail(
            "issuer",
            format!(
                "the upstream says {i:?}, the configuration {configured_issuer:?}: write the issuer exactly \
                 as the upstream does (trailing slash included)"
            ),
        ),
        Some(i) => Check::fail(
            "issuer",
            format!(
                "the upstream says {i:?}, the configuration {configured_issuer:?}: ID tokens would be refused"
            ),
        ),
        None => Check::fail("issuer", "the discovery document names no issuer"),
    });
    let missing: Vec<&str> =
        REQUIRED.iter().chain(["token_endpoint"].iter()).copied().filter(|f| field(f).is_none()).collect();
    checks.push(if missing.is_empty() {
        Check::ok(
            "endpoints",
            format!(
                "authorization {}, token {}",
                text("authorization_endpoint").unwrap_or("?"),
                text("token_endpoint").unwrap_or("?")
            ),
        )
    } else {
        Check::fail("endpoints", format!("the discovery document lacks {}", missing.join(", ")))
    });
    if !missing.is_empty() {
        return checks;
    }
    if !list("response_types_supported").contains(&"code") {
        checks.push(Check::fail("code flow", "response_types_supported does not list \"code\""));
    }
    let algs = list("id_token_signing_alg_values_supported");
    if !algs.iter().any(|a| ACCEPTED_ALGS.contains(a)) {
        checks.push(Check::fail(
            "signing algorithms",
            format!(
                "ID tokens signed with {} only; the gateway accepts {}",
                algs.join(", "),
                ACCEPTED_ALGS.join(", ")
            ),
        ));
    }
    let pkce = list("code_challenge_methods_supported");
    if !pkce.is_empty() && !pkce.contains(&"S256") {
        checks.push(Check::fail("PKCE", format!("code_challenge_methods_supported is {pkce:?}, not S256")));
    }
    if use_userinfo && field("userinfo_endpoint").is_none() {
        checks
            .push(Check::fail("userinfo", "use_userinfo = true, but the upstream has no userinfo_endpoint"));
    }
    checks.push(match text("end_session_endpoint") {
        Some(e) => Check::ok("logout", format!("end_session_endpoint {e}")),
        None => Check::warn(
            "logout",
            "no end_session_endpoint: logging out at the gateway will not end the upstream session",
        ),
    });
    if doc.get("backchannel_logout_supported").and_then(Value::as_bool) == Some(false) {
        checks.push(Check::warn(
            "back-channel logout",
            "backchannel_logout_supported is false: an upstream logout will not end gateway sessions",
        ));
    }
    checks
}

/// At least one key the gateway can verify ID tokens with.
pub(super) fn check_jwks(jwks: &Value) -> Check {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Check::fail("keys", "the key set has no \"keys\" array");
    };
    let mut usable = Vec::new();
    let mut refused = 0usize;
    for key in keys {
        let for_signing = key.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig");
        let parsed = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone())
            .ok()
            .filter(|jwk| jsonwebtoken::DecodingKey::from_jwk(jwk).is_ok());
        match parsed {
            Some(jwk) if for_signing => usable.push(format!(
                "{} {}",
                key.get("kty").and_then(Value::as_str).unwrap_or("?"),
                jwk.common.key_id.as_deref().unwrap_or("(no kid)")
            )),
            _ => refused += 1,
        }
    }
    if usable.is_empty() {
        Check::fail("keys", format!("no usable signing key among {} key(s)", keys.len()))
    } else {
        let others =
            if refused > 0 { format!(" ({refused} other key(s) not for signatures)") } else { String::new() };
        Check::ok("keys", format!("{} signing key(s): {}{others}", usable.len(), usable.join(", ")))
    }
}

/// Sends the browser's first step without a browser: the upstream must not refuse our
/// client id or redirect URI.
async fn authorization_request(
    o: &OidcSettings,
    http: &UpstreamHttp,
    endpoint: &str,
    redirect_uri: &str,
) -> Check {
    let Ok(mut url) = Url::parse(endpoint) else {
        return Check::fail(
            "client and redirect",
            format!("authorization_endpoint {endpoint:?} is not a URL"),
        );
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &o.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &o.scopes.join(" "))
        .append_pair("state", "sso-gateway-probe")
        .append_pair("nonce", "sso-gateway-probe")
        .append_pair("code_challenge", "Xo0kEp8qjoK5kzRoYrTxNMxPq3ZL3Kb8ZtzsLqNpmjQ")
        .append_pair("code_challenge_method", "S256");
    let request = match http::Request::get(url.as_str()).body(Vec::new()) {
        Ok(r) => r,
        Err(e) => return Check::fail("client and redirect", e.to_string()),
    };
    match http.send(request).await {
        Ok(response) => {
            let location = response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok());
            classify_authorization_answer(response.status(), location, redirect_uri)
        }
        Err(e) => Check::fail("client and redirect", chain(&e)),
    }
}

/// What the answer to an authorization request says about our registration.
pub(super) fn classify_authorization_answer(
    status: StatusCode,
    location: Option<&str>,
    redirect_uri: &str,
) -> Check {
    const NAME: &str = "client and redirect";
    if status.is_redirection() {
        let Some(location) = location else {
            return Check::warn(NAME, format!("HTTP {status} without a Location"));
        };
        if location.starts_with(redirect_uri) {
            let error = Url::parse(location)
                .ok()
                .and_then(|u| u.query_pairs().find(|(k, _)| k == "error").map(|(_, v)| v.into_owned()));
            return match error.as_deref() {
                None | Some("login_required" | "interaction_required" | "consent_required") => {
                    Check::ok(NAME, "the upstream accepts the client id and redirect URI")
                }
                Some(
                    error @ ("unauthorized_client" | "invalid_scope" | "access_denied" | "invalid_request"),
                ) => {
                    Check::fail(NAME, format!("the upstream answers error={error} to the gateway's request"))
                }
                Some(other) => Check::warn(NAME, format!("the upstream answers error={other}")),
            };
        }
        return Check::ok(
            NAME,
            "the upstream accepts the client id and redirect URI (it continues to its login)",
        );
    }
    if status.is_success() {
        return Check::ok(
            NAME,
            "the upstream accepts the client id and redirect URI (its login page answered)",
        );
    }
    if status.is_client_error() {
        return Check::fail(
            NAME,
            format!(
                "the upstream refuses the authorization request (HTTP {status}): register the client id and \
                 the redirect URI {redirect_uri} exactly"
            ),
        );
    }
    Check::fail(NAME, format!("the authorization endpoint answered HTTP {status}"))
}

/// A token request with a made-up code, authenticated as the gateway authenticates.
async fn token_request(o: &OidcSettings, http: &UpstreamHttp, endpoint: &str, redirect_uri: &str) -> Check {
    let secret = o.client_secret.as_ref().and_then(|s| s.value());
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", PROBE_CODE)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_verifier", PROBE_VERIFIER);
    let mut request = http::Request::post(endpoint)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::ACCEPT, "application/json");
    match secret {
        // client_secret_basic, each part form-encoded first (RFC 6749 §2.3.1), as the gateway does.
        Some(secret) => {
            use base64::Engine;
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&o.client_id),
                enc(secret)
            ));
            request = request.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        None => {
            form.append_pair("client_id", &o.client_id);
        }
    }
    let request = match request.body(form.finish().into_bytes()) {
        Ok(r) => r,
        Err(e) => return Check::fail("client authentication", e.to_string()),
    };
    match http.send(request).await {
        Ok(response) => {
            let error = serde_json::from_slice::<Value>(response.body())
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
            classify_token_answer(response.status(), error.as_deref())
        }
        Err(e) => Check::fail("client authentication", chain(&e)),
    }
}

/// `invalid_grant` means the client authenticated and only the (made-up) code was refused.
pub(super) fn classify_token_answer(status: StatusCode, error: Option<&str>) -> Check {
    const NAME: &str = "client authentication";
    match (status, error) {
        (_, Some("invalid_grant")) => Check::ok(
            NAME,
            "the upstream accepts the client credentials (the probe's made-up code was refused)",
        ),
        (StatusCode::UNAUTHORIZED, _) | (_, Some("invalid_client" | "unauthorized_client")) => Check::fail(
            NAME,
            format!(
                "the token endpoint refuses the client credentials (HTTP {status}{}): check client_id and \
                 client_secret",
                error.map(|e| format!(", {e}")).unwrap_or_default()
            ),
        ),
        (s, e) => Check::warn(
            NAME,
            format!("inconclusive: HTTP {s}{}", e.map(|e| format!(", error={e}")).unwrap_or_default()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::probe::Status;
    use serde_json::json;

    fn doc(issuer: &str) -> Value {
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/certs"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "end_session_endpoint": format!("{issuer}/logout"),
        })
    }

    fn status_of(checks: &[Check], name: &str) -> Status {
        checks.iter().find(|c| c.check == name).unwrap_or_else(|| panic!("no {name} in {checks:?}")).status
    }

    #[test]
    fn a_complete_document_with_our_issuer_passes() {
        let checks =
            check_metadata("https://idp.example/realms/a", false, &doc("https://idp.example/realms/a"));
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
    }

    #[test]
    fn another_issuer_fails_and_a_trailing_slash_is_named() {
        let other =
            check_metadata("https://idp.example/realms/b", false, &doc("https://idp.example/realms/a"));
        assert_eq!(status_of(&other, "issuer"), Status::Fail);
        let slash =
            check_metadata("https://idp.example/realms/a/", false, &doc("https://idp.example/realms/a"));
        assert_eq!(status_of(&slash, "issuer"), Status::Fail);
        assert!(slash[0].detail.contains("trailing slash"), "{slash:?}");
    }

    #[test]
    fn fields_the_gateway_needs_are_required_and_named() {
        let mut d = doc("https://i");
        d.as_object_mut().unwrap().remove("jwks_uri");
        d.as_object_mut().unwrap().remove("subject_types_supported");
        let checks = check_metadata("https://i", false, &d);
        let endpoints = checks.iter().find(|c| c.check == "endpoints").unwrap();
        assert_eq!(endpoints.status, Status::Fail);
        assert!(endpoints.detail.contains("jwks_uri, subject_types_supported"), "{endpoints:?}");
    }

    #[test]
    fn optional_features_warn_and_unusable_ones_fail() {
        let mut d = doc("https://i");
        let o = d.as_object_mut().unwrap();
        o.remove("end_session_endpoint");
        o.insert("backchannel_logout_supported".into(), json!(false));
        o.insert("id_token_signing_alg_values_supported".into(), json!(["HS256"]));
        o.insert("code_challenge_methods_supported".into(), json!(["plain"]));
        let checks = check_metadata("https://i", true, &d);
        assert_eq!(status_of(&checks, "logout"), Status::Warn);
        assert_eq!(status_of(&checks, "back-channel logout"), Status::Warn);
        assert_eq!(status_of(&checks, "signing algorithms"), Status::Fail);
        assert_eq!(status_of(&checks, "PKCE"), Status::Fail);
        assert_eq!(status_of(&checks, "userinfo"), Status::Fail);
    }

    #[test]
    fn a_key_set_needs_one_usable_signing_key() {
        let rsa = json!({"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
            "e": "AQAB"});
        assert_eq!(check_jwks(&json!({"keys": [rsa]})).status, Status::Ok);
        assert_eq!(check_jwks(&json!({"keys": []})).status, Status::Fail);
        assert_eq!(check_jwks(&json!({"no": "keys"})).status, Status::Fail);
        let enc = json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"});
        assert_eq!(check_jwks(&json!({"keys": [enc]})).status, Status::Fail, "encryption keys do not count");
    }

    #[test]
    fn the_authorization_answer_tells_whether_client_and_redirect_are_registered() {
        let cb = "https://sso/upstream/hcm/callback";
        assert_eq!(classify_authorization_answer(StatusCode::OK, None, cb).status, Status::Ok);
        assert_eq!(
            classify_authorization_answer(StatusCode::FOUND, Some("https://idp/login?x=1"), cb).status,
            Status::Ok
        );
        let refused = classify_authorization_answer(StatusCode::BAD_REQUEST, None, cb);
        assert_eq!(refused.status, Status::Fail);
        assert!(refused.detail.contains(cb), "names the URI to register: {refused:?}");
        let back = format!("{cb}?error=unauthorized_client&state=sso-gateway-probe");
        assert_eq!(classify_authorization_answer(StatusCode::FOUND, Some(&back), cb).status, Status::Fail);
        let quiet = format!("{cb}?error=login_required");
        assert_eq!(classify_authorization_answer(StatusCode::SEE_OTHER, Some(&quiet), cb).status, Status::Ok);
    }

    #[test]
    fn invalid_grant_proves_the_client_credentials_and_invalid_client_refutes_them() {
        assert_eq!(classify_token_answer(StatusCode::BAD_REQUEST, Some("invalid_grant")).status, Status::Ok);
        assert_eq!(
            classify_token_answer(StatusCode::UNAUTHORIZED, Some("invalid_client")).status,
            Status::Fail
        );
        assert_eq!(
            classify_token_answer(StatusCode::BAD_REQUEST, Some("unauthorized_client")).status,
            Status::Fail
        );
        assert_eq!(classify_token_answer(StatusCode::UNAUTHORIZED, None).status, Status::Fail);
        assert_eq!(classify_token_answer(StatusCode::INTERNAL_SERVER_ERROR, None).status, Status::Warn);
    }
}
