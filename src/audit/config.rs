//! The audit stage's configuration: `audit:` as parsed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// One sink, the short way: `stdout`, `stderr`, `off`, or a file path (appended to).
    /// Default (without `sinks`): `stdout`.
    #[serde(default)]
    pub output: Option<String>,
    /// Where events go, several at once.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// The tamper-evident chain's checkpoints.
    #[serde(default)]
    pub chain: ChainConfig,
    /// The on-disk queue in front of the webhook and database sinks.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// What happens when a sink cannot keep up and its spool (or, for a file or stdout, its
    /// memory backlog) is full: `block` (requests wait) or `refuse` (new MCP requests are
    /// refused with `audit_unavailable` until it drains). Default: block.
    #[serde(default)]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Relative to the config file; each spooled sink has a directory in it. Default:
    /// `audit-spool`.
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Bytes waiting per sink, at most, before `on_failure` decides. Default: 256 MiB.
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { dir: default_spool_dir(), max_bytes: default_spool_bytes() }
    }
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("audit-spool")
}

fn default_spool_bytes() -> u64 {
    256 << 20
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Requests wait for room: nothing runs unrecorded, and nothing is refused.
    #[default]
    Block,
    /// New MCP requests are refused (`audit_unavailable`, HTTP 503) until there is room.
    Refuse,
}

impl AuditConfig {
    /// The sinks in force: `sinks`, or the one `output` names.
    pub fn effective_sinks(&self) -> Vec<SinkConfig> {
        if !self.sinks.is_empty() {
            return self.sinks.clone();
        }
        match self.output.as_deref().unwrap_or("stdout") {
            "off" => Vec::new(),
            "stdout" | "-" => vec![SinkConfig::Stdout { format: Format::Json }],
            "stderr" => vec![SinkConfig::Stderr { format: Format::Json }],
            path => vec![SinkConfig::File(FileSinkConfig {
                path: PathBuf::from(path),
                format: Format::Json,
                max_bytes: None,
                max_age: None,
                keep: default_keep(),
            })],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    File(FileSinkConfig),
    /// Batches POSTed to a collector (through the spool).
    Webhook(super::webhook::WebhookSinkConfig),
    /// The vault's database (`vault.database`), queried by `warden audit query` (through the
    /// spool).
    Database {
        #[serde(default)]
        format: Format,
    },
    Stdout {
        #[serde(default)]
        format: Format,
    },
    Stderr {
        #[serde(default)]
        format: Format,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Relative to the config file.
    pub path: PathBuf,
    #[serde(default)]
    pub format: Format,
    /// Rotate when the file would grow past this many bytes. Default: never.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Rotate when the file is older than this. Default: never.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Rotated files kept (`PATH.1` the newest); older ones are deleted. Default: 10.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Warden's event JSON, one object per line.
    #[default]
    Json,
    /// OCSF 1.1 API Activity (class 6003), one event per line; Warden's record under
    /// `unmapped.warden`.
    Ocsf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Ed25519 key (PKCS#8, base64) that signs checkpoints (`warden keys generate --audit`).
    /// Without one, events are still hash-chained, but no checkpoint is written.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint after this many records. Default: 1000.
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
    /// And at least this often while events are written. Default: 60s.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub checkpoint_interval: Option<Duration>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self { signing_key_file: None, checkpoint_every: default_every(), checkpoint_interval: default_interval() }
    }
}

fn default_keep() -> usize {
    10
}

fn default_every() -> u64 {
    1000
}

#[allow(clippy::unnecessary_wraps)]
fn default_interval() -> Option<Duration> {
    Some(Duration::from_secs(60))
}
