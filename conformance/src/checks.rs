//! The checks. Each sends real requests to the Warden under test and records what came back as
//! evidence; the verdict is computed from that evidence only. Tokens are described, never
//! recorded.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};
use warden::devidp::SigningKey;

use crate::fixtures::{READ_SCOPE, State, WRITE_SCOPE};

/// One request and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub request: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub www_authenticate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_control_allow_origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub body: String,
    #[serde(skip)]
    pub json: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub group: &'static str,
    pub title: String,
    pub passed: bool,
    pub detail: String,
    pub evidence: Vec<Exchange>,
}

pub struct Suite {
    http: reqwest::Client,
    /// The MCP endpoint under test.
    pub url: String,
    base: String,
    key: Arc<SigningKey>,
    issuer: String,
    pub results: Vec<CheckResult>,
}

use warden::unix_now as now;

impl Suite {
    pub fn new(url: &str, state: &State, key: Arc<SigningKey>) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("--url: {e}"))?;
        let base = url.strip_suffix(parsed.path()).unwrap_or(url).to_owned();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { http, url: url.to_owned(), base, key, issuer: state.issuer(), results: Vec::new() })
    }

    fn record(&mut self, id: &str, group: &'static str, title: &str, verdict: Result<String, String>, evidence: Vec<Exchange>) {
        let (passed, detail) = match verdict {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.results.push(CheckResult { id: id.to_owned(), group, title: title.to_owned(), passed, detail, evidence });
    }

    // ----- tokens -----

    fn claims(&self, sub: &str, scope: &str) -> Value {
        let now = now();
        json!({"iss": self.issuer, "sub": sub, "aud": self.url, "iat": now, "nbf": now - 5, "exp": now + 600, "scope": scope, "client_id": "conformance"})
    }

    fn sign(&self, claims: &Value) -> String {
        self.key.sign(claims).unwrap_or_default()
    }

    fn token(&self, scope: &str) -> String {
        self.sign(&self.claims("conformance-user", scope))
    }

    // ----- HTTP -----

    async fn send(&self, request: reqwest::RequestBuilder, what: String) -> Exchange {
        match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (www_authenticate, access_control_allow_origin, content_type) =
                    (header("www-authenticate"), header("access-control-allow-origin"), header("content-type"));
                let text = r.text().await.unwrap_or_default();
                let json = serde_json::from_str(&text).unwrap_or(Value::Null);
                Exchange {
                    request: what,
                    status,
                    www_authenticate,
                    access_control_allow_origin,
                    content_type,
                    body: text.chars().take(600).collect(),
                    json,
                }
            }
            Err(e) => Exchange {
                request: what,
                status: 0,
                www_authenticate: None,
                access_control_allow_origin: None,
                content_type: None,
                body: format!("transport error: {e}"),
                json: Value::Null,
            },
        }
    }

    async fn post(&self, what: &str, token: Option<&str>, body: String, headers: &[(&str, &str)]) -> Exchange {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("mcp-protocol-version")) {
            req = req.header("mcp-protocol-version", "2025-11-25");
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        // An empty value leaves the header out (the default MCP-Protocol-Version included).
        for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
            req = req.header(*k, *v);
        }
        self.send(req, format!("POST {} {what}", self.url)).await
    }

    async fn rpc(&self, what: &str, token: &str, method: &str, params: Value) -> Exchange {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        self.post(what, Some(token), body, &[]).await
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> Exchange {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        self.send(req, format!("GET {}{path}{}", self.base, if auth.is_some() { " (with a garbage bearer token)" } else { "" })).await
    }

    fn metadata_url(&self) -> String {
        let path = url::Url::parse(&self.url).map(|u| u.path().to_owned()).unwrap_or_default();
        format!("{}/.well-known/oauth-protected-resource{path}", self.base)
    }

    // ----- checks -----

    pub async fn run(&mut self) {
        self.discovery().await;
        self.challenges().await;
        self.token_matrix().await;
        self.tools().await;
        self.jsonrpc().await;
        self.protocol().await;
        self.hardening().await;
    }

    async fn discovery(&mut self) {
        let path = url::Url::parse(&self.url).map(|u| u.path().to_owned()).unwrap_or_default();
        let suffixed = self.get(&format!("/.well-known/oauth-protected-resource{path}"), None).await;
        let root = self.get("/.well-known/oauth-protected-resource", None).await;
        let with_bad_token = self.get(&format!("/.well-known/oauth-protected-resource{path}"), Some("Bearer garbage")).await;
        for (id, e) in [("discovery.path-suffixed", &suffixed), ("discovery.root", &root)] {
            let verdict = if e.status != 200 {
                Err(format!("HTTP {}", e.status))
            } else if e.json["resource"] != self.url.as_str() {
                Err(format!("resource is {}, not the MCP URL {}", e.json["resource"], self.url))
            } else {
                Ok(format!("resource = {}", self.url))
            };
            self.record(id, "discovery", "Protected Resource Metadata served, resource = the MCP URL (RFC 9728)", verdict, vec![e.clone()]);
        }
        let doc = &suffixed.json;
        let servers = doc["authorization_servers"].as_array().cloned().unwrap_or_default();
        let verdict = if !servers.iter().any(|s| s == self.issuer.as_str()) {
            Err(format!("authorization_servers {servers:?} does not list the suite's issuer {}", self.issuer))
        } else if !doc["bearer_methods_supported"].as_array().is_some_and(|m| m.iter().any(|x| x == "header")) {
            Err("bearer_methods_supported does not contain \"header\"".into())
        } else if !doc["scopes_supported"].as_array().is_some_and(|s| s.iter().any(|x| x == READ_SCOPE)) {
            Err(format!("scopes_supported lacks {READ_SCOPE}, which a tool requires"))
        } else {
            Ok("authorization_servers, bearer_methods_supported and scopes_supported present".into())
        };
        self.record(
            "discovery.fields",
            "discovery",
            "Metadata names the authorization server, header bearer method, scopes",
            verdict,
            vec![suffixed.clone()],
        );
        let verdict = if with_bad_token.status == 200 {
            Ok("public: a bad token is ignored".into())
        } else {
            Err(format!("HTTP {}", with_bad_token.status))
        };
        self.record("discovery.public", "discovery", "Metadata is public even with a bad token", verdict, vec![with_bad_token]);
        // The audience Warden accepts is exactly the advertised resource.
        let resource = suffixed.json["resource"].as_str().unwrap_or_default().to_owned();
        let mut claims = self.claims("conformance-user", READ_SCOPE);
        claims["aud"] = json!(resource);
        let e = self.rpc("ping, token aud = advertised resource", &self.sign(&claims), "ping", json!({})).await;
        let verdict =
            if e.status == 200 { Ok("a token for the advertised resource is accepted".into()) } else { Err(format!("HTTP {}", e.status)) };
        self.record(
            "discovery.resource-is-audience",
            "discovery",
            "The advertised resource is the audience Warden accepts",
            verdict,
            vec![e],
        );
    }

    async fn challenges(&mut self) {
        let meta = self.metadata_url();
        // Every revision Warden claims: the same challenge, whatever the client speaks.
        for rev in ["2025-06-18", "2025-11-25", "2026-07-28"] {
            let headers = [("mcp-protocol-version", rev), ("mcp-method", "ping")];
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
            let e = self.post(&format!("ping without a token, MCP-Protocol-Version {rev}"), None, body, &headers).await;
            let c = e.www_authenticate.clone().unwrap_or_default();
            let verdict = if e.status != 401 {
                Err(format!("HTTP {}, expected 401", e.status))
            } else if !c.starts_with("Bearer ") || !c.contains(&format!("resource_metadata=\"{meta}\"")) {
                Err(format!("challenge {c:?} lacks resource_metadata=\"{meta}\""))
            } else if c.contains("error=") {
                Err("no token was presented, so the challenge must carry no error".into())
            } else if !c.contains("scope=\"") {
                Err("challenge carries no scope".into())
            } else {
                Ok(c.clone())
            };
            let title = format!("401 without a token ({rev}): Bearer resource_metadata and scope, no error");
            self.record(&format!("challenge.401-no-token.{rev}"), "challenges", &title, verdict, vec![e]);
        }

        let e = self
            .post("ping with a garbage token", Some("garbage"), json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(), &[])
            .await;
        let c = e.www_authenticate.clone().unwrap_or_default();
        let verdict = if e.status == 401 && c.contains("error=\"invalid_token\"") && c.contains(&format!("resource_metadata=\"{meta}\"")) {
            Ok(c.clone())
        } else {
            Err(format!("HTTP {}, challenge {c:?}", e.status))
        };
        self.record("challenge.401-invalid-token", "challenges", "401 with a bad token: error=\"invalid_token\"", verdict, vec![e]);

        let e = self
            .rpc(
                &format!("tools/call conformance_write with a token holding only {READ_SCOPE}"),
                &self.token(READ_SCOPE),
                "tools/call",
                json!({"name": "conformance_write", "arguments": {}}),
            )
            .await;
        let c = e.www_authenticate.clone().unwrap_or_default();
        let verdict = if e.status == 403
            && c.contains("error=\"insufficient_scope\"")
            && c.contains(WRITE_SCOPE)
            && c.contains(&format!("resource_metadata=\"{meta}\""))
        {
            Ok(c.clone())
        } else {
            Err(format!("HTTP {}, challenge {c:?}", e.status))
        };
        self.record("challenge.403-step-up", "challenges", "403 insufficient_scope naming the scopes the call needs", verdict, vec![e]);
    }

    async fn token_matrix(&mut self) {
        let good = self.claims("conformance-user", READ_SCOPE);
        let with = |patch: Value| {
            let mut c = good.clone();
            for (k, v) in patch.as_object().cloned().unwrap_or_default() {
                if v.is_null() {
                    if let Some(o) = c.as_object_mut() {
                        o.remove(&k);
                    }
                } else {
                    c[&k] = v;
                }
            }
            c
        };
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let valid = self.sign(&good);
        let tampered = {
            let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
            if parts.len() == 3 {
                parts[1] = b64(&with(json!({"sub": "someone-else"})));
            }
            parts.join(".")
        };
        let hs256 = {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(self.key.kid.clone());
            let secret = serde_json::to_vec(self.key.jwk()).unwrap_or_default();
            jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&secret)).unwrap_or_default()
        };
        let unknown_kid = SigningKey::generate().ok().and_then(|k| k.sign(&good).ok()).unwrap_or_default();
        let mut aud_array = good.clone();
        aud_array["aud"] = json!(["https://other.example", self.url]);
        let cases: Vec<(&str, &str, String, bool)> = vec![
            ("token.valid", "a valid token", valid.clone(), true),
            ("token.aud-array", "aud array containing this resource", self.sign(&aud_array), true),
            ("token.expired", "expired beyond the clock skew", self.sign(&with(json!({"exp": now() - 600}))), false),
            ("token.nbf-future", "nbf in the future", self.sign(&with(json!({"nbf": now() + 600}))), false),
            ("token.wrong-iss", "another issuer", self.sign(&with(json!({"iss": "https://evil.example"}))), false),
            ("token.wrong-aud", "another audience", self.sign(&with(json!({"aud": "https://other.example/mcp"}))), false),
            ("token.no-sub", "no sub", self.sign(&with(json!({"sub": null}))), false),
            ("token.no-exp", "no exp", self.sign(&with(json!({"exp": null}))), false),
            ("token.alg-none", "alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good)), false),
            ("token.hs256-public-key", "HS256 keyed with the issuer's public key", hs256, false),
            ("token.unknown-kid", "signed by a key the issuer never published", unknown_kid, false),
            ("token.tampered", "payload changed after signing", tampered, false),
            ("token.jwe", "an encrypted token (JWE)", format!("{}.a.b.c.d", b64(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))), false),
            ("token.garbage", "not a JWT", "not-a-token".to_owned(), false),
        ];
        for (id, what, token, accept) in cases {
            let e = self.rpc(&format!("ping with {what}"), &token, "ping", json!({})).await;
            let c = e.www_authenticate.clone().unwrap_or_default();
            let verdict = match (accept, e.status) {
                (true, 200) => Ok("accepted".into()),
                (true, s) => Err(format!("HTTP {s}, expected acceptance")),
                (false, 401) if c.contains("error=\"invalid_token\"") => Ok("401 invalid_token".into()),
                (false, s) => Err(format!("HTTP {s}, challenge {c:?}; expected 401 with error=\"invalid_token\"")),
            };
            self.record(id, "tokens", what, verdict, vec![e]);
        }
    }

    async fn tools(&mut self) {
        let reader = self.token(READ_SCOPE);
        let writer = self.token(&format!("{READ_SCOPE} {WRITE_SCOPE}"));
        let list_reader = self.rpc(&format!("tools/list, token with {READ_SCOPE}"), &reader, "tools/list", json!({})).await;
        let list_writer = self.rpc(&format!("tools/list, token with {READ_SCOPE} {WRITE_SCOPE}"), &writer, "tools/list", json!({})).await;
        let names = |e: &Exchange| -> Vec<String> {
            e.json["result"]["tools"]
                .as_array()
                .map(|t| t.iter().filter_map(|x| x["name"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let (r, w) = (names(&list_reader), names(&list_writer));
        let verdict = if r.contains(&"conformance_echo".to_owned())
            && !r.contains(&"conformance_write".to_owned())
            && w.contains(&"conformance_write".to_owned())
        {
            Ok(format!("reader sees {r:?}; writer sees {w:?}"))
        } else {
            Err(format!("reader sees {r:?}; writer sees {w:?}"))
        };
        self.record(
            "tools.list-filtered",
            "tools",
            "tools/list shows a caller only the tools it may call",
            verdict,
            vec![list_reader, list_writer],
        );

        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "conformance_echo", "arguments": {"message": "hello"}}}).to_string();
        let headers = [("x-user-id", "forged-user"), ("x-request-id", "conformance-req-1")];
        let e = self.post("tools/call conformance_echo, sending a forged X-User-Id and X-Request-Id", Some(&reader), body, &headers).await;
        let s = &e.json["result"]["structuredContent"];
        let verdict = if e.json["result"]["isError"] != false {
            Err("the call did not succeed".into())
        } else if s["body"]["message"] != "hello" {
            Err("the arguments did not reach the backend".into())
        } else {
            Ok("the backend answered with the arguments".into())
        };
        self.record("tools.call", "tools", "tools/call reaches the backend with the arguments", verdict, vec![e.clone()]);
        let verdict = if s["x_user_id"] != "conformance-user" || s["x_user_id_count"] != 1 {
            Err(format!("backend saw X-User-Id {} ({} values); expected the token's sub only", s["x_user_id"], s["x_user_id_count"]))
        } else if s["authorization_present"] != false {
            Err("the client's Authorization header reached the backend".into())
        } else if s["x_request_id"] != "conformance-req-1" {
            Err(format!("backend saw X-Request-Id {}, not the client's", s["x_request_id"]))
        } else if !s["traceparent"].as_str().is_some_and(|t| t.starts_with("00-")) {
            Err("no traceparent upstream".into())
        } else {
            Ok("X-User-Id = sub (forged copy dropped), X-Request-Id kept, traceparent set, no Authorization".into())
        };
        self.record(
            "tools.identity-injection",
            "tools",
            "Identity injected, client copies and the token never reach the backend",
            verdict,
            vec![e],
        );

        let e = self
            .rpc(
                "tools/call of a tool that does not exist",
                &reader,
                "tools/call",
                json!({"name": "no_such_tool_conformance", "arguments": {}}),
            )
            .await;
        let verdict = if e.json["error"]["code"] == -32602 { Ok("-32602".into()) } else { Err(format!("error {}", e.json["error"])) };
        self.record("tools.unknown", "tools", "Unknown tool is -32602", verdict, vec![e]);
        let e = self
            .rpc(
                "tools/call with arguments the schema forbids",
                &reader,
                "tools/call",
                json!({"name": "conformance_echo", "arguments": {"message": 7}}),
            )
            .await;
        // SEP-1303 (2025-11-25): a tool execution error the model can act on, not -32602.
        let text = e.json["result"]["content"][0]["text"].as_str().unwrap_or_default();
        let verdict = if e.json["result"]["isError"] == true && text.starts_with("invalid arguments:") {
            Ok(format!("isError: {text}"))
        } else {
            Err(format!("error {} / result {}", e.json["error"], e.json["result"]))
        };
        self.record(
            "tools.invalid-arguments",
            "tools",
            "Arguments are validated against the input schema (an isError result, SEP-1303)",
            verdict,
            vec![e],
        );
    }

    async fn jsonrpc(&mut self) {
        let t = self.token(READ_SCOPE);
        let cases: Vec<(&str, &str, String, i64)> = vec![
            ("jsonrpc.parse-error", "a body that is not JSON", "{not json".into(), -32700),
            (
                "jsonrpc.batch",
                "a batch (removed in 2025-06-18)",
                json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).to_string(),
                -32600,
            ),
            ("jsonrpc.invalid-request", "jsonrpc is not \"2.0\"", json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}).to_string(), -32600),
            (
                "jsonrpc.method-not-found",
                "an unknown method",
                json!({"jsonrpc": "2.0", "id": 1, "method": "conformance/unknown"}).to_string(),
                -32601,
            ),
            (
                "jsonrpc.invalid-params",
                "tools/call without a name",
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}).to_string(),
                -32602,
            ),
        ];
        for (id, what, body, code) in cases {
            let e = self.post(what, Some(&t), body, &[]).await;
            let verdict = if e.json["error"]["code"] == code && e.json["jsonrpc"] == "2.0" {
                Ok(format!("{code}, HTTP {}", e.status))
            } else {
                Err(format!("HTTP {}, body {}", e.status, e.body))
            };
            self.record(id, "jsonrpc", what, verdict, vec![e]);
        }
    }

    async fn protocol(&mut self) {
        let t = self.token(READ_SCOPE);
        for v in ["2025-06-18", "2025-11-25"] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": v, "capabilities": {}, "clientInfo": {"name": "warden-conformance", "version": "1"}}}).to_string();
            let e = self.post(&format!("initialize with protocolVersion {v}"), Some(&t), body, &[("mcp-protocol-version", v)]).await;
            let verdict =
                if e.json["result"]["protocolVersion"] == v { Ok(format!("negotiated {v}")) } else { Err(format!("result {}", e.body)) };
            self.record(&format!("protocol.initialize-{v}"), "protocol", &format!("initialize negotiates {v}"), verdict, vec![e]);
        }
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "warden-conformance", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")];
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}).to_string();
        let e = self.post("server/discover as a 2026-07-28 client", Some(&t), body, &headers).await;
        let versions = e.json["result"]["supportedVersions"].as_array().cloned().unwrap_or_default();
        let verdict = if versions.iter().any(|v| v == "2026-07-28") {
            Ok(format!("supportedVersions {}", Value::Array(versions)))
        } else {
            Err(format!("body {}", e.body))
        };
        self.record(
            "protocol.discover-2026-07-28",
            "protocol",
            "server/discover lists 2026-07-28 (no initialize needed)",
            verdict,
            vec![e],
        );
        let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")];
        let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}).to_string();
        let e = self.post("tools/list as a 2026-07-28 client", Some(&t), body, &headers).await;
        let verdict =
            if e.json["result"]["tools"].is_array() { Ok("tools listed under 2026-07-28".into()) } else { Err(format!("body {}", e.body)) };
        self.record("protocol.tools-2026-07-28", "protocol", "A 2026-07-28 client lists tools without initialize", verdict, vec![e]);
        // A 2026-07-28 client that falls back to initialize (the older lifecycle: no
        // MCP-Protocol-Version header on initialize) is offered the newest revision that has it.
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2026-07-28", "capabilities": {}, "clientInfo": {"name": "warden-conformance", "version": "1"}}}).to_string();
        let removed = self
            .post(
                "initialize under the 2026-07-28 header (removed there)",
                Some(&t),
                body.clone(),
                &[("mcp-protocol-version", "2026-07-28")],
            )
            .await;
        let verdict = if removed.status == 404 && removed.json["error"]["code"] == -32601 {
            Ok("HTTP 404, -32601".into())
        } else {
            Err(format!("HTTP {}, body {}", removed.status, removed.body))
        };
        self.record(
            "protocol.initialize-removed-2026-07-28",
            "protocol",
            "initialize under 2026-07-28 is a removed method: HTTP 404 with -32601 (SEP-2575)",
            verdict,
            vec![removed],
        );
        let e =
            self.post("initialize asking for 2026-07-28 (a client falling back)", Some(&t), body, &[("mcp-protocol-version", "")]).await;
        let got = e.json["result"]["protocolVersion"].as_str().unwrap_or_default().to_owned();
        let verdict = if got == "2025-11-25" {
            Ok("offered 2025-11-25, the newest revision with initialize".into())
        } else {
            Err(format!("protocolVersion {got:?}, body {}", e.body))
        };
        self.record(
            "protocol.fallback-initialize",
            "protocol",
            "A 2026-07-28 client falling back to initialize gets 2025-11-25",
            verdict,
            vec![e],
        );
    }

    /// What a black-box run found missing once (issue 9): each answer JSON with a stable code,
    /// ambiguous requests refused, CORS for allowed origins only.
    async fn hardening(&mut self) {
        let t = self.token(READ_SCOPE);
        let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
        let stable = |e: &Exchange| e.json["error"]["data"]["code"].as_str().map(str::to_owned);

        let e = self
            .post("two Authorization headers (a valid bearer and garbage)", Some(&t), ping.clone(), &[("authorization", "Bearer garbage")])
            .await;
        let challenge = e.www_authenticate.clone().unwrap_or_default();
        let verdict = if e.status == 400 && challenge.contains("error=\"invalid_request\"") {
            Ok("400 invalid_request".into())
        } else {
            Err(format!("HTTP {}, challenge {challenge:?}", e.status))
        };
        self.record(
            "hardening.two-credentials",
            "hardening",
            "A request with two credentials is refused (400 invalid_request)",
            verdict,
            vec![e],
        );

        // (id, what, body, headers, status, stable code)
        type Case<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
        let cases: Vec<Case> = vec![
            (
                "hardening.request-without-id",
                "tools/call sent without an id",
                json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "list_events"}}).to_string(),
                vec![],
                400,
                "invalid_request",
            ),
            (
                "hardening.repeated-member",
                "a body with a repeated member name",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_events","name":"x"}}"#.into(),
                vec![],
                400,
                "invalid_request",
            ),
            (
                "hardening.unsupported-revision",
                "MCP-Protocol-Version 1999-01-01",
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
                vec![("mcp-protocol-version", "1999-01-01")],
                400,
                "unsupported_protocol_version",
            ),
        ];
        for (id, what, body, headers, status, code) in cases {
            let e = self.post(what, Some(&t), body, &headers).await;
            let verdict = if e.status == status && stable(&e).as_deref() == Some(code) {
                Ok(format!("HTTP {status}, JSON with data.code {code}"))
            } else {
                Err(format!("HTTP {}, body {}", e.status, e.body))
            };
            self.record(id, "hardening", what, verdict, vec![e]);
        }

        let e = self.post("Accept: */*", Some(&t), ping, &[("accept", "*/*")]).await;
        let verdict = if e.status == 200 && e.json["result"].is_object() {
            Ok("served".into())
        } else {
            Err(format!("HTTP {}, body {}", e.status, e.body))
        };
        self.record("hardening.accept-any", "hardening", "Accept: */* accepts JSON (no plain-text 406)", verdict, vec![e]);

        let req = self.http.get(&self.url).bearer_auth(&t).header("accept", "text/event-stream");
        let e = self.send(req, format!("GET {} (stateless: no stream)", self.url)).await;
        let json = e.content_type.as_deref().is_some_and(|c| c.starts_with("application/json"));
        let verdict = if e.status >= 400 && json && stable(&e).is_some() {
            Ok(format!("HTTP {}, JSON with data.code {}", e.status, stable(&e).unwrap_or_default()))
        } else {
            Err(format!("HTTP {}, content type {:?}, body {}", e.status, e.content_type, e.body))
        };
        self.record(
            "hardening.refusals-are-json",
            "hardening",
            "A refusal of the MCP library's own is JSON with a stable code",
            verdict,
            vec![e],
        );

        // CORS: the gateway's own origin is always allowed; another is refused.
        let own = url::Url::parse(&self.url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        let preflight = |origin: &str| {
            self.http
                .request(reqwest::Method::OPTIONS, &self.url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization, content-type, mcp-protocol-version")
        };
        let allowed = self.send(preflight(&own), format!("OPTIONS {} preflight from {own}", self.url)).await;
        let other = self
            .send(preflight("https://elsewhere.invalid"), format!("OPTIONS {} preflight from https://elsewhere.invalid", self.url))
            .await;
        let verdict = if (200..300).contains(&allowed.status)
            && allowed.access_control_allow_origin.as_deref() == Some(own.as_str())
            && other.status == 403
            && other.access_control_allow_origin.is_none()
        {
            Ok("allowed origin preflighted before authentication; another refused without CORS headers".into())
        } else {
            Err(format!(
                "own origin: HTTP {} ACAO {:?}; other: HTTP {} ACAO {:?}",
                allowed.status, allowed.access_control_allow_origin, other.status, other.access_control_allow_origin
            ))
        };
        self.record(
            "hardening.cors",
            "hardening",
            "CORS preflights: allowed origins only, before authentication",
            verdict,
            vec![allowed, other],
        );
    }
}
