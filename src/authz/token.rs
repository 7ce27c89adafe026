//! `/oauth/token` (authorization code, refresh token, identity assertion grant), `/oauth/revoke`
//! (RFC 7009), and the documents: RFC 8414 metadata and Warden's JWK set.
//!
//! A code is redeemed once; a second redemption revokes the grant it made (OAuth 2.1 §4.1.3).
//! A refresh token is used once and replaced; a used one presented again is taken as stolen and
//! revokes its whole grant, so neither the thief nor the client can refresh again. Client
//! secrets are compared as SHA-256 digests in constant time.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::flow::OFFLINE_ACCESS;
use super::registration::Client;
use super::{AuthServer, CODE_LIFETIME_SECS, Identity, Refusal, Step};
use crate::audit::Verdict;
use crate::credentials::vault::{digest, pkce_challenge, random_token};
use crate::edge::RequestContext;
use crate::store::oauth::{GrantRow, Redeemed};

/// Longest parameter value considered (codes, tokens, assertions are far shorter).
const MAX_PARAM: usize = 16 * 1024;

/// `GET /.well-known/oauth-authorization-server`.
pub async fn metadata(State(server): State<Arc<AuthServer>>) -> Response {
    axum::Json(server.metadata_document()).into_response()
}

/// A form body as name → value; a repeated or oversized parameter is refused (RFC 6749 §3.2).
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, Refusal> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    if !form_type {
        return Err(Refusal::bad("invalid_request", "request_invalid", "the body must be application/x-www-form-urlencoded"));
    }
    let mut out = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if value.len() > MAX_PARAM {
            return Err(Refusal::bad("invalid_request", "parameter_too_large", format!("{name} is too large")));
        }
        if out.insert(name.clone().into_owned(), value.into_owned()).is_some() {
            return Err(Refusal::bad("invalid_request", "parameter_repeated", format!("{name} is repeated")));
        }
    }
    Ok(out)
}

fn invalid_client(description: &str) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, "invalid_client", "client_authentication_failed", description)
}

