//! Verifying the database sink's chains: every chain in the table, each from its first record,
//! a page at a time. For `warden audit verify --database` and the admin console.

use super::chain::{Report, Verifier};
use crate::store::{Store, StoreError};

/// Records read per query.
const PAGE: i64 = 1000;

/// Each chain's report, in chain order; `keys` check the checkpoints' signatures.
pub async fn store(store: &Store, keys: &[(String, Vec<u8>)]) -> Result<Vec<(String, Report)>, StoreError> {
    let mut reports = Vec::new();
    for chain in store.audit_chains().await? {
        let mut verifier = Verifier::new(keys);
        let mut after = 0;
        loop {
            let page = store.audit_chain_page(&chain, after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            for (seq, line) in &page {
                verifier.line(line, || format!("database chain {chain} seq {seq}"));
            }
        }
        reports.push((chain, verifier.finish()));
    }
    Ok(reports)
}
