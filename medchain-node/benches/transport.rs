//! Throughput of the peer transport between two transports on 127.0.0.1: messages/s and MB/s
//! (message bytes, without framing and encryption overhead) for small, medium and large
//! messages, one direction, a window of messages in flight.
//!
//! `cargo bench -p medchain-node --bench transport` (a plain binary: it prints its figures).
//! `MEDCHAIN_BENCH_SCALE=0.1` shortens every run tenfold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medchain_core::protocol::Recipient;
use medchain_core::testkit::TestNet;
use medchain_node::transport::{Limits, Transport, TransportConfig};
use tokio::sync::Notify;

struct Case {
    name: &'static str,
    len: usize,
    count: usize,
    window: u64,
}

fn scale() -> f64 {
    std::env::var("MEDCHAIN_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let net = TestNet::new(42, 2, 0);
    let ids: Vec<Arc<_>> = net.nodes.into_iter().map(Arc::new).collect();
    let mut limits = Limits::default();
    limits.max_message_len = 16 << 20;
    limits.send_queue_bytes = 64 << 20;
    limits.inbound_bytes_per_peer = 64 << 20;
    let mut config = TransportConfig::new("127.0.0.1:0".parse().expect("addr"));
    config.limits = limits;
    let (b, mut incoming) = Transport::start(config.clone(), ids[1].clone(), &net.genesis)
        .await
        .expect("b starts");
    config.peers.insert(b.key(), b.local_addr());
    let started = Instant::now();
    let (a, _a_in) = Transport::start(config, ids[0].clone(), &net.genesis)
        .await
        .expect("a starts");
    while a.connected_peers().is_empty() || b.connected_peers().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "connect (dial + Noise XX + auth frames, first dial jittered up to 250 ms): {:?}",
        started.elapsed()
    );

    let received = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(Notify::new());
    let consumer = {
        let (received, wake) = (received.clone(), wake.clone());
        tokio::spawn(async move {
            while let Some(m) = incoming.recv().await {
                drop(m);
                received.fetch_add(1, Ordering::Release);
                wake.notify_one();
            }
        })
    };

    let s = scale();
    let cases = [
        Case {
            name: "200 B (a vote)",
            len: 200,
            count: (300_000.0 * s) as usize,
            window: 2048,
        },
        Case {
            name: "4 KiB",
            len: 4096,
            count: (100_000.0 * s) as usize,
            window: 1024,
        },
        Case {
            name: "64 KiB",
            len: 64 * 1024,
            count: (20_000.0 * s) as usize,
            window: 256,
        },
        Case {
            name: "4 MiB (a large proposal)",
            len: 4 << 20,
            count: (300.0 * s) as usize,
            window: 8,
        },
    ];
    println!("two transports on 127.0.0.1, one direction, 2 tokio workers:");
    for case in cases {
        let message = bytes::Bytes::from(vec![0x5au8; case.len]);
        let base = received.load(Ordering::Acquire);
        let begin = Instant::now();
        let mut sent = 0u64;
        for _ in 0..case.count {
            while sent - (received.load(Ordering::Acquire) - base) >= case.window {
                wake.notified().await;
            }
            assert_eq!(a.send(Recipient::All, message.clone()), Ok(1));
            sent += 1;
        }
        while received.load(Ordering::Acquire) - base < sent {
            wake.notified().await;
        }
        let secs = begin.elapsed().as_secs_f64();
        let per_sec = sent as f64 / secs;
        println!(
            "  {:<26} {:>9} messages in {:>6.2} s: {:>10.0} messages/s, {:>8.1} MB/s",
            case.name,
            sent,
            secs,
            per_sec,
            per_sec * case.len as f64 / 1e6
        );
    }
    let m = a.metrics();
    assert_eq!(
        m.dropped(medchain_node::transport::DropReason::QueueFull),
        0
    );
    a.shutdown().await;
    b.shutdown().await;
    consumer.await.expect("consumer");
}
