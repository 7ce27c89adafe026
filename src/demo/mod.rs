//! `warden demo`: the development authorization server, the demo backends (calendar, model,
//! records, notes) and the gateway, wired together on loopback with `demos/warden.yaml`. No
//! files needed: the vault is a temporary SQLite file under a fresh key.

pub mod backend;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::devidp::{DEMO_USERS, DevIdp, DevIdpConfig, UsersFile};
use crate::gateway::Gateway;
use crate::policy::reload::PolicySource;

/// The demo gateway config, shipped inside the binary.
pub const DEMO_CONFIG: &str = include_str!("../../demos/warden.yaml");

/// The demo's policies, shipped inside the binary (the same files `demos/warden.yaml` names).
pub const DEMO_POLICIES: &[(&str, &str)] = &[
    ("calendar", include_str!("../../policies/calendar.yaml")),
    ("medical", include_str!("../../policies/medical.yaml")),
    ("records", include_str!("../../policies/records.yaml")),
    ("notes", include_str!("../../policies/notes.yaml")),
];

/// The OAuth client the notes service's provider knows Warden by.
pub const NOTES_CLIENT_ID: &str = "warden-demo-notes";
/// The admin console's client at the development authorization server.
pub const CONSOLE_CLIENT_ID: &str = "warden-console";
/// Warden's authorization server's client at the development server (`--enterprise`), the one
/// an admin registers at the company IdP.
pub const SIGN_IN_CLIENT_ID: &str = "warden-sign-in";

/// Where to listen. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub host: std::net::IpAddr,
    pub gateway_port: u16,
    pub idp_port: u16,
    pub backend_port: u16,
    pub auto_approve: Option<String>,
    /// Audit output for the gateway: `stdout`, `stderr`, `off` or a path.
    pub audit: String,
    /// Overrides `identity.challenge_scopes` (least-privilege first tokens, then step-up).
    pub challenge_scopes: Option<Vec<String>>,
    /// Extra root certificates (PEM) the authorization server trusts when fetching client ID
    /// metadata documents (a test's own HTTPS server).
    pub client_metadata_ca: Option<Vec<u8>>,
    /// The enterprise set-up: MCP clients sign in at Warden's own authorization server, which
    /// sends people to the development server standing for the company's IdP.
    pub enterprise: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            host: [127, 0, 0, 1].into(),
            gateway_port: 8080,
            idp_port: 9000,
            backend_port: 9100,
            auto_approve: None,
            audit: "stdout".into(),
            challenge_scopes: None,
            client_metadata_ca: None,
            enterprise: false,
        }
    }
}

/// A running demo.
pub struct Demo {
    pub mcp_url: String,
    pub issuer: String,
    pub backend_url: String,
    pub idp: Arc<DevIdp>,
    pub calendar: Arc<backend::Calendar>,
    pub resource: String,
    /// The admin API's and console's token (random per run).
    pub admin_token: crate::secret::Secret,
    /// Started with [`DemoOptions::enterprise`].
    pub enterprise: bool,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    _vault: VaultFile,
}

/// The demo's vault: a temporary SQLite file, removed when the demo ends.
struct VaultFile(std::path::PathBuf);

impl Drop for VaultFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}")]
    Setup(String),
}

