//! Policy reload: where the policy comes from, compiling it, and swapping it in when its
//! sources change (polled) or on SIGHUP. A broken source keeps the last good policy in force;
//! the failure is logged and audited. In-flight requests finish with the policy they started
//! with.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Policy, PolicyError, PolicySet, SharedPolicy};
use crate::audit::{AuditEvent, AuditSink, Verdict};

/// Binds a compiled policy set to the tools it governs. The composition root supplies it, so
/// policy never depends on where tools come from.
pub type Binder = Box<dyn Fn(Arc<PolicySet>) -> Policy + Send + Sync>;

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// No policy files: tool scopes alone decide.
    None,
    /// Files and directories, relative to `base`; reloaded when they change.
    Files { base: PathBuf, paths: Vec<String> },
    /// Policies compiled into the binary (the demo).
    Embedded(Vec<(String, &'static str)>),
}

/// Policy sources as read: `(policy name, text)` pairs and a fingerprint of them all.
struct PolicyTexts {
    texts: Vec<(String, String)>,
    fingerprint: [u8; 32],
}

impl PolicySource {
    /// The sources' names and texts, and a fingerprint of them.
    fn read(&self) -> Result<PolicyTexts, PolicyError> {
        use sha2::Digest;
        let texts: Vec<(String, String)> = match self {
            Self::None => Vec::new(),
            Self::Embedded(list) => list.iter().map(|(n, t)| (n.clone(), (*t).to_owned())).collect(),
            Self::Files { base, paths } => {
                let files = super::expand_paths(base, paths)?;
                let mut out = Vec::with_capacity(files.len());
                for f in files {
                    let text = std::fs::read_to_string(&f).map_err(|e| PolicyError {
                        file: f.display().to_string(),
                        at: "(file)".into(),
                        message: e.to_string(),
                    })?;
                    out.push((super::policy_name(&f), text));
                }
                out
            }
        };
        let mut hash = sha2::Sha256::new();
        for (n, t) in &texts {
            hash.update(n.as_bytes());
            hash.update([0]);
            hash.update(t.as_bytes());
            hash.update([0]);
        }
        Ok(PolicyTexts { texts, fingerprint: hash.finalize().into() })
    }

    fn compile(&self, texts: &[(String, String)], bind: &Binder) -> Result<Policy, PolicyError> {
        let set = match self {
            Self::None => PolicySet::default(),
            Self::Files { .. } | Self::Embedded(_) => PolicySet::from_sources(texts.iter().map(|(n, t)| (n.clone(), t.as_str())))?,
        };
        Ok(bind(Arc::new(set)))
    }
}

/// The policy in force and how to renew it.
pub struct Reloader {
    source: PolicySource,
    bind: Binder,
    policy: SharedPolicy,
    fingerprint: Mutex<Option<[u8; 32]>>,
    audit: Arc<AuditSink>,
    /// How often the sources are polled; zero: only on SIGHUP.
    interval: Duration,
    /// Told when a new policy is in force (what callers may see can have changed).
    on_reload: Box<dyn Fn() + Send + Sync>,
}

impl Reloader {
    /// Reads and compiles the policy once: a broken source is a start-up error.
    pub fn new(source: PolicySource, bind: Binder, audit: Arc<AuditSink>, interval: Duration) -> Result<Self, PolicyError> {
        let PolicyTexts { texts, fingerprint } = source.read()?;
        let policy = source.compile(&texts, &bind)?;
        Ok(Self {
            source,
            bind,
            policy: Arc::new(arc_swap::ArcSwap::from_pointee(policy)),
            fingerprint: Mutex::new(Some(fingerprint)),
            audit,
            interval,
            on_reload: Box::new(|| {}),
        })
    }

    /// What to tell when a new policy is in force: the catalog, which tells the callers that
    /// listen for list changes (a reload can show or hide tools, resources and prompts).
    #[must_use]
    pub fn on_reload(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_reload = Box::new(f);
        self
    }

    /// The policy in force, shared with every stage that reads it.
    pub fn policy(&self) -> SharedPolicy {
        Arc::clone(&self.policy)
    }

    /// Binds the policy in force again, to the tools as they are now: called when a tool
    /// source's catalog changed, so rules reach the tools it added.
    pub fn rebind(&self) {
        let _serialized = self.fingerprint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let set = Arc::clone(&self.policy.load().set);
        self.policy.store(Arc::new((self.bind)(set)));
    }

    /// Re-reads the policy sources; when they changed, compiles and swaps them in. Returns
    /// whether a new policy is in force.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let result = self.source.read().and_then(|PolicyTexts { texts, fingerprint }| {
            let mut last = self.fingerprint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *last == Some(fingerprint) {
                return Ok(false);
            }
            let policy = self.source.compile(&texts, &self.bind)?;
            self.policy.store(Arc::new(policy));
            *last = Some(fingerprint);
            Ok(true)
        });
        let event = |decision, reason| AuditEvent::policy_reload(Verdict { decision, reason, status: 0 });
        match &result {
            Ok(true) => {
                tracing::info!(rules = self.policy.load().set.rules.len(), "policy reloaded");
                self.audit.emit(event("allow", "policy_reloaded"));
                (self.on_reload)();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the last good policy stays in force");
                self.audit.emit(event("error", "policy_invalid"));
            }
        }
        result
    }

    fn reloads(&self) -> bool {
        matches!(self.source, PolicySource::Files { .. })
    }

    /// Polls the sources and listens for SIGHUP until `cancel`. Always runs: SIGHUP means
    /// "reload" to operators and must never terminate the gateway, even with nothing to reload.
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let interval = self.interval;
        loop {
            let tick = async { if interval.is_zero() { std::future::pending().await } else { tokio::time::sleep(interval).await } };
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick => {}
                _ = hangup => tracing::info!(policy_files = self.reloads(), "SIGHUP: reloading policy"),
            }
            if !self.reloads() {
                continue;
            }
            let reloader = Arc::clone(&self);
            // File reads and compilation are blocking work.
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    }
}
