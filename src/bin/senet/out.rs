//! The command line's output. `println!`/`eprintln!` panic when a write fails (a full
//! standard output, `> /dev/full`; a broken pipe when SIGPIPE is ignored); these macros end the
//! process cleanly instead. (A standard output that is not open at all, `>&-`, is handled by
//! Rust's standard library, which discards what is written to it.)
//!
//! - [`outln!`]: a line on standard output. On a broken pipe (the reader is gone, e.g.
//!   `senet predict ... | head -1` when SIGPIPE is ignored) the process exits quietly with
//!   status 141 (128 + SIGPIPE, what a shell reports for a tool that SIGPIPE ended); on any
//!   other error (`ENOSPC`, `EBADF`, `EIO`) it prints `error: writing standard output: ...` on
//!   standard error and exits with status 1.
//! - [`errln!`]: a line on standard error; a failure to write it is ignored (there is nowhere
//!   left to report it).
use std::io::Write;

/// Exit status after a broken pipe on standard output: 128 + SIGPIPE.
const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes one line (`args` and a newline) to standard output, or ends the process.
pub fn line(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = written {
        fail(e);
    }
}

/// Writes one line to standard error, ignoring failures.
pub fn err_line(args: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|_| err.write_all(b"\n"));
}

fn fail(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(EXIT_BROKEN_PIPE);
    }
    err_line(format_args!("error: writing standard output: {e}"));
    std::process::exit(1);
}

/// `println!` that ends the process cleanly when standard output fails (see the module docs).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (see the module docs).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::err_line(format_args!($($arg)*))
    };
}
