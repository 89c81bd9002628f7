/*! PDF text extraction, isolated in a child process when the binary allows it.

PDF readers allocate from sizes written in the file and inflate compressed streams without a
bound (a "PDF bomb" of a few MB inflates to GBs), and an allocation failure aborts a process
outright: no `catch_unwind` can contain it. So the `pagemind` binary reads each PDF in a child
process of itself ([`isolate_with`], [`child_main`]) under an address-space limit
(`RLIMIT_AS`, [`memory_limit`]) and a CPU-time limit (`RLIMIT_CPU`, plus a wall-clock kill);
a child that dies or overruns makes that one file a [`Skip`] with the reason, and the rest of the
folder loads. Library users that never call [`isolate_with`] (tests, the fuzz targets) read in
process, with panics contained.

The child's protocol: PDF bytes on stdin, one JSON value on stdout: `{"pages": [..]}` or
`{"skip": "reason"}`.
*/

use super::extract::Skip;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that makes the binary a PDF reader child ([`child_main`]).
pub const CHILD_ENV: &str = "PAGEMIND_PDF_CHILD";
/// Overrides the child's address-space limit, in MiB (default [`memory_limit`]).
pub const MEMORY_ENV: &str = "PAGEMIND_PDF_MEMORY_MB";
/// CPU seconds a child may use: a base plus one second per MiB of PDF.
const CPU_BASE_S: u64 = 60;

static CHILD_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Read PDFs in child processes of `exe` (the running `pagemind` binary), which must call
/// [`child_main`] when [`CHILD_ENV`] is set.
pub fn isolate_with(exe: PathBuf) {
    let _ = CHILD_EXE.set(exe);
}

/// The address space a child may map, in bytes: 2 GiB, or 16 times the file when larger.
pub fn memory_limit(file_len: usize) -> u64 {
    let mb = std::env::var(MEMORY_ENV).ok().and_then(|v| v.parse::<u64>().ok());
    match mb {
        Some(mb) => mb << 20,
        None => (2u64 << 30).max(16 * file_len as u64),
    }
}

/// Text of each page of a PDF; encrypted, broken or hostile files are a [`Skip`].
pub fn pdf_pages(bytes: &[u8]) -> Result<Vec<String>, Skip> {
    match CHILD_EXE.get() {
        Some(exe) => in_child(exe, bytes),
        None => in_process(bytes),
    }
}

/// The child's side: read a PDF from stdin, print the result, exit.
pub fn child_main() -> std::process::ExitCode {
    let mut bytes = vec![];
    if std::io::stdin().read_to_end(&mut bytes).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    std::panic::set_hook(Box::new(|_| {}));
    let v = match in_process(&bytes) {
        Ok(pages) => serde_json::json!({ "pages": pages }),
        Err(Skip(s)) => serde_json::json!({ "skip": s }),
    };
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &v).and_then(|_| out.flush().map_err(serde_json::Error::io)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

fn in_process(bytes: &[u8]) -> Result<Vec<String>, Skip> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| {
        let doc = lopdf::Document::load_mem(bytes).map_err(|e| Skip(format!("unreadable PDF: {e}")))?;
        if doc.is_encrypted() {
            return Err(Skip("encrypted PDF (decrypt it first, e.g. `qpdf --decrypt in.pdf out.pdf`)".into()));
        }
        // The text extractor follows each page's /Parent chain without a bound (a cycle hung
        // it; found by fuzzing): refuse such a page tree first.
        for page in doc.get_pages().into_values() {
            let mut seen = std::collections::HashSet::from([page]);
            let mut cur = page;
            while let Ok(parent) = doc.get_dictionary(cur).and_then(|d| d.get(b"Parent")).and_then(|o| o.as_reference())
            {
                if !seen.insert(parent) {
                    return Err(Skip("broken PDF: its page tree has a cycle".into()));
                }
                cur = parent;
            }
        }
        drop(doc);
        pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| Skip(format!("unreadable PDF: {e}")))
    });
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(pages)) if pages.iter().any(|p| !p.trim().is_empty()) => Ok(pages),
        Ok(Ok(_)) => Err(Skip("PDF has no text layer (scanned? run OCR first)".into())),
        Ok(Err(skip)) => Err(skip),
        Err(_) => Err(Skip("unreadable PDF: the text extractor failed on this file".into())),
    }
}

fn in_child(exe: &std::path::Path, bytes: &[u8]) -> Result<Vec<String>, Skip> {
    use std::process::{Command, Stdio};
    let mem = memory_limit(bytes.len());
    let cpu = CPU_BASE_S + (bytes.len() >> 20) as u64;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, "1").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    limit(&mut cmd, mem, cpu);
    let mut child = cmd.spawn().map_err(|e| Skip(format!("cannot start the PDF reader: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let out = std::thread::scope(|s| {
        // A child that dies early closes its stdin: the write fails, the status below says why.
        s.spawn(move || {
            let _ = stdin.write_all(bytes);
        });
        let reader = s.spawn(move || {
            let mut out = vec![];
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let wall = Duration::from_secs(2 * cpu);
        let t = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if t.elapsed() > wall => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        (status, reader.join().unwrap_or_default())
    });
    let (status, out) = out;
    let Some(status) = status else {
        return Err(Skip(format!("the PDF reader ran longer than {} s and was stopped", 2 * cpu)));
    };
    if !status.success() {
        return Err(Skip(died(status, mem, cpu)));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|_| Skip("the PDF reader gave no result for this file".into()))?;
    if let Some(s) = v.get("skip").and_then(|s| s.as_str()) {
        return Err(Skip(s.to_string()));
    }
    let pages: Vec<String> = serde_json::from_value(v["pages"].clone())
        .map_err(|_| Skip("the PDF reader gave no result for this file".into()))?;
    Ok(pages)
}

/// Why a child ended badly, for the skip list.
fn died(status: std::process::ExitStatus, mem: u64, cpu: u64) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
                return format!("the PDF reader used more than {cpu} s of CPU on this file and was stopped")
            }
            Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => {
                return format!(
                    "the PDF reader ran out of memory (limit {} MiB) or crashed on this file (a PDF bomb?)",
                    mem >> 20
                )
            }
            _ => {}
        }
    }
    format!("the PDF reader failed on this file ({status})")
}

#[cfg(unix)]
fn limit(cmd: &mut std::process::Command, mem: u64, cpu: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit, which
    // is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let as_lim = libc::rlimit { rlim_cur: mem as libc::rlim_t, rlim_max: mem as libc::rlim_t };
            let cpu_lim = libc::rlimit { rlim_cur: cpu as libc::rlim_t, rlim_max: cpu as libc::rlim_t + 5 };
            if libc::setrlimit(libc::RLIMIT_AS, &as_lim) != 0 || libc::setrlimit(libc::RLIMIT_CPU, &cpu_lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn limit(_: &mut std::process::Command, _: u64, _: u64) {}
