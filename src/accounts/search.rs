//! Account search for administrators: by national ID (current, former or claimed), `sub`
//! (public or pairwise), upstream identity, official code, or name (folded and
//! accent-insensitive, by prefix). Every kind is an index range in both databases and pages by
//! keyset (an opaque cursor), never by OFFSET, so any page costs the same at city scale.
//! Results are summaries with the national ID masked; the full record is
//! [`AccountStore::find_by_id`] (its callers audit that view).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::AccountError;
use super::names::search_key;
use super::national_id::NationalId;
use super::store::AccountStore;

/// Most results one page may hold.
pub const MAX_PAGE: u32 = 200;

/// Longest search text accepted (a name, code or subject identifier).
pub const MAX_QUERY_LEN: usize = 256;

/// What to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchQuery {
    /// A 12-digit personal identification number: the account holding it verified, the one that
    /// held it before a re-key, and accounts that claim it (pending or in conflict).
    NationalId(String),
    /// A public `sub` or a pairwise one handed to some relying party.
    Sub(String),
    /// An identity of a former system.
    Upstream { upstream: String, subject: String },
    /// An official's code from the officials' directory.
    OfficialCode(String),
    /// The beginning of a full name, family name first, with or without diacritics
    /// ("nguyen van" finds "Nguyễn Văn An"). Folded by [`search_key`].
    Name(String),
}

/// One account in a result list (national ID masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountSummary {
    pub id: String,
    pub sub: String,
    pub kind: String,
    /// `active`, `locked` or `merged`.
    pub status: String,
    pub merged_into: Option<String>,
    pub full_name: Option<String>,
    pub birthdate: Option<String>,
    /// The verified number, masked ("079******123").
    pub national_id_masked: Option<String>,
    pub official_code: Option<String>,
}

/// One page of results and the cursor of the next one (None: this was the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub items: Vec<AccountSummary>,
    pub next_cursor: Option<String>,
}

/// Where the previous page ended: the sort key of its last row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    /// Folded name (name search only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    /// Account id.
    i: String,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(s: &str) -> Result<Cursor, AccountError> {
        let bad = || AccountError::Invalid("the cursor is not one this search returned".into());
        if s.len() > 2 * MAX_QUERY_LEN + 64 {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }
}

const SUMMARY_COLUMNS: &str = "a.id, a.sub, a.kind, a.status, a.merged_into, a.full_name, a.birthdate, \
     a.national_id, a.name_search, o.official_code";

const SUMMARY_FROM: &str = "accounts a LEFT JOIN official_profiles o ON o.account_id = a.id";

/// The exact kinds first collect the few matching ids (each an index point query) and then
/// join the accounts to them, so the plan is driven by the matches, never by a walk over
/// every account in id order.
const MATCHED_JOIN: &str =
    "JOIN accounts a ON a.id = hits.m LEFT JOIN official_profiles o ON o.account_id = a.id";

/// National ID ($1) after account id $2, $3 rows: the verified number, a claimed one, a former
/// one, each a point query of its own index.
pub fn national_id_sql() -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM ( \
           SELECT id AS m FROM accounts WHERE national_id = $1 \
           UNION SELECT id FROM accounts WHERE claimed_national_id = $1 \
           UNION SELECT account_id FROM national_id_history WHERE national_id = $1) hits \
         {MATCHED_JOIN} WHERE a.id > $2 ORDER BY a.id LIMIT $3"
    )
}

/// Public or pairwise sub ($1) after account id $2, $3 rows.
pub fn sub_sql() -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM ( \
           SELECT id AS m FROM accounts WHERE sub = $1 \
           UNION SELECT account_id FROM pairwise_subjects WHERE sub = $1) hits \
         {MATCHED_JOIN} WHERE a.id > $2 ORDER BY a.id LIMIT $3"
    )
}

/// Upstream ($1) and subject ($2) after account id $3, $4 rows.
pub fn upstream_sql() -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM ( \
           SELECT account_id AS m FROM identity_links WHERE upstream = $1 AND subject = $2) hits \
         {MATCHED_JOIN} WHERE a.id > $3 ORDER BY a.id LIMIT $4"
    )
}

/// Official code ($1) after account id $2, $3 rows.
pub fn official_code_sql() -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM ( \
           SELECT account_id AS m FROM official_profiles WHERE official_code = $1) hits \
         {MATCHED_JOIN} WHERE a.id > $2 ORDER BY a.id LIMIT $3"
    )
}

/// Folded names from ($1, $2) (exclusive) below $3 (when `bounded`; else $3 is ''), $4 rows.
pub fn name_sql(bounded: bool) -> String {
    let upper = if bounded { "AND a.name_search < $3" } else { "AND $3 = ''" };
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM {SUMMARY_FROM} \
         WHERE (a.name_search, a.id) > ($1, $2) {upper} \
         ORDER BY a.name_search, a.id LIMIT $4"
    )
}

fn summary_from_row(r: &AnyRow) -> Result<AccountSummary, sqlx::Error> {
    let number: Option<String> = r.try_get("national_id")?;
    Ok(AccountSummary {
        id: r.try_get("id")?,
        sub: r.try_get("sub")?,
        kind: r.try_get("kind")?,
        status: r.try_get("status")?,
        merged_into: r.try_get("merged_into")?,
        full_name: r.try_get("full_name")?,
        birthdate: r.try_get("birthdate")?,
        national_id_masked: number.as_deref().and_then(|n| NationalId::parse(n).ok()).map(|n| n.masked()),
        official_code: r.try_get("official_code")?,
    })
}

