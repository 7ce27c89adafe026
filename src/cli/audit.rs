//! `warden audit verify` and `warden keys generate --audit`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::fail;
use crate::audit::chain::{self, Verifier};

pub fn generate_key(out: Option<&Path>) -> ExitCode {
    let Some(out) = out else { return fail("--out is required".into()) };
    let (pkcs8, public) = match chain::generate_key() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(out).and_then(|mut f| std::io::Write::write_all(&mut f, format!("{pkcs8}\n").as_bytes()));
    if let Err(e) = written {
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    let Ok((key_id, _)) = chain::parse_public_key(&public) else { return fail("generated key unusable".into()) };
    eprintln!("wrote the audit signing key to {} (keep it secret; set audit.chain.signing_key_file)", out.display());
    eprintln!("key id {key_id}; the public key, for `warden audit verify --key`:");
    println!("{public}");
    ExitCode::SUCCESS
}

/// A path and its rotated files, oldest first: `PATH.N` … `PATH.1`, `PATH`.
fn with_rotated(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = Vec::new();
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let p = PathBuf::from(name);
        if !p.exists() {
            break;
        }
        rotated.push((n, p));
    }
    rotated.reverse();
    rotated.into_iter().map(|(_, p)| p).chain(std::iter::once(path.to_path_buf())).collect()
}

pub async fn verify(files: &[PathBuf], key: &[String], keys_url: Option<&str>, database: Option<&Path>) -> ExitCode {
    let mut keys = Vec::new();
    for k in key {
        match chain::parse_public_key(k) {
            Ok(k) => keys.push(k),
            Err(e) => return fail(format!("--key: {e}")),
        }
    }
    if let Some(url) = keys_url {
        match fetch_keys(url).await {
            Ok(k) => keys = k,
            Err(e) => return fail(format!("--keys-url: {e}")),
        }
    }
    if let Some(config) = database {
        return verify_database(config, &keys).await;
    }
    let paths: Vec<PathBuf> = if files.len() == 1 { with_rotated(&files[0]) } else { files.to_vec() };
    let mut verifier = Verifier::new(&keys);
    for path in &paths {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
        };
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let Ok(line) = line else { return fail(format!("{}: unreadable at line {}", path.display(), n + 1)) };
            verifier.line(&line, || format!("{}:{}", path.display(), n + 1));
        }
    }
    let files_text = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    conclude(verifier.finish(), &files_text, keys.is_empty())
}

/// Every chain in the database sink's table, each from its first record.
async fn verify_database(config: &Path, keys: &[(String, Vec<u8>)]) -> ExitCode {
    let config = match crate::config::load_file(config, &crate::config::ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let Some(vault) = &config.vault else {
        return fail("the config has no vault: the database sink writes to the vault's database".into());
    };
    let ring = match vault.key_ring(&config.base_dir) {
        Ok(k) => std::sync::Arc::new(k),
        Err(e) => return fail(e.to_string()),
    };
    let store = match crate::store::Store::open(&vault.database, ring).await {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot open the database: {e}")),
    };
    let reports = match crate::audit::verify::store(&store, keys).await {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot read the database: {e}")),
    };
    let none = reports.is_empty();
    let mut worst = ExitCode::SUCCESS;
    for (chain, report) in reports {
        let code = conclude(report, &format!("database chain {chain}"), keys.is_empty());
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    if none {
        println!("no audit records in the database");
    }
    worst
}

fn conclude(report: chain::Report, files_text: &str, keyless: bool) -> ExitCode {
    if let Some(fault) = &report.fault {
        println!("FAULT {}: {} at {}", fault.kind, fault.detail, fault.at);
        println!("checked {} record(s) in {files_text} before it", report.records);
        return ExitCode::from(1);
    }
    let from = report
        .first_seq
        .map_or_else(String::new, |s| if s > 1 { format!(" (from seq {s}: earlier files rotated away)") } else { String::new() });
    println!("verified {} record(s), {} checkpoint(s){from} in {files_text}", report.records, report.checkpoints);
    if keyless {
        println!("note: no --key given: checkpoint signatures were not checked, so a re-hashed forgery would pass");
    }
    if report.unsigned_tail > 0 {
        println!(
            "TAIL {} record(s) after the last checkpoint are not covered by a signature: a truncated tail there cannot be ruled out",
            report.unsigned_tail
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// `warden audit query`: the admin API's records, one JSON line each.
pub async fn query(gateway: &str, filter: &[(&str, Option<String>)], limit: u32) -> ExitCode {
    let admin = match super::admin_client::AdminClient::new(gateway) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut query: Vec<String> =
        filter.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", super::admin_client::AdminClient::enc(v)))).collect();
    query.push(format!("limit={limit}"));
    match admin.call(reqwest::Method::GET, &format!("/admin/v1/audit?{}", query.join("&")), None).await {
        Ok(body) => {
            for record in body["records"].as_array().into_iter().flatten() {
                println!("{record}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The Ed25519 keys of a JWK set.
async fn fetch_keys(url: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let client = crate::upstream::control_plane_client().map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let body = crate::upstream::read_limited(response, 64 * 1024).await.map_err(|e| e.to_string())?;
    let set: serde_json::Value = serde_json::from_slice(&body).map_err(|_| "not JSON".to_owned())?;
    let keys: Vec<(String, Vec<u8>)> = set["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .filter_map(|k| chain::parse_public_key(k["x"].as_str()?).ok())
        .collect();
    if keys.is_empty() { Err("no Ed25519 key in the set".into()) } else { Ok(keys) }
}
