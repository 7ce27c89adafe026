//! The report: JSON with every check and its evidence, and a Markdown summary built from the
//! same results. Nothing is written that was not checked.

use std::path::Path;

use serde_json::json;

use crate::checks::CheckResult;

pub fn write(dir: &Path, url: &str, started: &str, results: &[CheckResult]) -> Result<(usize, usize), String> {
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    let doc = json!({
        "suite": "warden-conformance",
        "version": env!("CARGO_PKG_VERSION"),
        "target": url,
        "started": started,
        "finished": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "summary": {"checks": results.len(), "passed": passed, "failed": failed},
        "checks": results,
    });
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json_path = dir.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", json_path.display()))?;

    let mut md = format!(
        "# Warden conformance report\n\nTarget: `{url}`, started {started}.\n\n**{passed} passed, {failed} failed** of {} checks.\n",
        results.len()
    );
    let mut group = "";
    for r in results {
        if r.group != group {
            group = r.group;
            md.push_str(&format!("\n## {group}\n\n| check | result | detail |\n|---|---|---|\n"));
        }
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        md.push_str(&format!("| `{}` {} | {} | {} |\n", r.id, cell(&r.title), if r.passed { "pass" } else { "**FAIL**" }, cell(&r.detail)));
    }
    md.push_str("\nEvery row comes from requests made in this run; `report.json` holds each request and the response it got.\n");
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    Ok((passed, failed))
}
