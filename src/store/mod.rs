//! Storage stage: the vault's database, through sqlx's `Any` driver so one code path serves an
//! embedded SQLite file (the default) and PostgreSQL (several replicas). Migrations are embedded
//! and run at open.
//!
//! Tokens are stored only as AES-256-GCM envelopes (`credentials::envelope`), each bound to its
//! row and field by associated data; a dump of the database holds no plaintext token. Never
//! logs a token.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use crate::credentials::Secret;
use crate::credentials::envelope::{EnvelopeError, KeyRing};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("unsupported database URL (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl,
}

/// Who a connection belongs to: the credential, and for per-user connections the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionKey {
    pub credential: String,
    /// Empty for a shared connection.
    pub issuer: String,
    pub subject: String,
}

/// The tokens of one connection, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
}

/// What a key rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub rows: u64,
    pub reencrypted: u64,
}

pub struct Store {
    pool: AnyPool,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// Associated data: an envelope only decrypts on the row and field it was written for.
fn aad(id: &str, field: &str) -> Vec<u8> {
    format!("connection:{id}:{field}").into_bytes()
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str, keys: Arc<KeyRing>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else if url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.to_owned()
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let pool = AnyPoolOptions::new().max_connections(8).connect(&url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, keys })
    }

    /// Stores a connection's tokens, encrypted, replacing earlier ones; marks it healthy.
    pub async fn put_tokens(&self, key: &ConnectionKey, tokens: &Tokens) -> Result<String, StoreError> {
        let existing: Option<String> = sqlx::query("SELECT id FROM connections WHERE credential = $1 AND issuer = $2 AND subject = $3")
            .bind(&key.credential)
            .bind(&key.issuer)
            .bind(&key.subject)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0));
        let id = existing.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let access = self.keys.encrypt(tokens.access_token.expose().as_bytes(), &aad(&id, "access_token"))?;
        let refresh =
            tokens.refresh_token.as_ref().map(|r| self.keys.encrypt(r.expose().as_bytes(), &aad(&id, "refresh_token"))).transpose()?;
        sqlx::query(
            "INSERT INTO connections (id, credential, issuer, subject, access_token, refresh_token, expires_at, scope, status, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'healthy', $9)
             ON CONFLICT (credential, issuer, subject) DO UPDATE SET
               access_token = excluded.access_token, refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
               scope = excluded.scope, status = 'healthy', updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(&key.credential)
        .bind(&key.issuer)
        .bind(&key.subject)
        .bind(access)
        .bind(refresh)
        .bind(tokens.expires_at)
        .bind(tokens.scope.clone())
        .bind(i64::try_from(crate::unix_now()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// A connection's tokens, decrypted, if it exists.
    pub async fn get_tokens(&self, key: &ConnectionKey) -> Result<Option<Tokens>, StoreError> {
        let row = sqlx::query("SELECT id, access_token, refresh_token, expires_at, scope FROM connections WHERE credential = $1 AND issuer = $2 AND subject = $3")
            .bind(&key.credential)
            .bind(&key.issuer)
            .bind(&key.subject)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.get(0);
        let access: Option<String> = row.get(1);
        let Some(access) = access else { return Ok(None) };
        let refresh: Option<String> = row.get(2);
        Ok(Some(Tokens {
            access_token: self.keys.decrypt_secret(&access, &aad(&id, "access_token"))?,
            refresh_token: refresh.map(|r| self.keys.decrypt_secret(&r, &aad(&id, "refresh_token"))).transpose()?,
            expires_at: row.get(3),
            scope: row.get(4),
        }))
    }

    /// Re-encrypts every envelope not under the active key, `batch` rows per transaction, so
    /// serving continues meanwhile. Keys decrypt until removed from the ring; run this after
    /// making a new key active and before removing the old one.
    pub async fn rotate_keys(&self, batch: usize) -> Result<Rotation, StoreError> {
        let mut report = Rotation::default();
        let mut after = String::new();
        loop {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query("SELECT id, access_token, refresh_token FROM connections WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(&after)
                .bind(i64::try_from(batch.max(1)).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(report);
            }
            for row in &rows {
                let id: String = row.get(0);
                report.rows += 1;
                let fields = [
                    ("access_token", row.get::<Option<String>, _>(1), "UPDATE connections SET access_token = $1 WHERE id = $2"),
                    ("refresh_token", row.get::<Option<String>, _>(2), "UPDATE connections SET refresh_token = $1 WHERE id = $2"),
                ];
                for (field, value, update) in fields {
                    let Some(value) = value else { continue };
                    if !self.keys.needs_rotation(&value)? {
                        continue;
                    }
                    let renewed = self.keys.reencrypt(&value, &aad(&id, field))?;
                    sqlx::query(update).bind(renewed).bind(&id).execute(&mut *tx).await?;
                    report.reencrypted += 1;
                }
                after = id;
            }
            tx.commit().await?;
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}
