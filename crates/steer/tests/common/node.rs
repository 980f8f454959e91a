//! A steerd in a role (controller or edge) on loopback, for the role and
//! cluster tests: spawned with its own ports, asked over DNS, HTTP and
//! steerctl, killed on drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::{Proc, STEERCTL, STEERD, dig, free_port, http_get, poll, sorted_lines};

/// A client subnet of the EU region.
pub const EU: &str = "10.1.0.0/24";

pub struct Node {
    pub proc: Proc,
    pub grpc: u16,
    pub dns: u16,
    pub http: u16,
    pub state: PathBuf,
    pub config: PathBuf,
}

impl Node {
    pub fn spawn(role: &str, config: &Path, state: &Path, grpc: u16) -> Self {
        let (dns, http) = (free_port(), free_port());
        let log = state.with_extension(format!("{role}.log"));
        let proc = Proc::spawn(
            Command::new(STEERD)
                .args(["--role", role, "--config"])
                .arg(config)
                .arg("--state-dir")
                .arg(state)
                .args(["--dns-listen", &format!("127.0.0.1:{dns}")])
                .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
                .args(["--http-listen", &format!("127.0.0.1:{http}")]),
            log,
        );
        let mut node = Self {
            proc,
            grpc,
            dns,
            http,
            state: state.to_path_buf(),
            config: config.to_path_buf(),
        };
        let up = poll(Duration::from_secs(20), || {
            if let Ok(Some(status)) = node.proc.child.try_wait() {
                panic!(
                    "steerd --role {role} exited ({status}):\n{}",
                    node.proc.log_text()
                );
            }
            http_get(node.http, "/healthz")
                .is_some_and(|(c, _)| c == 200)
                .then_some(())
        });
        assert!(up.is_some(), "not up:\n{}", node.proc.log_text());
        node
    }

    pub fn controller(config: &Path, state: &Path, grpc: u16) -> Self {
        Self::spawn("controller", config, state, grpc)
    }

    pub fn edge(config: &Path, state: &Path) -> Self {
        Self::spawn("edge", config, state, free_port())
    }

    /// Kills (SIGKILL) and starts again with the same ports and state.
    pub fn restart(mut self, role: &str) -> Self {
        self.proc.kill();
        let (config, state, grpc) = (self.config.clone(), self.state.clone(), self.grpc);
        drop(self);
        Self::spawn(role, &config, &state, grpc)
    }

    pub fn answers(&self) -> Vec<String> {
        let out = dig(
            self.dns,
            &["app.example.test", "A", &format!("+subnet={EU}"), "+short"],
        );
        sorted_lines(&out)
    }

    pub fn wait_answers(&self, expected: &[&str], within: Duration) {
        let mut last = Vec::new();
        let ok = poll(within, || {
            last = self.answers();
            (last == expected).then_some(())
        });
        assert!(
            ok.is_some(),
            "edge answers {last:?}, wanted {expected:?}:\n{}",
            self.proc.log_text()
        );
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(self.http, "/status").expect("/status answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    pub fn metric(&self, line_start: &str) -> Option<f64> {
        let (_, body) = http_get(self.http, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn steerctl(&self, args: &[&str]) {
        let out = Command::new(STEERCTL)
            .arg("--endpoint")
            .arg(format!("http://127.0.0.1:{}", self.grpc))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "steerctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
