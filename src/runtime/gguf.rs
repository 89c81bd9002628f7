/*! Opening a GGUF file with validation, and typed access to its metadata.

Errors name the file and say what is wrong: missing, not GGUF (bad magic), truncated (a tensor's
data runs past the end of the file), missing metadata keys, unsupported architecture.
*/

use crate::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The architectures whose forward pass pagemind implements.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "qwen2"];

/// An opened, checked GGUF file.
pub struct Gguf {
    pub path: PathBuf,
    pub content: Content,
    pub file: File,
}

impl Gguf {
    /// Open and validate `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::file(path, "model file not found"),
            _ => Error::file(path, format!("cannot open model file: {e}")),
        })?;
        let len = file.metadata()?.len();
        // candle's reader divides by the header's alignment and trusts its counts: a malformed
        // header panics there; that is the file's fault, reported as such.
        // (The panic hook is silenced meanwhile: the error below is the one report.)
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut file)));
        std::panic::set_hook(hook);
        let read = read.map_err(|_| Error::Gguf {
            path: path.into(),
            msg: "malformed header (e.g. general.alignment = 0)".into(),
        })?;
        if let Some(Value::U32(0) | Value::U64(0)) =
            read.as_ref().ok().and_then(|c| c.metadata.get("general.alignment"))
        {
            return Err(Error::Gguf {
                path: path.into(),
                msg: "metadata key 'general.alignment' = 0: expected a power of two".into(),
            });
        }
        let content = read.map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("unknown dtype for tensor ") {
                Some(t) => {
                    Error::Unsupported { path: path.into(), msg: format!("unsupported tensor type {t} (ggml type id)") }
                }
                None => Error::Gguf { path: path.into(), msg },
            }
        })?;
        for (name, info) in &content.tensor_infos {
            let n: usize = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            if !n.is_multiple_of(block) {
                return Err(Error::Gguf {
                    path: path.into(),
                    msg: format!("tensor {name}: {n} elements is not a multiple of the block size {block}"),
                });
            }
            let end = (n / block)
                .checked_mul(info.ggml_dtype.type_size())
                .and_then(|b| (b as u64).checked_add(content.tensor_data_offset))
                .and_then(|b| b.checked_add(info.offset));
            let Some(end) = end else {
                return Err(Error::Gguf { path: path.into(), msg: format!("tensor {name}: size overflows") });
            };
            if end > len {
                return Err(Error::Gguf {
                    path: path.into(),
                    msg: format!(
                        "truncated: tensor {name} needs bytes up to {end} but the file has {len}; re-download it"
                    ),
                });
            }
        }
        let g = Gguf { path: path.into(), content, file };
        let arch = g.str("general.architecture")?;
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(Error::Unsupported {
                path: path.into(),
                msg: format!("unsupported architecture '{arch}' (supported: {})", SUPPORTED_ARCHS.join(", ")),
            });
        }
        Ok(g)
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| Error::Gguf { path: self.path.clone(), msg: format!("missing metadata key '{key}'") })
    }

    fn bad(&self, key: &str, e: impl std::fmt::Display) -> Error {
        Error::Gguf { path: self.path.clone(), msg: format!("metadata key '{key}': {e}") }
    }

    /// Whether a metadata key exists.
    pub fn has(&self, key: &str) -> bool {
        self.content.metadata.contains_key(key)
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Result<String> {
        self.get(key)?.to_string().cloned().map_err(|e| self.bad(key, e))
    }

    /// An integer value (any integer width).
    pub fn u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key)?;
        Ok(match v {
            Value::U8(x) => *x as u64,
            Value::I8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::I16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::I32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I64(x) => *x as u64,
            other => return Err(self.bad(key, format!("expected an integer, got {other:?}"))),
        })
    }

    /// A float value.
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.get(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            other => Err(self.bad(key, format!("expected a float, got {other:?}"))),
        }
    }

    /// A boolean value, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        if !self.has(key) {
            return Ok(default);
        }
        self.get(key)?.to_bool().map_err(|e| self.bad(key, e))
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let arr = self.get(key)?.to_vec().map_err(|e| self.bad(key, e))?;
        arr.iter().map(|v| v.to_string().cloned().map_err(|e| self.bad(key, e))).collect()
    }

    /// An array of integers.
    pub fn ints(&self, key: &str) -> Result<Vec<i64>> {
        let arr = self.get(key)?.to_vec().map_err(|e| self.bad(key, e))?;
        arr.iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U8(x) => Ok(*x as i64),
                Value::I8(x) => Ok(*x as i64),
                other => Err(self.bad(key, format!("expected integers, got {other:?}"))),
            })
            .collect()
    }

    /// The `general.architecture` value (checked to be supported by [`Gguf::open`]).
    pub fn arch(&self) -> String {
        self.str("general.architecture").unwrap_or_default()
    }
}
