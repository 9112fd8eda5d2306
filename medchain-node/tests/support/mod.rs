//! Helpers for the daemon tests: a local network written by `medchaind local-net`, its nodes as
//! real `medchaind run` processes (each stopped by its pid when the test ends), patient-signed
//! transactions, bounded waits.

#![allow(dead_code)] // each test binary uses part of it

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use getrandom::SysRng;
use medchain::{Actor, Consent, Genesis, Identity, Provision, Purpose};
use medchain_core::encoding::Encode;
use medchain_node::client::{ApiClient, ClientError};
use medchain_node::config::NodeConfig;
use medchain_node::keyfile;
use medchain_node::localnet;
use rand_core::UnwrapErr;

/// The daemon under test.
pub const MEDCHAIND: &str = env!("CARGO_BIN_EXE_medchaind");

/// One `medchaind run` process and what it is configured with.
pub struct Node {
    pub config_path: PathBuf,
    pub config: NodeConfig,
    pub log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    pub fn api(&self) -> ApiClient {
        ApiClient::new(self.config.api).with_timeout(Duration::from_secs(10))
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.config.api
    }

    /// Starts the process (logs appended to `node.log`).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(MEDCHAIND)
            .args(["run", "--config"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("medchaind starts");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// SIGTERM, then waits for the exit (at most `limit`).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("node running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node did not stop within {limit:?} of SIGTERM; log:\n{}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the node's log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A local network written by the daemon's own `local-net` command.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub genesis: Genesis,
    pub nodes: Vec<Node>,
}

impl Net {
    /// Writes `n` nodes with fast timers (not started).
    pub fn write(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(MEDCHAIND)
            .args(["local-net", "--nodes", &n.to_string(), "--dir"])
            .arg(dir.path())
            .args(["--gather-ms", "100", "--round-timeout-ms", "1500"])
            .output()
            .expect("medchaind local-net runs");
        assert!(
            out.status.success(),
            "local-net failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let genesis = keyfile::load_genesis(&dir.path().join("genesis.bin")).expect("genesis");
        let nodes = localnet::configs_in(dir.path())
            .expect("configs")
            .into_iter()
            .map(|path| Node {
                config: NodeConfig::load(&path).expect("config loads"),
                log: path.with_file_name("node.log"),
                config_path: path,
                child: None,
                starts: 0,
            })
            .collect::<Vec<_>>();
        assert_eq!(nodes.len(), n);
        Self {
            dir,
            genesis,
            nodes,
        }
    }

    pub fn start_all(&mut self) {
        for node in &mut self.nodes {
            node.start();
        }
    }

    /// Every node's log tail.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} ---\n{}", i + 1, n.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the nodes `which` are up with `peers` peers connected each.
    pub async fn wait_connected(&self, which: &[usize], peers: u64, limit: Duration) {
        let ok = wait_for(limit, || async move {
            for &i in which {
                match self.nodes[i].api().status().await {
                    Ok(s) if s.peers_connected >= peers && s.running => {}
                    _ => return false,
                }
            }
            true
        })
        .await;
        assert!(ok, "nodes {which:?} not connected in time\n{}", self.logs());
    }

    /// Waits until `id` is committed on node `i`; its height.
    pub async fn wait_committed(&self, i: usize, id: &str, limit: Duration) -> u64 {
        let end = Instant::now() + limit;
        loop {
            if let Ok(s) = self.nodes[i].api().tx_status(id).await {
                if s.status == "committed" {
                    return s.height.unwrap_or(0);
                }
            }
            assert!(
                Instant::now() < end,
                "{id} not committed on node {} in time\n{}",
                i + 1,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The ledger of node `i`, opened as `medchain verify` opens it, and verified.
    pub fn verify_ledger(&self, i: usize) -> Vec<String> {
        let config = &self.nodes[i].config;
        let pass = keyfile::read_passphrase(config.passphrase_file.as_deref(), "", false)
            .expect("passphrase");
        let id = keyfile::load_identity(&config.identity, pass.as_bytes()).expect("identity");
        let key = keyfile::load_network_key(&config.network_key, &id, &self.genesis)
            .expect("network key");
        let ledger = medchain_store::Ledger::open_at(&config.ledger, key).expect("ledger");
        ledger.verify(|_| {}).expect("the ledger verifies");
        ledger
            .blocks_from(1)
            .map(|b| b.expect("block").hash().to_string())
            .collect()
    }
}

/// Polls `cond` every 100 ms until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consent grant signed by a new patient for a new doctor: the canonical body bytes.
pub fn grant(genesis: &Genesis) -> Vec<u8> {
    let rng = &mut UnwrapErr(SysRng);
    let (patient, doctor) = (Identity::generate(rng), Identity::generate(rng));
    let consent = Consent {
        patient: patient.public(),
        issued_ms: medchain_node::service::now_ms(),
        summary: String::new(),
        period: Default::default(),
        emergency: None,
        provisions: vec![Provision::permit()
            .actor(Actor::Party(doctor.verify_key()))
            .purpose(Purpose::Treat)],
    };
    consent
        .grant_body(&patient, &genesis.chain_id())
        .expect("grant body")
        .to_bytes()
}

/// Submits to node `i` and returns the transaction id.
pub async fn submit(net: &Net, i: usize, body: &[u8]) -> String {
    match net.nodes[i].api().submit(body).await {
        Ok(s) => {
            assert_eq!(s.status, "pending");
            s.id
        }
        Err(e) => panic!("submit to node {} failed: {e}\n{}", i + 1, net.logs()),
    }
}

/// The code of an API refusal.
pub fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, Option<String>) {
    match r {
        Err(ClientError::Api { status, body }) => (status, body.error.code, body.error.rule),
        other => panic!("expected an API error, got {other:?}"),
    }
}
