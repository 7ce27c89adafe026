//! Quotas: budgets in cost units per calendar day or month, per subject, tenant, client, tool
//! or server, kept in the vault's database so neither a restart nor another replica resets
//! them. A call is charged when it is admitted (after policy, argument validation and rate
//! limits); all the quotas it falls under are charged together or not at all.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::config::{KeyPart, Period, QuotaConfig};
use super::{bucket_key, parse_targets};
use crate::audit::{AuditEvent, AuditSink};
use crate::config_error::ConfigError;
use crate::credentials::Vault;
use crate::identity::Principal;
use crate::policy::{Target, ToolFacts};
use crate::store::usage::{KeyColumns, Spend, Spent, Usage, UsageFilter};

/// How long a charge may wait for the database before the call is refused
/// (`limits_unavailable`): never a hang on a database that does not answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Quotas {
    quotas: Vec<Quota>,
    tz: Tz,
    vault: Option<Arc<Vault>>,
    audit: Arc<AuditSink>,
    clock: crate::clock::SharedClock,
}

struct Quota {
    name: String,
    targets: Vec<Target>,
    key: Vec<KeyPart>,
    period: Period,
    budget: u64,
    warn_at: Option<u64>,
}

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// Over budget: the quota (`quotas/<name>`), when the period resets, and seconds until then.
    Exceeded { quota: String, resets_at: DateTime<Utc>, retry_after: u64 },
    /// The database did not answer in time (or failed): refused rather than uncounted.
    Unavailable { quota: String },
}

/// One quota's state for a caller, as `warden limits usage` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageReport {
    #[serde(flatten)]
    pub usage: Usage,
    pub budget: Option<u64>,
    /// When the period resets (RFC 3339), for the current period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

impl Quotas {
    pub fn build(
        configs: &[QuotaConfig],
        timezone: Option<&str>,
        vault: Option<Arc<Vault>>,
        audit: Arc<AuditSink>,
        clock: crate::clock::SharedClock,
    ) -> Result<Self, ConfigError> {
        let tz: Tz = match timezone {
            Some(name) => name
                .parse()
                .map_err(|_| ConfigError::new("limits.timezone", format!("{name:?} is not an IANA time zone (e.g. Europe/Berlin)")))?,
            None => Tz::UTC,
        };
        if !configs.is_empty() && vault.is_none() {
            return Err(ConfigError::new(
                "limits.quotas",
                "quotas are kept in the vault's database: configure vault (sqlite://… or postgres://…)",
            ));
        }
        let mut quotas: Vec<Quota> = Vec::with_capacity(configs.len());
        for (i, q) in configs.iter().enumerate() {
            let at = |field: &str| format!("limits.quotas[{i}].{field}");
            super::check_name(&q.name).map_err(|m| ConfigError::new(at("name"), m))?;
            if quotas.iter().any(|o| o.name == q.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate quota name {:?}", q.name)));
            }
            if q.key.is_empty() {
                return Err(ConfigError::new(at("key"), "name at least one of subject, tenant, client, tool, server"));
            }
            if q.budget == 0 || i64::try_from(q.budget).is_err() {
                return Err(ConfigError::new(at("budget"), "must be at least 1 (and below 2^63)"));
            }
            if q.warn_at_percent > 100 {
                return Err(ConfigError::new(at("warn_at_percent"), "a percentage: 0 (off) to 100"));
            }
            let warn_at = (q.warn_at_percent > 0).then(|| (q.budget * u64::from(q.warn_at_percent)).div_ceil(100).max(1));
            quotas.push(Quota {
                name: q.name.clone(),
                targets: parse_targets(&q.tools, |j| format!("limits.quotas[{i}].tools[{j}]"))?,
                key: q.key.clone(),
                period: q.period,
                budget: q.budget,
                warn_at,
            });
        }
        Ok(Self { quotas, tz, vault, audit, clock })
    }

    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }

    /// Charges `cost` to every quota the call falls under, or refuses it. A warning threshold
    /// crossed by this charge writes one `quota_warning` event (once per period and bucket,
    /// whichever replica crosses it).
    pub async fn charge(&self, principal: &Principal, tool: &ToolFacts<'_>, cost: u64, request: (&str, &str)) -> Result<(), QuotaRefusal> {
        let applicable: Vec<&Quota> =
            self.quotas.iter().filter(|q| q.targets.is_empty() || q.targets.iter().any(|t| t.matches(tool))).collect();
        if applicable.is_empty() || cost == 0 {
            return Ok(());
        }
        let now = self.now();
        let periods: Vec<(String, DateTime<Utc>)> = applicable.iter().map(|q| period_of(now, self.tz, q.period)).collect();
        // A cost beyond a whole budget can never be paid: refused without asking the database.
        if let Some((q, (_, resets))) = applicable.iter().zip(&periods).find(|(q, _)| cost > q.budget) {
            return Err(self.exceeded(q, *resets, now));
        }
        let buckets: Vec<String> = applicable.iter().map(|q| bucket_key(&q.key, principal, tool)).collect();
        let cost_units = i64::try_from(cost).unwrap_or(i64::MAX);
        let spends: Vec<Spend<'_>> = applicable
            .iter()
            .zip(&buckets)
            .zip(&periods)
            .map(|((q, bucket), (period, _))| Spend {
                quota: &q.name,
                bucket,
                period,
                columns: columns(&q.key, principal, tool),
                cost: cost_units,
                budget: i64::try_from(q.budget).unwrap_or(i64::MAX),
                warn_at: q.warn_at.and_then(|w| i64::try_from(w).ok()),
            })
            .collect();
        let unavailable = || QuotaRefusal::Unavailable { quota: format!("quotas/{}", applicable[0].name) };
        let Some(vault) = &self.vault else { return Err(unavailable()) };
        let spent = tokio::time::timeout(STORE_TIMEOUT, async {
            let store = vault.store().await?;
            store.spend_quotas(&spends).await
        })
        .await;
        match spent {
            Ok(Ok(Spent::Within { warn })) => {
                for i in warn {
                    let q = applicable[i];
                    let explanation = format!("{}% of the budget of {} units for {} reached", warn_percent(q), q.budget, periods[i].0);
                    let event =
                        AuditEvent::quota_warning(request, principal, &format!("quotas/{}", q.name), (tool.name, tool.server), explanation);
                    self.audit.emit(event);
                }
                Ok(())
            }
            Ok(Ok(Spent::Exceeded(i))) => Err(self.exceeded(applicable[i], periods[i].1, now)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "quota charge failed: call refused");
                Err(unavailable())
            }
            Err(_) => {
                tracing::warn!("quota charge timed out: call refused");
                Err(unavailable())
            }
        }
    }

    fn exceeded(&self, q: &Quota, resets_at: DateTime<Utc>, now: DateTime<Utc>) -> QuotaRefusal {
        let retry_after = u64::try_from((resets_at - now).num_seconds()).unwrap_or(0).max(1);
        QuotaRefusal::Exceeded { quota: format!("quotas/{}", q.name), resets_at, retry_after }
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.clock.wall())
    }

    /// Usage rows matching `filter`, each with its quota's budget and, for the current
    /// period, when it resets.
    pub async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageReport>, crate::store::StoreError> {
        let Some(vault) = &self.vault else { return Ok(Vec::new()) };
        let rows = vault.store().await?.quota_usage(filter).await?;
        let now = self.now();
        Ok(rows
            .into_iter()
            .map(|usage| {
                let quota = self.quotas.iter().find(|q| q.name == usage.quota);
                let resets_at = quota
                    .map(|q| period_of(now, self.tz, q.period))
                    .filter(|(current, _)| *current == usage.period)
                    .map(|(_, resets)| resets.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                UsageReport { budget: quota.map(|q| q.budget), resets_at, usage }
            })
            .collect())
    }
}

