//! Running operator commands (exec probes, `load_command`) without letting
//! them hold the agent's resources.
//!
//! Each command runs in a process group of its own; when the run ends for
//! any reason (done, output over the cap, timed out, the caller's future
//! dropped) the whole group is killed, so a shell's background children do
//! not outlive it. Output is read up to a cap and no further.

use std::{process::ExitStatus, time::Duration};

use nix::{
    errno::Errno,
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::io::AsyncReadExt;

/// Most `load_command` output read; more is an error and ends the command.
pub(crate) const OUTPUT_CAP: usize = 64 * 1024;

/// Why a command did not produce an exit status and its output.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExecError {
    Empty,
    Spawn(String),
    OutputTooLarge,
    TimedOut(Duration),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "empty command"),
            Self::Spawn(e) => write!(f, "{e}"),
            Self::OutputTooLarge => write!(
                f,
                "output over {} KiB; command killed (print only key=value pairs)",
                OUTPUT_CAP / 1024
            ),
            Self::TimedOut(t) => write!(
                f,
                "timed out after {}ms; process group killed",
                t.as_millis()
            ),
        }
    }
}

/// Kills the process group on drop; it is the child's pid (`process_group(0)`).
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // ESRCH: the group is already gone, which is the usual case.
            match killpg(pgid, Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(pgid = pgid.as_raw(), error = %e, "cannot kill command's process group")
                }
            }
        }
    }
}

/// Runs `command` (stdin, stderr null) for at most `timeout`. With
/// `capture`, stdout is returned, at most [`OUTPUT_CAP`] bytes; without, it
/// is discarded.
pub(crate) async fn run(
    command: &[String],
    timeout: Duration,
    capture: bool,
) -> Result<(ExitStatus, Vec<u8>), ExecError> {
    let Some((program, args)) = command.split_first() else {
        return Err(ExecError::Empty);
    };
    let stdout = if capture {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExecError::Spawn(format!("{program}: {e}")))?;
    let _group = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let finish = async {
        let mut out = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            // One byte over the cap tells "exactly at the cap" from "more".
            let limit = u64::try_from(OUTPUT_CAP).unwrap_or(u64::MAX) + 1;
            pipe.take(limit)
                .read_to_end(&mut out)
                .await
                .map_err(|e| ExecError::Spawn(format!("{program}: reading output: {e}")))?;
            if out.len() > OUTPUT_CAP {
                return Err(ExecError::OutputTooLarge);
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ExecError::Spawn(format!("{program}: {e}")))?;
        Ok((status, out))
    };
    tokio::time::timeout(timeout, finish)
        .await
        .map_err(|_| ExecError::TimedOut(timeout))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Whether any live process has `marker` in its command line.
    fn running_with(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
    }

    #[tokio::test]
    async fn endless_output_is_capped_and_does_not_hang() {
        let started = std::time::Instant::now();
        let got = run(&argv(&["yes"]), Duration::from_secs(20), true).await;
        assert_eq!(got.unwrap_err(), ExecError::OutputTooLarge);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn output_at_the_cap_is_read_whole() {
        let script = format!("head -c {OUTPUT_CAP} /dev/zero");
        let (status, out) = run(&argv(&["sh", "-c", &script]), Duration::from_secs(10), true)
            .await
            .unwrap();
        assert!(status.success());
        assert_eq!(out.len(), OUTPUT_CAP);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        // A fractional sleep unique to this run marks its processes.
        let marker = format!("1000.{}7", std::process::id());
        let script = format!("sleep {marker} & sleep {marker}");
        let got = run(
            &argv(&["sh", "-c", &script]),
            Duration::from_millis(300),
            true,
        )
        .await;
        assert!(matches!(got, Err(ExecError::TimedOut(_))), "{got:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running_with(&marker) {
            assert!(
                std::time::Instant::now() < deadline,
                "a `sleep {marker}` survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_whole_process_group() {
        // How exec probes end: their own timeout drops the future.
        let marker = format!("1000.{}5", std::process::id());
        let script = format!("sleep {marker} & sleep {marker}");
        let command = argv(&["sh", "-c", &script]);
        let got = tokio::time::timeout(
            Duration::from_millis(300),
            run(&command, Duration::MAX, false),
        )
        .await;
        assert!(got.is_err(), "{got:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running_with(&marker) {
            assert!(
                std::time::Instant::now() < deadline,
                "`sleep {marker}` survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn background_children_do_not_outlive_a_finished_command() {
        let marker = format!("1000.{}3", std::process::id());
        let script = format!("sleep {marker} >/dev/null & echo load_rps=1");
        let (status, out) = run(&argv(&["sh", "-c", &script]), Duration::from_secs(10), true)
            .await
            .unwrap();
        assert!(status.success());
        assert_eq!(out, b"load_rps=1\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running_with(&marker) {
            assert!(
                std::time::Instant::now() < deadline,
                "`sleep {marker}` survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
