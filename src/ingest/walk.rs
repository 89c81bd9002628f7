/*! Finding the files to load: ripgrep's `ignore` walker, so `.gitignore`, `.ignore` and hidden
files are respected as in `rg`, plus `--include`/`--exclude` globs (gitignore syntax, matched
against paths relative to each root). Results are sorted for a deterministic load order.
A path the walk cannot read (a folder without permission, a file that vanished mid-walk) is
reported with its reason and skipped; only a root that does not exist is an error.
*/

use crate::{Error, Result};
use ignore::overrides::OverrideBuilder;
use ignore::WalkBuilder;
use std::path::{Path, PathBuf};

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Files with their sizes, sorted.
    pub files: Vec<(PathBuf, u64)>,
    /// Paths that could not be read, with the reason.
    pub errors: Vec<(String, String)>,
}

/// Files under `roots` (a root may itself be a file, always taken), with their sizes.
pub fn files(roots: &[PathBuf], include: &[String], exclude: &[String]) -> Result<Walked> {
    let mut out = vec![];
    let mut errors = vec![];
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
            match entry {
                Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((abs(entry.path())?, len));
                }
                Ok(_) => {}
                Err(e) => errors.push((error_path(&e).unwrap_or_else(|| root.display().to_string()), error_text(&e))),
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(Walked { files: out, errors })
}

/// The path an `ignore` error is about, if it names one.
fn error_path(e: &ignore::Error) -> Option<String> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path.display().to_string()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => error_path(err),
        _ => None,
    }
}

/// The reason of an `ignore` error without its path.
fn error_text(e: &ignore::Error) -> String {
    match e {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => error_text(err),
        other => format!("cannot be read: {other}"),
    }
}

fn abs(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::file(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_errors_name_their_path_and_reason() {
        let io = ignore::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"));
        let e = ignore::Error::WithDepth {
            depth: 2,
            err: Box::new(ignore::Error::WithPath { path: "/data/private".into(), err: Box::new(io) }),
        };
        assert_eq!(error_path(&e).as_deref(), Some("/data/private"));
        assert_eq!(error_text(&e), "cannot be read: denied");
        // The rest of a folder still loads: a walk over a readable folder reports no errors.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "x").unwrap();
        let w = files(&[d.path().to_path_buf()], &[], &[]).unwrap();
        assert_eq!((w.files.len(), w.errors.len()), (1, 0));
    }
}