fn warn_percent(q: &Quota) -> u64 {
    q.warn_at.map_or(0, |w| w * 100 / q.budget)
}

/// The key's parts in their own columns, for lookups by subject, tenant or client.
fn columns<'a>(key: &[KeyPart], principal: &'a Principal, tool: &ToolFacts<'a>) -> KeyColumns<'a> {
    let mut c = KeyColumns::default();
    for part in key {
        match part {
            KeyPart::Subject => c.subject = Some(principal.subject.as_str()),
            KeyPart::Tenant => c.tenant = principal.tenant.as_deref(),
            KeyPart::Client => c.client = principal.client_id.as_deref(),
            KeyPart::Tool => c.tool = Some(tool.name),
            KeyPart::Server => c.server = tool.server,
        }
    }
    c
}

/// The calendar period containing `now` in `tz` (`2026-11-30` or `2026-11`) and the instant
/// the next one starts.
pub fn period_of(now: DateTime<Utc>, tz: Tz, period: Period) -> (String, DateTime<Utc>) {
    let local = now.with_timezone(&tz).date_naive();
    let (label, next) = match period {
        Period::Day => (local.format("%Y-%m-%d").to_string(), local.succ_opt()),
        Period::Month => {
            let (y, m) = if local.month() == 12 { (local.year() + 1, 1) } else { (local.year(), local.month() + 1) };
            (local.format("%Y-%m").to_string(), NaiveDate::from_ymd_opt(y, m, 1))
        }
    };
    let start = |date: NaiveDate| {
        // Midnight may not exist (a DST gap): then the first instant of that day that does.
        (0..24).filter_map(|h| date.and_hms_opt(h, 0, 0)).find_map(|t| tz.from_local_datetime(&t).earliest()).map(|t| t.with_timezone(&Utc))
    };
    let resets = next.and_then(start).unwrap_or(DateTime::<Utc>::MAX_UTC);
    (label, resets)
}
