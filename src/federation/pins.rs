//! Tool-definition pinning: a federated tool's definition is pinned when first seen; a later,
//! different definition is withheld (or, per server, only reported) until an operator approves
//! it. Pins live in the vault's database so every replica and every restart agree; without a
//! vault they live in memory, for this process only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::config::Pinning;
use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::credentials::Vault;
use crate::store::ToolPin;

/// What a tool's definition, as a server presents it now, means for serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinVerdict {
    Serve,
    /// Not listed; calls refused with `tool_definition_changed`.
    Withhold,
}

/// The part of a tool's definition that is pinned: name, title, description, input and output
/// schemas and annotations, as canonical JSON (keys sorted), and its SHA-256.
pub fn definition(tool: &rmcp::model::Tool) -> (String, String) {
    let full = serde_json::to_value(tool).unwrap_or(Value::Null);
    let mut pinned = serde_json::Map::new();
    for key in ["name", "title", "description", "inputSchema", "outputSchema", "annotations"] {
        if let Some(v) = full.get(key) {
            pinned.insert(key.to_owned(), v.clone());
        }
    }
    let text = canonical(&Value::Object(pinned));
    let hash = crate::sha256_hex(&text);
    (text, hash)
}

/// JSON with object keys sorted at every depth, so equal definitions hash equally.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(value)).unwrap_or_default()
}

pub struct Pins {
    vault: Option<Arc<Vault>>,
    memory: Mutex<HashMap<(String, String), ToolPin>>,
    audit: Arc<AuditSink>,
}

impl Pins {
    pub fn new(vault: Option<Arc<Vault>>, audit: Arc<AuditSink>) -> Self {
        Self { vault, memory: Mutex::new(HashMap::new()), audit }
    }

    /// Whether pins survive a restart and are shared between replicas.
    pub fn durable(&self) -> bool {
        self.vault.is_some()
    }

    /// Checks one tool of `server` against its pin, pinning it when new and recording a change
    /// (audited once per new definition).
    pub async fn check(&self, server: &str, tool: &rmcp::model::Tool, mode: Pinning) -> PinVerdict {
        if mode == Pinning::Off {
            return PinVerdict::Serve;
        }
        let (text, hash) = definition(tool);
        let name = tool.name.as_ref();
        let outcome = match &self.vault {
            Some(vault) => self.check_stored(vault, server, name, &hash, &text).await,
            None => Ok(self.check_memory(server, name, &hash, &text)),
        };
        let change = match outcome {
            Ok(change) => change,
            Err(()) => {
                // Fail closed: an unknown definition is not served while the pins cannot be read.
                return if mode == Pinning::Enforce { PinVerdict::Withhold } else { PinVerdict::Serve };
            }
        };
        let event = |decision, reason, why| AuditEvent::tool_pin(server, name, why, Verdict { decision, reason, status: 0 });
        match change {
            Change::Same => PinVerdict::Serve,
            Change::Pinned => {
                self.audit.emit(event("allow", "tool_pinned", Some(format!("sha256:{hash}"))));
                PinVerdict::Serve
            }
            Change::Changed { first_report, approved } => {
                if first_report {
                    tracing::warn!(server, tool = name, "a federated tool's definition changed: withheld until approved");
                    let decision = if mode == Pinning::Enforce { "deny" } else { "allow" };
                    let why = format!("approved sha256:{approved}, now sha256:{hash}; see `warden tools diff {server} {name}`");
                    self.audit.emit(event(decision, "tool_definition_changed", Some(why)));
                }
                if mode == Pinning::Enforce { PinVerdict::Withhold } else { PinVerdict::Serve }
            }
        }
    }

    async fn check_stored(&self, vault: &Vault, server: &str, tool: &str, hash: &str, text: &str) -> Result<Change, ()> {
        let failed = |e: crate::store::StoreError| tracing::error!(error = %e, server, tool, "tool pins unavailable");
        let store = vault.store().await.map_err(failed)?;
        let pin = store.tool_pin(server, tool).await.map_err(failed)?;
        let Some(pin) = pin else {
            if store.insert_tool_pin(server, tool, hash, text).await.map_err(failed)? {
                return Ok(Change::Pinned);
            }
            // Another replica pinned it first: judge against its pin.
            let pin = store.tool_pin(server, tool).await.map_err(failed)?.ok_or(())?;
            return self.compare_stored(store, &pin, hash, text).await.map_err(failed);
        };
        self.compare_stored(store, &pin, hash, text).await.map_err(failed)
    }

    async fn compare_stored(
        &self,
        store: &crate::store::Store,
        pin: &ToolPin,
        hash: &str,
        text: &str,
    ) -> Result<Change, crate::store::StoreError> {
        if pin.approved_hash == hash {
            if pin.pending_hash.is_some() {
                store.set_pending_tool_pin(&pin.server, &pin.tool, None).await?;
            }
            return Ok(Change::Same);
        }
        let first_report = store.set_pending_tool_pin(&pin.server, &pin.tool, Some((hash, text))).await?;
        // Nothing recorded: already pending, or approved since `pin` was read (by an operator,
        // or another replica) — the pin as it is now decides.
        if !first_report && store.tool_pin(&pin.server, &pin.tool).await?.is_some_and(|now| now.approved_hash == hash) {
            return Ok(Change::Same);
        }
        Ok(Change::Changed { first_report, approved: pin.approved_hash.clone() })
    }

