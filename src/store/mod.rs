//! Storage stage: the vault's database, through sqlx's `Any` driver so one code path serves an
//! embedded SQLite file (the default) and PostgreSQL (several replicas). Migrations are embedded
//! and run at open.
//!
//! Tokens are stored only as AES-256-GCM envelopes (`credentials::envelope`), each bound to its
//! row and field by associated data; a dump of the database holds no plaintext token. Never
//! logs a token.

pub mod api_keys;
pub mod approvals;
pub mod audit;
pub mod envelope;
pub mod oauth;
#[cfg(test)]
mod tests;
pub mod usage;

use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use crate::secret::Secret;
use envelope::{EnvelopeError, KeyRing};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Tries at migrating a SQLite file another process may be migrating at the same time.
const MIGRATION_ATTEMPTS: u64 = 5;

/// Unused connect links kept per caller and connection; older ones stop working.
pub const OPEN_LINKS: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("no entropy source for random tokens")]
    NoEntropy,
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

/// A stored connection: its tokens and the bookkeeping refresh needs.
#[derive(Debug, Clone)]
pub struct StoredConnection {
    pub id: String,
    pub tokens: Tokens,
    pub healthy: bool,
    /// Bumped on every token write.
    pub version: i64,
}

/// A connection as the admin API shows it: never a token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionStatus {
    pub credential: String,
    /// Empty for a shared connection.
    pub issuer: String,
    pub subject: String,
    /// `healthy` or `unhealthy`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub has_refresh_token: bool,
    pub updated_at: i64,
}

/// A started connect flow, taken (and deleted) at the callback.
#[derive(Debug)]
pub struct Flow {
    pub key: ConnectionKey,
    pub verifier: Secret,
    pub browser_hash: String,
    /// Unix seconds.
    pub started_at: i64,
}

/// What a key rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub rows: u64,
    pub reencrypted: u64,
}

