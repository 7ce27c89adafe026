//! Gateway-issued API keys: one row per key, found by the keyed hash of the key (never the key
//! itself, which is not stored). Lists of scopes, roles and tools are JSON arrays.

use sqlx::Row;

use super::{Store, StoreError};

/// A key as stored: everything but the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    /// The start of the key (`wdn_live_AbCd…`), to tell keys apart; not enough to use it.
    pub prefix: String,
    pub name: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The tools (and `route:NAME`s) the key may call; none: whatever policy allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

/// The most keys one listing returns.
const LIST_ROWS: i64 = 1000;

const COLUMNS: &str =
    "id, prefix, name, subject, tenant, scopes, roles, tools, created_by, created_at, expires_at, revoked_at, last_used_at";

fn list_of(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn record(row: &sqlx::any::AnyRow) -> ApiKeyRecord {
    let tools: Option<String> = row.get(7);
    ApiKeyRecord {
        id: row.get(0),
        prefix: row.get(1),
        name: row.get(2),
        subject: row.get(3),
        tenant: row.get(4),
        scopes: list_of(&row.get::<String, _>(5)),
        roles: list_of(&row.get::<String, _>(6)),
        tools: tools.as_deref().map(list_of),
        created_by: row.get(8),
        created_at: row.get(9),
        expires_at: row.get(10),
        revoked_at: row.get(11),
        last_used_at: row.get(12),
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Stores a new key under `hash` (the keyed hash of the key, hex).
    pub async fn create_api_key(&self, key: &ApiKeyRecord, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, hash, prefix, name, subject, tenant, scopes, roles, tools, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&key.id)
        .bind(hash)
        .bind(&key.prefix)
        .bind(&key.name)
        .bind(&key.subject)
        .bind(key.tenant.clone())
        .bind(json_list(&key.scopes))
        .bind(json_list(&key.roles))
        .bind(key.tools.as_deref().map(json_list))
        .bind(&key.created_by)
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The key stored under `hash`, with that hash (for a constant-time comparison), revoked or
    /// expired ones included.
    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<(ApiKeyRecord, String)>, StoreError> {
        let sql = format!("SELECT {COLUMNS}, hash FROM api_keys WHERE hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| (record(&r), r.get(13))))
    }

    /// Keys, newest first; revoked ones only with `include_revoked`.
    pub async fn list_api_keys(&self, include_revoked: bool) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let filter = if include_revoked { "" } else { "WHERE revoked_at IS NULL" };
        let sql = format!("SELECT {COLUMNS} FROM api_keys {filter} ORDER BY created_at DESC, id DESC LIMIT {LIST_ROWS}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Revokes a key; `Ok(None)` when there is no such key, else the key as it now stands
    /// (revoking twice keeps the first time).
    pub async fn revoke_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(self.now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(record))
    }

    /// Records that a key was used at `at` (Unix seconds).
    pub async fn touch_api_key(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2").bind(at).bind(id).execute(&self.pool).await?;
        Ok(())
    }
}
