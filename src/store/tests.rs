use std::sync::Arc;

use super::envelope::KeyRing;
use super::*;

fn ring(spec: &str) -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(&Secret::new(spec)).unwrap_or_else(|e| panic!("{e}")))
}

fn key(credential: &str, subject: &str) -> ConnectionKey {
    ConnectionKey {
        credential: credential.into(),
        issuer: if subject.is_empty() { String::new() } else { "https://issuer.test".into() },
        subject: subject.into(),
    }
}

fn tokens(access: &str, refresh: Option<&str>) -> Tokens {
    Tokens {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        expires_at: Some(4_000_000_000),
        scope: Some("repo".into()),
    }
}

/// Everything the vault's storage promises, against one database. `raw` returns every byte the
/// database holds (a file dump for SQLite, a text dump of the table for PostgreSQL).
async fn exercise(url: &str, raw: impl Fn() -> String) {
    let (k1, k2) = (KeyRing::generate_key(), KeyRing::generate_key());
    let old = ring(&format!("k1:{}", k1.expose()));
    let store = Store::open(url, Arc::clone(&old)).await.unwrap_or_else(|e| panic!("{e}"));

    // Shared and per-user connections are separate rows; a put replaces.
    store
        .put_tokens(&key("github", ""), &tokens("gho_shared_token_111", Some("ghr_shared_refresh_111")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put_tokens(&key("google", "alice"), &tokens("ya29_alice_token_222", Some("1//alice_refresh_222")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.put_tokens(&key("google", "bob"), &tokens("ya29_bob_token_333", None)).await.unwrap_or_else(|e| panic!("{e}"));
    store
        .put_tokens(&key("google", "alice"), &tokens("ya29_alice_token_444", Some("1//alice_refresh_444")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.get_tokens(&key("google", "alice")).await.ok().flatten(),
        Some(tokens("ya29_alice_token_444", Some("1//alice_refresh_444")))
    );
    assert_eq!(store.get_tokens(&key("google", "bob")).await.ok().flatten(), Some(tokens("ya29_bob_token_333", None)));
    assert_eq!(store.get_tokens(&key("google", "carol")).await.ok().flatten(), None);

    // No plaintext token anywhere in the database.
    let dump = raw();
    for secret in [
        "gho_shared_token_111",
        "ghr_shared_refresh_111",
        "ya29_alice_token_444",
        "1//alice_refresh_444",
        "ya29_bob_token_333",
        "ya29_alice_token_222",
    ] {
        assert!(!dump.contains(secret), "{secret} is stored in plaintext");
    }
    assert!(dump.contains("\"kid\":\"k1\""), "envelopes are stored");

    // An envelope copied onto another row does not decrypt there.
    let alice: String = sqlx::query("SELECT access_token FROM connections WHERE subject = 'alice'")
        .fetch_one(store.pool())
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    sqlx::query("UPDATE connections SET access_token = $1 WHERE subject = 'bob'")
        .bind(&alice)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(store.get_tokens(&key("google", "bob")).await, Err(StoreError::Envelope(EnvelopeError::Undecryptable))));
    store.put_tokens(&key("google", "bob"), &tokens("ya29_bob_token_333", None)).await.unwrap_or_else(|e| panic!("{e}"));

    // Connect flows: a link starts one flow; its state is taken once.
    store.create_link("link-hash-1", &key("github", "alice")).await.unwrap_or_else(|e| panic!("{e}"));
    let verifier = Secret::new("pkce-verifier-kept-secret-0123456789abcdefghij");
    let started = store.start_flow("link-hash-1", "state-hash-1", &verifier, "browser-1", 0).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started, Some(key("github", "alice")));
    assert_eq!(store.start_flow("link-hash-1", "state-hash-2", &verifier, "browser-2", 0).await.ok(), Some(None), "links are single use");
    store.create_link("link-hash-old", &key("github", "bob")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.start_flow("link-hash-old", "state-hash-3", &verifier, "b", i64::MAX).await.ok(), Some(None), "too old");
    assert!(!raw().contains(verifier.expose()), "the PKCE verifier is encrypted");
    // A caller retrying an unconnected tool keeps at most OPEN_LINKS unused links.
    for i in 0..(OPEN_LINKS + 3) {
        store.create_link(&format!("carol-link-{i}"), &key("github", "carol")).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let open: i64 = sqlx::query("SELECT COUNT(*) FROM connect_flows WHERE subject = 'carol'")
        .fetch_one(store.pool())
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(open, OPEN_LINKS);

    // Rotation: a new active key, re-encryption in small batches while reads go on, then the
    // old key can be removed.
    for i in 0..7 {
        store
            .put_tokens(&key("slack", &format!("user{i}")), &tokens(&format!("xoxp_{i}"), Some(&format!("xoxe_{i}"))))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let both = ring(&format!("k2:{},k1:{}", k2.expose(), k1.expose()));
    let rotating = Arc::new(Store::open(url, Arc::clone(&both)).await.unwrap_or_else(|e| panic!("{e}")));
    let reader = {
        let store = Arc::clone(&rotating);
        tokio::spawn(async move {
            for _ in 0..20 {
                for i in 0..7 {
                    let t =
                        store.get_tokens(&key("slack", &format!("user{i}"))).await.unwrap_or_else(|e| panic!("read during rotation: {e}"));
                    assert_eq!(t.map(|t| t.access_token), Some(Secret::new(format!("xoxp_{i}"))));
                }
            }
        })
    };
    let report = rotating.rotate_keys(3).await.unwrap_or_else(|e| panic!("{e}"));
    reader.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.rows, 10);
    assert_eq!(report.reencrypted, 20, "10 access tokens, 9 refresh tokens (github, alice, 7 slack users), 1 PKCE verifier");
    assert_eq!(rotating.rotate_keys(3).await.map(|r| r.reencrypted).ok(), Some(0), "nothing left to do");
    let new_only = Store::open(url, ring(&format!("k2:{}", k2.expose()))).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        new_only.get_tokens(&key("slack", "user3")).await.ok().flatten().map(|t| t.refresh_token),
        Some(Some(Secret::new("xoxe_3")))
    );
    // A flow started before rotation completes after the old key is gone, once.
    let flow = new_only.take_flow("state-hash-1").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("flow lost"));
    assert_eq!((flow.key, flow.verifier, flow.browser_hash.as_str()), (key("github", "alice"), verifier, "browser-1"));
    assert!(new_only.take_flow("state-hash-1").await.unwrap_or_else(|e| panic!("{e}")).is_none(), "a state is taken once");
    assert!(!raw().contains("\"kid\":\"k1\""), "an envelope under the old key survived rotation");
}

#[tokio::test]
async fn sqlite_file_keeps_only_envelopes_and_rotates() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("vault.db");
    let url = format!("sqlite://{}", path.display());
    exercise(&url, sqlite_files(dir.path())).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one and sets WARDEN_POSTGRES_URL"]
async fn postgres_keeps_only_envelopes_and_rotates() {
    let url = std::env::var("WARDEN_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("WARDEN_POSTGRES_URL must name a PostgreSQL database: run scripts/test"));
    exercise(&url, pg_dump(&url, "connections")).await;
}

/// Warden's signing keys in the store: sealed (no PKCS#8 byte in clear), one made once and
/// found again by the next load (another replica, a restart), rotation publishing the current
/// and the previous key only, and the vault's key rotation re-encrypting them.
async fn signing_keys(url: &str, raw: impl Fn() -> String) {
    use crate::signing::{ACCESS_TOKENS, ASSERTIONS, KeySet};
    let (k1, k2) = (KeyRing::generate_key(), KeyRing::generate_key());
    let store = Store::open(url, ring(&format!("k1:{}", k1.expose()))).await.unwrap_or_else(|e| panic!("{e}"));
    let first = KeySet::load_or_create(&store, ACCESS_TOKENS).await.unwrap_or_else(|e| panic!("{e}"));
    let again = KeySet::load_or_create(&store, ACCESS_TOKENS).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.current(ACCESS_TOKENS).unwrap().kid, again.current(ACCESS_TOKENS).unwrap().kid, "made once, then found");
    assert_eq!(first.jwks().keys.len(), 1);
    let dump = raw();
    assert!(dump.contains(&first.current(ACCESS_TOKENS).unwrap().kid) && !dump.contains("BEGIN PRIVATE KEY"));

    let second = KeySet::rotate(&store, ACCESS_TOKENS).await.unwrap_or_else(|e| panic!("{e}"));
    let published: Vec<String> = second.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
    assert_eq!(published.len(), 2);
    assert_ne!(second.current(ACCESS_TOKENS).unwrap().kid, first.current(ACCESS_TOKENS).unwrap().kid, "a new key signs");
    assert_eq!(published[1], first.current(ACCESS_TOKENS).unwrap().kid, "the previous one stays published");
    let third = KeySet::rotate(&store, ACCESS_TOKENS).await.unwrap_or_else(|e| panic!("{e}"));
    let published: Vec<String> = third.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
    assert_eq!(
        published,
        [third.current(ACCESS_TOKENS).unwrap().kid.clone(), second.current(ACCESS_TOKENS).unwrap().kid.clone()],
        "the oldest is retired"
    );

    // A person's IdP tokens kept from a sign-in (for a token exchange): sealed, the newest
    // replacing the older.
    store.put_idp_tokens("alice", br#"{"access_token":"idp-secret-older"}"#, Some(100)).await.unwrap_or_else(|e| panic!("{e}"));
    store.put_idp_tokens("alice", br#"{"access_token":"idp-secret-newer"}"#, Some(200)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!raw().contains("idp-secret"), "IdP tokens are sealed");
    let (kept, expires_at) = store.idp_tokens("alice").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("none kept"));
    assert_eq!((kept.as_slice(), expires_at), (br#"{"access_token":"idp-secret-newer"}"#.as_slice(), Some(200)));
    assert!(store.idp_tokens("bob").await.unwrap_or_else(|e| panic!("{e}")).is_none());

    // The vault's key rotation re-encrypts them; then the new key alone reads them.
    let both = Store::open(url, ring(&format!("k2:{},k1:{}", k2.expose(), k1.expose()))).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(both.rotate_keys(10).await.map(|r| r.reencrypted).unwrap_or_else(|e| panic!("{e}")) >= 4);
    let new_only = Store::open(url, ring(&format!("k2:{}", k2.expose()))).await.unwrap_or_else(|e| panic!("{e}"));
    let kept = new_only.idp_tokens("alice").await.unwrap_or_else(|e| panic!("{e}")).map(|(t, _)| t.to_vec());
    assert_eq!(kept.as_deref(), Some(br#"{"access_token":"idp-secret-newer"}"#.as_slice()), "re-encrypted under the new key");
    let reloaded = KeySet::load_or_create(&new_only, ACCESS_TOKENS).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reloaded.current(ACCESS_TOKENS).unwrap().kid, third.current(ACCESS_TOKENS).unwrap().kid);
    // Each algorithm rotates on its own: an assertion key joins the set, and rotating it retires
    // no access token key.
    let with_assertions = KeySet::load_or_create(&new_only, ASSERTIONS).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with_assertions.jwks().keys.len(), 3);
    for _ in 0..2 {
        KeySet::rotate(&new_only, ASSERTIONS).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let both_kinds = KeySet::load_or_create(&new_only, ACCESS_TOKENS).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(both_kinds.jwks().keys.len(), 4, "two of each algorithm");
    assert_eq!(both_kinds.current(ACCESS_TOKENS).unwrap().kid, third.current(ACCESS_TOKENS).unwrap().kid);
}

#[tokio::test]
async fn sqlite_keeps_signing_keys_sealed_and_rotates_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}", dir.path().join("vault.db").display());
    signing_keys(&url, sqlite_files(dir.path())).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one and sets WARDEN_POSTGRES_URL"]
async fn postgres_keeps_signing_keys_sealed_and_rotates_them() {
    let base = std::env::var("WARDEN_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("WARDEN_POSTGRES_URL must name a PostgreSQL database: run scripts/test"));
    // A database of its own: the other store test rotates the vault keys of the shared one.
    let name = format!("signing_{}", uuid::Uuid::now_v7().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}/{name}", base.rsplit_once('/').map_or(base.as_str(), |(server, _)| server));
    signing_keys(&url, pg_dump(&url, "signing_keys")).await;
}

/// Every byte of every file SQLite keeps in `dir` (the database and its journal).
fn sqlite_files(dir: &std::path::Path) -> impl Fn() -> String {
    let dir = dir.to_owned();
    move || {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            all.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// A text dump of `table`'s rows in the PostgreSQL database at `url`.
fn pg_dump(url: &str, table: &'static str) -> impl Fn() -> String {
    let url = url.to_owned();
    move || {
        let out = std::process::Command::new("pg_dump")
            .args(["--data-only", &format!("--table={table}"), &url])
            .output()
            .unwrap_or_else(|e| panic!("pg_dump: {e}"));
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A pin check that read the pin just before an operator approved the very definition it saw
/// changed must not record that definition as pending again (the approval stays whole).
#[tokio::test]
async fn an_approval_between_a_checks_read_and_write_stands() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}", dir.path().join("pins.db").display());
    let store = Store::open(&url, ring(&format!("k1:{}", KeyRing::generate_key().expose()))).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(store.insert_tool_pin("s", "t", "old", "old text").await.unwrap_or(false));
    assert!(store.set_pending_tool_pin("s", "t", Some(("new", "new text"))).await.unwrap_or(false));
    assert!(store.approve_tool_pin("s", "t", "new").await.unwrap_or(false));
    // The check that read `approved: old` before the approval writes what it saw.
    assert!(!store.set_pending_tool_pin("s", "t", Some(("new", "new text"))).await.unwrap_or(true));
    let pin = store.tool_pin("s", "t").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("pinned"));
    assert_eq!((pin.approved_hash.as_str(), pin.pending_hash), ("new", None));
}