pub struct Store {
    pool: AnyPool,
    /// SQLite wants write transactions begun `IMMEDIATE` (see [`Store::begin_write`]).
    sqlite: bool,
    keys: Arc<KeyRing>,
    /// Row timestamps (connections, connect links) are read here.
    clock: crate::clock::SharedClock,
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

fn flow_aad(link_hash: &str) -> Vec<u8> {
    format!("connect_flow:{link_hash}:verifier").into_bytes()
}

/// How long a call waits for a PostgreSQL connection before it fails (`StoreError`, answered
/// as unavailable), e.g. while the server restarts.
pub const POSTGRES_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            // sqlx keeps retrying a refused connection until this deadline: while PostgreSQL is
            // away, a call that needs it is answered (503, a stable code) after this long, not
            // after sqlx's default 30 s. A local SQLite file is never away.
            .acquire_timeout(if sqlite { std::time::Duration::from_secs(30) } else { POSTGRES_ACQUIRE_TIMEOUT })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Overwrite deleted and replaced content with zeros, so an envelope under a
                    // retired key does not linger in free pages after rotation.
                    if sqlite {
                        sqlx::Executor::execute(conn, "PRAGMA secure_delete = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        // PostgreSQL serializes migrations with an advisory lock; SQLite has none, so two
        // processes opening one file at once can both try to apply a migration, and one fails
        // on the migrations table's key. The other applied it: run again, which then finds
        // everything applied.
        let mut attempt = 0;
        while let Err(e) = MIGRATOR.run(&pool).await {
            attempt += 1;
            if !sqlite || attempt >= MIGRATION_ATTEMPTS {
                return Err(e.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
        }
        Ok(Self { pool, sqlite, keys, clock: crate::clock::system() })
    }

    /// A transaction that will write. On SQLite it takes the write lock at once: a deferred
    /// transaction in WAL mode that waited for another writer fails with SQLITE_BUSY instead
    /// of waiting (its snapshot is stale), which under concurrent writers would refuse calls.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(if self.sqlite { self.pool.begin_with("BEGIN IMMEDIATE").await? } else { self.pool.begin().await? })
    }

    /// Stores a connection's tokens, encrypted, replacing earlier ones; marks it healthy.
    /// Reads row timestamps from `clock` instead of the machine's.
    pub fn with_clock(mut self, clock: crate::clock::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.unix()).unwrap_or(i64::MAX)
    }

    pub async fn put_tokens(&self, key: &ConnectionKey, tokens: &Tokens) -> Result<String, StoreError> {
        let existing: Option<String> = sqlx::query("SELECT id FROM connections WHERE credential = $1 AND issuer = $2 AND subject = $3")
            .bind(&key.credential)
            .bind(&key.issuer)
            .bind(&key.subject)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0));
        let id = existing.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let (access, refresh) = self.seal(&id, tokens)?;
        sqlx::query(
            "INSERT INTO connections (id, credential, issuer, subject, access_token, refresh_token, expires_at, scope, status, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'healthy', $9)
             ON CONFLICT (credential, issuer, subject) DO UPDATE SET
               access_token = excluded.access_token, refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
               scope = excluded.scope, status = 'healthy', status_reason = NULL, lease_until = 0,
               version = connections.version + 1, updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(&key.credential)
        .bind(&key.issuer)
        .bind(&key.subject)
        .bind(access)
        .bind(refresh)
        .bind(tokens.expires_at)
        .bind(tokens.scope.clone())
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The envelopes of a connection's access and refresh tokens, bound to row `id`.
    fn seal(&self, id: &str, tokens: &Tokens) -> Result<(String, Option<String>), StoreError> {
        let access = self.keys.encrypt(tokens.access_token.expose().as_bytes(), &aad(id, "access_token"))?;
        let refresh =
            tokens.refresh_token.as_ref().map(|r| self.keys.encrypt(r.expose().as_bytes(), &aad(id, "refresh_token"))).transpose()?;
        Ok((access, refresh))
    }

    /// A connection's tokens, decrypted, if it exists.
    pub async fn get_tokens(&self, key: &ConnectionKey) -> Result<Option<Tokens>, StoreError> {
        Ok(self.get_connection(key).await?.map(|c| c.tokens))
    }

    /// A connection with its tokens decrypted, if it exists.
    pub async fn get_connection(&self, key: &ConnectionKey) -> Result<Option<StoredConnection>, StoreError> {
        let row = sqlx::query(
            "SELECT id, access_token, refresh_token, expires_at, scope, status, version FROM connections
             WHERE credential = $1 AND issuer = $2 AND subject = $3",
        )
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
        let status: String = row.get(5);
        let tokens = Tokens {
            access_token: self.keys.decrypt_secret(&access, &aad(&id, "access_token"))?,
            refresh_token: refresh.map(|r| self.keys.decrypt_secret(&r, &aad(&id, "refresh_token"))).transpose()?,
            expires_at: row.get(3),
            scope: row.get(4),
        };
        Ok(Some(StoredConnection { id, tokens, healthy: status == "healthy", version: row.get(6) }))
    }

    /// Replaces the tokens of connection `id` after a refresh, if no one else wrote it since
    /// `version`; releases the refresh lease. Returns whether it was written.
    pub async fn put_refreshed(&self, id: &str, version: i64, tokens: &Tokens) -> Result<bool, StoreError> {
        let (access, refresh) = self.seal(id, tokens)?;
        let done = sqlx::query(
            "UPDATE connections SET access_token = $1, refresh_token = $2, expires_at = $3, scope = $4, version = version + 1,
               lease_until = 0, status = 'healthy', status_reason = NULL, updated_at = $5
             WHERE id = $6 AND version = $7",
        )
        .bind(access)
        .bind(refresh)
        .bind(tokens.expires_at)
        .bind(tokens.scope.clone())
        .bind(self.now())
        .bind(id)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes the refresh lease of connection `id` at `version` until `until_ms` (Unix ms), unless
    /// another holder's lease is still running. One conditional UPDATE: atomic on SQLite and
    /// PostgreSQL alike, across processes and replicas.
    pub async fn try_lease(&self, id: &str, version: i64, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE connections SET lease_until = $1 WHERE id = $2 AND version = $3 AND status = 'healthy' AND lease_until < $4",
        )
        .bind(until_ms)
        .bind(id)
        .bind(version)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease back without writing tokens (the provider could not be reached).
    pub async fn release_lease(&self, id: &str, version: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE connections SET lease_until = 0 WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks connection `id` unhealthy with a reason code. Returns true only for the call that
    /// changed it, so the event is reported once.
    pub async fn mark_unhealthy(&self, id: &str, version: i64, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE connections SET status = 'unhealthy', status_reason = $1, lease_until = 0, updated_at = $2
             WHERE id = $3 AND version = $4 AND status = 'healthy'",
        )
        .bind(reason)
        .bind(self.now())
        .bind(id)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Connections (optionally of one credential), without tokens.
    pub async fn list_connections(&self, credential: Option<&str>) -> Result<Vec<ConnectionStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT credential, issuer, subject, status, status_reason, expires_at, scope, refresh_token, updated_at FROM connections
             WHERE ($1 = '' OR credential = $1) ORDER BY credential, issuer, subject",
        )
        .bind(credential.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ConnectionStatus {
                credential: r.get(0),
                issuer: r.get(1),
                subject: r.get(2),
                status: r.get(3),
                status_reason: r.get(4),
                expires_at: r.get(5),
                scope: r.get(6),
                has_refresh_token: r.get::<Option<String>, _>(7).is_some(),
                updated_at: r.get(8),
            })
            .collect())
    }

