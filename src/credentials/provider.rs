//! OAuth provider presets: the authorization and token endpoints, default scopes and quirks of
//! the providers people connect most, so a config names `provider: github` instead of URLs.
//! Every field a preset fills can be overridden in the config.
//!
//! URLs are the providers' documented endpoints (checked November 2026). Providers not listed
//! are reached through `issuer:` (RFC 8414 / OpenID Connect discovery) or explicit URLs.

use serde::Deserialize;

use super::oauth::ClientAuth;

/// A known OAuth provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Github,
    Google,
    Slack,
    Notion,
    Linear,
    /// Microsoft Entra ID (v2.0 endpoints); `tenant` defaults to `common`.
    Microsoft,
    /// Stripe Connect (OAuth for connected accounts).
    Stripe,
}

/// What a preset fills in.
#[derive(Debug, Clone)]
pub struct Preset {
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: &'static [&'static str],
    pub client_auth: ClientAuth,
    /// Extra authorization request parameters the provider needs for the usual setup.
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// How `scopes` are joined in the authorization request.
    pub scope_separator: &'static str,
}

impl Provider {
    pub fn preset(self, tenant: Option<&str>) -> Preset {
        let p = |authorize: &str, token: &str, scopes, client_auth, authorize_params| Preset {
            authorize_url: authorize.to_owned(),
            token_url: token.to_owned(),
            scopes,
            client_auth,
            authorize_params,
            scope_separator: " ",
        };
        match self {
            // GitHub Apps and OAuth Apps; PKCE is supported, the secret goes in the form.
            Self::Github => p(
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                &["read:user"],
                ClientAuth::Post,
                &[],
            ),
            // `access_type=offline` and `prompt=consent` so Google issues a refresh token.
            Self::Google => p(
                "https://accounts.google.com/o/oauth2/v2/auth",
                "https://oauth2.googleapis.com/token",
                &["openid", "email"],
                ClientAuth::Post,
                &[("access_type", "offline"), ("prompt", "consent")],
            ),
            // Slack OAuth v2; scopes are comma-separated.
            Self::Slack => Preset {
                scope_separator: ",",
                ..p("https://slack.com/oauth/v2/authorize", "https://slack.com/api/oauth.v2.access", &[], ClientAuth::Post, &[])
            },
            // Notion public integrations: Basic client authentication, `owner=user`.
            Self::Notion => p(
                "https://api.notion.com/v1/oauth/authorize",
                "https://api.notion.com/v1/oauth/token",
                &[],
                ClientAuth::Basic,
                &[("owner", "user")],
            ),
            Self::Linear => Preset {
                scope_separator: ",",
                ..p("https://linear.app/oauth/authorize", "https://api.linear.app/oauth/token", &["read"], ClientAuth::Post, &[])
            },
            Self::Microsoft => {
                let tenant = tenant.unwrap_or("common");
                p(
                    &format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"),
                    &format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
                    &["offline_access", "User.Read"],
                    ClientAuth::Post,
                    &[],
                )
            }
            // The platform's secret key is the client secret, sent in the form.
            Self::Stripe => p(
                "https://connect.stripe.com/oauth/authorize",
                "https://connect.stripe.com/oauth/token",
                &["read_write"],
                ClientAuth::Post,
                &[],
            ),
        }
    }
}
