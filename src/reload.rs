//! Reloading the configured tools and federated servers on SIGHUP, without a restart and
//! without dropping requests.
//!
//! `warden serve` re-reads its config file on SIGHUP. When `tools[]`, `openapi[]` or
//! `servers[]` changed, the new tools and servers are built in full (every check `warden check`
//! makes) with the credentials in force before anything is swapped; then the configured tools
//! are swapped in at once, servers that were removed or changed are stopped, added or changed
//! ones are started (unchanged ones keep their sessions), the metadata's `scopes_supported`
//! follows, and policy is bound again to the new catalog. A request in flight keeps the
//! registry it started with. A config that fails to load or build changes nothing: the last
//! good tools stay in force, and the failure is logged and audited (`config/reload`,
//! `config_invalid`, with the failing path). Sections that cannot change at run time
//! (listeners, identity, credentials, limits, audit, routes, …; a changed secret included) are
//! reported as needing a restart and otherwise ignored. Policy files reload through their own
//! watcher (`policy::reload`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::config::{Config, ConfigError};
use crate::tools::{Catalog, ToolRegistry};

/// What of a config a reload compares: the reloadable tools, and everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    tools: String,
    fixed: String,
}

impl Snapshot {
    /// Secrets are compared by their keyed fingerprints (`secret::with_fingerprints`), so a
    /// changed secret alone is noticed (and reported as needing a restart).
    pub fn of(config: &Config) -> Self {
        let mut fixed = config.clone();
        fixed.tools.clear();
        fixed.openapi.clear();
        fixed.servers.clear();
        fixed.policy = crate::config::PolicyConfig::default();
        crate::secret::with_fingerprints(|| Self {
            tools: format!("{:?}{:?}{:?}", config.tools, config.openapi, config.servers),
            fixed: format!("{fixed:?}"),
        })
    }
}

/// Every scope the configured tools, the federated servers and the proxy routes require: the
/// metadata's `scopes_supported` (sorted and deduplicated by the metadata).
pub fn scopes_supported(mut tools: Vec<String>, servers: &[crate::config::McpServerConfig], routes: &crate::routes::Routes) -> Vec<String> {
    tools.extend(servers.iter().flat_map(|s| s.scopes.iter().cloned()));
    tools.extend(routes.scopes().cloned());
    tools
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// New tools are in force.
    pub tools: bool,
    /// Sections changed that only a restart applies.
    pub restart_needed: bool,
}

pub struct ToolsReload {
    pub path: PathBuf,
    pub tools: Arc<Catalog>,
    pub credentials: Arc<crate::credentials::Credentials>,
    pub upstream: Arc<crate::upstream::Upstream>,
    pub policy: Arc<crate::policy::reload::Reloader>,
    pub federation: Arc<crate::federation::Federation>,
    /// The proxy routes (not reloaded), whose scopes stay in the metadata.
    pub routes: Arc<crate::routes::Routes>,
    /// The Protected Resource Metadata, whose `scopes_supported` follows the tools.
    pub metadata: Arc<crate::identity::metadata::ResourceMetadata>,
    pub audit: Arc<AuditSink>,
    /// The config in force (its last good snapshot).
    pub last: Mutex<Snapshot>,
}

impl ToolsReload {
    /// Re-reads the config file and puts changed tools in force; audits the outcome.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        let result = self.try_reload();
        let event = |decision, reason, explanation: String| AuditEvent {
            explanation: Some(explanation),
            ..AuditEvent::config_reload(Verdict { decision, reason, status: 0 })
        };
        match &result {
            Ok(Reloaded { tools: true, restart_needed }) => {
                let count = self.tools.configured().iter().count();
                tracing::info!(tools = count, restart_needed, "config reloaded: the configured tools and servers are in force");
                let note = if *restart_needed { "; other sections changed and need a restart" } else { "" };
                self.audit.emit(event("allow", "tools_reloaded", format!("{count} configured tool(s), servers as configured{note}")));
            }
            Ok(Reloaded { tools: false, restart_needed: true }) => {
                tracing::warn!("config reloaded: no tool changed; the sections that changed need a restart");
                self.audit.emit(event("allow", "restart_needed", "sections changed that only a restart applies".into()));
            }
            Ok(_) => tracing::info!("config reloaded: nothing changed"),
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; the last good tools stay in force");
                self.audit.emit(event("error", "config_invalid", crate::audit::bounded(&e.to_string()).into_owned()));
            }
        }
        result
    }

    fn try_reload(&self) -> Result<Reloaded, ConfigError> {
        let config = crate::config::load_file(&self.path, &crate::config::ProcessEnv)?;
        let next = Snapshot::of(&config);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let restart_needed = next.fixed != last.fixed;
        if next.tools == last.tools {
            last.fixed = next.fixed;
            return Ok(Reloaded { tools: false, restart_needed });
        }
        let mut configs = config.tools.clone();
        configs.extend(crate::tools::openapi::expand_all(&config.openapi, &config.base_dir, &config.upstream)?);
        let registry = ToolRegistry::build(&configs, self.upstream.identity_headers(), config.upstream.default_timeout, &self.credentials)?;
        let servers = crate::federation::Federation::prepare(
            &config.servers,
            &config.base_dir,
            &self.upstream,
            config.upstream.default_timeout,
            &self.credentials,
            &registry,
        )?;
        let scopes = scopes_supported(registry.scopes(), &config.servers, &self.routes);
        for (name, owner) in self.tools.reconfigure(registry) {
            tracing::warn!(tool = %name, owner = %owner, "a federated tool's name is now taken by a configured tool; it is not exposed");
        }
        self.federation.apply(servers);
        self.metadata.set_scopes_supported(scopes);
        self.policy.rebind();
        *last = next;
        Ok(Reloaded { tools: true, restart_needed })
    }

    /// Reloads on every SIGHUP until `cancel`.
    pub async fn watch(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        #[cfg(unix)]
        {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = hup.recv() => {}
                }
                let reload = Arc::clone(&self);
                // File reads, and fetching OpenAPI documents, are blocking work.
                let _ = tokio::task::spawn_blocking(move || reload.reload()).await;
            }
        }
        #[cfg(not(unix))]
        cancel.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    fn config(token: &str, tool: &str) -> crate::config::Config {
        let text = format!(
            "server:\n  public_url: https://gw.example\nidentity:\n  issuers:\n    - issuer: https://issuer.example\nadmin:\n  token: {token}\ntools:\n  - {{name: {tool}, description: d, http: {{url: \"https://api.example/x\"}}}}\n"
        );
        crate::config::parse(&text, &std::collections::HashMap::<String, String>::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_changed_secret_alone_is_noticed_and_never_shown() {
        let (one, two) = ("admin-token-one-0123456789abcdef0123", "admin-token-two-0123456789abcdef0123");
        let base = Snapshot::of(&config(one, "a"));
        assert_eq!(base, Snapshot::of(&config(one, "a")), "the same config is the same snapshot");
        let secret = Snapshot::of(&config(two, "a"));
        assert_eq!(secret.tools, base.tools);
        assert_ne!(secret.fixed, base.fixed, "only the secret changed, and it shows");
        let tools = Snapshot::of(&config(one, "b"));
        assert_ne!(tools.tools, base.tools);
        assert_eq!(tools.fixed, base.fixed);
        assert!(!format!("{base:?}{secret:?}").contains("admin-token"));
    }
}