    /// Deletes a connection. Returns whether one existed.
    pub async fn delete_connection(&self, key: &ConnectionKey) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM connections WHERE credential = $1 AND issuer = $2 AND subject = $3")
            .bind(&key.credential)
            .bind(&key.issuer)
            .bind(&key.subject)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a connect link (by its hash) for `key`, keeps only the [`OPEN_LINKS`] newest
    /// unused links of `key` (a caller retrying an unconnected tool cannot pile up rows), and
    /// forgets flows older than an hour.
    pub async fn create_link(&self, link_hash: &str, key: &ConnectionKey) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM connect_flows WHERE created_at < $1").bind(self.now() - 3600).execute(&self.pool).await?;
        sqlx::query("INSERT INTO connect_flows (link_hash, credential, issuer, subject, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(link_hash)
            .bind(&key.credential)
            .bind(&key.issuer)
            .bind(&key.subject)
            .bind(self.now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM connect_flows WHERE link_hash IN (
               SELECT link_hash FROM connect_flows
               WHERE credential = $1 AND issuer = $2 AND subject = $3 AND started_at IS NULL
               ORDER BY created_at DESC, link_hash DESC LIMIT 1000000 OFFSET $4)",
        )
        .bind(&key.credential)
        .bind(&key.issuer)
        .bind(&key.subject)
        .bind(OPEN_LINKS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a connect link: once, if created after `not_before` (Unix seconds). Attaches the
    /// OAuth state, the PKCE verifier (encrypted) and the browser binding; returns who the flow
    /// connects.
    pub async fn start_flow(
        &self,
        link_hash: &str,
        state_hash: &str,
        verifier: &Secret,
        browser_hash: &str,
        not_before: i64,
    ) -> Result<Option<ConnectionKey>, StoreError> {
        let sealed = self.keys.encrypt(verifier.expose().as_bytes(), &flow_aad(link_hash))?;
        let done = sqlx::query(
            "UPDATE connect_flows SET state_hash = $1, verifier = $2, browser_hash = $3, started_at = $4
             WHERE link_hash = $5 AND started_at IS NULL AND created_at >= $6",
        )
        .bind(state_hash)
        .bind(sealed)
        .bind(browser_hash)
        .bind(self.now())
        .bind(link_hash)
        .bind(not_before)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT credential, issuer, subject FROM connect_flows WHERE link_hash = $1")
            .bind(link_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| ConnectionKey { credential: r.get(0), issuer: r.get(1), subject: r.get(2) }))
    }

    /// Takes the flow of an OAuth state: returns it once and deletes it, so a replayed state
    /// finds nothing.
    pub async fn take_flow(&self, state_hash: &str) -> Result<Option<Flow>, StoreError> {
        let row = sqlx::query(
            "SELECT link_hash, credential, issuer, subject, verifier, browser_hash, started_at FROM connect_flows WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let link_hash: String = row.get(0);
        let taken = sqlx::query("DELETE FROM connect_flows WHERE link_hash = $1").bind(&link_hash).execute(&self.pool).await?;
        if taken.rows_affected() != 1 {
            return Ok(None);
        }
        let (Some(verifier), Some(browser_hash), Some(started_at)) =
            (row.get::<Option<String>, _>(4), row.get::<Option<String>, _>(5), row.get::<Option<i64>, _>(6))
        else {
            return Ok(None);
        };
        Ok(Some(Flow {
            key: ConnectionKey { credential: row.get(1), issuer: row.get(2), subject: row.get(3) },
            verifier: self.keys.decrypt_secret(&verifier, &flow_aad(&link_hash))?,
            browser_hash,
            started_at,
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
                // Connect flows and sign-ins in progress (few, gone within the hour) and Warden's
                // signing keys.
                report.reencrypted += self
                    .reencrypt_sealed(
                        "SELECT link_hash, verifier FROM connect_flows WHERE verifier IS NOT NULL",
                        "UPDATE connect_flows SET verifier = $1 WHERE link_hash = $2 AND verifier = $3",
                        flow_aad,
                    )
                    .await?;
                report.reencrypted += self
                    .reencrypt_sealed(
                        "SELECT kid, private_key FROM signing_keys",
                        "UPDATE signing_keys SET private_key = $1 WHERE kid = $2 AND private_key = $3",
                        signing_aad,
                    )
                    .await?;
                report.reencrypted += self
                    .reencrypt_sealed(
                        "SELECT id, arguments FROM approvals",
                        "UPDATE approvals SET arguments = $1 WHERE id = $2 AND arguments = $3",
                        approvals::arguments_aad,
                    )
                    .await?;
                report.reencrypted += self
                    .reencrypt_sealed(
                        "SELECT state_hash, request FROM oauth_requests",
                        "UPDATE oauth_requests SET request = $1 WHERE state_hash = $2 AND request = $3",
                        oauth::request_aad,
                    )
                    .await?;
                report.reencrypted += self
                    .reencrypt_sealed(
                        "SELECT subject, tokens FROM oauth_idp_tokens",
                        "UPDATE oauth_idp_tokens SET tokens = $1 WHERE subject = $2 AND tokens = $3",
                        oauth::idp_tokens_aad,
                    )
                    .await?;
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

    /// Re-encrypts one sealed column of a table whose rows are few (so removing an old key
    /// never breaks, say, a sign-in under way): `select` reads (key, envelope), `update` writes
    /// ($1 envelope, $2 key, $3 the envelope it replaces), `aad` binds an envelope to its key.
    async fn reencrypt_sealed(&self, select: &'static str, update: &'static str, aad: fn(&str) -> Vec<u8>) -> Result<u64, StoreError> {
        let rows = sqlx::query(select).fetch_all(&self.pool).await?;
        let mut done = 0;
        for row in &rows {
            let (key, sealed): (String, String) = (row.get(0), row.get(1));
            if !self.keys.needs_rotation(&sealed)? {
                continue;
            }
            let renewed = self.keys.reencrypt(&sealed, &aad(&key))?;
            sqlx::query(update).bind(renewed).bind(&key).bind(&sealed).execute(&self.pool).await?;
            done += 1;
        }
        Ok(done)
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A federated tool's pinned definition, and a changed one awaiting approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolPin {
    pub server: String,
    pub tool: String,
    pub approved_hash: String,
    pub approved_definition: String,
    pub pending_hash: Option<String>,
    pub pending_definition: Option<String>,
    pub updated_at: i64,
}

impl Store {
    /// The pin of one upstream tool, if any.
    pub async fn tool_pin(&self, server: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        Ok(self.tool_pins_where(Some((server, tool))).await?.pop())
    }

    /// Every pin, by server and tool.
    pub async fn tool_pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        self.tool_pins_where(None).await
    }

    async fn tool_pins_where(&self, key: Option<(&str, &str)>) -> Result<Vec<ToolPin>, StoreError> {
        const ONE: &str = "SELECT server, tool, approved_hash, approved_definition, pending_hash, pending_definition, updated_at
             FROM tool_pins WHERE server = $1 AND tool = $2";
        const ALL: &str = "SELECT server, tool, approved_hash, approved_definition, pending_hash, pending_definition, updated_at
             FROM tool_pins ORDER BY server, tool";
        let rows = match key {
            Some((server, tool)) => sqlx::query(ONE).bind(server).bind(tool).fetch_all(&self.pool).await?,
            None => sqlx::query(ALL).fetch_all(&self.pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| ToolPin {
                server: r.get(0),
                tool: r.get(1),
                approved_hash: r.get(2),
                approved_definition: r.get(3),
                pending_hash: r.get(4),
                pending_definition: r.get(5),
                updated_at: r.get(6),
            })
            .collect())
    }

    /// Pins a tool seen for the first time. Returns false when another replica pinned it first
    /// (its pin stands).
    pub async fn insert_tool_pin(&self, server: &str, tool: &str, hash: &str, definition: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO tool_pins (server, tool, approved_hash, approved_definition, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (server, tool) DO NOTHING",
        )
        .bind(server)
        .bind(tool)
        .bind(hash)
        .bind(definition)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a changed definition as pending (`None`: the server is back to the approved
    /// one). Returns whether the row changed. A definition that is the approved one is never
    /// recorded as pending: a check that read the pin just before an approval of that very
    /// definition leaves the approval whole.
    pub async fn set_pending_tool_pin(&self, server: &str, tool: &str, pending: Option<(&str, &str)>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tool_pins SET pending_hash = $3, pending_definition = $4, updated_at = $5
             WHERE server = $1 AND tool = $2 AND COALESCE(pending_hash, '') <> COALESCE($3, '')
               AND approved_hash <> COALESCE($3, '')",
        )
        .bind(server)
        .bind(tool)
        .bind(pending.map(|(h, _)| h.to_owned()))
        .bind(pending.map(|(_, d)| d.to_owned()))
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Approves a tool's pending definition, if it is still `hash`'s (so an approval never
    /// covers a change the operator did not see). Returns whether it was approved.
    pub async fn approve_tool_pin(&self, server: &str, tool: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tool_pins SET approved_hash = pending_hash, approved_definition = pending_definition,
               pending_hash = NULL, pending_definition = NULL, updated_at = $4
             WHERE server = $1 AND tool = $2 AND pending_hash = $3",
        )
        .bind(server)
        .bind(tool)
        .bind(hash)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a console session on every replica until `expires_at` (Unix seconds), when its
    /// cookie would have expired; rows past that go.
    pub async fn revoke_console_session(&self, sid: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_revocations WHERE expires_at < $1").bind(self.now()).execute(&self.pool).await?;
        sqlx::query("INSERT INTO console_revocations (sid, expires_at) VALUES ($1, $2) ON CONFLICT (sid) DO NOTHING")
            .bind(sid)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a console session was ended by a sign-out.
    pub async fn console_session_revoked(&self, sid: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM console_revocations WHERE sid = $1").bind(sid).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    /// Warden's signing keys that are not retired, newest first: (kid, alg, PKCS#8 DER).
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows =
            sqlx::query("SELECT kid, alg, private_key, created_at FROM signing_keys WHERE retired_at IS NULL ORDER BY seq DESC, kid DESC")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                let (kid, alg, sealed, created_at): (String, String, String, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
                let pkcs8 = zeroize::Zeroizing::new(self.keys.decrypt(&sealed, &signing_aad(&kid))?);
                Ok(StoredSigningKey { alg, pkcs8, created_at })
            })
            .collect()
    }

    /// Stores a signing key, its private key sealed under the key ring. Returns false when the
    /// kid was there already.
    pub async fn insert_signing_key(&self, kid: &str, alg: &str, pkcs8: &[u8]) -> Result<bool, StoreError> {
        let sealed = self.keys.encrypt(pkcs8, &signing_aad(kid))?;
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, seq)
             VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM signing_keys)) ON CONFLICT (kid) DO NOTHING",
        )
        .bind(kid)
        .bind(alg)
        .bind(sealed)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Retires every signing key of `alg` but the `keep` newest (no longer published; the rows
    /// stay for the record).
    pub async fn retire_signing_keys_beyond(&self, alg: &str, keep: usize) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = $2 AND kid NOT IN
               (SELECT kid FROM signing_keys WHERE retired_at IS NULL AND alg = $2 ORDER BY seq DESC, kid DESC LIMIT $3)",
        )
        .bind(self.now())
        .bind(alg)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// A signing key as stored: its algorithm, its private key (unsealed) and when it was made.
pub struct StoredSigningKey {
    pub alg: String,
    pub pkcs8: zeroize::Zeroizing<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
}

fn signing_aad(kid: &str) -> Vec<u8> {
    format!("signing_key:{kid}").into_bytes()
}
