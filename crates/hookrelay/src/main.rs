//! The `hookrelay` command: see the library's documentation (`lib.rs`) for the layout.

use clap::Parser;
use hookrelay::{cli, output};

// Delivery allocates and frees many short-lived buffers per call (request bodies, headers,
// responses); mimalloc's per-thread free lists make that cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.execute() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`| head -1`): not an error of ours, and nothing left to say.
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookrelay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
