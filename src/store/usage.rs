//! Quota usage: cost units spent per quota, bucket and calendar period. A spend is one atomic
//! statement per quota (an upsert that only adds while the sum stays within the budget), all of
//! a call's quotas in one transaction, so replicas sharing the database never overspend.

use sqlx::Row;

use super::{Store, StoreError};

/// The key's parts, each in its own column (none when not part of the key).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyColumns<'a> {
    pub subject: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub client: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub server: Option<&'a str>,
}

/// One quota's share of a call.
#[derive(Debug, Clone, Copy)]
pub struct Spend<'a> {
    pub quota: &'a str,
    pub bucket: &'a str,
    pub period: &'a str,
    pub columns: KeyColumns<'a>,
    pub cost: i64,
    pub budget: i64,
    /// Units at which the period's warning is due; none: no warning.
    pub warn_at: Option<i64>,
}

/// What a spend did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spent {
    /// Every quota had room; the indexes of those whose warning this spend is the first to
    /// cross (so exactly one replica writes it).
    Within { warn: Vec<usize> },
    /// The quota at this index had no room: nothing was spent on any.
    Exceeded(usize),
}

/// Usage of one bucket in one period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub quota: String,
    pub period: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub used: i64,
    pub updated_at: i64,
}

/// Which usage rows to read; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub quota: Option<String>,
    pub period: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub client: Option<String>,
}

/// The most rows one usage query returns.
const USAGE_ROWS: i64 = 1000;

impl Store {
    /// Spends `cost` on every quota of a call, or on none if any has no room.
    pub async fn spend_quotas(&self, spends: &[Spend<'_>]) -> Result<Spent, StoreError> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let mut used = Vec::with_capacity(spends.len());
        for (i, s) in spends.iter().enumerate() {
            let row = sqlx::query(
                "INSERT INTO quota_usage (quota, bucket, period, subject, tenant, client, tool, server, used, warned, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)
                 ON CONFLICT (quota, bucket, period) DO UPDATE
                   SET used = quota_usage.used + excluded.used, updated_at = excluded.updated_at
                   WHERE quota_usage.used + excluded.used <= $11
                 RETURNING used, warned",
            )
            .bind(s.quota)
            .bind(s.bucket)
            .bind(s.period)
            .bind(s.columns.subject)
            .bind(s.columns.tenant)
            .bind(s.columns.client)
            .bind(s.columns.tool)
            .bind(s.columns.server)
            .bind(s.cost)
            .bind(now)
            .bind(s.budget)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                // A first spend inserts without the check: the caller refuses costs over the budget.
                Some(row) if s.cost <= s.budget => used.push((row.get::<i64, _>(0), row.get::<i64, _>(1))),
                _ => {
                    tx.rollback().await?;
                    return Ok(Spent::Exceeded(i));
                }
            }
        }
        let mut warn = Vec::new();
        for (i, (s, (total, warned))) in spends.iter().zip(used).enumerate() {
            if warned != 0 || s.warn_at.is_none_or(|at| total < at) {
                continue;
            }
            let done = sqlx::query("UPDATE quota_usage SET warned = 1 WHERE quota = $1 AND bucket = $2 AND period = $3 AND warned = 0")
                .bind(s.quota)
                .bind(s.bucket)
                .bind(s.period)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 {
                warn.push(i);
            }
        }
        tx.commit().await?;
        Ok(Spent::Within { warn })
    }

    /// Units spent by one bucket in one period (0 when nothing was).
    pub async fn quota_used(&self, quota: &str, bucket: &str, period: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT used FROM quota_usage WHERE quota = $1 AND bucket = $2 AND period = $3")
            .bind(quota)
            .bind(bucket)
            .bind(period)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// Usage rows matching `filter`, newest period first (at most 1000).
    pub async fn quota_usage(&self, filter: &UsageFilter) -> Result<Vec<Usage>, StoreError> {
        let wanted = [
            ("quota", &filter.quota),
            ("period", &filter.period),
            ("subject", &filter.subject),
            ("tenant", &filter.tenant),
            ("client", &filter.client),
        ];
        let mut sql = String::from("SELECT quota, period, subject, tenant, client, tool, server, used, updated_at FROM quota_usage");
        let mut values = Vec::new();
        for (column, value) in wanted {
            if let Some(value) = value {
                values.push(value.as_str());
                sql.push_str(if values.len() == 1 { " WHERE " } else { " AND " });
                sql.push_str(&format!("{column} = ${}", values.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY period DESC, quota, bucket LIMIT {USAGE_ROWS}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in values {
            query = query.bind(value);
        }
        Ok(query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Usage {
                quota: r.get(0),
                period: r.get(1),
                subject: r.get(2),
                tenant: r.get(3),
                client: r.get(4),
                tool: r.get(5),
                server: r.get(6),
                used: r.get(7),
                updated_at: r.get(8),
            })
            .collect())
    }
}
