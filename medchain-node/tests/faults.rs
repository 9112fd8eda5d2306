//! Fault tests of `medchaind` (issue #15): four real processes on 127.0.0.1, written by
//! `medchaind local-net`, driven over their HTTP APIs while the test breaks things:
//!
//! * kill -9 of a validator at random moments (a seeded schedule, its seed printed), 20 times,
//!   under a steady load of transactions: no fork, no committed block lost, heights never go
//!   down, every killed node restarts on its ledger and catches up, every ledger verifies;
//! * the elected miner of the next round killed while a transaction is pending: the
//!   next-ranked candidate mines it;
//! * a fault proxy on every directed link (delay, blackhole, drop, partitions, heal): a
//!   minority never commits, a 2|2 split commits nothing, and after healing new transactions
//!   commit and every node converges;
//! * hostile peers against a running daemon (a key not in genesis, garbage, an oversized frame,
//!   a flood of well-formed messages from a member's identity): each refused, disconnected or
//!   dropped with its reason in `/metrics`, while the honest nodes keep committing.
//!
//! Every process is stopped by its pid when its test ends, also when it fails (the `Node`
//! guard); every wait is bounded. The tests take turns: one network at a time on the machine.

mod common;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Auth, RawPeer};
use getrandom::SysRng;
use medchain::Genesis;
use medchain_core::block::Block;
use medchain_core::election::{self, ElectionSeed, VrfSecret};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::protocol::Message;
use medchain_node::client::{metric_value, ApiClient};
use medchain_node::transport::wire::{Frame, MAX_START_CHUNK};
use medchain_node::transport::DEFAULT_MAX_MESSAGE_LEN;
use rand_core::UnwrapErr;
use support::proxy::{FaultProxy, Mode};
use support::{
    chains, grant, one_chain, reason_value, submit, verify_one_chain, wait_for, wait_same_head,
    Net, SeededRng,
};

static ONE_NETWORK_AT_A_TIME: Mutex<()> = Mutex::new(());

const CONNECT: Duration = Duration::from_secs(60);
const COMMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(20);

fn turn() -> MutexGuard<'static, ()> {
    ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGTERM to every running node (each must exit cleanly), then every ledger verifies and
/// they hold one chain of at least `committed` blocks.
fn stop_and_verify(net: &mut Net, committed: u64) {
    for node in &mut net.nodes {
        if node.is_running() {
            let status = node.terminate(STOP);
            assert!(status.success(), "exit {status:?}\n{}", node.tail());
        }
    }
    verify_one_chain(net, committed);
    let logs: String = net
        .nodes
        .iter()
        .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
        .collect();
    assert!(
        !logs.contains("equivocation evidence"),
        "a node saw equivocation evidence"
    );
}

/// Every node's committed height (`None` for a node that does not answer).
async fn heights(net: &Net) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for node in &net.nodes {
        out.push(node.api().status().await.ok().map(|s| s.height));
    }
    out
}

/// Committed blocks as the API showed them, by height: (hash, transaction ids). A second
/// node showing another hash at a height is a fork.
#[derive(Default)]
struct Observed {
    blocks: BTreeMap<u64, (String, Vec<String>)>,
    /// The last height each node reported.
    heights: Vec<u64>,
    /// Safety violations seen (a fork, a height that went down).
    violations: Vec<String>,
}