    fn check_memory(&self, server: &str, tool: &str, hash: &str, text: &str) -> Change {
        let mut pins = self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (server.to_owned(), tool.to_owned());
        let Some(pin) = pins.get_mut(&key) else {
            pins.insert(
                key,
                ToolPin {
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                    approved_hash: hash.to_owned(),
                    approved_definition: text.to_owned(),
                    pending_hash: None,
                    pending_definition: None,
                    updated_at: 0,
                },
            );
            return Change::Pinned;
        };
        if pin.approved_hash == hash {
            pin.pending_hash = None;
            pin.pending_definition = None;
            return Change::Same;
        }
        let first_report = pin.pending_hash.as_deref() != Some(hash);
        pin.pending_hash = Some(hash.to_owned());
        pin.pending_definition = Some(text.to_owned());
        Change::Changed { first_report, approved: pin.approved_hash.clone() }
    }

    /// Every pin (the vault's, or this process's).
    pub async fn list(&self) -> Result<Vec<ToolPin>, crate::store::StoreError> {
        match &self.vault {
            Some(vault) => vault.store().await?.tool_pins().await,
            None => {
                let pins = self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut all: Vec<ToolPin> = pins.values().cloned().collect();
                all.sort_by(|a, b| (&a.server, &a.tool).cmp(&(&b.server, &b.tool)));
                Ok(all)
            }
        }
    }

    /// A name `server` offers that `owner` already serves: audited once per collision.
    pub fn audit_collision(&self, server: &str, kind: &str, name: &str, owner: &str) {
        let why = format!("the {kind} {name} is served by server {owner}; server {server} offers it too and is refused it");
        let verdict = Verdict { decision: "deny", reason: "tool_name_collision", status: 0 };
        self.audit.emit(AuditEvent::tool_pin(server, name, Some(why), verdict));
    }

    /// Approves the pending definition of `server`'s `tool` when its hash is `hash`; audited.
    pub async fn approve(&self, server: &str, tool: &str, hash: &str) -> Result<bool, crate::store::StoreError> {
        let approved = match &self.vault {
            Some(vault) => vault.store().await?.approve_tool_pin(server, tool, hash).await?,
            None => {
                let mut pins = self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match pins.get_mut(&(server.to_owned(), tool.to_owned())) {
                    Some(pin) if pin.pending_hash.as_deref() == Some(hash) => {
                        pin.approved_hash = hash.to_owned();
                        pin.approved_definition = pin.pending_definition.take().unwrap_or_default();
                        pin.pending_hash = None;
                        true
                    }
                    _ => false,
                }
            }
        };
        if approved {
            let verdict = Verdict { decision: "allow", reason: "tool_definition_approved", status: 0 };
            self.audit.emit(AuditEvent::tool_pin(server, tool, Some(format!("sha256:{hash}")), verdict));
        }
        Ok(approved)
    }
}

enum Change {
    Same,
    Pinned,
    Changed { first_report: bool, approved: String },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tool(description: &str, schema: Value) -> rmcp::model::Tool {
        rmcp::model::Tool::new("t", description.to_owned(), Arc::new(schema.as_object().cloned().unwrap_or_default()))
    }

    fn pins() -> (Pins, tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        let audit = Arc::new(AuditSink::open(&path.display().to_string()).unwrap_or_else(|e| panic!("{e}")));
        (Pins::new(None, audit), dir, path)
    }

    #[test]
    fn the_hash_ignores_key_order_and_covers_what_the_model_reads() {
        let a = tool("d", serde_json::json!({"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "integer"}}}));
        let b = tool("d", serde_json::json!({"properties": {"y": {"type": "integer"}, "x": {"type": "string"}}, "type": "object"}));
        assert_eq!(definition(&a).1, definition(&b).1);
        assert_ne!(definition(&a).1, definition(&tool("d.", serde_json::json!({"type": "object"}))).1);
        let annotated = a.clone().with_annotations(rmcp::model::ToolAnnotations::new().read_only(true));
        assert_ne!(definition(&a).1, definition(&annotated).1, "annotations are pinned");
    }

    #[tokio::test]
    async fn enforce_withholds_warn_serves_off_ignores_and_approval_takes_the_reviewed_hash() {
        let (pins, _dir, _path) = pins();
        let first = tool("d", serde_json::json!({"type": "object"}));
        let changed = tool("d, and more", serde_json::json!({"type": "object"}));
        assert_eq!(pins.check("s", &first, Pinning::Enforce).await, PinVerdict::Serve, "pinned on first sight");
        assert_eq!(pins.check("s", &changed, Pinning::Enforce).await, PinVerdict::Withhold);
        assert_eq!(pins.check("s", &changed, Pinning::Warn).await, PinVerdict::Serve);
        assert_eq!(pins.check("s", &changed, Pinning::Off).await, PinVerdict::Serve);
        assert_eq!(pins.check("s", &first, Pinning::Enforce).await, PinVerdict::Serve, "back to the approved one");
        // A change is pending again; approving another hash does nothing.
        assert_eq!(pins.check("s", &changed, Pinning::Enforce).await, PinVerdict::Withhold);
        let (_, pending) = definition(&changed);
        assert!(!pins.approve("s", "t", "not-the-pending-hash").await.unwrap_or(true));
        assert!(pins.approve("s", "t", &pending).await.unwrap_or(false));
        assert_eq!(pins.check("s", &changed, Pinning::Enforce).await, PinVerdict::Serve, "approved");
        assert_eq!(pins.check("s", &first, Pinning::Enforce).await, PinVerdict::Withhold, "the old one is now the change");
    }
}
