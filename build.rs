//! Lays out the release binary's code in the order `build/symbol-order.txt` gives (written by
//! `scripts/symbol-order`): the functions Warden runs to start and to serve requests first,
//! together, so that the code it never runs is never paged in. Only for the release build of
//! `warden` on x86_64 Linux, whose linker is LLD (Rust's default there since 1.90); set
//! `WARDEN_NO_SYMBOL_ORDER=1` to link without it (another linker, say). See docs/performance.md.

fn main() {
    println!("cargo:rerun-if-changed=build/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=WARDEN_NO_SYMBOL_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = std::path::Path::new(&dir).join("build/symbol-order.txt");
    if release && target == "x86_64-unknown-linux-gnu" && order.exists() && std::env::var_os("WARDEN_NO_SYMBOL_ORDER").is_none() {
        println!("cargo:rustc-link-arg-bin=warden=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bin=warden=-Wl,--no-warn-symbol-ordering");
    }
}