/// Reads every node's new committed blocks every 100 ms until `stop`.
async fn observe(apis: Vec<ApiClient>, seen: Arc<Mutex<Observed>>, stop: Arc<AtomicBool>) {
    let mut read = vec![0u64; apis.len()];
    lock(&seen).heights = vec![0; apis.len()];
    while !stop.load(Ordering::Relaxed) {
        for (i, api) in apis.iter().enumerate() {
            let Ok(status) = api.status().await else {
                continue; // down
            };
            {
                let mut seen = lock(&seen);
                if status.height < seen.heights[i] {
                    let was = seen.heights[i];
                    seen.violations.push(format!(
                        "node {} went down from height {was} to {}",
                        i + 1,
                        status.height
                    ));
                }
                seen.heights[i] = status.height;
            }
            for h in read[i] + 1..=status.height {
                let Ok(block) = api.block(h).await else {
                    break;
                };
                let mut seen = lock(&seen);
                match seen.blocks.get(&h) {
                    Some((hash, _)) if *hash != block.hash => {
                        let v = format!("fork at height {h}: node {} has {}", i + 1, block.hash);
                        seen.violations.push(v);
                    }
                    Some(_) => {}
                    None => {
                        seen.blocks.insert(h, (block.hash, block.txs));
                    }
                }
                read[i] = h;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits a consent grant every 50 ms, round-robin over the nodes except `down`; counts
/// what the nodes accepted.
async fn load(
    apis: Vec<ApiClient>,
    genesis: Genesis,
    down: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
) {
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let i = k % apis.len();
        k += 1;
        if i == down.load(Ordering::Relaxed) {
            continue;
        }
        let api = apis[i].clone().with_timeout(Duration::from_secs(2));
        if api.submit(&grant(&genesis)).await.is_ok() {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const NONE: usize = usize::MAX;

/// Kills with SIGKILL under load.
const KILLS: usize = 20;

#[test]
fn validators_killed_at_random_moments_under_load_lose_nothing_and_never_fork() {
    let _turn = turn();
    let started = Instant::now();
    let mut rng = SeededRng::from_env("kill -9 schedule");
    let mut net = Net::write(4);
    net.start_all();
    let rt = runtime();
    let apis: Vec<ApiClient> = net.nodes.iter().map(|n| n.api()).collect();
    let seen = Arc::new(Mutex::new(Observed::default()));
    let (stop, down, accepted) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(NONE)),
        Arc::new(AtomicU64::new(0)),
    );
    let committed = rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        let watcher = tokio::spawn(observe(apis.clone(), seen.clone(), stop.clone()));
        let loader = tokio::spawn(load(
            apis.clone(),
            net.genesis.clone(),
            down.clone(),
            stop.clone(),
            accepted.clone(),
        ));
        for kill in 1..=KILLS {
            // Up for a random while under load, then kill -9 a random validator.
            tokio::time::sleep(Duration::from_millis(rng.range(200, 1_200))).await;
            let i = rng.range(0, 4) as usize;
            let before = apis[i].status().await.map(|s| s.height).unwrap_or(0);
            down.store(i, Ordering::Relaxed);
            net.nodes[i].kill9();
            let down_ms = rng.range(0, 800);
            tokio::time::sleep(Duration::from_millis(down_ms)).await;
            // It restarts on its ledger: never below what it reported before the kill, then
            // catches up with the others.
            net.nodes[i].start();
            let restarted = Instant::now();
            let api = &apis[i];
            let back = wait_for(CONNECT, || async move {
                api.status().await.is_ok_and(|s| s.running)
            })
            .await;
            assert!(back, "node {} did not restart\n{}", i + 1, net.logs());
            let at = apis[i].status().await.expect("status").height;
            assert!(at >= before, "node {} restarted at {at} < {before}", i + 1);
            down.store(NONE, Ordering::Relaxed);
            let target = heights(&net).await.into_iter().flatten().max().unwrap_or(0);
            let caught_up = wait_for(COMMIT, || async move {
                api.status().await.is_ok_and(|s| s.height >= target)
            })
            .await;
            assert!(
                caught_up,
                "node {} did not catch up to {target}\n{}",
                i + 1,
                net.logs()
            );
            println!(
                "kill {kill:2}: node {} at height {before}, down {down_ms} ms, restarted at {at}, \
                 caught up to {target} in {} ms",
                i + 1,
                restarted.elapsed().as_millis()
            );
            let violations = lock(&seen).violations.clone();
            assert!(violations.is_empty(), "{violations:?}\n{}", net.logs());
        }
        // The load stops; every node reaches the same head.
        stop.store(true, Ordering::Relaxed);
        loader.await.expect("load task");
        watcher.await.expect("observer task");
        let (height, _) = wait_same_head(&net, &[0, 1, 2, 3]).await;
        // No fork, no committed block lost: every block any node's API showed committed is in
        // every node's chain, with the same hash.
        let final_chains = chains(&net).await;
        one_chain(&final_chains);
        let (blocks, violations) = {
            let seen = lock(&seen);
            (seen.blocks.clone(), seen.violations.clone())
        };
        assert!(violations.is_empty(), "{violations:?}");
        let mut txs = 0;
        for (h, (hash, ids)) in &blocks {
            for (i, chain) in final_chains.iter().enumerate() {
                let idx = usize::try_from(*h - 1).expect("height");
                assert_eq!(chain.get(idx), Some(hash), "node {} at {h}", i + 1);
            }
            txs += ids.len();
        }
        // And every transaction of a sample stays committed at its height on every node.
        let sample: Vec<(u64, String)> = blocks
            .iter()
            .flat_map(|(h, (_, ids))| ids.iter().map(move |id| (*h, id.clone())))
            .step_by(25)
            .collect();
        for (h, id) in &sample {
            for api in &apis {
                let s = api.tx_status(id).await.expect("status");
                assert_eq!((s.status.as_str(), s.height), ("committed", Some(*h)));
            }
        }
        let submitted = accepted.load(Ordering::Relaxed);
        assert!(txs > 0 && submitted > 0);
        println!(
            "{KILLS} kills: {submitted} transactions accepted, {txs} committed in {height} blocks \
             (restarts per node: {:?}), {} s",
            net.nodes.iter().map(|n| n.starts() - 1).collect::<Vec<_>>(),
            started.elapsed().as_secs()
        );
        height
    });
    stop_and_verify(&mut net, committed);
}

/// The election seed after the blocks `chain` (heights 1, 2, … in order).
fn seed_after(genesis: &Genesis, chain: &[Block]) -> ElectionSeed {
    let mut seed = genesis.seed();
    for block in chain {
        let h = &block.header;
        let vrf = genesis.member(&h.miner).expect("a member mined it").vrf;
        let input = election::ticket_input(&h.chain, h.height, &seed);
        let output = vrf.verify(&input, &h.miner_ticket).expect("its ticket");
        seed = election::next_seed(&seed, &output);
    }
    seed
}

/// The committed blocks 1..=height of node `i`, decoded.
async fn blocks(api: &ApiClient, height: u64) -> Vec<Block> {
    let mut out = Vec::new();
    for h in 1..=height {
        let view = api.block(h).await.expect("block");
        let bytes = hex::decode(view.encoded).expect("hex");
        out.push(Block::from_bytes(&bytes).expect("a block"));
    }
    out
}

/// The validator elected for `attempt` after a block with `seed`.
fn elected(genesis: &Genesis, seed: &ElectionSeed, attempt: u64) -> VerifyKey {
    let validators = genesis.validators();
    validators[election::elected(seed, validators, attempt).expect("validators")]
}

#[test]
fn the_miner_killed_mid_round_is_replaced_by_the_next_ranked() {
    let _turn = turn();
    let started = Instant::now();
    // A longer round timeout leaves time to act within the round.
    let mut net = Net::write_with(4, 300, 3_000);
    net.start_all();
    let identities: Vec<Identity> = net.nodes.iter().map(|n| n.identity()).collect();
    let keys: Vec<VerifyKey> = identities.iter().map(Identity::verify_key).collect();
    let vrfs: Vec<VrfSecret> = identities
        .iter()
        .map(|id| VrfSecret::derive(id).expect("vrf"))
        .collect();
    let index = |key: &VerifyKey| keys.iter().position(|k| k == key).expect("a node");
    let rt = runtime();
    let committed = rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        // One transaction, committed: its block P is the head, and P's child C (certified, not
        // committed: it holds nothing, so nothing is built on it) is the network's highest
        // certified block. C was mined in the round after P's by the first-ranked candidate
        // after P, and the miner of the round after C's is the first-ranked after C.
        let first = submit(&net, 0, &grant(&net.genesis)).await;
        let p_height = net.wait_committed(0, &first, COMMIT).await;
        let seen_at = Instant::now();
        let api = net.nodes[0].api();
        assert_eq!(api.status().await.expect("status").height, p_height);
        let chain = blocks(&api, p_height).await;
        let seed_p = seed_after(&net.genesis, &chain);
        let c_miner = elected(&net.genesis, &seed_p, 0);
        let vrf = &vrfs[index(&c_miner)];
        let input = election::ticket_input(&net.genesis.hash(), p_height + 1, &seed_p);
        let c_output = vrf
            .public()
            .verify(&input, &vrf.prove(&input))
            .expect("ticket");
        let seed_c = election::next_seed(&seed_p, &c_output);
        let miner = index(&elected(&net.genesis, &seed_c, 0));
        // Within C's successor round (3 s): a transaction pending at another node, and the
        // miner killed before its gather window (300 ms) closes.
        let at = (miner + 1) % 4;
        let pending = submit(&net, at, &grant(&net.genesis)).await;
        net.nodes[miner].kill9();
        let acted_in = seen_at.elapsed();
        assert!(
            acted_in < Duration::from_millis(1_500),
            "too slow to act within the round ({acted_in:?})"
        );
        let later_at = (miner + 2) % 4;
        let later = submit(&net, later_at, &grant(&net.genesis)).await;
        let h = net.wait_committed(at, &pending, COMMIT).await;
        net.wait_committed(later_at, &later, COMMIT).await;
        // The chain says what happened: C as predicted, then the pending transaction's block
        // mined by the next-ranked candidate after the dead miner's round timed out.
        let head = net.nodes[at].api().status().await.expect("status").height;
        let chain = blocks(&net.nodes[at].api(), head).await;
        let p = &chain[usize::try_from(p_height - 1).expect("height")].header;
        let c = &chain[usize::try_from(p_height).expect("height")].header;
        assert_eq!((c.miner, c.round), (c_miner, p.round + 1), "C as predicted");
        let b = &chain[usize::try_from(h - 1).expect("height")].header;
        assert_ne!(b.miner, keys[miner], "the killed miner's block");
        assert!(b.round >= c.round + 2, "no round was lost: {}", b.round);
        assert_eq!(
            b.miner,
            elected(&net.genesis, &seed_c, b.round - c.round - 1),
            "not the next-ranked candidate"
        );
        println!(
            "miner node {} killed {} ms after the head, transaction pending at node {}; committed \
             at height {h} in round {} (C's round {}) by node {}",
            miner + 1,
            acted_in.as_millis(),
            at + 1,
            b.round,
            c.round,
            index(&b.miner) + 1
        );
        // The killed miner restarts, catches up and takes part again.
        net.nodes[miner].start();
        net.wait_connected(&[miner], 3, CONNECT).await;
        net.wait_committed(miner, &later, COMMIT).await;
        let own = submit(&net, miner, &grant(&net.genesis)).await;
        net.wait_committed(miner, &own, COMMIT).await;
        let (height, _) = wait_same_head(&net, &[0, 1, 2, 3]).await;
        one_chain(&chains(&net).await);
        height
    });
    stop_and_verify(&mut net, committed);
    println!("miner test: {} s", started.elapsed().as_secs());
}

