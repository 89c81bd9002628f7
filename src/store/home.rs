/*! `<home>/models/<id>/`: installed models, resolving ids and paths, verification. */

use super::catalog::{Catalog, ModelSpec, Role};
use super::fetch::{self, PullReport, Source};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The default store root: `$PAGEMIND_HOME`, else the platform data dir (`~/.local/share/pagemind`).
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("PAGEMIND_HOME") {
        return PathBuf::from(h);
    }
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("pagemind")
}

/// A model ready to load: its declaration (if it came from the catalog) and its file paths.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The catalog entry; `None` when the model was given as a path.
    pub spec: Option<ModelSpec>,
    /// The model's files (for a GGUF chat model, the single `.gguf`).
    pub paths: Vec<PathBuf>,
}

impl ResolvedModel {
    /// A short name for reports: the id, or the file name.
    pub fn name(&self) -> String {
        match &self.spec {
            Some(s) => s.id.clone(),
            None => self.paths[0].display().to_string(),
        }
    }

    /// The path of the file called `name`, or the first file.
    pub fn file(&self, name: &str) -> PathBuf {
        self.paths
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f == name))
            .cloned()
            .unwrap_or_else(|| self.paths[0].clone())
    }
}

/// The model store under one home directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    home: PathBuf,
    catalog: Catalog,
}

