//! A three-member etcd cluster on loopback for tests (Debian's
//! `etcd-server`, which `scripts/test` installs): fast raft timings, data
//! under a temp dir, every member killed on drop. Shared by the store's
//! tests and the binaries' cluster tests (`#[path]`-included).

#![allow(dead_code)]

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use steer_store::etcd::{EtcdOptions, connect};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// Three etcd members on 127.0.0.1, data under a temp dir; killed on drop.
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    members: Vec<Member>,
}

impl Cluster {
    pub(crate) fn start() -> Self {
        let etcd = which("etcd");
        assert!(
            etcd.is_some(),
            "etcd is not installed: `apt-get install etcd-server` (scripts/test does)"
        );
        let dir = std::env::temp_dir().join(format!(
            "steer-etcd-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(free_port())
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self { dir, members };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    pub(crate) fn initial(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn spawn(&mut self, i: usize) {
        let initial = self.initial();
        let data = self.dir.join(&self.members[i].name);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.members[i].name)))
            .expect("log file");
        let m = &mut self.members[i];
        let child = Command::new("etcd")
            .args([
                "--name",
                &m.name,
                "--data-dir",
                &data.display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "steer-test",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    pub(crate) fn signal(&mut self, i: usize, signal: &str) {
        if let Some(child) = &self.members[i].child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal} {}: {status}", child.id());
        }
    }

    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls until a put through every member's endpoint works.
    pub(crate) fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let rt = runtime();
        loop {
            let ok = rt.block_on(async {
                let options = EtcdOptions::new(self.endpoints(), "health", "probe");
                let Ok(mut c) = connect(&options).await else {
                    return false;
                };
                c.put("/health", "ok", None).await.is_ok()
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy within {within:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.signal(i, "-CONT");
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