/// Waits `hold`, then checks no node of `which` moved from `before`.
async fn assert_still(net: &Net, which: &[usize], before: &[Option<u64>], hold: Duration) {
    tokio::time::sleep(hold).await;
    let now = heights(net).await;
    for &i in which {
        assert_eq!(
            now[i],
            before[i],
            "node {} committed while it could not reach a quorum\n{}",
            i + 1,
            net.logs()
        );
    }
}

#[test]
fn through_a_fault_proxy_safety_holds_always_and_liveness_returns_after_healing() {
    let _turn = turn();
    let started = Instant::now();
    let mut net = Net::write(4);
    let proxy = FaultProxy::new(&net.listen_addrs());
    net.route_through(&proxy);
    net.start_all();
    let rt = runtime();
    let committed = rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        let id = submit(&net, 0, &grant(&net.genesis)).await;
        net.wait_committed(0, &id, COMMIT).await;

        // 50 ms on every link, each way: slower rounds, still commits.
        proxy.set_all(Mode::Delay(Duration::from_millis(50)));
        for k in [1, 3] {
            let id = submit(&net, k, &grant(&net.genesis)).await;
            net.wait_committed(k, &id, COMMIT).await;
        }
        proxy.heal();

        // Node 4 blackholed (connections open, nothing passes): the three others commit.
        for j in 0..3 {
            proxy.set_pair(3, j, Mode::Blackhole);
        }
        let id = submit(&net, 1, &grant(&net.genesis)).await;
        net.wait_committed(1, &id, COMMIT).await;
        proxy.heal();
        net.wait_committed(3, &id, COMMIT).await;

        // 3|1: the majority commits; node 4 commits nothing, its transaction stays pending.
        wait_same_head(&net, &[0, 1, 2, 3]).await;
        proxy.partition(&[0, 1, 2], &[3]);
        let before = heights(&net).await;
        let minority = submit(&net, 3, &grant(&net.genesis)).await;
        let majority = submit(&net, 2, &grant(&net.genesis)).await;
        net.wait_committed(2, &majority, COMMIT).await;
        assert_still(&net, &[3], &before, Duration::from_secs(3)).await;
        let s = net.nodes[3]
            .api()
            .tx_status(&minority)
            .await
            .expect("status");
        assert_eq!(s.status, "pending");
        // Healed: node 4 catches up and its transaction commits.
        proxy.heal();
        net.wait_committed(3, &majority, COMMIT).await;
        net.wait_committed(3, &minority, COMMIT).await;
        net.wait_committed(0, &minority, COMMIT).await;

        // 2|2: nobody has a quorum; nothing commits anywhere.
        wait_same_head(&net, &[0, 1, 2, 3]).await;
        proxy.partition(&[0, 1], &[2, 3]);
        let before = heights(&net).await;
        let left = submit(&net, 0, &grant(&net.genesis)).await;
        let right = submit(&net, 3, &grant(&net.genesis)).await;
        assert_still(&net, &[0, 1, 2, 3], &before, Duration::from_secs(5)).await;
        // Healed: both sides' transactions commit and every node converges.
        proxy.heal();
        for (i, id) in [(0, &left), (3, &right), (1, &right), (2, &left)] {
            net.wait_committed(i, id, COMMIT).await;
        }
        let after = submit(&net, 2, &grant(&net.genesis)).await;
        net.wait_committed(2, &after, COMMIT).await;
        let (height, _) = wait_same_head(&net, &[0, 1, 2, 3]).await;
        one_chain(&chains(&net).await);
        height
    });
    stop_and_verify(&mut net, committed);
    drop(proxy);
    println!("fault proxy test: {} s", started.elapsed().as_secs());
}

