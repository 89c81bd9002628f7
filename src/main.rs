/*! The `pagemind` binary: parse arguments, run, print any error once on one line. */

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
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
