//! OpenID Connect Back-Channel Logout 1.0 toward RPs: a signed logout token POSTed to each
//! RP's `backchannel_logout_uri`, in the background, in parallel, with bounded timeouts and
//! retries. A slow or dead RP delays neither the user nor the other RPs; failures are logged
//! and kept for administrators (`sso-gateway sessions logout-failures`, the admin API), who
//! can retry one ([`retry`]).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;

use super::LogoutState;
use crate::broker::BACKCHANNEL_EVENT;
use crate::ids::ClientId;
use crate::provider::clients::Client;
use crate::session::SsoSession;
use crate::state::{StoreError, random_handle};

/// Per-attempt bound on a delivery.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per RP (first try + retries).
const ATTEMPTS: u32 = 3;
/// How long failure records are kept for administrators.
const FAILURE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const FAILURES_KEY: &str = "logout-failures";

/// A delivery that failed after every retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedDelivery {
    pub client_id: String,
    pub uri: String,
    pub sid: String,
    /// The sub the client knows (records written before it was kept have none: a retry
    /// then names the session only, which the specification allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub at: i64,
    pub error: String,
}

#[derive(Serialize)]
struct LogoutToken<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    events: serde_json::Value,
}

/// Starts deliveries to every client with a back-channel receiver and returns at once with
/// their handles (a request handler drops them; an admin command may wait for them).
pub async fn notify(app: &LogoutState, session: &SsoSession, clients: &[Arc<Client>]) -> Vec<JoinHandle<()>> {
    let receivers: Vec<_> = clients.iter().filter(|c| c.backchannel_logout_uri.is_some()).cloned().collect();
    if receivers.is_empty() {
        return Vec::new();
    }
    let account = match app.accounts.find_by_id(&session.account_id).await {
        Ok(Some(account)) => account,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the account for back-channel logout");
            return Vec::new();
        }
    };
    receivers
        .into_iter()
        .map(|client| {
            let app = app.clone();
            let session = session.clone();
            let account = account.clone();
            tokio::spawn(async move {
                // The sub this client knows: public, or its pairwise one.
                match crate::provider::scope_claims::subject_for(&app.provider, &client, &account).await {
                    Ok(sub) => deliver(&app, &session, &sub, &client).await,
                    Err(e) => tracing::error!(error = %e, "cannot compute the sub for back-channel logout"),
                }
            })
        })
        .collect()
}

/// A signed logout token for `client` naming `sub` (when known) and the session `sid`.
fn logout_token(app: &LogoutState, client: &Client, sub: Option<&str>, sid: &str) -> Option<String> {
    let now = app.clock.now();
    let claims = LogoutToken {
        iss: app.issuer(),
        aud: client.client_id.as_str(),
        iat: now,
        exp: now + 120,
        jti: random_handle(),
        sub,
        sid: Some(sid),
        events: json!({ BACKCHANNEL_EVENT: {} }),
    };
    match app.keys.sign(client.alg, "logout+jwt", &claims) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a logout token");
            None
        }
    }
}

/// One POST of a logout token; the reason when the RP did not take it.
async fn send_once(app: &LogoutState, uri: &str, token: &str) -> Result<(), String> {
    let send = app.http.post(uri).form(&[("logout_token", token)]).timeout(ATTEMPT_TIMEOUT).send();
    match send.await {
        Ok(res) if res.status().is_success() => Ok(()),
        Ok(res) => Err(format!("HTTP {}", res.status())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
        Err(e) => Err(format!("{e}")),
    }
}

async fn deliver(app: &LogoutState, session: &SsoSession, sub: &str, client: &Client) {
    let Some(uri) = client.backchannel_logout_uri.as_deref() else { return };
    let Some(token) = logout_token(app, client, Some(sub), &session.sid) else { return };
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
        match send_once(app, uri, &token).await {
            Ok(()) => {
                tracing::info!(client = %client.client_id, "back-channel logout delivered");
                return;
            }
            Err(e) => last_error = e,
        }
    }
    tracing::warn!(client = %client.client_id, error = %last_error, "back-channel logout failed after retries");
    metrics::counter!("sso_backchannel_logout_failures_total").increment(1);
    let failure = FailedDelivery {
        client_id: client.client_id.to_string(),
        uri: uri.to_string(),
        sid: session.sid.clone(),
        sub: Some(sub.to_string()),
        at: app.clock.now(),
        error: last_error,
    };
    if let Ok(line) = serde_json::to_string(&failure)
        && let Err(e) = app.store.set_add(FAILURES_KEY, &line, FAILURE_RETENTION).await
    {
        tracing::error!(error = %e, "cannot record a failed back-channel logout");
    }
}

/// What retrying a failed delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// The RP took the logout token; the failure is no longer listed.
    Delivered(FailedDelivery),
    /// The RP still did not take it; the failure stays listed with this newer reason.
    Failed(FailedDelivery),
}

/// Sends a fresh logout token for one listed failure (the client's `client_id` and the
/// session's `sid`), once, to the client's current back-channel URI. None when no such failure
/// is listed or the client no longer has a back-channel receiver.
pub async fn retry<S>(app: &S, client_id: &ClientId, sid: &str) -> Result<Option<Retried>, StoreError>
where
    LogoutState: axum::extract::FromRef<S>,
{
    let app = <LogoutState as axum::extract::FromRef<S>>::from_ref(app);
    let lines = app.store.set_members(FAILURES_KEY).await?;
    let found = lines.iter().find_map(|line| {
        serde_json::from_str::<FailedDelivery>(line)
            .ok()
            .filter(|f| f.client_id == *client_id && f.sid == sid)
            .map(|f| (line.clone(), f))
    });
    let Some((line, failure)) = found else { return Ok(None) };
    let Some(client) = app.clients.get(client_id) else { return Ok(None) };
    let Some(uri) = client.backchannel_logout_uri.clone() else { return Ok(None) };
    let Some(token) = logout_token(&app, &client, failure.sub.as_deref(), sid) else {
        return Ok(Some(Retried::Failed(failure)));
    };
    match send_once(&app, &uri, &token).await {
        Ok(()) => {
            tracing::info!(client = %client_id, "back-channel logout delivered on retry");
            app.store.set_remove(FAILURES_KEY, &line).await?;
            Ok(Some(Retried::Delivered(failure)))
        }
        Err(error) => {
            let again = FailedDelivery { uri, at: app.clock.now(), error, ..failure };
            if let Ok(new_line) = serde_json::to_string(&again)
                && new_line != line
            {
                app.store.set_add(FAILURES_KEY, &new_line, FAILURE_RETENTION).await?;
                app.store.set_remove(FAILURES_KEY, &line).await?;
            }
            Ok(Some(Retried::Failed(again)))
        }
    }
}

/// Failed deliveries kept for administrators, newest first.
pub async fn failures<S>(app: &S) -> Result<Vec<FailedDelivery>, crate::state::StoreError>
where
    LogoutState: axum::extract::FromRef<S>,
{
    let app = <LogoutState as axum::extract::FromRef<S>>::from_ref(app);
    let mut all: Vec<FailedDelivery> = app
        .store
        .set_members(FAILURES_KEY)
        .await?
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.at));
    Ok(all)
}
