//! Helpers for the daemon tests: a local network written by `medchaind local-net`, its nodes as
//! real `medchaind run` processes (each stopped by its pid when the test ends), patient-signed
//! transactions, bounded waits.

#![allow(dead_code)] // each test binary uses part of it

pub mod fhir;
pub mod proxy;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

    /// Whether the process was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Writes `config` back to `node.toml` (takes effect at the next start).
    pub fn save_config(&self) {
        std::fs::write(&self.config_path, self.config.to_toml()).expect("config written");
    }

    /// The member's identity, restored from its backup as `medchaind run` does.
    pub fn identity(&self) -> Identity {
        let pass = keyfile::read_passphrase(self.config.passphrase_file.as_deref(), "", false)
            .expect("passphrase");
        keyfile::load_identity(&self.config.identity, pass.as_bytes()).expect("identity")
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

/// Lowest and highest port a test network may listen on: below Linux's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 on), from which `bind(0)` and outgoing
/// connections take their ports. A free port picked there (local-net's default) can be taken by
/// the fault proxy's listeners or by any client connection before the node binds it, or while
/// a killed node is down; a port here is only taken by an explicit bind.
const PORTS: (u32, u32) = (20_000, 32_000);

/// A base port for `n` nodes (`2n` consecutive ports, transport and API) in [`PORTS`], every
/// port checked free; networks of one test process get distinct ranges.
fn base_port(n: usize) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = 2 * u32::try_from(n).expect("node count");
    let slots = (PORTS.1 - PORTS.0) / span;
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..500 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = PORTS.0 + (seed.wrapping_add(k.wrapping_mul(7_919)) % slots) * span;
        let free = (base..base + span).all(|port| {
            u16::try_from(port).is_ok_and(|port| {
                TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok()
            })
        });
        if free {
            return u16::try_from(base).expect("below 32000");
        }
    }
    panic!("no free range of {span} ports in {PORTS:?}");
}

impl Net {
    /// Writes `n` nodes with fast timers (not started).
    pub fn write(n: usize) -> Self {
        Self::write_with(n, 100, 1500)
    }

    /// Writes `n` nodes with these timers (milliseconds; not started).
    pub fn write_with(n: usize, gather_ms: u64, round_timeout_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(MEDCHAIND)
            .args(["local-net", "--nodes", &n.to_string(), "--dir"])
            .arg(dir.path())
            .args(["--gather-ms", &gather_ms.to_string()])
            .args(["--round-timeout-ms", &round_timeout_ms.to_string()])
            .args(["--base-port", &base_port(n).to_string()])
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

    /// Points every node's peer addresses at `proxy` (node `i` dials node `j` through the
    /// link `i` → `j`); takes effect at the next start.
    pub fn route_through(&mut self, proxy: &proxy::FaultProxy) {
        let names: Vec<String> = (1..=self.nodes.len())
            .map(|j| format!("node-{j}"))
            .collect();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            for peer in &mut node.config.peers {
                let name = peer.member.as_deref().expect("local-net names its peers");
                let j = names.iter().position(|n| n == name).expect("a node");
                peer.address = proxy.address(i, j).to_string();
            }
            node.save_config();
        }
    }

    /// Each node's peer transport address, in node order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.config.listen).collect()
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

/// How long nodes may take to reach the same head.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Every node's block hashes from height 1 to its head.
pub async fn chains(net: &Net) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for node in &net.nodes {
        let head = node.api().status().await.expect("status").height;
        let mut hashes = Vec::new();
        for h in 1..=head {
            hashes.push(node.api().block(h).await.expect("block").hash);
        }
        out.push(hashes);
    }
    out
}

/// Waits until every node listed reports the same height and head; that height and head.
pub async fn wait_same_head(net: &Net, which: &[usize]) -> (u64, String) {
    let end = std::time::Instant::now() + CONVERGE;
    loop {
        let mut seen = Vec::new();
        for &i in which {
            if let Ok(s) = net.nodes[i].api().status().await {
                seen.push((s.height, s.head));
            }
        }
        if seen.len() == which.len() && seen.windows(2).all(|w| w[0] == w[1]) {
            return seen.swap_remove(0);
        }
        assert!(
            std::time::Instant::now() < end,
            "nodes {which:?} did not converge: {seen:?}\n{}",
            net.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Block hashes from several nodes form one chain: each list is a prefix of the longest (a
/// node read a moment earlier may not have the newest block yet).
pub fn one_chain(chains: &[Vec<String>]) -> usize {
    let shortest = chains.iter().map(Vec::len).min().unwrap_or(0);
    for c in chains {
        assert_eq!(c[..shortest], chains[0][..shortest], "forked: {chains:?}");
    }
    shortest
}

/// Verifies every node's ledger (as `medchain verify` does) and checks that they hold one chain:
/// each is a prefix of the longest (a node stopped earlier may miss the last commits), and
/// none is shorter than `committed`.
pub fn verify_one_chain(net: &Net, committed: u64) {
    let ledgers: Vec<Vec<String>> = (0..net.nodes.len()).map(|i| net.verify_ledger(i)).collect();
    let shortest = one_chain(&ledgers);
    assert!(
        shortest as u64 >= committed,
        "a ledger lost committed blocks"
    );
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

/// The value of `name{reason="reason"}` in Prometheus text (0 when absent).
pub fn reason_value(text: &str, name: &str, reason: &str) -> f64 {
    let key = format!("{name}{{reason=\"{reason}\"}}");
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// A small seeded generator (SplitMix64) for fault schedules: a failing run is replayed from
/// the seed it printed.
pub struct SeededRng(u64);

impl SeededRng {
    /// The seed from `MEDCHAIN_FAULT_SEED` if set, else from the clock; printed.
    pub fn from_env(what: &str) -> Self {
        let seed = std::env::var("MEDCHAIN_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("{what}: seed {seed} (replay with MEDCHAIN_FAULT_SEED={seed})");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}
