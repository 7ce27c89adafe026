//! `warden keys rotate`.

use std::process::ExitCode;

use std::sync::Arc;

use super::{config_error, fail};
use crate::config::{self, ProcessEnv};
/// `warden keys rotate`: re-encrypts every stored secret under the active key.
pub async fn rotate(path: &std::path::Path, batch: usize) -> ExitCode {
    let config = match config::load_file(path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let Some(vault) = config.vault else {
        return config_error(format!("{}: no vault section", path.display()));
    };
    let keys = match vault.key_ring(&config.base_dir) {
        Ok(k) => Arc::new(k),
        Err(e) => return config_error(e),
    };
    let active = keys.active_kid().to_owned();
    let store = match crate::store::Store::open(&vault.database, keys).await {
        Ok(s) => s,
        Err(e) => return fail(format!("vault.database: {e}")),
    };
    match store.rotate_keys(batch).await {
        Ok(r) => {
            println!("{} rows, {} secrets re-encrypted under key {active}", r.rows, r.reencrypted);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("rotation stopped: {e}")),
    }
}
