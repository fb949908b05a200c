//! Pushed authorization requests (RFC 9126): `POST /par` takes an authorization request from
//! an authenticated client, validates it as `/authorize` would and keeps it for
//! `par.lifetime` under a single-use `request_uri`; `/authorize` then takes it back
//! ([`resolve`]) from `client_id` + `request_uri`.
//!
//! Owns: the `/par` endpoint, the pushed-request records in the state store (keyed by the
//! SHA-256 of the handle, consumed atomically, so a `request_uri` works once on any
//! replica) and who must push. Must not: validate authorization parameters itself (that is
//! `authorize::validate`, used by both) or answer the browser.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ProviderState;
use super::authorize::{AuthorizeError, validate};
use super::client_auth::BackChannel;
use super::clients::Client;
use super::error::TokenError;
use crate::state::{Class, hashed_key, random_handle};

/// What every `request_uri` the gateway hands out starts with (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// Parameters of a `/par` request that authenticate the client rather than describe the
/// authorization request; they are not kept.
const CLIENT_AUTH_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// A pushed request: who pushed it and its parameters, validated when pushed and validated
/// again by `/authorize` when it is used (the same function, so the same rules).
#[derive(Debug, Serialize, Deserialize)]
struct Pushed {
    client_id: String,
    params: Vec<(String, String)>,
}

fn pushed_key(handle: &str) -> String {
    hashed_key("par", handle)
}

/// Whether `client` must push its authorization requests: when it is registered so, or when
/// `par.required` is set and it can authenticate (a public client cannot push).
pub fn required(app: &ProviderState, client: &Client) -> bool {
    client.require_par || (app.settings.par.required && !client.is_public())
}

pub async fn post(State(app): State<ProviderState>, request: BackChannel) -> Response {
    match push(&app, &request).await {
        Ok((request_uri, expires_in)) => {
            let mut res =
                (StatusCode::CREATED, Json(json!({ "request_uri": request_uri, "expires_in": expires_in })))
                    .into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::info!(error = e.code(), detail = %e, "pushed authorization request refused");
            e.into_response()
        }
    }
}

/// Authenticates the client (counted against `[limits]` like `/token`), validates its
/// request and stores it; returns the `request_uri` and its lifetime in seconds.
async fn push(app: &ProviderState, request: &BackChannel) -> Result<(String, u64), TokenError> {
    let (mut params, auth) = super::client_auth::authenticate_form(app, "/par", request).await?;
    let client = auth.client;
    // Only a client that proved who it is may make the gateway store something: a public
    // client's `client_id` proves nothing (it sends its requests to /authorize directly).
    if client.is_public() {
        return Err(TokenError::InvalidClient { basic: false });
    }
    if params.contains_key("request_uri") {
        return Err(TokenError::InvalidRequest("request_uri cannot be pushed (RFC 9126 §2.1)".into()));
    }
    for k in CLIENT_AUTH_PARAMS {
        params.remove(k);
    }
    params.insert("client_id".into(), client.client_id.to_string());
    bind_to_proof(app, &request.headers, &mut params).await?;
    let raw: Vec<(String, String)> = params.into_iter().collect();
    if let Err(e) = validate(app, raw.clone()) {
        return Err(match e {
            AuthorizeError::Page(page) => TokenError::InvalidRequest(page.detail_en),
            AuthorizeError::Redirect { error, description, .. } => {
                TokenError::AuthorizationRequest { error, description }
            }
        });
    }
    let lifetime = app.settings.par.lifetime;
    let handle = random_handle();
    let record = Pushed { client_id: client.client_id.to_string(), params: raw };
    app.store.put_json(&pushed_key(&handle), &record, lifetime).await?;
    Ok((format!("{REQUEST_URI_PREFIX}{handle}"), lifetime.as_secs()))
}

/// A DPoP proof sent with a pushed request binds the code to its key, as `dpop_jkt` does
/// (RFC 9449 §10.1); both together must name the same key.
async fn bind_to_proof(
    app: &ProviderState,
    headers: &HeaderMap,
    params: &mut HashMap<String, String>,
) -> Result<(), TokenError> {
    let url = format!("{}/par", app.issuer());
    let target =
        super::dpop::Target { method: "POST", url: &url, access_token: None, jkt: None, alias: None };
    let Some(proof) = super::dpop::verify(app, headers, target, Class::Authenticated).await? else {
        return Ok(());
    };
    match params.get("dpop_jkt").filter(|v| !v.is_empty()) {
        Some(jkt) if *jkt != proof.jkt => {
            Err(TokenError::InvalidDpopProof("dpop_jkt does not name the DPoP proof's key".into()))
        }
        _ => {
            params.insert("dpop_jkt".into(), proof.jkt);
            Ok(())
        }
    }
}

/// The parameters an authorization request stands for. Without `request_uri`: its own, and
/// `false`. With one: the pushed request's (taken, so it works once), and `true`; every
/// other parameter sent with it but `client_id` is ignored (RFC 9126 §4). A `request_uri`
/// that is unknown, used, expired or pushed by another client ends on an error page: which
/// redirect URI to trust is not known.
pub async fn resolve(
    app: &ProviderState,
    raw: Vec<(String, String)>,
) -> Result<(Vec<(String, String)>, bool), AuthorizeError> {
    if !raw.iter().any(|(k, _)| k == "request_uri") {
        return Ok((raw, false));
    }
    let mut request_uri = None;
    let mut client_id = None;
    for (k, v) in &raw {
        let slot = match k.as_str() {
            "request_uri" => &mut request_uri,
            "client_id" => &mut client_id,
            _ => continue,
        };
        if slot.replace(v.as_str()).is_some() {
            return Err(page(
                "Tham số bị lặp lại.",
                &format!("invalid_request: the parameter {k} is repeated."),
            ));
        }
    }
    let request_uri = request_uri.unwrap_or_default();
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return Err(page(
            "Yêu cầu thiếu mã ứng dụng (client_id).",
            "invalid_request: client_id is required with request_uri.",
        ));
    };
    let refused = || {
        page(
            "Yêu cầu đăng nhập đã hết hạn, đã được dùng hoặc không tồn tại. Hãy quay lại ứng dụng và thử lại.",
            "invalid_request_uri: the request_uri is unknown, expired or already used. Go back to the application and try again.",
        )
    };
    let handle = request_uri.strip_prefix(REQUEST_URI_PREFIX).filter(|h| !h.is_empty() && h.len() <= 64);
    let Some(handle) = handle else { return Err(refused()) };
    let pushed = match app.store.take_json::<Pushed>(&pushed_key(handle)).await {
        Ok(Some(pushed)) => pushed,
        Ok(None) => return Err(refused()),
        Err(e) => {
            tracing::error!(error = %e, "state store failure while taking a pushed request");
            return Err(AuthorizeError::Page(Box::new(crate::web::ErrorPage::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Hệ thống đăng nhập tạm thời gián đoạn",
                "The login service is temporarily unavailable",
            ))));
        }
    };
    if pushed.client_id != client_id {
        tracing::warn!(client = %client_id, "request_uri presented by another client");
        return Err(refused());
    }
    Ok((pushed.params, true))
}

fn page(vi: &str, en: &str) -> AuthorizeError {
    super::authorize::bad_request_page(vi, en)
}
