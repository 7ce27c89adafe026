//! Approval requests (`approvals`): one row per call an `approve` rule held back. The exact
//! call is its key; the arguments are sealed; each state change is a conditional `UPDATE` whose
//! row count says whether it happened, so a request is decided once and an approval used once,
//! on any replica.

use sqlx::Row;

use super::{Store, StoreError};

/// A query of whole records (the columns [`Store::approval_record`] reads), then `$rest`.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT id, status, issuer, subject, client_id, tool, server, arguments_sha256, arguments, policy_version, rule, ",
            "reason, approvers, created_at, expires_at, decided_by, decided_at, comment, used_at FROM approvals ",
            $rest
        )
    };
}

/// Requests listed at most.
const LIST_ROWS: i64 = 500;

pub(super) fn arguments_aad(id: &str) -> Vec<u8> {
    format!("approval:{id}:arguments").into_bytes()
}

/// One request, as stored (the arguments decrypted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRecord {
    pub id: String,
    /// `pending`, `approved`, `denied`, `used`, or `expired` (pending or approved past its time).
    pub status: String,
    pub issuer: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub arguments_sha256: String,
    pub arguments: serde_json::Value,
    pub policy_version: String,
    pub rule: String,
    pub reason: String,
    /// `{"roles": [...], "subjects": [...], "self_approval": bool}`.
    pub approvers: serde_json::Value,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub id: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: Option<&'a str>,
    pub tool: &'a str,
    pub server: Option<&'a str>,
    pub arguments_sha256: &'a str,
    pub arguments: &'a serde_json::Value,
    pub policy_version: &'a str,
    pub rule: &'a str,
    pub reason: &'a str,
    pub approvers: &'a serde_json::Value,
    pub expires_at: i64,
}

impl Store {
    /// A row's status as callers see it: pending or approved past its time is `expired`.
    fn approval_status(&self, r: &sqlx::any::AnyRow) -> String {
        let status: String = r.get(1);
        let expires_at: i64 = r.get(14);
        if matches!(status.as_str(), "pending" | "approved") && expires_at < self.now() { "expired".into() } else { status }
    }

    fn approval_record(&self, r: &sqlx::any::AnyRow) -> Result<ApprovalRecord, StoreError> {
        let id: String = r.get(0);
        let sealed: String = r.get(8);
        let arguments = serde_json::from_slice(&self.keys.decrypt(&sealed, &arguments_aad(&id))?).unwrap_or_default();
        let status = self.approval_status(r);
        let expires_at: i64 = r.get(14);
        Ok(ApprovalRecord {
            id,
            status,
            issuer: r.get(2),
            subject: r.get(3),
            client_id: r.get(4),
            tool: r.get(5),
            server: r.get(6),
            arguments_sha256: r.get(7),
            arguments,
            policy_version: r.get(9),
            rule: r.get(10),
            reason: r.get(11),
            approvers: serde_json::from_str(&r.get::<String, _>(12)).unwrap_or_default(),
            created_at: r.get(13),
            expires_at,
            decided_by: r.get(15),
            decided_at: r.get(16),
            comment: r.get(17),
            used_at: r.get(18),
        })
    }

    /// Records a pending request, unless one is open for the same call already (then false: a
    /// concurrent attempt made it). A pending request of this call past its time is closed
    /// first.
    pub async fn insert_approval(&self, new: &NewApproval<'_>) -> Result<bool, StoreError> {
        sqlx::query(
            "UPDATE approvals SET status = 'expired' WHERE issuer = $1 AND subject = $2 AND tool = $3 AND arguments_sha256 = $4 \
             AND policy_version = $5 AND status = 'pending' AND expires_at < $6",
        )
        .bind(new.issuer)
        .bind(new.subject)
        .bind(new.tool)
        .bind(new.arguments_sha256)
        .bind(new.policy_version)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        let sealed = self.keys.encrypt(serde_json::to_string(new.arguments).unwrap_or_default().as_bytes(), &arguments_aad(new.id))?;
        let done = sqlx::query(
            "INSERT INTO approvals (id, status, issuer, subject, client_id, tool, server, arguments_sha256, arguments, policy_version, rule, \
             reason, approvers, created_at, expires_at) VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT DO NOTHING",
        )
        .bind(new.id)
        .bind(new.issuer)
        .bind(new.subject)
        .bind(new.client_id)
        .bind(new.tool)
        .bind(new.server)
        .bind(new.arguments_sha256)
        .bind(sealed)
        .bind(new.policy_version)
        .bind(new.rule)
        .bind(new.reason)
        .bind(new.approvers.to_string())
        .bind(self.now())
        .bind(new.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The requests for this exact call that still matter: approved (not yet used), pending, or
    /// denied within their window; newest first.
    pub async fn open_approvals(
        &self,
        issuer: &str,
        subject: &str,
        tool: &str,
        arguments_sha256: &str,
        policy_version: &str,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let sql = select!(
            "WHERE issuer = $1 AND subject = $2 AND tool = $3 AND arguments_sha256 = $4 AND policy_version = $5 \
             AND status IN ('pending', 'approved', 'denied') AND expires_at >= $6 ORDER BY created_at DESC, id DESC LIMIT 20"
        );
        let rows = sqlx::query(sql)
            .bind(issuer)
            .bind(subject)
            .bind(tool)
            .bind(arguments_sha256)
            .bind(policy_version)
            .bind(self.now())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.approval_record(r)).collect()
    }

    /// Whether this exact call had a request that expired undecided (for the caller's answer).
    pub async fn expired_approval(&self, issuer: &str, subject: &str, tool: &str, arguments_sha256: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM approvals WHERE issuer = $1 AND subject = $2 AND tool = $3 AND arguments_sha256 = $4 \
             AND status IN ('pending', 'expired') AND expires_at < $5 LIMIT 1",
        )
        .bind(issuer)
        .bind(subject)
        .bind(tool)
        .bind(arguments_sha256)
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let sql = select!("WHERE id = $1");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| self.approval_record(&r)).transpose()
    }

    /// Requests, newest first; `status` narrows (`pending`: waiting and not expired).
    pub async fn list_approvals(&self, status: Option<&str>) -> Result<Vec<ApprovalRecord>, StoreError> {
        let sql = select!("ORDER BY created_at DESC, id DESC LIMIT $1");
        let rows = sqlx::query(sql).bind(LIST_ROWS).fetch_all(&self.pool).await?;
        // Filtered before the arguments are decrypted: only the rows returned are opened.
        rows.iter().filter(|r| status.is_none_or(|s| self.approval_status(r) == s)).map(|r| self.approval_record(r)).collect()
    }

    /// Decides a pending request that has not expired, once: approved (usable for `use_for`
    /// seconds from now) or denied. False when it was not pending any more.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        use_for: i64,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let done = sqlx::query(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, comment = $4, expires_at = $5 \
             WHERE id = $6 AND status = 'pending' AND expires_at >= $3",
        )
        .bind(if approve { "approved" } else { "denied" })
        .bind(by)
        .bind(now)
        .bind(comment)
        .bind(if approve { now + use_for } else { now })
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses an approval, once: true for the one caller that gets to run the call.
    pub async fn use_approval(&self, id: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let done =
            sqlx::query("UPDATE approvals SET status = 'used', used_at = $1 WHERE id = $2 AND status = 'approved' AND expires_at >= $1")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
