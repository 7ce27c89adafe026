//! A client for the gateway's admin API, for the subcommands that drive it (`connections`,
//! `tools`). The admin token is read from WARDEN_ADMIN_TOKEN, never from the command line, where
//! other users could see it.

use std::process::ExitCode;

use serde_json::Value;

use super::fail;

pub struct AdminClient {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    pub fn new(gateway: &str) -> Result<Self, ExitCode> {
        let Ok(token) = std::env::var("WARDEN_ADMIN_TOKEN") else {
            eprintln!("error: set WARDEN_ADMIN_TOKEN to the gateway's admin.token");
            return Err(ExitCode::from(2));
        };
        Self::with_token(gateway, token)
    }

    /// A client presenting `token` (an approver's own bearer token).
    pub fn with_token(gateway: &str, token: String) -> Result<Self, ExitCode> {
        let client = crate::upstream::control_plane_client().map_err(|e| fail(e.to_string()))?;
        Ok(Self { client, base: gateway.trim_end_matches('/').to_owned(), token })
    }

    /// A path segment, percent-encoded.
    pub fn enc(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    /// One call; the JSON answer, or the exit code after printing why it failed.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, ExitCode> {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| fail(format!("cannot reach the gateway at {}: {e}", self.base)))?;
        let status = response.status();
        let bytes = crate::upstream::read_limited(response, 4 * 1024 * 1024)
            .await
            .map_err(|e| fail(format!("reading the gateway's answer: {e}")))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", body.get("message").and_then(Value::as_str).unwrap_or("request failed"))));
        }
        Ok(body)
    }
}
