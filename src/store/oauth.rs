//! The authorization server's state (`authz`): registered clients, sign-ins in progress, codes,
//! grants, refresh tokens, remembered consents and single-use markers. Any replica completes
//! any step, because every step is a row here; every secret is found by its SHA-256, never
//! stored itself. Single use is a conditional `UPDATE` or `DELETE` whose row count says who won,
//! so it holds on SQLite and PostgreSQL alike.

use sqlx::Row;

use super::{Store, StoreError};

/// Sign-ins in progress older than this are removed when a new one starts.
const REQUEST_ROWS_KEPT_SECS: i64 = 3600;
/// Used and expired codes are kept this long, so a replayed code is still recognised.
const CODE_ROWS_KEPT_SECS: i64 = 24 * 3600;

pub(super) fn request_aad(state_hash: &str) -> Vec<u8> {
    format!("oauth_request:{state_hash}").into_bytes()
}

pub(super) fn idp_tokens_aad(subject: &str) -> Vec<u8> {
    format!("oauth_idp_tokens:{subject}").into_bytes()
}

/// A sign-in in progress, as the callback or the consent decision takes it.
#[derive(Debug)]
pub struct PendingSignIn {
    /// The request's JSON (decrypted).
    pub request: Vec<u8>,
    pub browser_hash: String,
    /// The identity JSON, once the upstream IdP's callback set it.
    pub identity: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A code, as the token endpoint redeems it.
#[derive(Debug, Clone)]
pub struct CodeRow {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub created_at: i64,
}

/// What presenting a code or a refresh token found.
#[derive(Debug)]
pub enum Redeemed<T> {
    /// First use: now marked used.
    Fresh(T),
    /// Used before: the grant it belongs to.
    Reused {
        grant_id: String,
    },
    Unknown,
}

/// A grant.
#[derive(Debug, Clone)]
pub struct GrantRow {
    pub grant_id: String,
    pub client_id: String,
    pub subject: String,
    pub identity: String,
    pub scope: String,
    pub resource: String,
    pub revoked: bool,
}

impl Store {
    /// Registers a client. Returns false when the id was taken.
    pub async fn insert_oauth_client(&self, client_id: &str, metadata: &str, secret_hash: Option<&str>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO oauth_clients (client_id, metadata, secret_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client_id)
        .bind(metadata)
        .bind(secret_hash)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a client's metadata (a client ID metadata document fetched again).
    pub async fn update_oauth_client(&self, client_id: &str, metadata: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE oauth_clients SET metadata = $1, created_at = $2 WHERE client_id = $3")
            .bind(metadata)
            .bind(self.now())
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A client's metadata JSON, secret hash and when it was stored.
    pub async fn oauth_client(&self, client_id: &str) -> Result<Option<(String, Option<String>, i64)>, StoreError> {
        let row = sqlx::query("SELECT metadata, secret_hash, created_at FROM oauth_clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Starts a sign-in: the request (sealed) under its upstream state.
    pub async fn insert_oauth_request(&self, state_hash: &str, browser_hash: &str, request: &[u8]) -> Result<(), StoreError> {
        let sealed = self.keys.encrypt(request, &request_aad(state_hash))?;
        sqlx::query("DELETE FROM oauth_requests WHERE created_at < $1")
            .bind(self.now() - REQUEST_ROWS_KEPT_SECS)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO oauth_requests (state_hash, browser_hash, request, created_at) VALUES ($1, $2, $3, $4)")
            .bind(state_hash)
            .bind(browser_hash)
            .bind(sealed)
            .bind(self.now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses a sign-in's upstream state, once: from now on the request is found by
    /// `consent_hash` only.
    pub async fn claim_oauth_request(&self, state_hash: &str, consent_hash: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let done = sqlx::query("UPDATE oauth_requests SET consent_hash = $1 WHERE state_hash = $2 AND consent_hash IS NULL")
            .bind(consent_hash)
            .bind(state_hash)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        self.pending_sign_in(
            "SELECT state_hash, browser_hash, request, identity, created_at FROM oauth_requests WHERE state_hash = $1",
            state_hash,
        )
        .await
    }

    /// Records who signed in, after the upstream IdP's callback.
    pub async fn set_oauth_identity(&self, consent_hash: &str, identity: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE oauth_requests SET identity = $1 WHERE consent_hash = $2")
            .bind(identity)
            .bind(consent_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes a sign-in that waits for consent, once (deleted).
    pub async fn take_oauth_consent(&self, consent_hash: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let Some(pending) = self
            .pending_sign_in(
                "SELECT state_hash, browser_hash, request, identity, created_at FROM oauth_requests WHERE consent_hash = $1",
                consent_hash,
            )
            .await?
        else {
            return Ok(None);
        };
        let done = sqlx::query("DELETE FROM oauth_requests WHERE consent_hash = $1 AND identity IS NOT NULL")
            .bind(consent_hash)
            .execute(&self.pool)
            .await?;
        Ok((done.rows_affected() == 1).then_some(pending))
    }

    async fn pending_sign_in(&self, select: &'static str, hash: &str) -> Result<Option<PendingSignIn>, StoreError> {
        let Some(row) = sqlx::query(select).bind(hash).fetch_optional(&self.pool).await? else { return Ok(None) };
        let state_hash: String = row.get(0);
        Ok(Some(PendingSignIn {
            request: self.keys.decrypt(&row.get::<String, _>(2), &request_aad(&state_hash))?,
            browser_hash: row.get(1),
            identity: row.get(3),
            created_at: row.get(4),
        }))
    }

    /// Stores a grant.
    pub async fn insert_oauth_grant(&self, grant: &GrantRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_grants (grant_id, client_id, subject, identity, scope, resource, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&grant.grant_id)
        .bind(&grant.client_id)
        .bind(&grant.subject)
        .bind(&grant.identity)
        .bind(&grant.scope)
        .bind(&grant.resource)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn oauth_grant(&self, grant_id: &str) -> Result<Option<GrantRow>, StoreError> {
        let row =
            sqlx::query("SELECT grant_id, client_id, subject, identity, scope, resource, revoked_at FROM oauth_grants WHERE grant_id = $1")
                .bind(grant_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| GrantRow {
            grant_id: r.get(0),
            client_id: r.get(1),
            subject: r.get(2),
            identity: r.get(3),
            scope: r.get(4),
            resource: r.get(5),
            revoked: r.get::<Option<i64>, _>(6).is_some(),
        }))
    }

    /// Revokes a grant: its refresh tokens stop working. Returns false when it was revoked
    /// already (or is unknown).
    pub async fn revoke_oauth_grant(&self, grant_id: &str, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2 WHERE grant_id = $3 AND revoked_at IS NULL")
            .bind(self.now())
            .bind(reason)
            .bind(grant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_oauth_code(&self, code_hash: &str, code: &CodeRow) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM oauth_codes WHERE created_at < $1").bind(self.now() - CODE_ROWS_KEPT_SECS).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, grant_id, client_id, redirect_uri, code_challenge, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code_hash)
        .bind(&code.grant_id)
        .bind(&code.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Redeems a code: the first use wins; a later one reports the grant.
    pub async fn redeem_oauth_code(&self, code_hash: &str) -> Result<Redeemed<CodeRow>, StoreError> {
        let update = "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL";
        let select = "SELECT grant_id, client_id, redirect_uri, code_challenge, created_at FROM oauth_codes WHERE code_hash = $1";
        self.redeem(update, select, code_hash, |r| CodeRow {
            grant_id: r.get(0),
            client_id: r.get(1),
            redirect_uri: r.get(2),
            code_challenge: r.get(3),
            created_at: r.get(4),
        })
        .await
    }

    /// Marks the row of `hash` used (`update`: $1 now, $2 the hash, only where still unused) and
    /// reads it back (`select`, grant id first): the first use gets `fresh(row)`, a later one the
    /// grant it belongs to.
    async fn redeem<T>(
        &self,
        update: &'static str,
        select: &'static str,
        hash: &str,
        fresh: impl FnOnce(&sqlx::any::AnyRow) -> T,
    ) -> Result<Redeemed<T>, StoreError> {
        let done = sqlx::query(update).bind(self.now()).bind(hash).execute(&self.pool).await?;
        let row = sqlx::query(select).bind(hash).fetch_optional(&self.pool).await?;
        Ok(match (row, done.rows_affected()) {
            (None, _) => Redeemed::Unknown,
            (Some(r), 1) => Redeemed::Fresh(fresh(&r)),
            (Some(r), _) => Redeemed::Reused { grant_id: r.get(0) },
        })
    }

    pub async fn insert_refresh_token(&self, token_hash: &str, grant_id: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM oauth_refresh_tokens WHERE expires_at < $1").bind(self.now()).execute(&self.pool).await?;
        sqlx::query("INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(grant_id)
            .bind(self.now())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Redeems a refresh token: the first use wins (returning its grant and expiry); a later one
    /// reports the grant, so the caller can revoke it.
    pub async fn redeem_refresh_token(&self, token_hash: &str) -> Result<Redeemed<(String, i64)>, StoreError> {
        let update = "UPDATE oauth_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL";
        let select = "SELECT grant_id, expires_at FROM oauth_refresh_tokens WHERE token_hash = $1";
        self.redeem(update, select, token_hash, |r| (r.get(0), r.get(1))).await
    }

    /// The grant a refresh token belongs to, without using it (revocation).
    pub async fn refresh_token_grant(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT grant_id FROM oauth_refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The scopes a person agreed to give a client, when remembered.
    pub async fn oauth_consent(&self, subject: &str, client_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT scope FROM oauth_consents WHERE subject = $1 AND client_id = $2")
            .bind(subject)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn put_oauth_consent(&self, subject: &str, client_id: &str, scope: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_consents (subject, client_id, scope, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subject, client_id) DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at",
        )
        .bind(subject)
        .bind(client_id)
        .bind(scope)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps a person's IdP tokens (`tokens`, their JSON), sealed, replacing older ones.
    pub async fn put_idp_tokens(&self, subject: &str, tokens: &[u8], expires_at: Option<i64>) -> Result<(), StoreError> {
        let sealed = self.keys.encrypt(tokens, &idp_tokens_aad(subject))?;
        sqlx::query(
            "INSERT INTO oauth_idp_tokens (subject, tokens, expires_at, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subject) DO UPDATE SET tokens = excluded.tokens, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(subject)
        .bind(sealed)
        .bind(expires_at)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A person's IdP tokens (their JSON, unsealed) and when the access token expires.
    pub async fn idp_tokens(&self, subject: &str) -> Result<Option<(zeroize::Zeroizing<Vec<u8>>, Option<i64>)>, StoreError> {
        let row = sqlx::query("SELECT tokens, expires_at FROM oauth_idp_tokens WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (sealed, expires_at): (String, Option<i64>) = (row.get(0), row.get(1));
        Ok(Some((zeroize::Zeroizing::new(self.keys.decrypt(&sealed, &idp_tokens_aad(subject))?), expires_at)))
    }

    /// Marks `marker` used until `expires_at`. True the first time only, on every replica.
    pub async fn mark_once(&self, marker: &str, expires_at: i64) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM oauth_replay WHERE expires_at < $1").bind(self.now()).execute(&self.pool).await?;
        let done = sqlx::query("INSERT INTO oauth_replay (marker, expires_at) VALUES ($1, $2) ON CONFLICT (marker) DO NOTHING")
            .bind(marker)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