/// A Noise-shaped first message that is not one: any 32 bytes pass as an ephemeral key, the
/// rest fails.
fn noise_shaped_garbage() -> Vec<u8> {
    let mut junk = vec![0x00, 0x20];
    junk.extend_from_slice(&[0xab; 32]);
    junk.extend_from_slice(&[0x00, 0x40]);
    junk.extend_from_slice(&[0xcd; 64]);
    junk
}

/// Connects to `addr` as the member `id` (its own keys: what a stolen or misbehaving member
/// can do).
async fn as_member(addr: SocketAddr, genesis: &Genesis, id: &Identity) -> RawPeer {
    RawPeer::connect(
        addr,
        genesis,
        &id.x25519_secret_for_transport(),
        Auth::As {
            signer: id,
            claimed: id.verify_key(),
        },
    )
    .await
    .expect("a member's handshake")
}

#[test]
fn hostile_peers_are_refused_with_their_reason_while_the_honest_nodes_keep_committing() {
    let _turn = turn();
    let started = Instant::now();
    let mut net = Net::write(4);
    net.start_all();
    let rt = runtime();
    let committed = rt.block_on(async {
        net.wait_connected(&[0, 1, 2, 3], 3, CONNECT).await;
        let id = submit(&net, 0, &grant(&net.genesis)).await;
        net.wait_committed(0, &id, COMMIT).await;
        // Node 4 stops; the test speaks with its identity. Nodes 1–3 are a quorum.
        assert!(net.nodes[3].terminate(STOP).success());
        let member = net.nodes[3].identity();
        let genesis = net.genesis.clone();
        let target = net.nodes[0].config.listen;
        let api = net.nodes[0].api();
        const HANDSHAKE: &str = "medchain_transport_handshake_failures_total";
        const DISCONNECT: &str = "medchain_transport_disconnects_total";
        const DROPPED: &str = "medchain_messages_dropped_total";
        let before = api.metrics().await.expect("metrics");

        // A key not in genesis: refused in the handshake, before any message.
        let outsider = Identity::generate(&mut UnwrapErr(SysRng));
        let refused = RawPeer::connect(
            target,
            &genesis,
            &outsider.x25519_secret_for_transport(),
            Auth::As {
                signer: &outsider,
                claimed: outsider.verify_key(),
            },
        )
        .await;
        assert!(refused.is_err(), "an outsider was answered");
        // Garbage instead of a handshake.
        let mut stream = tokio::net::TcpStream::connect(target)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut stream, &noise_shaped_garbage())
            .await
            .expect("write");
        // Garbage ciphertext from an authenticated member.
        let mut peer = as_member(target, &genesis, &member).await;
        peer.send_raw_record(&[0x5a; 200]).await.expect("write");
        assert!(peer.closed_by_peer().await, "garbage did not disconnect");
        // An oversized frame: a message declared one byte over the cap.
        let mut peer = as_member(target, &genesis, &member).await;
        let chunk = vec![7u8; MAX_START_CHUNK];
        let frame = Frame::Start {
            total: u32::try_from(DEFAULT_MAX_MESSAGE_LEN + 1).expect("cap"),
            chunk: &chunk,
        };
        peer.send_frame(&frame.to_vec()).await.expect("write");
        assert!(peer.closed_by_peer().await, "oversized frame not refused");
        let ok = wait_for(Duration::from_secs(20), || async {
            let m = api.metrics().await.unwrap_or_default();
            let grew =
                |name, reason| reason_value(&m, name, reason) > reason_value(&before, name, reason);
            grew(HANDSHAKE, "unknown_peer")
                && grew(HANDSHAKE, "noise")
                && grew(DISCONNECT, "decrypt")
                && grew(DISCONNECT, "oversized")
        })
        .await;
        assert!(ok, "{}", api.metrics().await.unwrap_or_default());

        // A flood of well-formed messages from the member: gather requests for a round it is
        // not elected in (dropped as not_miner) and truncated ones (dropped as malformed),
        // while transactions go to the three honest nodes and commit.
        let head = api.status().await.expect("status").height;
        let chain = blocks(&api, head).await;
        let parent = chain.last().expect("a block");
        let seed = seed_after(&genesis, &chain);
        let attempt = (1_000_000..)
            .find(|a| elected(&genesis, &seed, *a) != member.verify_key())
            .expect("another candidate");
        let gather = Message::GatherRequest {
            round: parent.header.round + 1 + attempt,
            parent: parent.hash(),
        }
        .to_bytes();
        let truncated = {
            let mut vote = gather.clone();
            vote.truncate(9);
            vote
        };
        let mut peer = as_member(target, &genesis, &member).await;
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut gathers, mut bad) = (0u64, 0u64);
                let mut sink = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) && gathers < 2_000_000 {
                    for _ in 0..50 {
                        peer.send_message(&gather).await.expect("flood write");
                        peer.send_message(&truncated).await.expect("flood write");
                    }
                    gathers += 50;
                    bad += 50;
                    // Read what the node sends to "node 4", so its queue never fills.
                    while let Ok(n) = peer.stream.try_read(&mut sink) {
                        if n == 0 {
                            break;
                        }
                    }
                }
                (gathers, bad, peer)
            })
        };
        let flood_start = Instant::now();
        for k in 0..3 {
            let id = submit(&net, k, &grant(&net.genesis)).await;
            net.wait_committed(k, &id, COMMIT).await;
        }
        let honest = flood_start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (gathers, bad, peer) = flood.await.expect("flood task");
        assert!(
            gathers >= 5_000,
            "the flood was not competing ({gathers} messages)"
        );
        let counted = wait_for(Duration::from_secs(30), || async {
            let m = api.metrics().await.unwrap_or_default();
            let dropped = |r| reason_value(&m, DROPPED, r) - reason_value(&before, DROPPED, r);
            // Every malformed one is counted; a gather request is dropped as not_miner while
            // its parent is in the node's window of recent blocks (the honest commits move the
            // chain on: then it asks for a sync, at most once per round timeout).
            dropped("malformed") >= bad as f64 && dropped("not_miner") >= 1_000.0
        })
        .await;
        let m = api.metrics().await.expect("metrics");
        assert!(counted, "flood not counted: {gathers} + {bad}\n{m}");
        // Well-formed messages are not a transport violation: the member stays connected.
        assert_eq!(reason_value(&m, DISCONNECT, "slow_peer"), 0.0);
        drop(peer);
        println!(
            "flood: {gathers} gather requests + {bad} malformed messages from node 4's identity \
             while 3 transactions committed in {} ms",
            honest.as_millis()
        );
        for reason in ["unknown_peer", "noise"] {
            println!(
                "{HANDSHAKE}{{reason=\"{reason}\"}} {}",
                reason_value(&m, HANDSHAKE, reason)
            );
        }
        for reason in ["decrypt", "oversized"] {
            println!(
                "{DISCONNECT}{{reason=\"{reason}\"}} {}",
                reason_value(&m, DISCONNECT, reason)
            );
        }
        for reason in ["not_miner", "malformed"] {
            println!(
                "{DROPPED}{{reason=\"{reason}\"}} {}",
                reason_value(&m, DROPPED, reason)
            );
        }
        assert_eq!(metric_value(&m, "medchain_evidence_total"), Some(0.0));
        drop(stream);
        // Node 4 comes back and catches up.
        net.nodes[3].start();
        net.wait_connected(&[3], 3, CONNECT).await;
        let id = submit(&net, 3, &grant(&net.genesis)).await;
        net.wait_committed(3, &id, COMMIT).await;
        let (height, _) = wait_same_head(&net, &[0, 1, 2, 3]).await;
        one_chain(&chains(&net).await);
        height
    });
    stop_and_verify(&mut net, committed);
    println!("hostile peers test: {} s", started.elapsed().as_secs());
}
