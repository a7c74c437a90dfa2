//! Outputs of a run's [`RunReport`]: the human table, the `--json`
//! document and the `--html` page with inline SVG plots.

pub mod html;
pub mod table;

use crate::outcome::RunReport;
use std::io;
use std::path::Path;

/// Writes the report as pretty JSON.
pub fn write_json(report: &RunReport, path: &Path) -> io::Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(io::Error::other)?;
    std::fs::write(path, text)
}

/// Writes the self-contained HTML report.
pub fn write_html(report: &RunReport, path: &Path) -> io::Result<()> {
    std::fs::write(path, html::render(report))
}
