//! stdout for steerctl: a reader that goes away (`steerctl watch | head -1`,
//! a closed pager) ends steerctl quietly with status 0, as other Unix tools
//! do, instead of a panic. Any other write error is reported and exits 1.

use std::io::Write;

/// Writes `args` to stdout, flushed (watch lines must not sit in a buffer).
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("steerctl: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// `print!` that ends quietly when the reader has gone.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// `println!` that ends quietly when the reader has gone.
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