fn check_text(what: &str, value: &str) -> Result<(), AccountError> {
    if value.trim().is_empty() {
        return Err(AccountError::Invalid(format!("{what} is empty")));
    }
    if value.len() > MAX_QUERY_LEN {
        return Err(AccountError::Invalid(format!("{what} is longer than {MAX_QUERY_LEN} bytes")));
    }
    Ok(())
}

/// The first string after every string that starts with `prefix` (byte order), or None when
/// there is none (every character of the prefix is the last one).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl AccountStore {
    /// One page of accounts matching `query`, `limit` at most (1 to [`MAX_PAGE`]), after
    /// `cursor` (the `next_cursor` of the previous page). Name results come in folded-name
    /// order, the others in account-id order. Bad input is [`AccountError::Invalid`].
    pub async fn search(
        &self,
        query: &SearchQuery,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<SearchPage, AccountError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let after = cursor.map(Cursor::decode).transpose()?;
        // One row more than the page tells whether there is a next page.
        let fetch = i64::from(limit) + 1;
        let after_id = after.as_ref().map(|c| c.i.clone()).unwrap_or_default();
        let rows = match query {
            SearchQuery::NationalId(raw) => {
                check_text("the national ID", raw)?;
                let number =
                    NationalId::parse(raw).map_err(|e| AccountError::Invalid(format!("national ID: {e}")))?;
                sqlx::query(&national_id_sql())
                    .bind(number.as_str())
                    .bind(&after_id)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
            SearchQuery::Sub(sub) => {
                check_text("the sub", sub)?;
                sqlx::query(&sub_sql())
                    .bind(sub.trim())
                    .bind(&after_id)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
            SearchQuery::Upstream { upstream, subject } => {
                check_text("the upstream", upstream)?;
                check_text("the subject", subject)?;
                sqlx::query(&upstream_sql())
                    .bind(upstream.trim())
                    .bind(subject.trim())
                    .bind(&after_id)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
            SearchQuery::OfficialCode(code) => {
                check_text("the official code", code)?;
                sqlx::query(&official_code_sql())
                    .bind(code.trim())
                    .bind(&after_id)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
            SearchQuery::Name(text) => {
                check_text("the name", text)?;
                let prefix = search_key(text);
                if prefix.is_empty() {
                    return Err(AccountError::Invalid("the name has no letters".into()));
                }
                // A range of the (name_search, id) index: from the prefix (or the cursor) to
                // the first string past every string starting with the prefix.
                let (from_name, from_id) = match &after {
                    Some(Cursor { n: Some(n), i }) => (n.clone(), i.clone()),
                    Some(_) => {
                        return Err(AccountError::Invalid("the cursor is not one of a name search".into()));
                    }
                    None => (prefix.clone(), String::new()),
                };
                let end = prefix_end(&prefix);
                sqlx::query(&name_sql(end.is_some()))
                    .bind(from_name)
                    .bind(from_id)
                    .bind(end.unwrap_or_default())
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut items = Vec::with_capacity(rows.len());
        let mut last_name = None;
        for row in rows.iter().take(limit as usize) {
            items.push(summary_from_row(row)?);
            last_name = row.try_get::<Option<String>, _>("name_search")?;
        }
        let next_cursor = match (rows.len() > limit as usize, items.last()) {
            (true, Some(last)) => {
                let n = matches!(query, SearchQuery::Name(_)).then(|| last_name.unwrap_or_default());
                Some(Cursor { n, i: last.id.clone() }.encode())
            }
            _ => None,
        };
        Ok(SearchPage { items, next_cursor })
    }

    /// Fills `name_search` of accounts written before it existed (at start-up; idempotent, in
    /// batches, safe to run on several replicas at once).
    pub(super) async fn backfill_name_search(&self) -> Result<u64, AccountError> {
        let mut done = 0u64;
        loop {
            let rows = sqlx::query("SELECT id, full_name FROM accounts WHERE name_search IS NULL LIMIT 1000")
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let mut tx = self.begin_write().await?;
            for r in &rows {
                let id: String = r.try_get("id")?;
                let name: Option<String> = r.try_get("full_name")?;
                sqlx::query("UPDATE accounts SET name_search = $1 WHERE id = $2 AND name_search IS NULL")
                    .bind(search_key(name.as_deref().unwrap_or("")))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            done += rows.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn prefix_end_is_the_first_string_past_the_prefix() {
        assert_eq!(prefix_end("nguyen"), Some("nguyeo".into()));
        assert_eq!(prefix_end("a\u{D7FF}"), Some("a\u{E000}".into()));
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert!("nguyen van an" < prefix_end("nguyen").unwrap().as_str());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_invalid_input() {
        let c = Cursor { n: Some("nguyen van an".into()), i: "acc-1".into() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!", "e30", &"A".repeat(2000)] {
            assert!(matches!(Cursor::decode(bad), Err(AccountError::Invalid(_))), "{bad:?}");
        }
    }
}
