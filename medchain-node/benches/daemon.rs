//! Four `medchaind` processes on loopback, driven over HTTP: submit→commit latency at a light
//! load, and committed transactions per second under four concurrent submitters.
//!
//! ```text
//! cargo bench -p medchain-node --bench daemon            # 100 + 1,000 transactions
//! MEDCHAIN_BENCH_TXS=3000 cargo bench -p medchain-node --bench daemon
//! ```
//!
//! A transaction counts as committed when node 1's API shows it in a committed block (its
//! status is polled every 10 ms, new blocks are read as they come): the latency is what a
//! client of node 1 sees, HTTP included. Transactions are patient-signed consent grants, signed
//! before the clock starts. The network runs with `local-net`'s test timing (gather 100 ms,
//! round timeout 1.5 s).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medchain_node::client::{ApiClient, ClientError};
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

/// Submits, retrying while the node answers 503 (mempool full, busy).
async fn submit(api: &ApiClient, body: &[u8]) -> (String, Instant) {
    loop {
        let at = Instant::now();
        match api.submit(body).await {
            Ok(s) => return (s.id, at),
            Err(ClientError::Api { status: 503, .. }) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("submit failed: {e}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Waits until every submitted transaction is seen committed; their latencies, sorted, and the
/// last commit's instant.
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
                return (l, last);
            }
        }
        assert!(Instant::now() < end, "transactions not committed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
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
    net.start_all();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let apis: Vec<ApiClient> = net.nodes.iter().map(|n| n.api()).collect();
    rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, Duration::from_secs(60))
            .await;
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = tokio::spawn(watch(apis[0].clone(), seen.clone(), stop.clone()));

        // Light load: one transaction every 50 ms (20 tx/s), round-robin over the nodes.
        let bodies: Vec<Vec<u8>> = (0..light).map(|_| grant(&net.genesis)).collect();
        let mut submitted = Vec::new();
        for (k, body) in bodies.iter().enumerate() {
            submitted.push(submit(&apis[k % 4], body).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (l, _) = latencies(&submitted, &seen, Duration::from_secs(120)).await;
        println!(
            "medchaind, 4 processes on 127.0.0.1 (gather 100 ms, round timeout 1.5 s), HTTP submissions"
        );
        println!(
            "light load  ({light} txs at 20 tx/s): submit->commit p50 {}, p99 {}",
            ms(percentile(&l, 0.5)),
            ms(percentile(&l, 0.99))
        );

        // Throughput: four submitters (one per node), as fast as the nodes accept.
        let bodies: Vec<Vec<u8>> = (0..txs).map(|_| grant(&net.genesis)).collect();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (n, api) in apis.iter().cloned().enumerate() {
            let share: Vec<Vec<u8>> = bodies.iter().skip(n).step_by(4).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(share.len());
                for body in &share {
                    out.push(submit(&api, body).await);
                }
                out
            }));
        }
        let mut submitted = Vec::new();
        for t in tasks {
            submitted.extend(t.await.expect("submitter"));
        }
        let accepted = start.elapsed();
        let (l, last) = latencies(&submitted, &seen, Duration::from_secs(300)).await;
        let elapsed = last.saturating_duration_since(start);
        println!(
            "throughput  ({txs} txs, 4 submitters): {:.0} tx/s committed ({} from the first submit to the last commit; all accepted in {}), submit->commit p50 {}, p99 {}",
            txs as f64 / elapsed.as_secs_f64(),
            ms(elapsed),
            ms(accepted),
            ms(percentile(&l, 0.5)),
            ms(percentile(&l, 0.99))
        );
        stop.store(true, Ordering::Relaxed);
        let _ = watcher.await;
    });
    for node in &mut net.nodes {
        let _ = node.terminate(Duration::from_secs(20));
    }
}
