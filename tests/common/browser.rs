//! What the headless-Chromium tests (`tests/browser/*.mjs`, playwright-core) need, and
//! where they leave their screenshots.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/browser`, where the scripts and their `node_modules` are.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The Chromium to drive: `$CHROMIUM`, else Debian's.
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// What is missing to run a browser script that needs the npm `packages`, if anything.
pub fn missing_pieces(packages: &[&str]) -> Option<String> {
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium = chromium();
    if !node_ok {
        return Some("node is not installed".into());
    }
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is missing (apt-get install chromium, or set CHROMIUM)"
        ));
    }
    packages
        .iter()
        .find(|p| !dir().join("node_modules").join(p).exists())
        .map(|p| format!("tests/browser/node_modules/{p} is missing (npm ci --prefix tests/browser)"))
}

/// Fails when `CI` is set and something is `missing`; otherwise says loudly that `test`
/// is skipped. True when the test is to be skipped.
pub fn skip(test: &str, missing: Option<String>) -> bool {
    let Some(missing) = missing else { return false };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set, so the browser test must run, but {missing}"
    );
    eprintln!(
        "\n*** SKIPPED {test}: {missing} ***\n\
         *** apt-get install chromium && npm ci --prefix tests/browser enables it ***\n"
    );
    true
}

/// Where the screenshots of `name` go: under the target directory, one folder per run.
pub fn out_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(name).join(std::process::id().to_string())
}
