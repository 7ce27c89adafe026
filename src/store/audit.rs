//! The audit trail's database sink: records inserted in batches, queried by subject, tool,
//! decision and time, and read back in chain order for verification.

use sqlx::Row;

use super::{Store, StoreError};

/// One record's columns (the rest is in `record`, the line as written).
#[derive(Debug, Clone, Default)]
pub struct AuditRow {
    pub chain: String,
    pub seq: i64,
    pub id: String,
    pub ts: String,
    pub kind: String,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub server: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub record: String,
}

/// Which records to read; every field set must match. `since` and `until` are RFC 3339 UTC
/// (compared as text, which orders them correctly for Warden's `ts`).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub tenant: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: u32,
}

impl Store {
    /// Inserts records; one already there (same chain and seq: a batch written twice after a
    /// failure) is left as it is.
    pub async fn insert_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO audit_records (chain, seq, id, ts, kind, subject, issuer, tenant, client_id, method, tool, server, decision, reason, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (chain, seq) DO NOTHING",
            )
            .bind(&r.chain)
            .bind(r.seq)
            .bind(&r.id)
            .bind(&r.ts)
            .bind(&r.kind)
            .bind(&r.subject)
            .bind(&r.issuer)
            .bind(&r.tenant)
            .bind(&r.client_id)
            .bind(&r.method)
            .bind(&r.tool)
            .bind(&r.server)
            .bind(&r.decision)
            .bind(&r.reason)
            .bind(&r.record)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records matching `filter`, newest first, as written (JSON lines).
    pub async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<String>, StoreError> {
        let mut sql = String::from("SELECT record FROM audit_records WHERE kind = 'event'");
        let mut values: Vec<&str> = Vec::new();
        for (clause, value) in [
            ("subject = ", &filter.subject),
            ("tool = ", &filter.tool),
            ("decision = ", &filter.decision),
            ("tenant = ", &filter.tenant),
            ("ts >= ", &filter.since),
            ("ts < ", &filter.until),
        ] {
            if let Some(v) = value {
                values.push(v);
                sql.push_str(&format!(" AND {clause}${}", values.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY ts DESC, chain, seq DESC LIMIT {}", filter.limit.clamp(1, 10_000)));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in values {
            query = query.bind(v);
        }
        Ok(query.fetch_all(&self.pool).await?.into_iter().map(|r| r.get(0)).collect())
    }

    /// The chains in the table, and every record of one in `seq` order, a page at a time.
    pub async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT chain FROM audit_records ORDER BY chain").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    pub async fn audit_chain_page(&self, chain: &str, after_seq: i64, limit: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, record FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(chain)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
