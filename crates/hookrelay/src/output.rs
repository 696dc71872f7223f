//! Writing to the terminal as a Unix tool should: `out!` returns write errors instead of
//! panicking, and a closed pipe (`hookrelay hooks list | head -1`) ends the command quietly.

use std::io::IsTerminal;

/// `println!` that returns the write error (`?`) instead of panicking on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use out;

/// Whether an error is the reader of our output going away (`head`, `grep -q`, `true`).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Colour in logs only on a terminal, and never when `NO_COLOR` is set to something.
pub fn colour_on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
