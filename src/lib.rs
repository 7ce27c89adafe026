//! Warden: an MCP-native identity and governance gateway for AI agents.
//!
//! One module per pipeline stage; `mcp` documents the order in which they run.

pub mod admin;
pub mod apikeys;
pub mod approvals;
pub mod audit;
pub mod authz;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_error;
pub mod connect;
pub mod cors;
pub mod credentials;
pub mod demo;
pub mod devidp;
pub mod edge;
pub mod error;
pub mod federation;
#[cfg(test)]
mod fuzz;
pub mod gateway;
pub mod identity;
pub mod limits;
pub mod mcp;
pub mod policy;
pub mod reload;
pub mod routes;
pub mod secret;
pub mod server;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod upstream;

pub use gateway::{Gateway, install_crypto, router, run};

/// Hex SHA-256 of a text: how secrets and long values are stored and matched without keeping them.
pub fn sha256_hex(value: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(value.as_bytes()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}
