//! `warden keys rotate` and `warden keys rotate-signing`.

use std::process::ExitCode;

use std::sync::Arc;

use super::{config_error, fail};
use crate::config::{self, ProcessEnv};
/// The vault's store named by the config at `path`, and the vault key ring's active key.
async fn open_store(path: &std::path::Path) -> Result<(crate::store::Store, String), ExitCode> {
    let config = config::load_file(path, &ProcessEnv).map_err(config_error)?;
    let Some(vault) = config.vault else {
        return Err(config_error(format!("{}: no vault section", path.display())));
    };
    let keys = Arc::new(vault.key_ring(&config.base_dir).map_err(config_error)?);
    let active = keys.active_kid().to_owned();
    let store = crate::store::Store::open(&vault.database, keys).await.map_err(|e| fail(format!("vault.database: {e}")))?;
    Ok((store, active))
}

/// Which of Warden's signing keys to rotate.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SigningKind {
    /// The authorization server's access tokens (RS256).
    AccessTokens,
    /// The identity assertions sent to backends (ES256).
    Assertions,
}

/// `warden keys rotate-signing`: a new signing key; the previous one stays published.
pub async fn rotate_signing(path: &std::path::Path, kind: SigningKind) -> ExitCode {
    let store = match open_store(path).await {
        Ok((store, _)) => store,
        Err(code) => return code,
    };
    let (alg, what) = match kind {
        SigningKind::AccessTokens => (crate::signing::ACCESS_TOKENS, "access token"),
        SigningKind::Assertions => (crate::signing::ASSERTIONS, "identity assertion"),
    };
    match crate::signing::KeySet::rotate(&store, alg).await {
        Ok(set) => {
            let published: Vec<String> = set.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
            let current = set.current(alg).map(|k| k.kid.clone()).unwrap_or_default();
            println!("{what} signing key {current} is current; published: {}", published.join(", "));
            if matches!(kind, SigningKind::Assertions) {
                println!(
                    "it signs assertions once it has been published for {} s (backends' JWKS caches pick it up first)",
                    crate::signing::ASSERTION_KEY_SETTLE
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("rotation failed: {e}")),
    }
}

/// `warden keys rotate`: re-encrypts every stored secret under the active key.
pub async fn rotate(path: &std::path::Path, batch: usize) -> ExitCode {
    let (store, active) = match open_store(path).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match store.rotate_keys(batch).await {
        Ok(r) => {
            println!("{} rows, {} secrets re-encrypted under key {active}", r.rows, r.reencrypted);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("rotation stopped: {e}")),
    }
}
