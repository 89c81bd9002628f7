/*! The KV-state file: a session's cached keys and values on disk (one owner of the format).

A follow-up `pagemind ask` in a new process restores the previous turn's cache from this file
and evaluates only the tokens its prompt adds (see [`super::Session::restore_state`]).

Layout (little-endian):

```text
"PMKV"  u32 version  u32 header_len  header (JSON: model, n_layers, n_kv_heads, head_dim,
                                              dtype "f32", tokens)
u32 × tokens                          the token ids the cache holds
per layer: K then V, each f32 × n_kv_heads × tokens × head_dim   (the cache's own type: exact)
sha256 of everything above (32 bytes)
```

Writes are atomic (a temporary file in the same folder, fsync, rename, fsync of the folder).
A file is used only when its checksum, model fingerprint and shapes all match; anything else is
reported as a reason to start cold, never as an error: the cache is only a cache.
*/

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 4] = b"PMKV";
const VERSION: u32 = 1;
/// Largest header accepted (the JSON is ~150 bytes).
const MAX_HEADER: usize = 1 << 16;

/// The shapes and the model a KV file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvHeader {
    /// Fingerprint of the model file ([`super::ChatModel::fingerprint`]).
    pub model: String,
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub dtype: String,
    pub tokens: usize,
}

/// A cache's contents: token ids and per-layer keys and values (`[n_kv_heads, tokens, head_dim]`).
#[derive(Debug, Clone)]
pub struct KvFile {
    pub header: KvHeader,
    pub tokens: Vec<u32>,
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl KvHeader {
    fn layer_len(&self) -> usize {
        self.n_kv_heads * self.tokens * self.head_dim
    }

    /// Bytes of the whole file with this header (`header_len` bytes of JSON).
    fn file_len(&self, header_len: usize) -> Option<usize> {
        let floats = self.layer_len().checked_mul(2)?.checked_mul(self.n_layers)?;
        12usize
            .checked_add(header_len)?
            .checked_add(self.tokens.checked_mul(4)?)?
            .checked_add(floats.checked_mul(4)?)?
            .checked_add(32)
    }
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn get_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Name parts of the temporary file a write renames into place.
const TEMP_PREFIX: &str = ".kv-";
const TEMP_SUFFIX: &str = ".tmp";

/// Remove the temporary files that writes killed midway left in `dir`. Only for a caller that
/// knows no write into `dir` is running (the agent holds the store's lock, which one process
/// has at a time, and saves from one thread).
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl KvFile {
    /// Write atomically to `path`; returns the file's size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64> {
        let io = |e: std::io::Error| Error::File { path: path.to_path_buf(), msg: format!("saving the KV state: {e}") };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX).tempfile_in(dir).map_err(io)?;
        let header = serde_json::to_vec(&self.header).map_err(|e| Error::Invalid(format!("KV header: {e}")))?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut emit = |bytes: &[u8], f: &mut std::fs::File| -> std::io::Result<()> {
            hash.update(bytes);
            size += bytes.len() as u64;
            f.write_all(bytes)
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(header.len() as u32).to_le_bytes());
        head.extend_from_slice(&header);
        for t in &self.tokens {
            head.extend_from_slice(&t.to_le_bytes());
        }
        let f = tmp.as_file_mut();
        emit(&head, f).map_err(io)?;
        let mut buf = Vec::new();
        for (k, v) in &self.layers {
            buf.clear();
            put_f32s(&mut buf, k);
            put_f32s(&mut buf, v);
            emit(&buf, f).map_err(io)?;
        }
        let digest = hash.finalize();
        f.write_all(&digest).map_err(io)?;
        f.sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(size + 32)
    }

    /// Read `path` if it is a complete KV file for `expect` (its `tokens` field is ignored).
    /// `Ok(Err(reason))` says why it cannot be used (missing, stale, corrupt).
    pub fn read(path: &Path, expect: &KvHeader) -> Result<std::result::Result<Self, String>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err("no saved state".into())),
            Err(e) => return Ok(Err(format!("unreadable: {e}"))),
        };
        Ok(Self::parse(&bytes, expect))
    }

    fn parse(bytes: &[u8], expect: &KvHeader) -> std::result::Result<Self, String> {
        if bytes.len() < 12 + 32 || &bytes[..4] != MAGIC {
            return Err("not a pagemind KV file".into());
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        if version != VERSION {
            return Err(format!("format version {version}, this build reads {VERSION}"));
        }
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        if header_len > MAX_HEADER || 12 + header_len > bytes.len() {
            return Err("header too large".into());
        }
        let header: KvHeader =
            serde_json::from_slice(&bytes[12..12 + header_len]).map_err(|e| format!("bad header: {e}"))?;
        if header.file_len(header_len) != Some(bytes.len()) {
            return Err("truncated or padded file".into());
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("checksum mismatch".into());
        }
        let same = KvHeader { tokens: header.tokens, ..expect.clone() };
        if header != same {
            return Err(if header.model != expect.model {
                "saved for another model file".into()
            } else {
                "saved with other cache shapes".into()
            });
        }
        let mut at = 12 + header_len;
        let tokens = body[at..at + header.tokens * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        at += header.tokens * 4;
        let n = header.layer_len() * 4;
        let mut layers = Vec::with_capacity(header.n_layers);
        for _ in 0..header.n_layers {
            let k = get_f32s(&body[at..at + n]);
            let v = get_f32s(&body[at + n..at + 2 * n]);
            at += 2 * n;
            layers.push((k, v));
        }
        Ok(Self { header, tokens, layers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KvFile {
        let header =
            KvHeader { model: "m".into(), n_layers: 2, n_kv_heads: 1, head_dim: 2, dtype: "f32".into(), tokens: 3 };
        let layer = |x: f32| ((0..6).map(|i| x + i as f32).collect(), (0..6).map(|i| -x - i as f32).collect());
        KvFile { header, tokens: vec![5, 6, 7], layers: vec![layer(0.5), layer(10.0)] }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.kv");
        let f = sample();
        let size = f.write(&p).unwrap();
        assert_eq!(size, std::fs::metadata(&p).unwrap().len());
        let back = KvFile::read(&p, &f.header).unwrap().unwrap();
        assert_eq!(back.tokens, f.tokens);
        assert_eq!(back.layers, f.layers);
        // Another model, other shapes, a flipped bit, a cut file: each a reason, not an error.
        let other = KvHeader { model: "n".into(), ..f.header.clone() };
        assert!(KvFile::read(&p, &other).unwrap().unwrap_err().contains("another model"));
        let shapes = KvHeader { head_dim: 4, ..f.header.clone() };
        assert!(KvFile::read(&p, &shapes).unwrap().unwrap_err().contains("shapes"));
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() - 40;
        bytes[mid] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(KvFile::read(&p, &f.header).unwrap().unwrap_err().contains("checksum"));
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(KvFile::read(&p, &f.header).unwrap().is_err());
        assert!(KvFile::read(&dir.path().join("none.kv"), &f.header).unwrap().unwrap_err().contains("no saved"));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
