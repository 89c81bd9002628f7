/*! The `pagemind` binary: parse arguments, run, print any error once on one line. */

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os(pagemind::ingest::pdf::CHILD_ENV).is_some() {
        return pagemind::ingest::pdf::child_main();
    }
    if let Ok(exe) = std::env::current_exe() {
        pagemind::ingest::pdf::isolate_with(exe);
    }
    reuse_large_buffers();
    quiet_on_closed_pipe();
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            let mut msg = format!("{err}");
            for cause in err.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("pagemind: error: {}", msg.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// glibc serves allocations above its mmap threshold (dynamic, 128 KiB at start) with fresh
/// mappings, so every prefill batch's activation buffers (tens of MB per layer) came back as
/// zeroed pages: page faults were ~15% of a 512-token prefill. Keep buffers up to 32 MiB (glibc's
/// ceiling) in the heap and return freed memory to the system only above 256 MiB of slack.
fn reuse_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// `pagemind recall search ... | head`: when the reader goes away, end quietly as other
/// Unix tools do (the default SIGPIPE action), instead of panicking in `println!`.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
