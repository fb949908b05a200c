//! Logout that reaches everywhere: ending an SSO session revokes the refresh tokens issued in
//! it (unless `offline_access` was granted), notifies every RP that received tokens
//! (Back-Channel Logout by signed logout token, Front-Channel Logout by iframes), and ends the
//! upstream session where the upstream supports it. Also the person's own session list.
//!
//! Owns: the logout sequence and its pages. Must not: parse upstream protocols (each
//! connector reads and verifies its upstream's logout messages) or mint RP tokens other than
//! logout tokens.

mod backchannel;
mod rp_initiated;
mod self_service;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

pub use backchannel::{FailedDelivery, Retried, failures, retry as retry_failure};
pub use self_service::{SessionRow, session_rows};
pub use upstream::received as upstream_message;

use crate::accounts::AccountStore;
use crate::broker::Broker;
use crate::clock::Clock;
use crate::ids::UpstreamId;
use crate::keys::KeySet;
use crate::provider::ProviderState;
use crate::provider::clients::{Client, ClientRegistry};
use crate::session::{Sessions, SsoSession};
use crate::state::{StateStore, StoreError};

/// What logout's handlers get (cheap to clone: one reference count).
pub type LogoutState = crate::PartState<LogoutParts>;

/// The parts logout uses.
pub struct LogoutParts {
    /// Revoking a session's grants and the subject each RP knows (`provider`'s rules).
    pub provider: ProviderState,
    /// The upstream's logout URL and its verified logout messages.
    pub broker: Broker,
    pub sessions: Sessions,
    /// Logout continuations and failed back-channel deliveries.
    pub store: StateStore,
    /// Read only: who an upstream subject is, whom a logout token names.
    pub accounts: AccountStore,
    /// Signs logout tokens and verifies `id_token_hint`.
    pub keys: KeySet,
    pub clients: ClientRegistry,
    pub clock: Clock,
    /// Back-channel deliveries to RPs.
    pub http: reqwest::Client,
    /// How long the way back to the RP waits for the upstream's logout (`lifetimes.login_attempt`).
    pub continuation_ttl: Duration,
    pub(crate) issuer: Arc<str>,
}

impl LogoutParts {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    LogoutState: FromRef<S>,
    crate::web::client_ip::TrustedProxies: FromRef<S>,
{
    Router::new()
        .route("/logout", get(rp_initiated::get).post(rp_initiated::post))
        .route("/upstream/{id}/logged-out", get(upstream::returned))
        .route("/upstream/{id}/backchannel-logout", post(upstream::backchannel))
        .route("/sessions", get(self_service::list))
        .route("/sessions/end", post(self_service::end))
}

/// Why a logout could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Accounts(#[from] crate::accounts::AccountError),
    #[error("no account with sub {0}")]
    UnknownAccount(String),
}

/// What ending a session set in motion.
pub struct Ended {
    /// Clients that had tokens in the session (for the front-channel iframes).
    pub clients: Vec<Arc<Client>>,
    /// Back-channel deliveries running in the background.
    pub deliveries: Vec<tokio::task::JoinHandle<()>>,
}

/// Ends one SSO session everywhere. Back-channel deliveries run in the background.
pub async fn end_session(app: &LogoutState, session: &SsoSession, reason: &str) -> Result<Ended, StoreError> {
    let collected = app.sessions.end(session).await?;
    for (grant, family_end) in &collected.grants {
        crate::provider::token_endpoint::revoke_grant(&app.provider, grant, *family_end).await?;
    }
    let clients: Vec<Arc<Client>> =
        collected.clients.iter().filter_map(|id| app.clients.get(id.as_str())).collect();
    let grants = collected.grants.len();
    tracing::info!(sid = %session.sid, reason, clients = clients.len(), grants, "session ended");
    let deliveries = backchannel::notify(app, session, &clients).await;
    Ok(Ended { clients, deliveries })
}

/// Ends every session of the account with this `sub` (an admin action, e.g. an official
/// who left) and waits for the back-channel deliveries. Returns how many sessions ended.
pub async fn revoke_account_sessions<S>(app: &S, sub: &str, actor: &str) -> Result<usize, LogoutError>
where
    LogoutState: FromRef<S>,
{
    let app = &LogoutState::from_ref(app);
    let account =
        app.accounts.find_by_sub(sub).await?.ok_or_else(|| LogoutError::UnknownAccount(sub.to_string()))?;
    let sessions = app.sessions.list_for_account(&account.id).await?;
    let mut deliveries = Vec::new();
    for s in &sessions {
        deliveries.extend(end_session(app, s, &format!("revoked by {actor}")).await?.deliveries);
    }
    tracing::warn!(actor, sessions = sessions.len(), "account sessions revoked by an administrator");
    for d in deliveries {
        // A failed delivery is recorded by the task itself.
        let _ = d.await;
    }
    Ok(sessions.len())
}

/// Ends every gateway session created from an upstream session (upstream-initiated logout:
/// OIDC back-channel logout, CAS single logout), or — when the upstream names only a
/// subject — every session of that upstream subject. Returns how many ended.
pub async fn end_upstream_sessions(
    app: &LogoutState,
    upstream: &UpstreamId,
    upstream_sid: Option<&str>,
    upstream_subject: Option<&str>,
) -> Result<usize, LogoutError> {
    let sessions = match (upstream_sid, upstream_subject) {
        (Some(sid), subject) => app.sessions.from_upstream_session(upstream, sid, subject).await?,
        // The account store knows which account the upstream identity is linked to.
        (None, Some(subject)) => match app.accounts.find_by_link(upstream.as_str(), subject).await? {
            Some(account) => app.sessions.from_upstream_subject(&account.id, upstream, subject).await?,
            None => Vec::new(),
        },
        (None, None) => Vec::new(),
    };
    for s in &sessions {
        end_session(app, s, &format!("logged out at upstream {upstream}")).await?;
    }
    Ok(sessions.len())
}
