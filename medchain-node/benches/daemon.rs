//! Four `medchaind` processes on loopback, driven over HTTP, side by side with the in-process
//! simulator on the same genesis, in the same run: submit→commit latency at a light load, and
//! committed transactions per second under a burst, then the ratio real/simulated.
//!
//! ```text
//! cargo bench -p medchain-node --bench daemon            # 100 + 1,000 transactions
//! MEDCHAIN_BENCH_TXS=3000 cargo bench -p medchain-node --bench daemon
//! ```
//!
//! * **Real**: the network `local-net` writes (gather 100 ms, round timeout 1.5 s, blocks of up
//!   to 10,000 transactions). A transaction counts as committed when node 1's API shows it in a
//!   committed block (its new blocks are read every 10 ms): the latency is what a client of
//!   node 1 sees, HTTP included. The burst is submitted by four clients per node over
//!   keep-alive connections.
//! * **Simulated**: the same four members (their identities, network keys and genesis, read
//!   from the files `local-net` wrote) as `medchain::Host`s with their own SQLite ledgers in one
//!   `medchain::MemoryNetwork` (the workspace's one in-process driver), paced by the wall
//!   clock: its virtual clock follows real time, so gather windows and timeouts last what they
//!   last in the real network; only the sockets, the encryption, HTTP and the processes are
//!   gone. The same transactions, submitted straight to the hosts, the same way (round-robin at
//!   20 tx/s, then the burst). Committed means committed at host 1.
//!
//! Transactions are patient-signed consent grants, signed before the clock starts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use medchain::{Event, Host, MemoryNetwork, TxBody};
use medchain_core::encoding::Decode;
use medchain_node::client::ApiClient;
use medchain_node::keyfile;
use medchain_node::service::now_ms;
use support::{grant, Net};

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Polls node 1 and records when each transaction first appears in a committed block.
async fn watch(api: ApiClient, seen: Seen, stop: Arc<AtomicBool>) {
    let mut height = api.status().await.map(|s| s.height).unwrap_or(0);
    while !stop.load(Ordering::Relaxed) {
        if let Ok(s) = api.status().await {
            for h in height + 1..=s.height {
                if let Ok(block) = api.block(h).await {
                    let now = Instant::now();
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    for id in block.txs {
                        seen.entry(id).or_insert(now);
                    }
                    height = h;
                } else {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that keeps one HTTP/1.1 connection open and submits over it, retrying while the
/// node answers 503 (mempool full, busy).
struct Submitter {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Submitter {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Self { addr, sender }
    }

    async fn submit(&mut self, body: &[u8]) -> (String, Instant) {
        let json = format!("{{\"hex\":\"{}\"}}", hex::encode(body));
        loop {
            let at = Instant::now();
            let request = Request::post("/v1/transactions")
                .header(HOST, self.addr.to_string())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json.clone())))
                .expect("request");
            self.sender.ready().await.expect("connection");
            let response = self.sender.send_request(request).await.expect("answer");
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            match status {
                202 => {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                    return (v["id"].as_str().expect("id").to_owned(), at);
                }
                503 => tokio::time::sleep(Duration::from_millis(10)).await,
                other => panic!("submit failed: {other} {}", String::from_utf8_lossy(&bytes)),
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Latencies, sorted, and the last commit's instant, of transactions all committed.
fn summarize(
    submitted: &[(String, Instant)],
    seen: &HashMap<String, Instant>,
) -> (Vec<Duration>, Instant) {
    let mut l: Vec<Duration> = submitted
        .iter()
        .map(|(id, at)| seen[id].saturating_duration_since(*at))
        .collect();
    l.sort_unstable();
    let last = submitted
        .iter()
        .map(|(id, _)| seen[id])
        .max()
        .unwrap_or_else(Instant::now);
    (l, last)
}

/// Waits until every submitted transaction is seen committed; see [`summarize`].
async fn latencies(
    submitted: &[(String, Instant)],
    seen: &Seen,
    limit: Duration,
) -> (Vec<Duration>, Instant) {
    let end = Instant::now() + limit;
    loop {
        {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if submitted.iter().all(|(id, _)| seen.contains_key(id)) {
                return summarize(submitted, &seen);
            }
        }
        assert!(Instant::now() < end, "transactions not committed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// One side's figures.
struct Figures {
    light_p50: Duration,
    light_p99: Duration,
    tps: f64,
    p50: Duration,
    p99: Duration,
    elapsed: Duration,
}

impl Figures {
    fn new(light: &[Duration], burst: &[Duration], txs: usize, elapsed: Duration) -> Self {
        Self {
            light_p50: percentile(light, 0.5),
            light_p99: percentile(light, 0.99),
            tps: txs as f64 / elapsed.as_secs_f64(),
            p50: percentile(burst, 0.5),
            p99: percentile(burst, 0.99),
            elapsed,
        }
    }

    fn print(&self, name: &str, light: usize, txs: usize) {
        println!(
            "{name:<10} light load ({light} txs at 20 tx/s): submit->commit p50 {}, p99 {} | burst \
             ({txs} txs): {:.0} tx/s committed ({} from the first submit to the last commit), \
             p50 {}, p99 {}",
            ms(self.light_p50),
            ms(self.light_p99),
            self.tps,
            ms(self.elapsed),
            ms(self.p50),
            ms(self.p99)
        );
    }
}

/// Clients per node in the burst.
const CLIENTS_PER_NODE: usize = 4;

fn real(net: &Net, light_bodies: &[Vec<u8>], bodies: &[Vec<u8>]) -> Figures {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let apis: Vec<ApiClient> = net.nodes.iter().map(|n| n.api()).collect();
    let addrs: Vec<SocketAddr> = net.nodes.iter().map(|n| n.api_addr()).collect();
    rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, Duration::from_secs(60))
            .await;
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = tokio::spawn(watch(apis[0].clone(), seen.clone(), stop.clone()));

        // Light load: one transaction every 50 ms (20 tx/s), round-robin over the nodes.
        let mut clients = Vec::new();
        for addr in &addrs {
            clients.push(Submitter::connect(*addr).await);
        }
        let mut submitted = Vec::new();
        for (k, body) in light_bodies.iter().enumerate() {
            submitted.push(clients[k % 4].submit(body).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (light, _) = latencies(&submitted, &seen, Duration::from_secs(120)).await;

        // Burst: CLIENTS_PER_NODE keep-alive clients per node, as fast as the nodes accept.
        let start = Instant::now();
        let mut tasks = Vec::new();
        let clients = addrs.len() * CLIENTS_PER_NODE;
        for c in 0..clients {
            let addr = addrs[c % addrs.len()];
            let share: Vec<Vec<u8>> = bodies.iter().skip(c).step_by(clients).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut client = Submitter::connect(addr).await;
                let mut out = Vec::with_capacity(share.len());
                for body in &share {
                    out.push(client.submit(body).await);
                }
                out
            }));
        }
        let mut submitted = Vec::new();
        for t in tasks {
            submitted.extend(t.await.expect("submitter"));
        }
        let accepted = start.elapsed();
        let (burst, last) = latencies(&submitted, &seen, Duration::from_secs(300)).await;
        stop.store(true, Ordering::Relaxed);
        let _ = watcher.await;
        println!(
            "real: the burst was accepted over HTTP in {} ({:.0} tx/s)",
            ms(accepted),
            bodies.len() as f64 / accepted.as_secs_f64()
        );
        Figures::new(
            &light,
            &burst,
            bodies.len(),
            last.saturating_duration_since(start),
        )
    })
}

/// A [`MemoryNetwork`] whose virtual clock follows the wall clock.
struct Paced {
    net: MemoryNetwork,
    /// When host 1 committed each transaction.
    seen: HashMap<String, Instant>,
}

impl Paced {
    /// Catches the virtual clock up with the wall clock and handles everything due.
    fn run(&mut self) {
        self.net.advance_clock(now_ms());
        self.net.deliver_all(usize::MAX).expect("simulated network");
        let now = Instant::now();
        for (i, event) in self.net.take_events() {
            if let (0, Event::Committed { txs, .. }) = (i, event) {
                for id in txs {
                    self.seen.entry(id.to_string()).or_insert(now);
                }
            }
        }
    }

    /// Runs until `until`, sleeping to the next deadline between passes.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.run();
            let now = Instant::now();
            if now >= until {
                return;
            }
            let next = self
                .net
                .hosts()
                .iter()
                .filter_map(Host::poll_timeout)
                .min()
                .map_or(Duration::from_millis(10), |t| {
                    Duration::from_millis(t.saturating_sub(now_ms()))
                });
            std::thread::sleep(next.min(until - now).min(Duration::from_millis(10)));
        }
    }

    fn submit(&mut self, i: usize, body: &[u8]) -> (String, Instant) {
        let at = Instant::now();
        let body = TxBody::from_bytes(body).expect("a body");
        let id = self
            .net
            .host_mut(i)
            .submit_patient_signed(&body, now_ms())
            .expect("submitted");
        self.net.pump(i);
        (id.to_string(), at)
    }

    fn wait_committed(&mut self, submitted: &[(String, Instant)]) -> (Vec<Duration>, Instant) {
        let end = Instant::now() + Duration::from_secs(300);
        while !submitted.iter().all(|(id, _)| self.seen.contains_key(id)) {
            assert!(Instant::now() < end, "simulated network did not commit");
            self.run_until(Instant::now() + Duration::from_millis(5));
        }
        summarize(submitted, &self.seen)
    }
}

fn simulated(net: &Net, light_bodies: &[Vec<u8>], bodies: &[Vec<u8>]) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = now_ms();
    let hosts = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let id = node.identity();
            let key = keyfile::load_network_key(&node.config.network_key, &id, &net.genesis)
                .expect("network key");
            Host::create(
                dir.path().join(format!("sim-{i}.sqlite")),
                &net.genesis,
                id,
                key,
                now,
            )
            .expect("host")
        })
        .collect();
    let mut sim = Paced {
        net: MemoryNetwork::new(hosts, now),
        seen: HashMap::new(),
    };
    let mut submitted = Vec::new();
    for (k, body) in light_bodies.iter().enumerate() {
        submitted.push(sim.submit(k % 4, body));
        sim.run_until(Instant::now() + Duration::from_millis(50));
    }
    let (light, _) = sim.wait_committed(&submitted);
    let start = Instant::now();
    let submitted: Vec<(String, Instant)> = bodies
        .iter()
        .enumerate()
        .map(|(k, body)| sim.submit(k % 4, body))
        .collect();
    let (burst, last) = sim.wait_committed(&submitted);
    Figures::new(
        &light,
        &burst,
        bodies.len(),
        last.saturating_duration_since(start),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once with a tiny load.
    let quick = !std::env::args().any(|a| a == "--bench");
    let txs: usize = std::env::var("MEDCHAIN_BENCH_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 8 } else { 1_000 });
    let light = if quick { 4 } else { 100 };
    let mut net = Net::write(4);
    // The simulator uses the same genesis and transactions: consent grants of distinct
    // patients, so each side's ledger takes them once.
    let light_bodies: Vec<Vec<u8>> = (0..light).map(|_| grant(&net.genesis)).collect();
    let bodies: Vec<Vec<u8>> = (0..txs).map(|_| grant(&net.genesis)).collect();
    net.start_all();
    let real = real(&net, &light_bodies, &bodies);
    for node in &mut net.nodes {
        let _ = node.terminate(Duration::from_secs(20));
    }
    let sim = simulated(&net, &light_bodies, &bodies);
    println!(
        "4 members, gather 100 ms, round timeout 1.5 s, blocks of up to 10,000 transactions; \
         {} cores",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    real.print("medchaind", light, txs);
    sim.print("simulator", light, txs);
    println!(
        "real/simulated: committed tx/s {:.2}; light-load p50 latency sim/real {:.2}; burst p50 \
         latency sim/real {:.2}",
        real.tps / sim.tps,
        sim.light_p50.as_secs_f64() / real.light_p50.as_secs_f64(),
        sim.p50.as_secs_f64() / real.p50.as_secs_f64()
    );
}
