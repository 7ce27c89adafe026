//! Integration tests: the real gateway in-process on 127.0.0.1:0 against a real JWKS issuer
//! over HTTP and real upstream HTTP servers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

#[path = "integration/approvals.rs"]
mod approvals;

#[path = "integration/assertions.rs"]
mod assertions;

#[path = "integration/authorization_server.rs"]
mod authorization_server;

#[path = "integration/federation_users.rs"]
mod federation_users;

#[path = "integration/federation_wire.rs"]
mod federation_wire;

#[path = "integration/input_rounds.rs"]
mod input_rounds;

#[path = "integration/client_requests.rs"]
mod client_requests;

#[path = "integration/tokens.rs"]
mod tokens;

#[path = "integration/discovery.rs"]
mod discovery;

#[path = "integration/tools.rs"]
mod tools;

#[path = "integration/jsonrpc.rs"]
mod jsonrpc;

#[path = "integration/demo.rs"]
mod demo;

#[path = "integration/policy.rs"]
mod policy;

#[path = "integration/credentials.rs"]
mod credentials;

#[path = "integration/oauth_client.rs"]
mod oauth_client;

#[path = "integration/vault.rs"]
mod vault;

#[path = "integration/hardening.rs"]
mod hardening;

#[path = "integration/hostile.rs"]
mod hostile;

#[path = "integration/federation.rs"]
mod federation;

#[path = "integration/limits.rs"]
mod limits;

#[path = "integration/audit.rs"]
mod audit;

#[path = "integration/audit_delivery.rs"]
mod audit_delivery;

#[path = "integration/traces.rs"]
mod traces;

#[path = "integration/openapi.rs"]
mod openapi;

#[path = "integration/telemetry.rs"]
mod telemetry;

#[path = "integration/api_keys.rs"]
mod api_keys;

#[path = "integration/routes.rs"]
mod routes;

#[path = "integration/console.rs"]
mod console;

#[path = "integration/reload.rs"]
mod reload;