impl Demo {
    /// Binds all three servers and starts them; they stop when `shutdown` is cancelled.
    pub async fn start(options: DemoOptions, shutdown: CancellationToken) -> Result<Self, DemoError> {
        let bind = |port| async move {
            let addr = SocketAddr::new(options.host, port);
            TcpListener::bind(addr).await.map_err(|e| DemoError::Bind(addr, e))
        };
        let idp_listener = bind(options.idp_port).await?;
        let backend_listener = bind(options.backend_port).await?;
        let gateway_listener = bind(options.gateway_port).await?;
        let addr_of = |l: &TcpListener| l.local_addr().map_err(|e| DemoError::Setup(e.to_string()));
        let (idp_addr, backend_addr, gateway_addr) = (addr_of(&idp_listener)?, addr_of(&backend_listener)?, addr_of(&gateway_listener)?);

        let issuer = format!("http://{idp_addr}");
        let backend_url = format!("http://{backend_addr}");
        let users = UsersFile::parse(DEMO_USERS).map_err(DemoError::Setup)?;
        let idp = DevIdp::new(DevIdpConfig {
            issuer: issuer.clone(),
            users: users.users,
            auto_approve: options.auto_approve.clone(),
            access_token_ttl: Duration::from_secs(3600),
            client_metadata_ca: options.client_metadata_ca.clone(),
        })
        .map_err(DemoError::Setup)?;

        // The notes service's provider registers Warden as a client, as an operator would at
        // GitHub; each user's connection goes into a vault under a fresh key.
        let notes_secret = crate::credentials::vault::random_token().ok_or_else(|| DemoError::Setup("no entropy".into()))?;
        idp.register_client(NOTES_CLIENT_ID, notes_secret.expose(), vec![format!("http://{gateway_addr}/oauth/callback")]);
        // The console signs in through the same server, as a confidential client.
        let secret = || crate::credentials::vault::random_token().ok_or_else(|| DemoError::Setup("no entropy".into()));
        let (console_secret, admin_token, hash_key) = (secret()?, secret()?, secret()?);
        idp.register_client(CONSOLE_CLIENT_ID, console_secret.expose(), vec![format!("http://{gateway_addr}/admin/oidc/callback")]);
        let vault = VaultFile(std::env::temp_dir().join(format!("warden-demo-vault-{}.db", uuid::Uuid::now_v7().simple())));
        let env: HashMap<String, String> = HashMap::from([
            ("WARDEN_DEMO_GATEWAY".into(), gateway_addr.to_string()),
            ("WARDEN_DEMO_ISSUER".into(), issuer.clone()),
            ("WARDEN_DEMO_BACKEND".into(), backend_url.clone()),
            ("WARDEN_DEMO_VAULT".into(), format!("sqlite://{}", vault.0.display())),
            ("WARDEN_DEMO_VAULT_KEYS".into(), format!("demo:{}", crate::credentials::envelope::KeyRing::generate_key().expose())),
            ("WARDEN_DEMO_NOTES_SECRET".into(), notes_secret.expose().to_owned()),
            ("WARDEN_DEMO_ADMIN_TOKEN".into(), admin_token.expose().to_owned()),
            ("WARDEN_DEMO_CONSOLE_SECRET".into(), console_secret.expose().to_owned()),
            ("WARDEN_DEMO_API_KEY_HASH_KEY".into(), hash_key.expose().to_owned()),
        ]);
        let mut config = crate::config::parse(DEMO_CONFIG, &env).map_err(|e| DemoError::Setup(format!("demo config: {e}")))?;
        config.audit.output = Some(options.audit.clone());
        if options.challenge_scopes.is_some() {
            config.identity.challenge_scopes = options.challenge_scopes.clone();
        }
        if options.enterprise {
            let sign_in_secret = secret()?;
            idp.register_client(SIGN_IN_CLIENT_ID, sign_in_secret.expose(), vec![format!("http://{gateway_addr}/oauth/callback")]);
            let yaml = format!(
                "upstream: {{issuer: \"{issuer}\", client_id: {SIGN_IN_CLIENT_ID}, client_secret: \"{}\", tenant_claim: tenant}}",
                sign_in_secret.expose()
            );
            let server = serde_norway::from_str(&yaml).map_err(|e| DemoError::Setup(format!("demo authorization server: {e}")))?;
            config.authorization_server = Some(server);
        }
        let resource = config.server.resource();
        let policies = PolicySource::Embedded(DEMO_POLICIES.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect());
        let gateway = Gateway::build_with_policy(&config, policies).map_err(|e| DemoError::Setup(format!("demo config: {e}")))?;

        if let Some(vault) = &gateway.vault {
            vault.store().await.map_err(|e| DemoError::Setup(format!("demo vault: {e}")))?;
        }
        let calendar = backend::Calendar::seeded();
        calendar.trust_notes_tokens(Arc::clone(&idp), NOTES_CLIENT_ID);
        let serve = |listener: TcpListener, app: axum::Router, token: CancellationToken| {
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await })
        };
        let tasks = vec![
            serve(idp_listener, crate::devidp::router(Arc::clone(&idp)), shutdown.clone()),
            serve(backend_listener, backend::router(Arc::clone(&calendar)), shutdown.clone()),
            tokio::spawn(crate::gateway::run(gateway, gateway_listener, shutdown.cancelled_owned())),
        ];
        let enterprise = options.enterprise;
        Ok(Self { mcp_url: resource.clone(), issuer, backend_url, idp, calendar, resource, admin_token, enterprise, tasks, _vault: vault })
    }

    /// What to try with `warden demo --enterprise`.
    fn enterprise_instructions(&self) -> String {
        let mcp = &self.mcp_url;
        let base = mcp.trim_end_matches("/mcp");
        format!(
            "Warden demo (enterprise sign-in) is running.\n\n  gateway (MCP)            {mcp}\n  authorization server     {base}  (Warden's own: registration, consent, tokens)\n  company IdP (stand-in)   {issuer}  (the development server; users in demos/users.yaml)\n  calendar backend         {backend}\n\n\
Clients are sent to Warden, not to the IdP:\n\ncurl -s {base}/.well-known/oauth-protected-resource/mcp   # authorization_servers: [{base}]\ncurl -s {base}/.well-known/oauth-authorization-server\n\n\
Connect any MCP client to {mcp}; it registers at Warden, Warden sends you to the company IdP\n(pick a user there), then asks your consent once, and the client gets Warden's token:\n\n\
npx @modelcontextprotocol/inspector   # then connect to {mcp}\n\n\
Tokens are RS256, signed by Warden's key: {base}/.well-known/jwks.json\n\n\
Audit events (one JSON line per decision, oauth/* for each sign-in step) follow below. Ctrl-C stops the demo.\n",
            issuer = self.issuer,
            backend = self.backend_url,
        )
    }

    /// Waits for all servers to stop.
    pub async fn wait(self) -> std::io::Result<()> {
        for task in self.tasks {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    /// What to try next, printed by `warden demo`.
    pub fn instructions(&self) -> String {
        if self.enterprise {
            return self.enterprise_instructions();
        }
        let alice = self
            .idp
            .mint("alice", "demo-cli", &["calendar:read".into(), "calendar:write".into(), "notes:read".into()], &self.resource)
            .unwrap_or_default();
        let bob = self.idp.mint("bob", "demo-cli", &["calendar:read".into()], &self.resource).unwrap_or_default();
        let house =
            self.idp.mint("dr-house", "demo-cli", &["calendar:read".into(), "medical:write".into()], &self.resource).unwrap_or_default();
        let joy =
            self.idp.mint("nurse-joy", "demo-cli", &["calendar:read".into(), "medical:write".into()], &self.resource).unwrap_or_default();
        let mcp = &self.mcp_url;
        let base = mcp.trim_end_matches("/mcp");
        let post = |token: &str, body: &str| {
            format!(
                "curl -s {mcp} -H \"Authorization: Bearer {token}\" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25' -d '{body}'"
            )
        };
        format!(
            "Warden demo is running.\n\n  gateway (MCP)         {mcp}\n  authorization server  {issuer}  (development only; users in demos/users.yaml)\n  calendar backend      {backend}\n\n\
Try it:\n\n# 1. No token: 401 with a WWW-Authenticate challenge pointing at the metadata\ncurl -si {mcp} -X POST -H 'Content-Type: application/json' -d '{{}}' | head -5\n\n\
# 2. Protected Resource Metadata (RFC 9728)\ncurl -s {base}/.well-known/oauth-protected-resource/mcp\n\n\
# 3. Alice lists her tools and her own events (tokens below are valid for 1 hour)\nALICE={alice}\nBOB={bob}\n\
{list_alice}\n{call_alice}\n\n\
# 4. Bob may read but not write: create_event is hidden from him, and calling it is a 403 step-up\n{call_bob}\n\n\
# 5. Policy: the medical model is for doctors (policies/medical.yaml); records are per tenant
#    (policies/records.yaml). Dr House may ask the model; Nurse Joy gets -32003 naming the rule;
#    Alice may read acme records but not globex ones.
HOUSE={house}\nJOY={joy}\n\
{call_house}\n{call_joy}\n{call_own}\n{call_other}\n\n\
# 6. Per-user upstream OAuth: the notes service has its own accounts. Alice's first call returns
#    a URL elicitation (-32042) with a single-use link; open it in a browser, sign in as alice,
#    then call again: the notes service sees her own token, never her MCP token.
{call_notes}\n\n\
# 7. An MCP client with the full OAuth flow (sign in on the consent page that opens):\nnpx @modelcontextprotocol/inspector   # then connect to {mcp}\n\n\
# 8. The admin console: open {base}/admin and sign in through the authorization server as
#    `admin`, or with the admin token below. Create an API key there (or with the CLI), then:
WARDEN_ADMIN_TOKEN={admin_token}\n\
KEY=$(WARDEN_ADMIN_TOKEN=$WARDEN_ADMIN_TOKEN WARDEN_GATEWAY_URL={base} warden api-keys create --name demo --subject ci-bot --scope calendar:read)\n\
{call_key}\n\n\
# 9. A human approves: an all-hands event lands in everyone's calendar, so policies/calendar.yaml
#    holds it back for a manager. Alice's call returns -32042 with the request's status page;
#    Dana (a manager) approves it as herself; Alice's same call then runs, once.
DANA={dana}\n\
{call_all_hands}\n\
WARDEN_APPROVER_TOKEN=$DANA WARDEN_GATEWAY_URL={base} warden approvals list\n\
WARDEN_APPROVER_TOKEN=$DANA WARDEN_GATEWAY_URL={base} warden approvals approve <id> --comment 'ok for Thursday'\n\
{call_all_hands}\n\n\
Audit events (one JSON line per decision) follow below. Ctrl-C stops the demo.\n",
            issuer = self.issuer,
            backend = self.backend_url,
            admin_token = self.admin_token.expose(),
            dana = self.idp.mint("dana", "demo-cli", &["calendar:read".into()], &self.resource).unwrap_or_default(),
            call_all_hands = post("$ALICE", r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"create_event","arguments":{"title":"all-hands: Q4 plans","start":"2026-12-10T10:00:00Z"}}}"#),
            call_key = post("$KEY", r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"list_events","arguments":{"limit":5}}}"#),
            list_alice = post("$ALICE", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            call_alice = post("$ALICE", r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_events","arguments":{"limit":5}}}"#),
            call_house = post("$HOUSE", r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"gpt-4-medical","arguments":{"prompt":"fever and rash"}}}"#),
            call_joy = post("$JOY", r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"gpt-4-medical","arguments":{"prompt":"fever and rash"}}}"#),
            call_own = post("$ALICE", r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get_record","arguments":{"tenant":"acme","id":"r-1"}}}"#),
            call_other = post("$ALICE", r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_record","arguments":{"tenant":"globex","id":"r-9"}}}"#),
            call_notes = post("$ALICE", r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"my_notes","arguments":{}}}"#),
            call_bob = post("$BOB", r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_event","arguments":{"title":"x","start":"2026-12-24T10:00:00Z"}}}"#).replace("curl -s", "curl -si"),
        )
    }
}
