//! The peer transport on 127.0.0.1: message exchange, authentication against genesis, hostile
//! input, slow and flooding peers, restarts. Every test is bounded by `common::DEADLINE` per
//! wait and shuts down what it starts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use getrandom::SysRng;
use medchain_core::keys::Identity;
use medchain_core::protocol::Recipient;
use medchain_node::transport::wire::{Frame, MAX_START_CHUNK};
use medchain_node::transport::{
    DisconnectReason, DropReason, HandshakeFailure, SendError, Transport, TransportConfig,
};
use rand_core::UnwrapErr;
use tokio::time::{sleep, timeout, Instant};

/// Waits for `count` messages on `incoming`; returns them as (sender index, bytes).
async fn receive(
    incoming: &mut medchain_node::transport::Incoming,
    count: usize,
    keys: &[medchain_core::keys::VerifyKey],
) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < count {
        let m = timeout(DEADLINE, incoming.recv())
            .await
            .expect("messages arrive in time")
            .expect("transport running");
        let from = keys.iter().position(|k| *k == m.from).expect("a member");
        out.push((from, m.bytes.clone()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_transports_exchange_messages_pairwise_and_by_broadcast() {
    let (genesis, ids) = network(1, 4);
    let mut nodes = mesh(&genesis, &ids, test_limits()).await;
    wait_connected(&nodes).await;
    let keys: Vec<_> = nodes.iter().map(|(t, _)| t.key()).collect();

    for (i, (t, _)) in nodes.iter().enumerate() {
        for (j, key) in keys.iter().enumerate() {
            if i != j {
                let sent = t.send(
                    Recipient::Node(*key),
                    format!("direct {i}->{j}").into_bytes(),
                );
                assert_eq!(sent, Ok(1));
            }
        }
        assert_eq!(
            t.send(Recipient::All, format!("broadcast {i}").into_bytes()),
            Ok(3)
        );
    }
    for (j, (_, incoming)) in nodes.iter_mut().enumerate() {
        let got: BTreeSet<(usize, Vec<u8>)> =
            receive(incoming, 6, &keys).await.into_iter().collect();
        let mut want = BTreeSet::new();
        for i in (0..4).filter(|i| *i != j) {
            want.insert((i, format!("direct {i}->{j}").into_bytes()));
            want.insert((i, format!("broadcast {i}").into_bytes()));
        }
        assert_eq!(got, want, "node {j}");
        assert!(incoming.try_recv().is_none(), "node {j} got extra messages");
    }

    // One connection per pair: every node is connected to the three others over one
    // connection each, and the mesh stays still (no connection flip-flopping).
    let before: Vec<u64> = nodes
        .iter()
        .map(|(t, _)| t.metrics().connections())
        .collect();
    sleep(Duration::from_millis(500)).await;
    for (i, (t, _)) in nodes.iter().enumerate() {
        let m = t.metrics();
        assert_eq!(m.peers_connected(), 3, "node {i}");
        assert_eq!(m.connections(), before[i], "node {i} reconnected");
        assert_eq!(m.disconnects(DisconnectReason::SlowPeer), 0);
        assert_eq!(m.messages_received(), 6);
        assert_eq!(m.messages_sent(), 6);
        for reason in [
            HandshakeFailure::UnknownPeer,
            HandshakeFailure::BadAuth,
            HandshakeFailure::Noise,
        ] {
            assert_eq!(m.handshake_failures(reason), 0, "node {i}: {reason}");
        }
    }
    // Sending to a non-member or to oneself is an error, not a silent drop.
    let outsider = Identity::generate(&mut UnwrapErr(SysRng)).verify_key();
    assert_eq!(
        nodes[0].0.send(Recipient::Node(outsider), vec![1]),
        Err(SendError::NotAPeer(outsider))
    );
    assert_eq!(
        nodes[0].0.send(Recipient::Node(keys[0]), vec![1]),
        Err(SendError::NotAPeer(keys[0]))
    );
    stop_all(nodes).await;
}

/// A transport for node 0 of a 3-node network that dials no one; the raw peer plays node 1 (or
/// node 2, or an outsider).
async fn lone_transport(
    seed: u64,
) -> (
    medchain_core::genesis::Genesis,
    Vec<Arc<Identity>>,
    Transport,
    medchain_node::transport::Incoming,
) {
    let (genesis, ids) = network(seed, 3);
    let mut config = TransportConfig::new(loopback());
    config.limits = test_limits();
    let (t, incoming) = Transport::start(config, ids[0].clone(), &genesis)
        .await
        .expect("starts");
    (genesis, ids, t, incoming)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_not_in_genesis_is_refused_before_any_message_is_read() {
    let (genesis, ids, t, mut incoming) = lone_transport(2).await;
    let outsider = Identity::generate(&mut UnwrapErr(SysRng));
    // The outsider completes its side of Noise XX with its own static key, then tries to
    // authenticate and send a message: the transport closes before reading any of it.
    let attempt = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &outsider.x25519_secret_for_transport(),
        Auth::As {
            signer: &outsider,
            claimed: outsider.verify_key(),
        },
    )
    .await;
    assert!(
        attempt.is_err(),
        "the transport answered an outsider's auth"
    );
    wait_until("the refusal is counted", || {
        t.metrics()
            .handshake_failures(HandshakeFailure::UnknownPeer)
            == 1
    })
    .await;

    // An outsider that borrows a member's public keys cannot finish the handshake: it would
    // need the member's X25519 secret. With its own static key and the member's ed25519 key
    // claimed, the static key check refuses it first.
    let attempt = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &outsider.x25519_secret_for_transport(),
        Auth::As {
            signer: &outsider,
            claimed: ids[1].verify_key(),
        },
    )
    .await;
    assert!(attempt.is_err());
    wait_until("the second refusal", || {
        t.metrics()
            .handshake_failures(HandshakeFailure::UnknownPeer)
            == 2
    })
    .await;
    assert!(incoming.try_recv().is_none());
    assert_eq!(t.metrics().connections(), 0);
    assert!(t.connected_peers().is_empty());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_network_fails_the_handshake() {
    let (_, ids, t, mut incoming) = lone_transport(3).await;
    // The same identity in another genesis: the prologue (genesis hash) differs.
    let (other, _) = network(99, 2);
    let attempt = RawPeer::connect(
        t.local_addr(),
        &other,
        &ids[1].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[1],
            claimed: ids[1].verify_key(),
        },
    )
    .await;
    assert!(attempt.is_err());
    // The outsider cannot decrypt the acceptor's second message and gives up; the acceptor
    // counts the aborted handshake (had it sent a third message, it would not decrypt either).
    wait_until("the failed handshake is counted", || {
        let m = t.metrics();
        m.handshake_failures(HandshakeFailure::Io) + m.handshake_failures(HandshakeFailure::Noise)
            == 1
    })
    .await;
    assert_eq!(t.metrics().connections(), 0);
    assert!(incoming.try_recv().is_none());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_claiming_another_key_or_skipping_auth_is_refused() {
    let (genesis, ids, t, mut incoming) = lone_transport(4).await;
    // Node 1's static key, but an auth frame claiming node 2's key (signed by node 1).
    let mut lying = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &ids[1].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[1],
            claimed: ids[2].verify_key(),
        },
    )
    .await
    .expect("the transport sends its auth before checking ours");
    assert!(lying.closed_by_peer().await);
    // Node 1's static key and claim, signed by someone else.
    let stranger = Identity::generate(&mut UnwrapErr(SysRng));
    let mut forged = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &ids[1].x25519_secret_for_transport(),
        Auth::As {
            signer: &stranger,
            claimed: ids[1].verify_key(),
        },
    )
    .await
    .expect("handshake");
    assert!(forged.closed_by_peer().await);
    // No auth frame: a message start instead.
    let mut skipping = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &ids[1].x25519_secret_for_transport(),
        Auth::Skip,
    )
    .await
    .expect("handshake");
    skipping.send_message(b"hello").await.expect("write");
    assert!(skipping.closed_by_peer().await);
    // Node 1's static key, claiming the transport's own key.
    let mut mirror = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &ids[1].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[1],
            claimed: ids[0].verify_key(),
        },
    )
    .await
    .expect("handshake");
    assert!(mirror.closed_by_peer().await);
    wait_until("the refusals are counted", || {
        let m = t.metrics();
        m.handshake_failures(HandshakeFailure::BadAuth) == 3
            && m.handshake_failures(HandshakeFailure::SelfConnection) == 1
    })
    .await;
    assert!(incoming.try_recv().is_none());
    assert_eq!(t.metrics().connections(), 0);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_handshake_is_refused() {
    let (_, _, t, mut incoming) = lone_transport(5).await;
    use tokio::io::AsyncWriteExt;
    // Two kinds of garbage: bytes shaped like Noise messages (any 32 bytes pass as an
    // ephemeral key, but the third message does not decrypt), and an HTTP request (its first
    // two bytes read as a length the client never fills: the handshake times out).
    let mut noise_shaped = vec![0x00, 0x20];
    noise_shaped.extend_from_slice(&[0xab; 32]);
    noise_shaped.extend_from_slice(&[0x00, 0x40]);
    noise_shaped.extend_from_slice(&[0xcd; 64]);
    let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    for junk in [noise_shaped, http] {
        let mut stream = tokio::net::TcpStream::connect(t.local_addr())
            .await
            .unwrap();
        stream.write_all(&junk).await.unwrap();
        assert!(
            RawPeerStream(stream).closed().await,
            "garbage connection left open"
        );
    }
    let m = t.metrics();
    assert_eq!(m.handshake_failures(HandshakeFailure::Noise), 1);
    assert_eq!(m.handshake_failures(HandshakeFailure::Timeout), 1);
    assert_eq!(m.connections(), 0);
    assert!(incoming.try_recv().is_none());
    t.shutdown().await;
}

