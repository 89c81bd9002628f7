/*! Finding the files to load: ripgrep's `ignore` walker, so `.gitignore`, `.ignore` and hidden
files are respected as in `rg`, plus `--include`/`--exclude` globs (gitignore syntax, matched
against paths relative to each root). Results are sorted for a deterministic load order.
*/

use crate::{Error, Result};
use ignore::overrides::OverrideBuilder;
use ignore::WalkBuilder;
use std::path::{Path, PathBuf};

/// Files under `roots` (a root may itself be a file, always taken), with their sizes.
pub fn files(roots: &[PathBuf], include: &[String], exclude: &[String]) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = vec![];
    for root in roots {
        let meta = std::fs::metadata(root).map_err(|e| Error::file(root, e))?;
        if meta.is_file() {
            out.push((abs(root)?, meta.len()));
            continue;
        }
        let mut ov = OverrideBuilder::new(root);
        for g in include {
            ov.add(g).map_err(|e| Error::Invalid(format!("--include {g:?}: {e}")))?;
        }
        for g in exclude {
            ov.add(&format!("!{g}")).map_err(|e| Error::Invalid(format!("--exclude {g:?}: {e}")))?;
        }
        let ov = ov.build().map_err(|e| Error::Invalid(format!("--include/--exclude: {e}")))?;
        let walker = WalkBuilder::new(root).require_git(false).overrides(ov).sort_by_file_path(Ord::cmp).build();
        for entry in walker {
            let entry = entry.map_err(|e| Error::Invalid(format!("walking {}: {e}", root.display())))?;
            if entry.file_type().is_some_and(|t| t.is_file()) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((abs(entry.path())?, len));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn abs(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::file(p, e))
}