impl AuthServer {
    /// The client making a token or revocation request: HTTP Basic, `client_secret` in the
    /// body, or a public client's `client_id` alone.
    async fn authenticate_client(&self, headers: &HeaderMap, params: &HashMap<String, String>) -> Result<Client, Refusal> {
        let basic = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            Some(value) => {
                let (scheme, encoded) = value.split_once(' ').ok_or_else(|| invalid_client("malformed Authorization header"))?;
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(invalid_client("use HTTP Basic for client authentication"));
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| invalid_client("malformed Authorization header"))?;
                let (id, secret) = decoded.split_once(':').ok_or_else(|| invalid_client("malformed Authorization header"))?;
                let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
                Some((decode(id), decode(secret)))
            }
            None => None,
        };
        let body_secret = params.get("client_secret").cloned();
        let (client_id, secret) = match (basic.clone(), params.get("client_id")) {
            (Some((id, _)), Some(body_id)) if &id != body_id => {
                return Err(invalid_client("client_id differs from the authenticated client"));
            }
            (Some(_), _) if body_secret.is_some() => return Err(invalid_client("use one client authentication method")),
            (Some((id, secret)), _) => (id, Some(secret)),
            (None, Some(id)) => (id.clone(), body_secret),
            (None, None) => return Err(invalid_client("client_id is required")),
        };
        let client = match self.find_client(&client_id).await {
            Ok(Some(client)) => client,
            Ok(None) => return Err(invalid_client("unknown client")),
            Err(super::registration::Lookup::Metadata(why)) => return Err(invalid_client(&why)),
            Err(e) => return Err(Refusal::unavailable(&e)),
        };
        match (&client.secret_hash, secret) {
            (None, None) => Ok(client),
            (None, Some(_)) => Err(invalid_client("this client is public and has no secret")),
            (Some(_), None) => Err(invalid_client("client authentication is required")),
            (Some(hash), Some(secret)) => {
                if bool::from(digest(&secret).as_bytes().ct_eq(hash.as_bytes())) {
                    Ok(client)
                } else {
                    Err(invalid_client("client authentication failed"))
                }
            }
        }
    }

    /// An access token (and, where the grant allows, a new refresh token) for a grant.
    async fn tokens_for_grant(&self, grant: &GrantRow, identity: &Identity, scope: &[String]) -> Result<serde_json::Value, Refusal> {
        let access: Vec<String> = scope.iter().filter(|s| *s != OFFLINE_ACCESS).cloned().collect();
        let (token, ttl) = self.access_token(identity, &grant.client_id, &access).await.map_err(|e| Refusal::unavailable(&e))?;
        let mut answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": access.join(" ")});
        let client = self.find_client(&grant.client_id).await.map_err(|e| Refusal::unavailable(&e))?;
        let refresh = client.is_some_and(|c| c.may_use("refresh_token")) || grant.scope.split_whitespace().any(|s| s == OFFLINE_ACCESS);
        if refresh {
            let refresh_token = random_token().ok_or_else(|| Refusal::unavailable(&"no entropy"))?;
            let expires = self.now() + i64::try_from(self.refresh_ttl.as_secs()).unwrap_or(i64::MAX / 2);
            let stored =
                async { self.vault.store().await?.insert_refresh_token(&digest(refresh_token.expose()), &grant.grant_id, expires).await };
            stored.await.map_err(|e| Refusal::unavailable(&e))?;
            answer["refresh_token"] = json!(refresh_token.expose());
        }
        Ok(answer)
    }

    async fn grant(&self, grant_id: &str) -> Result<(GrantRow, Identity), Refusal> {
        let grant = async { self.vault.store().await?.oauth_grant(grant_id).await };
        let grant = grant.await.map_err(|e| Refusal::unavailable(&e))?.ok_or_else(|| Refusal::grant("grant_unknown", "unknown grant"))?;
        if grant.revoked {
            return Err(Refusal::grant("grant_revoked", "the grant was revoked"));
        }
        let identity = serde_json::from_str(&grant.identity).map_err(|_| Refusal::grant("grant_unknown", "unknown grant"))?;
        Ok((grant, identity))
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str) {
        let revoked = async { self.vault.store().await?.revoke_oauth_grant(grant_id, reason).await };
        if let Err(e) = revoked.await {
            tracing::error!(error = %e, "revoking a grant failed");
        }
    }

    async fn authorization_code(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
    ) -> Result<(serde_json::Value, Identity), Refusal> {
        let param = |name: &str| params.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let code = param("code").ok_or_else(|| Refusal::bad("invalid_request", "code_missing", "code is required"))?;
        let verifier =
            param("code_verifier").ok_or_else(|| Refusal::bad("invalid_request", "pkce_missing", "code_verifier is required"))?;
        let redeemed = async { self.vault.store().await?.redeem_oauth_code(&digest(code)).await };
        let row = match redeemed.await.map_err(|e| Refusal::unavailable(&e))? {
            Redeemed::Fresh(row) => row,
            Redeemed::Reused { grant_id } => {
                self.revoke_grant(&grant_id, "code_reused").await;
                return Err(Refusal::grant("code_reused", "the code was used already; its grant is revoked"));
            }
            Redeemed::Unknown => return Err(Refusal::grant("code_invalid", "unknown code")),
        };
        if row.client_id != client.id {
            return Err(Refusal::grant("client_mismatch", "the code was issued to another client"));
        }
        if row.created_at < self.now() - CODE_LIFETIME_SECS {
            return Err(Refusal::grant("code_expired", "the code expired"));
        }
        if param("redirect_uri").is_some_and(|r| r != row.redirect_uri)
            || (param("redirect_uri").is_none() && client.metadata.redirect_uris.len() > 1)
        {
            return Err(Refusal::grant("redirect_uri_mismatch", "redirect_uri differs from the authorization request's"));
        }
        if !bool::from(pkce_challenge(verifier).as_bytes().ct_eq(row.code_challenge.as_bytes())) {
            return Err(Refusal::grant("pkce_mismatch", "code_verifier does not match the code_challenge"));
        }
        let (grant, identity) = self.grant(&row.grant_id).await?;
        if param("resource").is_some_and(|r| r.trim_end_matches('/') != grant.resource.trim_end_matches('/')) {
            return Err(Refusal::bad("invalid_target", "resource_mismatch", "resource differs from the authorization request's"));
        }
        let scope: Vec<String> = grant.scope.split_whitespace().map(str::to_owned).collect();
        Ok((self.tokens_for_grant(&grant, &identity, &scope).await?, identity))
    }

    async fn refresh(&self, client: &Client, params: &HashMap<String, String>) -> Result<(serde_json::Value, Identity), Refusal> {
        let token = params
            .get("refresh_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::bad("invalid_request", "refresh_token_missing", "refresh_token is required"))?;
        let redeemed = async { self.vault.store().await?.redeem_refresh_token(&digest(token)).await };
        let (grant_id, expires_at) = match redeemed.await.map_err(|e| Refusal::unavailable(&e))? {
            Redeemed::Fresh(found) => found,
            Redeemed::Reused { grant_id } => {
                self.revoke_grant(&grant_id, "refresh_token_reused").await;
                return Err(Refusal::grant("refresh_token_reused", "the refresh token was used already; its grant is revoked"));
            }
            Redeemed::Unknown => return Err(Refusal::grant("refresh_token_invalid", "unknown refresh token")),
        };
        let (grant, identity) = self.grant(&grant_id).await?;
        if grant.client_id != client.id {
            return Err(Refusal::grant("client_mismatch", "the refresh token was issued to another client"));
        }
        if expires_at < self.now() {
            return Err(Refusal::grant("refresh_token_expired", "the refresh token expired"));
        }
        let granted: Vec<String> = grant.scope.split_whitespace().map(str::to_owned).collect();
        let scope = match params.get("scope") {
            Some(asked) => {
                let asked: Vec<String> = asked.split_whitespace().map(str::to_owned).collect();
                if asked.iter().any(|s| !granted.contains(s)) {
                    return Err(Refusal::bad("invalid_scope", "scope_widened", "a refresh cannot add scopes"));
                }
                let mut narrowed = asked;
                if granted.iter().any(|s| s == OFFLINE_ACCESS) && !narrowed.iter().any(|s| s == OFFLINE_ACCESS) {
                    narrowed.push(OFFLINE_ACCESS.to_owned());
                }
                narrowed
            }
            None => granted,
        };
        Ok((self.tokens_for_grant(&grant, &identity, &scope).await?, identity))
    }
}