struct RawPeerStream(tokio::net::TcpStream);

impl RawPeerStream {
    async fn closed(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut sink = [0u8; 1024];
        timeout(DEADLINE, async {
            loop {
                match self.0.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// What a hostile member sends after a good message.
enum Bad {
    /// A record of random bytes where a Noise message belongs.
    Record(Vec<u8>),
    /// A well-encrypted frame that breaks the frame rules.
    Frame(Vec<u8>),
}

/// Connects as node 1, sends one good message, then `bad`; checks the message arrived, the
/// connection was closed and `reason` counted.
async fn hostile_after_auth(seed: u64, reason: DisconnectReason, bad: Bad) {
    let (genesis, ids, t, mut incoming) = lone_transport(seed).await;
    let mut peer = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &ids[1].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[1],
            claimed: ids[1].verify_key(),
        },
    )
    .await
    .expect("a member connects");
    peer.send_message(b"a fine message").await.unwrap();
    let first = timeout(DEADLINE, incoming.recv()).await.unwrap().unwrap();
    assert_eq!(first.from, ids[1].verify_key());
    assert_eq!(first.bytes, b"a fine message");
    match bad {
        Bad::Record(bytes) => peer.send_raw_record(&bytes).await.unwrap(),
        Bad::Frame(bytes) => peer.send_frame(&bytes).await.unwrap(),
    }
    assert!(peer.closed_by_peer().await, "connection not closed");
    wait_until("the disconnect is counted", || {
        t.metrics().disconnects(reason) == 1
    })
    .await;
    assert!(incoming.try_recv().is_none());
    assert!(t.connected_peers().is_empty());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_ciphertext_closes_the_connection() {
    hostile_after_auth(6, DisconnectReason::Decrypt, Bad::Record(vec![0x5a; 200])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_short_for_a_tag_closes_the_connection() {
    hostile_after_auth(7, DisconnectReason::Decrypt, Bad::Record(vec![1, 2, 3])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_declaration_closes_the_connection() {
    // The cap is 1 MiB in tests; a frame declaring 1 MiB + 1 is refused at its first frame,
    // before any of the message is buffered.
    let chunk = vec![7u8; MAX_START_CHUNK];
    let frame = Frame::Start {
        total: (1 << 20) + 1,
        chunk: &chunk,
    };
    hostile_after_auth(8, DisconnectReason::Oversized, Bad::Frame(frame.to_vec())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_the_connection() {
    hostile_after_auth(
        9,
        DisconnectReason::Malformed,
        Bad::Frame(vec![42, 1, 2, 3]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_disconnected_while_the_others_keep_receiving() {
    let (genesis, ids) = network(10, 4);
    let mut limits = test_limits();
    limits.send_queue_messages = 32;
    limits.send_queue_bytes = 1 << 20;
    limits.max_message_len = 64 * 1024;
    limits.inbound_bytes_per_peer = 1 << 20;
    // Transports for nodes 0, 1, 2; node 3 is a raw peer that authenticates and never reads.
    let (transports, incomings): (Vec<_>, Vec<_>) =
        mesh(&genesis, &ids[..3], limits).await.into_iter().unzip();
    wait_until("a full mesh", || {
        transports.iter().all(|t| t.connected_peers().len() == 2)
    })
    .await;
    let sender = &transports[0];
    let _slow = RawPeer::connect(
        sender.local_addr(),
        &genesis,
        &ids[3].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[3],
            claimed: ids[3].verify_key(),
        },
    )
    .await
    .expect("the slow peer connects");
    wait_until("the slow peer is connected", || {
        sender.connected_peers().len() == 3
    })
    .await;

    // Nodes 1 and 2 drain their messages in the background and count them.
    let received: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut drains = Vec::new();
    for (mut incoming, count) in incomings.into_iter().skip(1).zip(received.iter().cloned()) {
        drains.push(tokio::spawn(async move {
            while let Some(m) = incoming.recv().await {
                assert_eq!(m.bytes.len(), 60_000);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let message = vec![0x11u8; 60_000];
    let mut sent = 0u64;
    let end = Instant::now() + DEADLINE;
    while sender.metrics().disconnects(DisconnectReason::SlowPeer) == 0 {
        assert!(Instant::now() < end, "slow peer never disconnected");
        assert!(
            sent < 5_000,
            "slow peer never disconnected after {sent} messages"
        );
        let queued = sender.send(Recipient::All, message.clone()).unwrap();
        assert!(queued >= 2, "a fast peer missed a message");
        sent += 1;
        // Pace the sender to the fast readers, so only the slow one falls behind.
        wait_until("fast peers keep up", || {
            received
                .iter()
                .all(|c| c.load(Ordering::Relaxed) + 4 >= sent)
        })
        .await;
    }
    // Every message reached both fast peers, and they are still connected.
    wait_until("fast peers received everything", || {
        received.iter().all(|c| c.load(Ordering::Relaxed) == sent)
    })
    .await;
    let m = sender.metrics();
    assert_eq!(m.disconnects(DisconnectReason::SlowPeer), 1);
    assert!(m.dropped(DropReason::QueueFull) >= 1);
    // The slow peer is gone; memory held for it was bounded by the queue (1 MiB here) and
    // the kernel's socket buffers.
    wait_until("the slow peer is removed", || {
        sender.connected_peers().len() == 2
    })
    .await;
    assert_eq!(
        sender
            .connected_peers()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        [ids[1].verify_key(), ids[2].verify_key()]
            .into_iter()
            .collect()
    );
    assert_eq!(sender.send(Recipient::All, message.clone()), Ok(2));
    wait_until("the last message", || {
        received
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == sent + 1)
    })
    .await;
    for t in transports {
        t.shutdown().await;
    }
    for d in drains {
        timeout(DEADLINE, d)
            .await
            .expect("drain ends")
            .expect("drain ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_redialed_with_backoff() {
    let (genesis, ids) = network(11, 2);
    let limits = test_limits();
    let mut nodes = mesh(&genesis, &ids, limits).await;
    wait_connected(&nodes).await;
    let (b, _b_in) = nodes.pop().expect("node b");
    let (a, mut a_in) = nodes.pop().expect("node a");
    let b_addr = b.local_addr();
    b.shutdown().await;
    wait_until("a notices b is gone", || a.connected_peers().is_empty()).await;
    assert_eq!(a.metrics().disconnects(DisconnectReason::PeerClosed), 1);

    // While b is down, a redials with growing, jittered delays (20 ms doubling up to 300 ms
    // here): a few attempts a second, not a busy loop.
    let failures_before = a.metrics().handshake_failures(HandshakeFailure::Dial);
    sleep(Duration::from_millis(1500)).await;
    let failures = a.metrics().handshake_failures(HandshakeFailure::Dial) - failures_before;
    assert!(
        (2..=40).contains(&failures),
        "{failures} dial attempts in 1.5 s"
    );

    // b restarts on the same address; a's dialer finds it.
    let mut config = TransportConfig::new(b_addr);
    config.limits = limits;
    config.peers.insert(a.key(), a.local_addr());
    let (b, mut b_in) = Transport::start(config, ids[1].clone(), &genesis)
        .await
        .expect("b restarts on its port");
    wait_until("reconnected", || {
        a.connected_peers() == vec![b.key()] && b.connected_peers() == vec![a.key()]
    })
    .await;
    assert_eq!(
        a.send(Recipient::Node(b.key()), b"after restart".to_vec()),
        Ok(1)
    );
    assert_eq!(
        b.send(Recipient::Node(a.key()), b"hello again".to_vec()),
        Ok(1)
    );
    let m = timeout(DEADLINE, b_in.recv()).await.unwrap().unwrap();
    assert_eq!(
        (m.from, m.bytes.as_slice()),
        (a.key(), &b"after restart"[..])
    );
    let m = timeout(DEADLINE, a_in.recv()).await.unwrap().unwrap();
    assert_eq!((m.from, m.bytes.as_slice()), (b.key(), &b"hello again"[..]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_larger_than_one_noise_message_round_trip_up_to_the_cap() {
    let (genesis, ids) = network(12, 2);
    let limits = test_limits();
    let cap = limits.max_message_len;
    let mut nodes = mesh(&genesis, &ids, limits).await;
    wait_connected(&nodes).await;
    let b = nodes[1].0.key();
    let pattern = |len: usize, salt: u8| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
            .collect()
    };
    let messages = [
        pattern(MAX_START_CHUNK + 1, 1),
        pattern(200_000, 2),
        pattern(cap, 3),
        pattern(10, 4),
    ];
    for m in &messages {
        assert_eq!(nodes[0].0.send(Recipient::Node(b), m.clone()), Ok(1));
    }
    let a = nodes[0].0.key();
    let got = receive(&mut nodes[1].1, messages.len(), &[a]).await;
    for (i, (from, bytes)) in got.into_iter().enumerate() {
        assert_eq!(from, 0);
        assert!(bytes == messages[i], "message {i} differs");
    }
    // One byte over the cap is refused at the sender and counted.
    assert_eq!(
        nodes[0].0.send(Recipient::Node(b), vec![0u8; cap + 1]),
        Err(SendError::TooLarge {
            len: cap + 1,
            max: cap
        })
    );
    assert_eq!(nodes[0].0.metrics().dropped(DropReason::TooLarge), 1);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_does_not_starve_the_others() {
    let (genesis, ids) = network(13, 3);
    let mut limits = test_limits();
    limits.inbound_messages_per_peer = 64;
    // Node 0 receives; node 1 is an honest transport; node 2 floods through a raw connection.
    let (transports, mut incomings): (Vec<_>, Vec<_>) =
        mesh(&genesis, &ids[..2], limits).await.into_iter().unzip();
    wait_until("connected", || transports[0].connected_peers().len() == 1).await;
    let receiver = &transports[0];
    let mut flooder = RawPeer::connect(
        receiver.local_addr(),
        &genesis,
        &ids[2].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[2],
            claimed: ids[2].verify_key(),
        },
    )
    .await
    .expect("flooder connects");
    let disconnects_before: Vec<u64> = DisconnectReason::ALL
        .iter()
        .map(|r| receiver.metrics().disconnects(*r))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flood_sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, flood_sent) = (stop.clone(), flood_sent.clone());
        tokio::spawn(async move {
            let message = vec![0xf1u8; 200];
            // Bounded: at most 2 million messages, or until the test says stop.
            for _ in 0..2_000_000u32 {
                if stop.load(Ordering::Relaxed) || flooder.send_message(&message).await.is_err() {
                    break;
                }
                flood_sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("the flood is under way", || {
        flood_sent.load(Ordering::Relaxed) > 5_000
    })
    .await;

    // The honest node sends 40 messages, 20 ms apart, while the receiver consumes slowly
    // (1 ms pause every 10 messages: at most ~10,000 messages/s, well below the flood).
    const HONEST: usize = 40;
    let sent_at = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let receiver_key = receiver.key();
    let honest_key = ids[1].verify_key();
    let flood_key = ids[2].verify_key();
    let mut incoming = incomings.swap_remove(0);
    let metrics = receiver.metrics();
    let consume = async {
        let mut latencies = Vec::new();
        let mut consumed = 0u64;
        let mut flood_received = 0u64;
        let mut max_outstanding = 0u64;
        while latencies.len() < HONEST {
            let m = timeout(DEADLINE, incoming.recv())
                .await
                .expect("messages keep coming")
                .expect("open");
            consumed += 1;
            // Messages handed over but not yet consumed: bounded by the per-peer quotas.
            max_outstanding = max_outstanding.max(metrics.messages_received() - consumed);
            if m.from == flood_key {
                flood_received += 1;
            } else {
                assert_eq!(m.from, honest_key);
                let i: usize = std::str::from_utf8(&m.bytes).unwrap()["honest ".len()..]
                    .parse()
                    .unwrap();
                let at: Instant = sent_at.lock().unwrap()[&i];
                latencies.push(at.elapsed());
            }
            if consumed.is_multiple_of(10) {
                sleep(Duration::from_millis(1)).await;
            }
        }
        (latencies, flood_received, max_outstanding)
    };
    let send_honest = async {
        for i in 0..HONEST {
            sent_at.lock().unwrap().insert(i, Instant::now());
            let text = format!("honest {i}").into_bytes();
            assert_eq!(
                transports[1].send(Recipient::Node(receiver_key), text),
                Ok(1)
            );
            sleep(Duration::from_millis(20)).await;
        }
    };
    let ((latencies, flood_received, max_outstanding), ()) = tokio::join!(consume, send_honest);
    stop.store(true, Ordering::Relaxed);
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_secs(1),
        "an honest message waited {worst:?} behind the flood"
    );
    assert!(
        flood_received > 1_000,
        "the flood was not competing ({flood_received})"
    );
    assert!(
        max_outstanding <= 2 * 64 + 2,
        "{max_outstanding} messages waited in the inbound queue"
    );
    // Valid messages are not a protocol violation: nobody was disconnected during the flood
    // (a duplicate connection closed by the tie-break at start-up may be counted before it).
    for (reason, before) in DisconnectReason::ALL.iter().zip(disconnects_before) {
        assert_eq!(metrics.disconnects(*reason), before, "{reason}");
    }
    for t in transports {
        t.shutdown().await;
    }
    timeout(DEADLINE, flood)
        .await
        .expect("flood stops")
        .expect("flood task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialed_address_answering_with_another_members_keys_is_refused() {
    let (genesis, ids) = network(14, 3);
    let mut started = Vec::new();
    for id in [&ids[0], &ids[2]] {
        let mut config = TransportConfig::new(loopback());
        config.limits = test_limits();
        started.push(
            Transport::start(config, id.clone(), &genesis)
                .await
                .expect("starts"),
        );
    }
    // Node 0 is told node 1 lives at node 2's address.
    let (a, _) = &started[0];
    let (c, _) = &started[1];
    a.dial(ids[1].verify_key(), c.local_addr()).expect("dial");
    wait_until("the mismatch is counted", || {
        a.metrics()
            .handshake_failures(HandshakeFailure::UnexpectedPeer)
            >= 2
    })
    .await;
    // Node 0 stopped before sending its static key: node 2 saw an aborted handshake, never a
    // connection.
    assert_eq!(a.metrics().connections(), 0);
    assert_eq!(c.metrics().connections(), 0);
    assert!(c.metrics().handshake_failures(HandshakeFailure::Io) >= 1);
    stop_all(started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_outside_genesis_are_refused() {
    use medchain_node::transport::{ConfigError, StartError};
    let (genesis, ids) = network(15, 2);
    let outsider = Arc::new(Identity::generate(&mut UnwrapErr(SysRng)));
    let start = |id: Arc<Identity>, config: TransportConfig| {
        let genesis = genesis.clone();
        async move { Transport::start(config, id, &genesis).await }
    };
    let err = start(outsider.clone(), TransportConfig::new(loopback()))
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Config(ConfigError::NotAMember)));
    assert_eq!(
        err.to_string(),
        "this node's identity is not a member of the genesis"
    );
    let mut config = TransportConfig::new(loopback());
    config.peers.insert(outsider.verify_key(), loopback());
    let err = start(ids[0].clone(), config).await.unwrap_err();
    assert!(matches!(
        err,
        StartError::Config(ConfigError::PeerNotAMember(k)) if k == outsider.verify_key()
    ));
    let mut config = TransportConfig::new(loopback());
    config.peers.insert(ids[0].verify_key(), loopback());
    let err = start(ids[0].clone(), config).await.unwrap_err();
    assert!(matches!(err, StartError::Config(ConfigError::SelfAsPeer)));
    let mut config = TransportConfig::new(loopback());
    config.limits.send_queue_bytes = 1;
    let err = start(ids[0].clone(), config).await.unwrap_err();
    assert!(matches!(err, StartError::Config(ConfigError::Limit { .. })));

    let (t, _incoming) = start(ids[0].clone(), TransportConfig::new(loopback()))
        .await
        .expect("starts");
    // A second transport on the same address cannot bind it.
    let mut config = TransportConfig::new(t.local_addr());
    config.limits = test_limits();
    let err = start(ids[1].clone(), config).await.unwrap_err();
    assert!(matches!(err, StartError::Bind { .. }));
    assert!(err.to_string().starts_with("cannot listen on 127.0.0.1:"));
    t.dial(ids[1].verify_key(), loopback())
        .expect("first address");
    assert_eq!(
        t.dial(ids[1].verify_key(), loopback()),
        Err(ConfigError::AlreadyDialing(ids[1].verify_key()))
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_is_disconnected_by_the_write_timeout() {
    let (genesis, ids) = network(16, 2);
    // A transport whose queue is large enough never to fill here, with a short write timeout.
    let mut config = TransportConfig::new(loopback());
    config.limits = test_limits();
    config.limits.send_queue_bytes = 64 << 20;
    config.limits.write_timeout = Duration::from_millis(300);
    let (t, _incoming) = Transport::start(config, ids[0].clone(), &genesis)
        .await
        .expect("starts");
    let _stalled = RawPeer::connect(
        t.local_addr(),
        &genesis,
        &ids[1].x25519_secret_for_transport(),
        Auth::As {
            signer: &ids[1],
            claimed: ids[1].verify_key(),
        },
    )
    .await
    .expect("connects");
    wait_until("connected", || t.connected_peers().len() == 1).await;
    // 1 MiB messages until the kernel's buffers are full and a write stalls (bounded: 48 MiB).
    let message = vec![3u8; 1 << 20];
    for _ in 0..48 {
        if t.metrics().disconnects(DisconnectReason::WriteTimeout) == 1 {
            break;
        }
        t.send(Recipient::All, message.clone())
            .expect("under the cap");
        sleep(Duration::from_millis(20)).await;
    }
    wait_until("the write timeout", || {
        t.metrics().disconnects(DisconnectReason::WriteTimeout) == 1
    })
    .await;
    assert_eq!(t.metrics().disconnects(DisconnectReason::SlowPeer), 0);
    wait_until("the peer is removed", || t.connected_peers().is_empty()).await;
    t.shutdown().await;
}