impl ModelStore {
    /// A store rooted at `home` with the embedded catalog.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into(), catalog: Catalog::embedded() }
    }

    /// The catalog this store uses.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The store's root.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where a model's files live.
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.home.join("models").join(id)
    }

    /// Whether every file of `spec` is present with its declared size.
    pub fn is_installed(&self, spec: &ModelSpec) -> bool {
        let dir = self.model_dir(&spec.id);
        spec.files.iter().all(|f| std::fs::metadata(dir.join(&f.name)).map(|m| m.len() == f.size).unwrap_or(false))
    }

    /// Resolve a model id or a path to a `.gguf` file / model folder.
    pub fn resolve(&self, id_or_path: &str) -> Result<ResolvedModel> {
        if let Some(spec) = self.catalog.get(id_or_path) {
            if !self.is_installed(spec) {
                return Err(Error::NotInstalled { id: spec.id.clone() });
            }
            let dir = self.model_dir(&spec.id);
            self.check_hashes(spec)?;
            return Ok(ResolvedModel {
                spec: Some(spec.clone()),
                paths: spec.files.iter().map(|f| dir.join(&f.name)).collect(),
            });
        }
        let p = Path::new(id_or_path);
        let looks_like_path = id_or_path.contains('/') || id_or_path.contains('\\') || id_or_path.ends_with(".gguf");
        if looks_like_path {
            if !p.exists() {
                return Err(Error::file(
                    p,
                    "no such file: pass an existing model file or a model id from `pagemind models list`",
                ));
            }
            if p.is_dir() {
                let paths = ["model.safetensors", "tokenizer.json", "config.json"]
                    .iter()
                    .map(|f| p.join(f))
                    .collect::<Vec<_>>();
                if let Some(missing) = paths.iter().find(|f| !f.exists()) {
                    return Err(Error::file(
                        missing,
                        "missing: an embedding model folder needs model.safetensors, tokenizer.json and config.json",
                    ));
                }
                return Ok(ResolvedModel { spec: None, paths });
            }
            return Ok(ResolvedModel { spec: None, paths: vec![p.to_path_buf()] });
        }
        Err(Error::UnknownModel { id: id_or_path.to_string() })
    }

    /// Resolve, or the default model for `role` when `id` is `None`.
    pub fn resolve_or_default(&self, id: Option<&str>, role: Role) -> Result<ResolvedModel> {
        let default = match role {
            Role::Chat => &self.catalog.default_chat,
            Role::Embedding => &self.catalog.default_embedding,
        };
        self.resolve(id.unwrap_or(default))
    }

    /// Re-hash every file of a model against its declared sha256.
    pub fn verify(&self, id: &str, progress: bool) -> Result<()> {
        let spec = self.catalog.require(id)?;
        if !self.is_installed(spec) {
            return Err(Error::NotInstalled { id: id.to_string() });
        }
        let dir = self.model_dir(id);
        for f in &spec.files {
            let path = dir.join(&f.name);
            let actual = fetch::sha256_file(&path, progress)?;
            if actual != f.sha256 {
                return Err(Error::Checksum { path, id: id.into(), expected: f.sha256.clone(), actual });
            }
        }
        Ok(())
    }

    /// Install a model (no-op when installed, unless `force`).
    pub fn pull(&self, id: &str, source: Source, force: bool, progress: bool) -> Result<PullReport> {
        let spec = self.catalog.require(id)?.clone();
        let dir = self.model_dir(&spec.id);
        if !force && self.is_installed(&spec) {
            fetch::sweep(&dir);
            return Ok(PullReport { id: spec.id, from: "store".into(), bytes: 0 });
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, format!("cannot create model folder: {e}")))?;
        // One pull of a model at a time: a second waits, then finds it installed.
        let _lock = fetch::lock(&dir, &spec.id, progress)?;
        if !force && self.is_installed(&spec) {
            return Ok(PullReport { id: spec.id, from: "store".into(), bytes: 0 });
        }
        fetch::clean_leftovers(&dir);
        let report = fetch::pull(&spec, &dir, source, progress)?;
        // The pull hashed every file as it wrote it.
        let stamp: Vec<Verified> =
            spec.files.iter().filter_map(|f| Verified::of(&dir.join(&f.name), &f.sha256)).collect();
        write_stamp(&dir, &stamp);
        Ok(report)
    }

    /// Check each file of an installed catalog model against its declared sha256 unless the
    /// stamp beside it ([`VERIFIED`]) says it was hashed at this size and modification time
    /// (a pull writes the stamp; a file copied in, edited or damaged in place is hashed again
    /// at its next load, once).
    fn check_hashes(&self, spec: &ModelSpec) -> Result<()> {
        let dir = self.model_dir(&spec.id);
        let mut stamp = read_stamp(&dir);
        let mut changed = false;
        for f in &spec.files {
            let path = dir.join(&f.name);
            let Some(now) = Verified::of(&path, &f.sha256) else { continue };
            if stamp.contains(&now) {
                continue;
            }
            let actual = fetch::sha256_file(&path, false)?;
            if actual != f.sha256 {
                return Err(Error::Checksum { path, id: spec.id.clone(), expected: f.sha256.clone(), actual });
            }
            stamp.retain(|v| v.name != now.name);
            stamp.push(now);
            changed = true;
        }
        if changed {
            write_stamp(&dir, &stamp);
        }
        Ok(())
    }
}

/// The file beside a model's files recording which of them were hashed, at which size and
/// modification time.
pub const VERIFIED: &str = ".verified.json";

/// One file known to match its declared sha256 as long as its size and time are unchanged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Verified {
    name: String,
    size: u64,
    modified_ns: u128,
    sha256: String,
}

impl Verified {
    /// The entry `path` would have now (`None` if it cannot be read).
    fn of(path: &Path, sha256: &str) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        let modified_ns = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        let name = path.file_name()?.to_string_lossy().into_owned();
        Some(Verified { name, size: m.len(), modified_ns, sha256: sha256.to_string() })
    }
}

fn read_stamp(dir: &Path) -> Vec<Verified> {
    std::fs::read(dir.join(VERIFIED)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Write the stamp atomically; a store that cannot be written to is hashed at every load.
fn write_stamp(dir: &Path, stamp: &[Verified]) {
    let tmp = dir.join(format!("{VERIFIED}.{}.tmp", std::process::id()));
    let ok = serde_json::to_vec_pretty(stamp)
        .ok()
        .is_some_and(|b| std::fs::write(&tmp, b).is_ok() && std::fs::rename(&tmp, dir.join(VERIFIED)).is_ok());
    if !ok {
        let _ = std::fs::remove_file(&tmp);
    }
}