/// `POST /oauth/token`.
pub async fn token(
    State(server): State<Arc<AuthServer>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let step = Step::new("oauth/token");
    let refuse = |step: &Step<'_>, refusal: Refusal, explanation: Option<String>| {
        server.audit(&ctx, step, Verdict { decision: "deny", reason: refusal.reason, status: refusal.status.as_u16() }, explanation);
        let mut response = refusal.response();
        if refusal.status == StatusCode::UNAUTHORIZED && headers.contains_key(header::AUTHORIZATION) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"warden\""));
        }
        response
    };
    let params = match form(&headers, &body) {
        Ok(params) => params,
        Err(refusal) => return refuse(&step, refusal, None),
    };
    let client = match server.authenticate_client(&headers, &params).await {
        Ok(client) => client,
        Err(refusal) => return refuse(&step, refusal, None),
    };
    let step = step.client(&client.id);
    let grant_type = params.get("grant_type").map(String::as_str).unwrap_or_default();
    // A client registered for codes only still redeems the refresh tokens that `offline_access`
    // got it.
    let registered = client.may_use(grant_type) || (grant_type == "refresh_token" && client.may_use("authorization_code"));
    if !registered {
        let refusal = match grant_type {
            "authorization_code" | "refresh_token" | super::idjag::GRANT_TYPE => {
                Refusal::bad("unauthorized_client", "grant_type_not_registered", "this client did not register for this grant type")
            }
            "" => Refusal::bad("invalid_request", "grant_type_missing", "grant_type is required"),
            _ => Refusal::bad("unsupported_grant_type", "grant_type_unsupported", "unsupported grant_type"),
        };
        return refuse(&step, refusal, None);
    }
    let (answer, identity, reason, explanation) = match grant_type {
        "authorization_code" => match server.authorization_code(&client, &params).await {
            Ok((answer, identity)) => (answer, identity, "code_redeemed", None),
            Err(refusal) => return refuse(&step, refusal, None),
        },
        "refresh_token" => match server.refresh(&client, &params).await {
            Ok((answer, identity)) => (answer, identity, "token_refreshed", None),
            Err(refusal) => return refuse(&step, refusal, None),
        },
        super::idjag::GRANT_TYPE => match server.id_jag_grant(&client, &params).await {
            Ok((answer, identity, jti)) => (answer, identity, "assertion_redeemed", Some(format!("id-jag jti {jti}"))),
            Err((refusal, explanation)) => return refuse(&step, refusal, explanation),
        },
        _ => return refuse(&step, Refusal::bad("unsupported_grant_type", "grant_type_unsupported", "unsupported grant_type"), None),
    };
    server.audit(&ctx, &step.person(&identity), Verdict { decision: "allow", reason, status: 200 }, explanation);
    let mut response = axum::Json(answer).into_response();
    super::no_store(&mut response);
    response
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token ends the grant it belongs to (no more
/// refreshes, by any of its tokens). Access tokens are short-lived JWTs that expire on their own
/// (`access_token_ttl`); presenting one, or any unknown token, is answered 200 too (§2.2).
pub async fn revoke(
    State(server): State<Arc<AuthServer>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let step = Step::new("oauth/revoke");
    let refuse = |step: &Step<'_>, refusal: Refusal| {
        server.audit(&ctx, step, Verdict { decision: "deny", reason: refusal.reason, status: refusal.status.as_u16() }, None);
        refusal.response()
    };
    let params = match form(&headers, &body) {
        Ok(params) => params,
        Err(refusal) => return refuse(&step, refusal),
    };
    let client = match server.authenticate_client(&headers, &params).await {
        Ok(client) => client,
        Err(refusal) => return refuse(&step, refusal),
    };
    let step = step.client(&client.id);
    let Some(token) = params.get("token").filter(|t| !t.is_empty()) else {
        return refuse(&step, Refusal::bad("invalid_request", "token_missing", "token is required"));
    };
    let found = async { server.vault.store().await?.refresh_token_grant(&digest(token)).await };
    let grant_id = match found.await {
        Ok(found) => found,
        Err(e) => return refuse(&step, Refusal::unavailable(&e)),
    };
    let reason = match grant_id {
        Some(grant_id) => match server.grant(&grant_id).await {
            Ok((grant, identity)) if grant.client_id == client.id => {
                server.revoke_grant(&grant_id, "revoked_by_client").await;
                server.audit(&ctx, &step.person(&identity), Verdict { decision: "allow", reason: "grant_revoked", status: 200 }, None);
                return StatusCode::OK.into_response();
            }
            Ok(_) => "token_of_another_client",
            Err(_) => "grant_revoked_already",
        },
        None => "token_unknown",
    };
    server.audit(&ctx, &step, Verdict { decision: "allow", reason, status: 200 }, None);
    StatusCode::OK.into_response()
}
