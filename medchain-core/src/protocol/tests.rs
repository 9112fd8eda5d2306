//! Unit tests of the node state machine, on a small in-process network run by the one driver
//! (`testkit::driver`): instant delivery unless a test delays or loses messages.

use std::collections::BTreeSet;

use super::*;
use crate::block::tests::log_tx;
use crate::block::Block;
use crate::block::{tests::net, ChainTip, CheckedBlock, NoRules};
use crate::chain::verify_chain;
use crate::encoding::{Decode, Encode};
use crate::hash::BlockHash;
use crate::keys::{Identity, Signature, VerifyKey};
use crate::ledger::{RuleError, StateError, StateView};
use crate::testkit::driver::{Bytes, Driver, Policy, Stop, Wire};
use crate::tx::Transaction;
use crate::vote::{InvalidReason, QuorumCertificate, Timeout, Vote, VoteError};

/// Decides whether the network loses a message (`from`, `to`, the message).
type LossFilter = Box<dyn FnMut(usize, usize, &Message) -> bool>;

/// Most steps one [`Cluster::run`] may take.
const MAX_STEPS: u64 = 5_000_000;

/// The tests' network (a driver [`Policy`]): per-link delays and losses, and a record of what
/// the nodes sent and reported.
struct Watch {
    /// One-way delay of each link (ms, by sender and receiver; 0 by default).
    delay: Vec<Vec<u64>>,
    /// Messages the network loses (none by default).
    lose: Option<LossFilter>,
    /// Every message sent: (time, from, to, message).
    sent: Vec<(u64, usize, Recipient, Message)>,
    dropped: Vec<(usize, DropReason)>,
    evidence: Vec<Evidence>,
    committed: Vec<Vec<BlockHash>>,
    /// Own transactions each node refused (ledger rules).
    refused: Vec<(usize, crate::hash::TxId, InvalidReason)>,
    /// Committed blocks each node reported with their ledger effects.
    with_effects: Vec<usize>,
    /// Per node: the store its host appends its commits to, if it reads one.
    appenders: Vec<Option<Appender>>,
}

/// A host's store as its node reads it ([`CommittedChain`]), shared with the test, which
/// appends what the node commits as a host does.
#[derive(Clone)]
struct SharedStore(std::sync::Arc<std::sync::Mutex<crate::store::MemoryStore>>);

impl SharedStore {
    fn new(genesis: &crate::genesis::Genesis) -> Self {
        use crate::store::LedgerStore;
        let mut store = crate::store::MemoryStore::new();
        store.init(genesis).unwrap();
        Self(std::sync::Arc::new(std::sync::Mutex::new(store)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::store::MemoryStore> {
        self.0.lock().unwrap()
    }
}

impl crate::ledger::StateView for SharedStore {
    fn contains_tx(&self, id: &crate::hash::TxId) -> Result<bool, StateError> {
        self.lock().contains_tx(id)
    }
    fn record(
        &self,
        id: &crate::hash::RecordId,
    ) -> Result<Option<crate::ledger::RecordEntry>, StateError> {
        self.lock().record(id)
    }
    fn consent(
        &self,
        id: &crate::consent::ConsentId,
    ) -> Result<Option<crate::consent::ConsentState>, StateError> {
        self.lock().consent(id)
    }
    fn consents_of(
        &self,
        patient: &VerifyKey,
    ) -> Result<Vec<crate::consent::ConsentState>, StateError> {
        self.lock().consents_of(patient)
    }
    fn height(&self) -> u64 {
        self.lock().height()
    }
}

impl CommittedChain for SharedStore {
    fn block(&self, height: u64) -> Result<Option<Block>, StateError> {
        use crate::store::LedgerStore;
        self.lock().block(height).map_err(StateError::caused_by)
    }
    fn height_of(&self, hash: &BlockHash) -> Result<Option<u64>, StateError> {
        use crate::store::LedgerStore;
        let store = self.lock();
        for h in 1..=store.height() {
            let b = store.block(h).map_err(StateError::caused_by)?;
            if b.is_some_and(|b| b.hash() == *hash) {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }
    fn head(&self) -> Result<Option<crate::store::Head>, StateError> {
        use crate::store::LedgerStore;
        self.lock().head().map_err(StateError::caused_by)
    }
}

/// What a host does with its node's commits: appends them to its store, at once or, while
/// `hold` is set, later ([`Appender::flush`]).
struct Appender {
    store: SharedStore,
    hold: bool,
    held: Vec<(
        CheckedBlock,
        crate::ledger::BlockEffects,
        crate::chain::CommitProof,
    )>,
}

impl Appender {
    fn flush(&mut self) {
        use crate::store::LedgerStore;
        for (b, e, p) in self.held.drain(..) {
            self.store.lock().append(&b, &e, Some(&p)).unwrap();
        }
    }
}

impl Policy<Node> for Watch {
    fn route(&mut self, wire: &mut Wire<'_>, i: usize, _: &Node, to: Recipient, bytes: Vec<u8>) {
        let msg = Message::from_bytes(&bytes).unwrap();
        let bytes = Bytes::from(bytes);
        for j in wire.targets(i, to) {
            if !self.lose.as_mut().is_some_and(|f| f(i, j, &msg)) {
                wire.send(i, j, bytes.clone(), self.delay[i][j]);
            }
        }
        self.sent.push((wire.now_ms(), i, to, msg));
    }

    fn event(&mut self, _: u64, i: usize, node: &mut Node, out: Output) {
        match out {
            Output::Committed { block, proof } => {
                assert!(proof.child.height >= block.header().height);
                let effects = node.take_committed_effects(&block.hash());
                if let Some(e) = &effects {
                    assert!(crate::store::effects_match(&block, e));
                    // Taken once.
                    assert!(node.take_committed_effects(&block.hash()).is_none());
                    self.with_effects[i] += 1;
                }
                if let Some(Some(a)) = self.appenders.get_mut(i) {
                    let e = effects.expect("a node over a store has the network key");
                    a.held.push((block.clone(), e, proof));
                    if !a.hold {
                        a.flush();
                    }
                }
                self.committed[i].push(block.hash());
            }
            Output::Dropped { reason, .. } => self.dropped.push((i, reason)),
            Output::Evidence(e) => self.evidence.push(e),
            Output::Refused { id, reason } => self.refused.push((i, id, reason.reason())),
            Output::Send { .. } => unreachable!("the driver routes sends"),
        }
    }
}

struct Cluster {
    /// The nodes (a stopped one is down: it neither sends nor receives).
    net: Driver<Node>,
    keys: Vec<VerifyKey>,
    w: Watch,
}

fn ids_again() -> Vec<Identity> {
    // `net()` builds its identities from a fixed seed: rebuild the same ones.
    crate::genesis::tests::network(4, 2, 42).1
}

/// The network key of `net()` (drawn first from its seed): rebuild the same one.
fn network_key_again() -> crate::seal::NetworkKey {
    use rand_chacha::rand_core::SeedableRng;
    crate::seal::NetworkKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(9))
}

/// Whether every node in `who` has committed every transaction in `ids`.
fn all_committed(net: &Driver<Node>, ids: &[crate::hash::TxId], who: &[usize]) -> bool {
    who.iter()
        .all(|&i| ids.iter().all(|id| net.peer(i).is_committed(id)))
}

impl Cluster {
    fn new() -> (Self, crate::block::tests::Net) {
        Self::build(false)
    }

    /// Every node holds the network key, so it keeps the ledger and applies its rules.
    fn with_network_key() -> (Self, crate::block::tests::Net) {
        Self::build(true)
    }

    fn build(network: bool) -> (Self, crate::block::tests::Net) {
        let n = net();
        let ids = ids_again();
        let start = n.genesis.created_at_ms;
        let nodes: Vec<Node> = ids
            .into_iter()
            .map(|id| {
                let cfg = match network.then(network_key_again) {
                    Some(key) => NodeConfig::new(n.genesis.clone(), id, key),
                    None => NodeConfig::consensus_only(n.genesis.clone(), id),
                };
                Node::new(cfg, start).unwrap()
            })
            .collect();
        let keys = nodes.iter().map(Node::key).collect();
        let len = nodes.len();
        (
            Self {
                net: Driver::new(nodes, start),
                keys,
                w: Watch {
                    delay: vec![vec![0; len]; len],
                    lose: None,
                    sent: Vec::new(),
                    dropped: Vec::new(),
                    evidence: Vec::new(),
                    committed: vec![Vec::new(); len],
                    refused: Vec::new(),
                    with_effects: vec![0; len],
                    appenders: (0..len).map(|_| None).collect(),
                },
            },
            n,
        )
    }

    fn now(&self) -> u64 {
        self.net.now_ms()
    }

    /// Puts in place of node `i` (before anything ran) one that reads its committed chain from
    /// a store its host appends its commits to: at once, or only at [`Appender::flush`] when
    /// `hold` is set.
    fn over_store(&mut self, n: &crate::block::tests::Net, i: usize, hold: bool) -> SharedStore {
        let store = SharedStore::new(&n.genesis);
        let id = ids_again().swap_remove(i);
        let cfg = NodeConfig::new(n.genesis.clone(), id, network_key_again());
        let node = Node::resume(
            cfg,
            Box::new(store.clone()),
            SafetyState::default(),
            self.now(),
        )
        .unwrap();
        self.net.replace(i, node);
        self.w.appenders[i] = Some(Appender {
            store: store.clone(),
            hold,
            held: Vec::new(),
        });
        self.net.start(i, &mut self.w);
        store
    }

    /// Takes node `i` off the network (it keeps its state and its clock stops) or back on.
    fn set_down(&mut self, i: usize, down: bool) {
        if down {
            self.net.stop(i);
        } else if !self.net.is_running(i) {
            self.net.start(i, &mut self.w);
        }
    }

    /// Delivers messages and fires timers until `done` holds or `limit_ms` of virtual time pass
    /// (then the clock stands at the end of that time).
    fn run(&mut self, limit_ms: u64, done: impl Fn(&Driver<Node>) -> bool) -> bool {
        self.net.flush_all(&mut self.w);
        let end = self.now() + limit_ms;
        let stop = self
            .net
            .run_until(&mut self.w, end, MAX_STEPS, |net, _| done(net))
            .unwrap_or_else(|e| match e {});
        stop == Stop::Done
    }

    fn assert_agree(&self) {
        for a in &self.w.committed {
            for b in &self.w.committed {
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(x, y, "two nodes committed different blocks at one height");
                }
            }
        }
    }
}

fn submit(
    c: &mut Cluster,
    n: &mut crate::block::tests::Net,
    who: usize,
    nonce: u64,
) -> crate::hash::TxId {
    let tx = log_tx(n, who, nonce);
    let now = c.now();
    c.net.peer_mut(who).submit(tx, now).unwrap()
}

#[test]
fn happy_path_commits_everywhere_and_verifies() {
    let (mut c, mut n) = Cluster::new();
    let ids: Vec<_> = (0..6)
        .map(|i| submit(&mut c, &mut n, i, 100 + i as u64))
        .collect();
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3, 4, 5])));
    c.assert_agree();
    for node in c.net.peers() {
        assert_eq!(node.mempool_len(), 0);
    }
    let node = c.net.peer(4);
    let blocks: Vec<_> = node
        .committed_blocks()
        .iter()
        .map(|b| Ok::<_, std::convert::Infallible>(b.block().clone()))
        .collect();
    let summary =
        verify_chain(&n.genesis, blocks, node.head_proof(), &mut NoRules, |_| {}).unwrap();
    assert_eq!(summary.transactions, 6);
    assert!(summary.head_proven);
    // Contributors signed: every transaction's node is listed.
    let contributors: usize = node
        .committed_blocks()
        .iter()
        .map(|b| b.header().contributors.len())
        .sum();
    assert!(contributors >= 6);
    assert!(c.w.dropped.is_empty(), "{:?}", c.w.dropped);
}

#[test]
fn silent_miner_is_replaced_by_the_next_ranked() {
    let (mut c, mut n) = Cluster::new();
    // The first-ranked miner of round 1 never speaks.
    let tip = ChainTip::genesis(&n.genesis);
    let m = crate::block::tests::miner_for(&n, &tip, 0);
    c.set_down(m, true);
    let who: Vec<usize> = (0..6).filter(|&i| i != m).collect();
    let ids: Vec<_> = who
        .iter()
        .map(|&i| submit(&mut c, &mut n, i, 200 + i as u64))
        .collect();
    assert!(c.run(120_000, |net| all_committed(net, &ids, &who)));
    c.assert_agree();
    let first = &c.net.peer(who[0]).committed_blocks()[0];
    assert!(first.header().round >= 2, "round 1 had a silent miner");
    assert!(first.header().timeout_cert.is_some());
    assert_ne!(first.header().miner, c.keys[m]);
}

#[test]
fn a_node_that_was_away_catches_up_and_a_restart_resumes() {
    let (mut c, mut n) = Cluster::new();
    c.set_down(5, true); // a non-validator member is away
    let ids: Vec<_> = (0..4)
        .map(|i| submit(&mut c, &mut n, i, 300 + i as u64))
        .collect();
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3])));
    assert_eq!(c.net.peer(5).committed_height(), 0);
    c.set_down(5, false);
    // New work brings it news; it syncs and validates what it missed.
    let more = vec![submit(&mut c, &mut n, 1, 400)];
    let all: Vec<_> = ids.iter().chain(&more).copied().collect();
    assert!(c.run(60_000, |net| all_committed(net, &all, &[0, 1, 2, 3, 5])));
    c.assert_agree();

    // Restart validator 2 from its committed blocks and safety state.
    let blocks: Vec<_> = c
        .net
        .peer(2)
        .committed_blocks()
        .iter()
        .map(|b| b.block().clone())
        .collect();
    let proof = c.net.peer(2).head_proof().cloned();
    let safety = c.net.peer(2).safety_state();
    let id = ids_again().swap_remove(2);
    let restored = Node::restore(
        NodeConfig::consensus_only(n.genesis.clone(), id),
        blocks.clone(),
        proof.clone(),
        safety.clone(),
        c.now(),
    )
    .unwrap();
    assert_eq!(
        restored.committed_height(),
        c.net.peer(2).committed_height()
    );
    assert!(restored.current_round() > restored.high_qc_round());
    c.net.replace(2, restored);
    c.net.start(2, &mut c.w);
    c.w.committed[2].clear();
    let extra = vec![
        submit(&mut c, &mut n, 0, 500),
        submit(&mut c, &mut n, 2, 501),
    ];
    assert!(c.run(60_000, |net| all_committed(net, &extra, &[0, 1, 2, 3])));

    // A tampered store is refused.
    let mut bad = blocks;
    bad[0].header.timestamp_ms += 1;
    let id = ids_again().swap_remove(2);
    let err = Node::restore(
        NodeConfig::consensus_only(n.genesis.clone(), id),
        bad,
        proof,
        safety,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(err, RestoreError::InvalidBlock { height: 1, .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("stored block at height 1 is invalid: invalid block:"));
}

/// The block committed everywhere that holds `id` (as node 0 sees it).
fn block_holding(c: &Cluster, id: &crate::hash::TxId) -> CheckedBlock {
    c.net
        .peer(0)
        .committed_blocks()
        .iter()
        .find(|b| b.tx_ids().contains(id))
        .cloned()
        .expect("committed")
}

/// Issue #19: a non-voting member whose round trip to every miner (1.2 s) exceeds the gather
/// window and the signature wait (500 ms each) misses them: its contribution or its signature
/// comes too late, the miner drops it and, with nothing else to propose, lets the round time
/// out. The windows were fixed, so it missed them in every round for ever. They now back off
/// with the pacemaker (`gather_ms · 2^k`, `k` rounds since the last certificate), so the
/// member's pending transaction, gathered again each round, gets in once they outgrow its
/// round trip.
#[test]
fn a_slow_members_transaction_is_gathered_again_until_it_commits() {
    let (mut c, mut n) = Cluster::new();
    let member = 5;
    assert!(!c.net.peer(member).is_validator());
    for j in 0..c.net.peers().len() {
        if j != member {
            c.w.delay[member][j] = 600;
            c.w.delay[j][member] = 600;
        }
    }
    let id = submit(&mut c, &mut n, member, 600);
    let everyone: Vec<usize> = (0..c.net.peers().len()).collect();
    assert!(c.run(300_000, |net| all_committed(net, &[id], &everyone)));
    c.assert_agree();
    // The failure happened first: rounds timed out without it ...
    let block = block_holding(&c, &id);
    assert!(block.header().round >= 3, "round {}", block.header().round);
    assert!(block.header().timeout_cert.is_some());
    // ... while it answered every round's gather: it was gathered again, round after round.
    let rounds: BTreeSet<u64> =
        c.w.sent
            .iter()
            .filter_map(|(_, from, _, m)| match m {
                Message::Contribution { round, .. } if *from == member => Some(*round),
                _ => None,
            })
            .collect();
    assert!(rounds.len() >= 2, "{rounds:?}");
    assert!(rounds.contains(&block.header().round));
    assert!(c
        .w
        .dropped
        .iter()
        .any(|(i, r)| c.net.peer(*i).is_validator() && *r == DropReason::Stale));
}

/// Issue #19, under load: every validator always has a transaction pending, so every round is
/// certified and the pacemaker never backs off; a member's round trip (600 ms) exceeds the
/// 500 ms windows. Its contribution reaches each miner after the gather closed, so it used to
/// wait as long as the load lasted. A miner that sees an answer for its round come late widens
/// the windows of the rounds it mines next (up to a quarter of the round timeout), so the
/// member's transaction commits while the load goes on, without a single timeout.
#[test]
fn a_slow_member_gets_in_while_every_round_is_certified() {
    let (mut c, mut n) = Cluster::new();
    let member = 5;
    for j in 0..c.net.peers().len() {
        if j != member {
            c.w.delay[member][j] = 300;
            c.w.delay[j][member] = 300;
        }
    }
    let id = submit(&mut c, &mut n, member, 900);
    let mut nonce = 1_000;
    let mut committed_at = None;
    for _ in 0..100 {
        for v in 0..4 {
            nonce += 1;
            submit(&mut c, &mut n, v, nonce);
        }
        c.run(400, |_| false);
        if committed_at.is_none() && c.net.peer(0).is_committed(&id) {
            committed_at = Some(nonce);
        }
    }
    assert!(
        committed_at.is_some(),
        "the member's transaction waited for the load to end"
    );
    let block = block_holding(&c, &id);
    assert!(c
        .net
        .peer(0)
        .committed_blocks()
        .iter()
        .all(|b| b.header().timeout_cert.is_none() || b.header().height > block.header().height));
    assert!(
        c.net.peer(0).mempool_len() > 0,
        "the load was still going on"
    );
    assert!(c
        .w
        .dropped
        .iter()
        .any(|(i, r)| c.net.peer(*i).is_validator() && *r == DropReason::Stale));
}

/// A record added by node `who` for patient `n.ids[5]`, sealed for the patient and `who`: valid
/// under the ledger rules.
fn record_tx(n: &mut crate::block::tests::Net, who: usize, nonce: u64) -> Transaction {
    let fhir = br#"{"resourceType":"Observation","status":"final"}"#;
    let sealed =
        crate::seal::seal_record(fhir, &n.ids[5].public(), &[n.ids[who].public()], &mut n.rng)
            .unwrap();
    let class = crate::access::record_class(
        fhir,
        &crate::consent::ConsentTagKey::for_patient(&n.ids[5]),
        &mut n.rng,
    )
    .unwrap();
    let body = crate::tx::TxBody::record_added(sealed, class);
    Transaction::create(
        &n.ids[who],
        &n.genesis.chain_id(),
        1_000 + nonce,
        nonce,
        &body,
        vec![],
        &n.net,
        &mut n.rng,
    )
    .unwrap()
}

/// Issue #19, with the ledger rules: a member holds a valid record and an access log for a
/// record that does not exist (the rules reject it; `submit` does not check them). Every miner
/// left the log out of its draft, so the member refused to sign a draft that missed one of its
/// transactions, was dropped, and in the next round the same happened: its valid record stayed
/// pending for ever too (a validator recovers when it mines and drops its own; a member never
/// mines). A contributor with the network key now checks its transactions against the rules on
/// top of the miner's parent before it contributes, refuses those they reject
/// (`Output::Refused`) and contributes the rest.
#[test]
fn a_members_transaction_the_rules_reject_is_refused_and_the_rest_commits() {
    let (mut c, mut n) = Cluster::with_network_key();
    let member = 4;
    assert!(!c.net.peer(member).is_validator());
    let record = record_tx(&mut n, member, 1);
    let now = c.now();
    let good = c.net.peer_mut(member).submit(record, now).unwrap();
    let bad = submit(&mut c, &mut n, member, 2);
    let everyone: Vec<usize> = (0..c.net.peers().len()).collect();
    assert!(c.run(120_000, |net| all_committed(net, &[good], &everyone)));
    c.assert_agree();
    assert!(c.net.peers().iter().all(|node| !node.is_committed(&bad)));
    assert_eq!(
        c.w.refused,
        vec![(member, bad, InvalidReason::RuleViolation)]
    );
    assert_eq!(c.net.peer(member).mempool_len(), 0);
    // Never gathered again: no later contribution carries it.
    assert!(!c.w.sent.iter().any(|(_, from, _, m)| *from == member
        && matches!(m, Message::Contribution { transactions, .. }
            if transactions.iter().any(|t| t.id() == bad))));
}

/// A node with the network key hands every committed block's ledger effects to its host (one
/// validation); a node without it has none to hand.
#[test]
fn committed_blocks_come_with_their_effects_when_the_node_holds_the_network_key() {
    for keyed in [false, true] {
        let (mut c, mut n) = Cluster::build(keyed);
        let record = record_tx(&mut n, 0, 1);
        let now = c.now();
        let id = c.net.peer_mut(0).submit(record, now).unwrap();
        let everyone: Vec<usize> = (0..c.net.peers().len()).collect();
        assert!(c.run(120_000, |net| all_committed(net, &[id], &everyone)));
        for i in everyone {
            assert!(!c.w.committed[i].is_empty());
            let expected = if keyed { c.w.committed[i].len() } else { 0 };
            assert_eq!(c.w.with_effects[i], expected, "node {i}, keyed {keyed}");
        }
    }
}

/// A transaction whose block is abandoned (its proposal reached nobody, so round 1 timed out)
/// stays pending at the member that submitted it and is gathered again by a later miner.
#[test]
fn a_transaction_in_an_abandoned_block_is_gathered_again() {
    let (mut c, mut n) = Cluster::new();
    let member = 4;
    let id = submit(&mut c, &mut n, member, 800);
    c.w.lose = Some(Box::new(
        |_, _, m| matches!(m, Message::Proposal { block } if block.header.round == 1),
    ));
    let everyone: Vec<usize> = (0..c.net.peers().len()).collect();
    assert!(c.run(120_000, |net| all_committed(net, &[id], &everyone)));
    c.assert_agree();
    let abandoned = c.w.sent.iter().any(|(_, _, _, m)| {
        matches!(m, Message::Proposal { block }
            if block.header.round == 1 && block.transactions.iter().any(|t| t.id() == id))
    });
    assert!(abandoned, "the round-1 block held the transaction");
    assert!(block_holding(&c, &id).header().round >= 2);
}

/// Issue #19: a node that fell behind catches up even when the answer to its first sync request
/// is lost and all it hears afterwards is a certificate it already knows (idle validators'
/// timeouts; here it hears no gather request either). It used to ask only the first time it
/// heard the certificate, so it stayed behind for good. It now asks again every time, at most
/// once per round timeout, and asks one of the certificate's signers (which hold the block),
/// in turn.
#[test]
fn a_lagging_node_that_hears_only_known_certificates_catches_up() {
    let (mut c, mut n) = Cluster::new();
    let member = 5;
    c.set_down(member, true);
    let ids: Vec<_> = (0..4)
        .map(|i| submit(&mut c, &mut n, i, 700 + i as u64))
        .collect();
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3])));
    let height = c.net.peer(0).committed_height();
    assert!(height >= 1);
    assert_eq!(c.net.peer(member).committed_height(), 0);
    c.set_down(member, false);
    let mut answers_lost = 0;
    c.w.lose = Some(Box::new(move |_, to, m| {
        to == member
            && match m {
                Message::GatherRequest { .. } => true,
                Message::SyncResponse { .. } if answers_lost == 0 => {
                    answers_lost += 1;
                    true
                }
                _ => false,
            }
    }));
    let start = c.now();
    assert!(c.run(200_000, |net| net.peer(member).committed_height() >= height));
    c.assert_agree();
    let requests: Vec<(u64, Recipient)> =
        c.w.sent
            .iter()
            .filter(|(t, from, _, m)| {
                *t >= start && *from == member && matches!(m, Message::SyncRequest { .. })
            })
            .map(|(t, _, to, _)| (*t, *to))
            .collect();
    assert!(requests.len() >= 2, "{requests:?}");
    let pause = n.genesis.timing.round_timeout_ms;
    assert!(requests[1].0 - requests[0].0 >= pause, "rate-limited");
    for (_, to) in &requests {
        match to {
            Recipient::Node(k) => assert!(n.genesis.is_validator(k) && *k != c.keys[member]),
            Recipient::All => panic!("asked everyone instead of a node that is ahead"),
        }
    }
    let first = requests[0].1;
    assert_ne!(
        first, requests[1].1,
        "the second request tries another signer"
    );
}

#[test]
fn hostile_messages_are_dropped_with_a_reason() {
    let (mut c, mut n) = Cluster::new();
    let ids: Vec<_> = (0..4)
        .map(|i| submit(&mut c, &mut n, i, 600 + i as u64))
        .collect();
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3])));
    let node = c.net.peer_mut(0);
    let head = node.committed_head();
    let height = node.committed_height();
    let from = c.keys[1];
    let outsider = Identity::generate(&mut n.rng);
    let mut reasons = Vec::new();
    let mut feed = |node: &mut Node, from: VerifyKey, bytes: &[u8]| {
        node.handle_message(from, bytes, 0);
        while let Some(o) = node.poll_output() {
            if let Output::Dropped { reason, .. } = o {
                reasons.push(reason);
            }
        }
    };
    feed(node, from, b"");
    feed(node, from, &[1, 99]);
    feed(node, from, &[2, 0]);
    feed(
        node,
        outsider.verify_key(),
        &Message::SyncRequest { from_height: 1 }.to_bytes(),
    );
    // A forged vote (bad signature) and a vote by an untrusted key.
    let mut forged = Vote::cast(&outsider, &n.genesis.chain_id(), head, head, Ok(()), 1);
    forged.node_pubkey = c.keys[2];
    feed(node, from, &Message::Vote { vote: forged }.to_bytes());
    let untrusted = Vote::cast(&outsider, &n.genesis.chain_id(), head, head, Ok(()), 1);
    feed(node, from, &Message::Vote { vote: untrusted }.to_bytes());
    // A timeout claiming a certificate it does not carry.
    let t = Timeout::sign(&ids_again()[1], &n.genesis.chain_id(), 1_000, 999);
    feed(
        node,
        from,
        &Message::Timeout {
            timeout: t,
            high_qc: None,
            last_tc: None,
        }
        .to_bytes(),
    );
    // A proposal from a non-elected miner.
    let tip = node.block_tip(&head).unwrap();
    let draft = crate::block::BlockDraft::assemble(
        &n.genesis,
        &tip,
        tip.round + 1,
        &outsider,
        &crate::election::VrfSecret::derive(&outsider).unwrap(),
        tip.timestamp_ms,
        vec![],
        &[],
        QuorumCertificate::empty(),
        None,
    )
    .unwrap();
    let block = draft.finish(&outsider, &[]).unwrap();
    feed(node, from, &Message::Proposal { block }.to_bytes());
    // A contribution to a node that is not mining.
    feed(
        node,
        from,
        &Message::SignResponse {
            round: 1,
            block: head,
            segment: None,
            signature: Signature::from_byte_array([0; 64]),
        }
        .to_bytes(),
    );
    assert!(matches!(reasons[0], DropReason::Malformed(_)));
    assert!(matches!(reasons[1], DropReason::Malformed(_)));
    assert!(matches!(reasons[2], DropReason::Malformed(_)));
    assert_eq!(reasons[3], DropReason::UnknownSender);
    assert!(matches!(
        reasons[4],
        DropReason::BadVote(VoteError::BadSignature(_))
    ));
    assert!(matches!(
        reasons[5],
        DropReason::BadVote(VoteError::UntrustedVoter(_))
    ));
    assert!(matches!(reasons[6], DropReason::BadCertificate(_)));
    assert!(matches!(
        reasons[7],
        DropReason::InvalidBlock(InvalidReason::BadParentCertificate | InvalidReason::WrongMiner)
    ));
    assert!(matches!(
        reasons[8],
        DropReason::Unexpected | DropReason::Stale
    ));
    assert_eq!(reasons.len(), 9);
    assert_eq!(node.committed_head(), head);
    assert_eq!(node.committed_height(), height);
    assert_eq!(
        reasons[3].to_string(),
        "the sender is not a member of the network"
    );
    assert!(reasons[0]
        .to_string()
        .starts_with("malformed message: input ended early"));
}

#[test]
fn random_bytes_never_panic_or_change_commits() {
    let (mut c, mut n) = Cluster::new();
    let ids: Vec<_> = (0..2)
        .map(|i| submit(&mut c, &mut n, i, 700 + i as u64))
        .collect();
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3])));
    let valid = Message::SyncRequest { from_height: 1 }.to_bytes();
    let mut rng_state = 7u64;
    let mut next = || {
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng_state >> 33) as u8
    };
    let node = c.net.peer_mut(3);
    let head = node.committed_head();
    for len in 0..400usize {
        let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
        if len % 3 == 0 && !bytes.is_empty() {
            bytes[0] = 1; // right version, random tag and body
            if bytes.len() > 1 {
                bytes[1] %= 9;
            }
        }
        node.handle_message(c.keys[0], &bytes, 1);
        while node.poll_output().is_some() {}
    }
    node.handle_message(c.keys[0], &valid, 1);
    assert_eq!(node.committed_head(), head);
}

#[test]
fn conflicting_votes_yield_evidence() {
    let (mut c, mut n) = Cluster::new();
    let ids: Vec<_> = (0..1).map(|i| submit(&mut c, &mut n, i, 800)).collect();
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3])));
    // Two valid blocks for the same slot above node 0's head, voted for by validator 1.
    let now = c.now();
    let node = c.net.peer_mut(0);
    let tip = node.block_tip(&node.committed_head()).unwrap();
    let _ = tip;
    // Build on the node's highest certified block, in its current round.
    let ids6 = ids_again();
    let mut made = Vec::new();
    let round = node.current_round();
    let cert_tip = {
        // The highest certified block is in the node's tree (or is its head).
        let h = node.high_qc.clone().unwrap();
        node.block_tip(&h.header.hash()).map(|t| (t, h))
    };
    let (ptip, cert) = cert_tip.unwrap();
    for ts in [1u64, 2] {
        let attempt = round - ptip.round - 1;
        let v = crate::election::elected(&ptip.seed, n.genesis.validators(), attempt).unwrap();
        let key = n.genesis.validators()[v];
        let m = ids6.iter().position(|i| i.verify_key() == key).unwrap();
        let tc = node.last_tc.clone().filter(|_| attempt > 0);
        let draft = crate::block::BlockDraft::assemble(
            &n.genesis,
            &ptip,
            round,
            &ids6[m],
            &crate::election::VrfSecret::derive(&ids6[m]).unwrap(),
            ptip.timestamp_ms + ts,
            vec![],
            &[],
            cert.qc.clone(),
            tc,
        )
        .unwrap();
        made.push(draft.finish(&ids6[m], &[]).unwrap());
    }
    let from = c.keys[1];
    for b in &made {
        node.handle_message(
            from,
            &Message::Proposal { block: b.clone() }.to_bytes(),
            now,
        );
        let vote = Vote::cast(
            &ids6[1],
            &n.genesis.chain_id(),
            b.header.prev,
            b.hash(),
            Ok(()),
            5,
        );
        node.handle_message(from, &Message::Vote { vote }.to_bytes(), now);
    }
    let mut got_votes = false;
    let mut got_proposals = false;
    while let Some(o) = node.poll_output() {
        match o {
            Output::Evidence(Evidence::Votes(ev)) => {
                assert_eq!(ev.verify(&n.genesis).unwrap(), c.keys[1]);
                got_votes = true;
            }
            Output::Evidence(Evidence::Proposals(ev)) => {
                ev.verify(&n.genesis).unwrap();
                got_proposals = true;
            }
            _ => {}
        }
    }
    assert!(got_votes, "no vote equivocation evidence");
    assert!(got_proposals, "no proposal equivocation evidence");
}

#[test]
fn submit_checks_and_messages() {
    let (mut c, mut n) = Cluster::new();
    let tx = log_tx(&mut n, 0, 1);
    let mut raw = tx.to_bytes();
    let r_byte = raw.len() - 60; // inside the signature's R
    raw[r_byte] ^= 1;
    let forged = Transaction::from_bytes(&raw).unwrap();
    assert_eq!(
        c.net.peer_mut(0).submit(forged.clone(), 0),
        Err(SubmitError::BadSignature)
    );
    let id = c.net.peer_mut(0).submit(tx.clone(), 0).unwrap();
    // Same id, other signature: the pending one wins.
    assert_eq!(
        c.net.peer_mut(0).submit(forged, 0),
        Err(SubmitError::Duplicate(id))
    );
    assert_eq!(
        c.net.peer_mut(0).submit(tx.clone(), 0),
        Err(SubmitError::Duplicate(id))
    );
    assert_eq!(
        c.net.peer_mut(1).submit(tx.clone(), 0),
        Err(SubmitError::ForeignContributor(c.keys[0]))
    );
    assert_eq!(c.net.peer(0).mempool_len(), 1);
    // With the network key the body must open.
    let ids = ids_again();
    let cfg = NodeConfig::new(
        n.genesis.clone(),
        ids.into_iter().next().unwrap(),
        crate::seal::NetworkKey::generate(&mut n.rng),
    );
    let mut strict = Node::new(cfg, 0).unwrap();
    assert!(matches!(
        strict.submit(tx.clone(), 0),
        Err(SubmitError::BadBody(_))
    ));
    assert!(c.run(60_000, |net| net.peer(0).is_committed(&id)));
    assert_eq!(
        c.net.peer_mut(0).submit(tx, 0),
        Err(SubmitError::AlreadyCommitted(id))
    );
    assert_eq!(
        SubmitError::BadSignature.to_string(),
        "transaction signature does not verify"
    );
    assert_eq!(
        SubmitError::MempoolFull(3).to_string(),
        "the mempool is full (3 transactions)"
    );
    let outsider = Identity::generate(&mut n.rng);
    let err = Node::new(NodeConfig::consensus_only(n.genesis.clone(), outsider), 0).unwrap_err();
    assert_eq!(err, NodeError::NotAMember);
    assert_eq!(
        err.to_string(),
        "this identity is not a member of the network"
    );
    assert_eq!(DropReason::Stale.to_string(), "the message is stale");
    assert_eq!(
        DropReason::InvalidBlock(InvalidReason::WrongMiner).to_string(),
        "invalid block: the miner was not elected for this round (code 7)"
    );
    assert_eq!(
        DropReason::BadDraft("x").to_string(),
        "the draft to sign is not acceptable: x"
    );
}

#[test]
fn messages_round_trip_and_reject_bad_framing() {
    let (c, mut n) = Cluster::new();
    let tx = log_tx(&mut n, 0, 1);
    let ids = ids_again();
    let h = BlockHash::from_byte_array([7; 32]);
    let tip = ChainTip::genesis(&n.genesis);
    let ticket = crate::block::contributor_ticket(
        &n.genesis,
        &tip,
        &ids[0],
        &crate::election::VrfSecret::derive(&ids[0]).unwrap(),
    );
    let block = crate::block::tests::build(
        &mut n,
        &tip,
        1,
        vec![tx.clone()],
        QuorumCertificate::empty(),
    );
    let msgs = vec![
        Message::GatherRequest {
            round: 3,
            parent: h,
        },
        Message::Contribution {
            round: 3,
            parent: h,
            contributor: ticket,
            transactions: vec![tx],
        },
        Message::SignRequest {
            round: 3,
            header: block.header.clone(),
            leaves: vec![[1; 32]],
            indexed: vec![0],
        },
        Message::SignResponse {
            round: 3,
            block: h,
            segment: Some(test_segment(&ids[0])),
            signature: Signature::from_byte_array([2; 64]),
        },
        Message::Proposal {
            block: block.clone(),
        },
        Message::Vote {
            vote: Vote::cast(
                &ids[0],
                &n.genesis.chain_id(),
                h,
                h,
                Err(InvalidReason::BadRound),
                9,
            ),
        },
        Message::Timeout {
            timeout: Timeout::sign(&ids[0], &n.genesis.chain_id(), 4, 1),
            high_qc: Some(CertifiedHeader {
                header: block.header.clone(),
                qc: QuorumCertificate::empty(),
            }),
            last_tc: None,
        },
        Message::SyncRequest { from_height: 5 },
        Message::SyncResponse {
            blocks: vec![block],
            head_proof: None,
            pending: vec![],
            high_qc: None,
        },
    ];
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(usize::from(m.tag()), i);
        assert!(!m.name().is_empty());
        let bytes = m.to_bytes();
        assert_eq!(&Message::from_bytes(&bytes).unwrap(), m);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Message::from_bytes(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 1;
        assert!(Message::from_bytes(&version).is_err());
    }
    assert!(Message::from_bytes(&[1, 9]).is_err());
    let _ = c;
}

#[test]
fn a_faulty_verifier_cannot_smuggle_a_transaction() {
    struct Liar(Option<crate::tx::VerifiedTx>);
    impl TxVerifier for Liar {
        fn verify_all(
            &mut self,
            txs: Vec<Transaction>,
        ) -> Vec<Result<crate::tx::VerifiedTx, crate::tx::TxError>> {
            // Answers with a verified transaction, whatever it was asked.
            txs.iter().map(|_| Ok(self.0.clone().unwrap())).collect()
        }
    }
    let mut n = net();
    let tip = ChainTip::genesis(&n.genesis);
    let good = log_tx(&mut n, 0, 1);
    let other = log_tx(&mut n, 1, 2);
    let block =
        crate::block::tests::build(&mut n, &tip, 1, vec![other], QuorumCertificate::empty());
    let mut liar = Liar(Some(good.verify().unwrap()));
    let err = block
        .validate_with(&n.genesis, &tip, &mut NoRules, &mut liar)
        .unwrap_err();
    assert_eq!(err.reason, InvalidReason::BadTransaction);
}

/// A real one-record filter segment.
fn test_segment(patient: &Identity) -> crate::index::FilterSegment {
    use crate::index::{BlockContext, FilterSegment, IndexEntry, IndexKey, IndexedRecord, Keyword};
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let key = IndexKey::for_patient(patient);
    let kw: Keyword = "type:Observation".parse().unwrap();
    let trapdoors = key.trapdoors([&kw]);
    let record_id = crate::hash::RecordId::from_byte_array([4; 32]);
    let entry = IndexEntry::build(&record_id, &trapdoors, &mut rng).unwrap();
    let record = IndexedRecord { record_id, entry };
    FilterSegment::build(
        &BlockContext::from_byte_array([3; 32]),
        1,
        [(0, &record, trapdoors.as_slice())],
        &mut rng,
    )
    .unwrap()
}

#[test]
fn indexed_records_commit_in_blocks_whose_filters_find_them() {
    use crate::block::tests::indexed_tx;
    use crate::index::{search, BlockContext, BlockFilter, BlockIndex, IndexEntry, IndexKey};
    let (mut c, mut n) = Cluster::new();
    let mut probes = Vec::new();
    let mut ids = Vec::new();
    // Four nodes each add records (two with a shared code), plus plain transactions.
    for (i, who) in [0usize, 1, 2, 3, 0, 4].into_iter().enumerate() {
        let code = if i % 2 == 0 { "shared" } else { "own" };
        let (tx, record, trapdoors) = indexed_tx(&mut n, who, 200 + i as u64, code);
        let material = IndexMaterial {
            record_id: record.record_id,
            trapdoors,
        };
        let now = c.now();
        let id = c
            .net
            .peer_mut(who)
            .submit_indexed(tx, Some(material), now)
            .unwrap();
        ids.push(id);
        probes.push((record.record_id, code));
    }
    ids.push(submit(&mut c, &mut n, 5, 300));
    assert!(c.run(60_000, |net| all_committed(net, &ids, &[0, 1, 2, 3, 4, 5])));
    c.assert_agree();
    assert!(c.w.dropped.is_empty(), "{:?}", c.w.dropped);
    // Every block with indexed records has a filter; a search through it finds each record.
    let key = IndexKey::for_patient(&n.ids[5]);
    let mut found = 0;
    for b in c.net.peer(5).committed_blocks() {
        let block = b.block();
        let records: Vec<crate::index::IndexedRecord> = block
            .transactions
            .iter()
            .filter(|t| !t.index_entry().is_empty())
            .map(|t| {
                let entry = IndexEntry::from_bytes(t.index_entry()).unwrap();
                let body = t.open_body(&n.net).unwrap();
                let crate::tx::TxBody::RecordAdded { record_id, .. } = body else {
                    panic!("an entry on a non-record transaction")
                };
                crate::index::IndexedRecord { record_id, entry }
            })
            .collect();
        if records.is_empty() {
            assert!(block.index_filter.is_empty());
            continue;
        }
        let filter = BlockFilter::from_bytes(&block.index_filter).unwrap();
        let index = BlockIndex::from_parts(
            BlockContext::from(block.header.merkle_root()),
            filter,
            records.clone(),
        )
        .unwrap();
        for r in &records {
            let (_, code) = probes.iter().find(|(id, _)| *id == r.record_id).unwrap();
            let q = key
                .query(&[format!("code:test|{code}").parse().unwrap()])
                .unwrap();
            let result = search(&q, [&index]);
            assert!(result.hits.iter().any(|h| h.record_id == r.record_id));
            found += 1;
        }
    }
    assert_eq!(found, 6);
}

#[test]
fn indexed_submissions_need_fitting_material() {
    use crate::block::tests::indexed_tx;
    let (mut c, mut n) = Cluster::new();
    let (tx, record, trapdoors) = indexed_tx(&mut n, 0, 1, "x");
    // Without material the node could not place the record in a filter.
    assert_eq!(
        c.net.peer_mut(0).submit(tx.clone(), 0),
        Err(SubmitError::MissingIndexMaterial)
    );
    // Material for another record id, or trapdoors of another key, does not fit.
    let (_, other, other_trapdoors) = indexed_tx(&mut n, 0, 2, "x");
    let wrong_id = IndexMaterial {
        record_id: other.record_id,
        trapdoors: trapdoors.clone(),
    };
    assert!(matches!(
        c.net
            .peer_mut(0)
            .submit_indexed(tx.clone(), Some(wrong_id), 0),
        Err(SubmitError::BadIndexMaterial(_))
    ));
    let foreign_key = crate::index::IndexKey::for_patient(&n.ids[0])
        .trapdoors([&"type:Observation".parse().unwrap()]);
    let wrong_key = IndexMaterial {
        record_id: record.record_id,
        trapdoors: foreign_key,
    };
    assert!(matches!(
        c.net
            .peer_mut(0)
            .submit_indexed(tx.clone(), Some(wrong_key), 0),
        Err(SubmitError::BadIndexMaterial(_))
    ));
    let none = IndexMaterial {
        record_id: record.record_id,
        trapdoors: Vec::new(),
    };
    assert!(matches!(
        c.net.peer_mut(0).submit_indexed(tx.clone(), Some(none), 0),
        Err(SubmitError::BadIndexMaterial(_))
    ));
    // Material for a transaction without an entry.
    let plain = log_tx(&mut n, 0, 3);
    let stray = IndexMaterial {
        record_id: other.record_id,
        trapdoors: other_trapdoors,
    };
    assert!(matches!(
        c.net.peer_mut(0).submit_indexed(plain, Some(stray), 0),
        Err(SubmitError::BadIndexMaterial(_))
    ));
    assert_eq!(c.net.peer(0).mempool_len(), 0);
    // The fitting material is accepted; its Debug shows no trapdoor.
    let good = IndexMaterial {
        record_id: record.record_id,
        trapdoors,
    };
    assert!(!format!("{good:?}").contains("key"));
    assert!(c.net.peer_mut(0).submit_indexed(tx, Some(good), 0).is_ok());
    assert_eq!(
        SubmitError::MissingIndexMaterial.to_string(),
        "an indexed transaction needs its index material (Node::submit_indexed)"
    );
}

#[test]
fn light_client_proves_every_committed_transaction_even_across_timeouts() {
    use crate::light::{commit_path, InclusionError, InclusionProof};
    let (mut c, mut n) = Cluster::new();
    // Phases with one validator down each: an elected miner that is down times its round out,
    // so some blocks are committed only through a later descendant.
    let mut nonce = 500;
    let mut all = Vec::new();
    for down in [None, Some(0), Some(1), Some(2), Some(3), None] {
        for i in 0..6 {
            c.set_down(i, Some(i) == down);
        }
        let up: Vec<usize> = (0..6).filter(|&i| Some(i) != down).collect();
        let ids: Vec<_> = up
            .iter()
            .map(|&i| {
                nonce += 1;
                submit(&mut c, &mut n, i, nonce)
            })
            .collect();
        assert!(c.run(120_000, |net| all_committed(net, &ids, &up)));
        all.extend(ids);
    }
    c.assert_agree();
    let node = c.net.peer(5);
    let blocks = node.committed_blocks();
    let headers: Vec<_> = blocks.iter().map(|b| b.header().clone()).collect();
    let mut proven = 0;
    let mut through_descendants = 0;
    for (i, b) in blocks.iter().enumerate() {
        let (descendants, commit) = commit_path(&headers[i..], node.head_proof()).unwrap();
        if !descendants.is_empty() {
            through_descendants += 1;
        }
        for t in 0..b.tx_ids().len() {
            let p = InclusionProof::with_descendants(b, t, descendants.clone(), commit.clone())
                .unwrap();
            let p = InclusionProof::from_bytes(&p.to_bytes()).unwrap();
            let done = p.verify(&n.genesis).unwrap();
            assert_eq!(done.tx_id, b.tx_ids()[t]);
            assert_eq!(done.height, b.header().height);
            proven += 1;
            if !p.descendants.is_empty() {
                // A broken link in the header chain is caught.
                let mut broken = p.clone();
                broken.descendants[0].timestamp_ms += 1;
                assert!(matches!(
                    broken.verify(&n.genesis),
                    Err(InclusionError::BrokenHeaderChain | InclusionError::HeaderNotCertified)
                ));
                let mut cut = p.clone();
                cut.descendants.pop();
                assert!(cut.verify(&n.genesis).is_err());
            }
        }
    }
    assert_eq!(proven, all.len());
    assert!(
        through_descendants > 0,
        "no block was committed through a descendant: the scenario needs a timeout"
    );
}

/// Submits `tx` at node `who` and runs until every node committed it.
fn commit_everywhere(c: &mut Cluster, who: usize, tx: Transaction) -> crate::hash::TxId {
    let now = c.now();
    let id = c.net.peer_mut(who).submit(tx, now).unwrap();
    let everyone: Vec<usize> = (0..c.net.peers().len()).collect();
    assert!(c.run(120_000, |net| all_committed(net, &[id], &everyone)));
    id
}

/// An access log by node `who` for the record `tx` added (valid under the ledger rules when
/// `who` added it).
fn access_log_of(
    n: &mut crate::block::tests::Net,
    who: usize,
    tx: &Transaction,
    nonce: u64,
) -> Transaction {
    let crate::tx::TxBody::RecordAdded { record_id, .. } =
        tx.clone().verify().unwrap().open_body(&n.net).unwrap()
    else {
        panic!("a record");
    };
    let body = crate::tx::TxBody::AccessLogged {
        record_id,
        accessor: n.ids[who].public(),
        purpose: "TREAT".into(),
        consent_id: None,
        emergency: false,
        accessed_at_ms: 1_000 + nonce,
    };
    Transaction::create(
        &n.ids[who],
        &n.genesis.chain_id(),
        1_000 + nonce,
        nonce,
        &body,
        vec![],
        &n.net,
        &mut n.rng,
    )
    .unwrap()
}

/// A node that reads its committed chain from its host's store keeps only a window of recent
/// blocks in memory, answers a sync request for old heights from the store, and still refuses
/// an old committed transaction, at submission and in a block — also once resumed from the
/// store with no block in memory.
#[test]
fn a_node_over_its_store_keeps_a_window_syncs_from_it_and_refuses_old_replays() {
    let (mut c, mut n) = Cluster::with_network_key();
    let store = c.over_store(&n, 0, false);
    let txs: Vec<Transaction> = (0..8).map(|k| record_tx(&mut n, 0, 10 + k)).collect();
    for tx in &txs {
        commit_everywhere(&mut c, 0, tx.clone());
    }
    c.assert_agree();
    let height = c.net.peer(0).committed_height();
    assert!(
        height > 2 * RECENT_COMMITTED_BLOCKS as u64,
        "height {height}"
    );
    assert_eq!(
        store.lock().height(),
        height,
        "the host appended every commit"
    );
    let node = c.net.peer(0);
    let window = node.committed_blocks();
    assert!(window.len() <= RECENT_COMMITTED_BLOCKS + node.lagging_blocks());
    assert!(window[0].header().height > 1, "old blocks left memory");
    assert_eq!(
        window.last().map(CheckedBlock::hash),
        Some(node.committed_head())
    );
    let old = txs[0].id();
    assert!(window.iter().all(|b| !b.tx_ids().contains(&old)));
    assert!(node.is_committed(&old), "the store answers");

    // A member asks for everything from height 1: the old blocks come from the store.
    let asker = c.keys[5];
    c.net
        .inject(0, asker, Message::SyncRequest { from_height: 1 }.to_bytes());
    c.run(0, |_| false);
    let answer = c
        .w
        .sent
        .iter()
        .rev()
        .find_map(|(_, from, to, m)| match m {
            Message::SyncResponse { blocks, .. } if *from == 0 && *to == Recipient::Node(asker) => {
                Some(blocks.clone())
            }
            _ => None,
        })
        .expect("node 0 answered");
    assert_eq!(answer.len() as u64, height);
    // A node that keeps its chain in memory holds the same blocks.
    let memory = c.net.peer(1).committed_blocks();
    for (b, m) in answer.iter().zip(memory) {
        assert_eq!(b, m.block());
    }

    // Submitted again: refused, though no block in memory holds it.
    let now = c.now();
    assert_eq!(
        c.net.peer_mut(0).submit(txs[0].clone(), now),
        Err(SubmitError::AlreadyCommitted(old))
    );
    // Resumed from the store: nothing in memory, the store answers.
    let safety = c.net.peer(0).safety_state();
    let cfg = NodeConfig::new(
        n.genesis.clone(),
        ids_again().swap_remove(0),
        network_key_again(),
    );
    let mut fresh = Node::resume(cfg, Box::new(store.clone()), safety, now).unwrap();
    assert!(fresh.committed_blocks().is_empty());
    assert_eq!(fresh.committed_height(), height);
    assert!(fresh.is_committed(&old));
    assert_eq!(
        fresh.submit(txs[0].clone(), now),
        Err(SubmitError::AlreadyCommitted(old))
    );
    // A block on the committed head that holds the old transaction again is refused as a
    // duplicate; the same block with a new transaction is valid.
    let tip = fresh.block_tip(&fresh.committed_head()).unwrap();
    let qc = fresh.head_proof().unwrap().child.parent_qc.clone();
    let block_of = |n: &mut crate::block::tests::Net, tx: Transaction| {
        let (d, m) = crate::block::tests::draft_at(
            n,
            &tip,
            tip.round + 1,
            vec![tx],
            qc.clone(),
            tip.timestamp_ms,
        );
        crate::block::tests::sign_all(n, d, m)
    };
    while fresh.poll_output().is_some() {}
    let replay = block_of(&mut n, txs[0].clone());
    fresh.resume_pending(vec![replay.clone()], now);
    let mut drops = Vec::new();
    while let Some(out) = fresh.poll_output() {
        if let Output::Dropped { reason, .. } = out {
            drops.push(reason);
        }
    }
    assert_eq!(
        drops,
        vec![DropReason::InvalidBlock(RuleError::Duplicate.reason())]
    );
    assert!(fresh.block_tip(&replay.hash()).is_none());
    let valid = record_tx(&mut n, 0, 99);
    let new = block_of(&mut n, valid);
    fresh.resume_pending(vec![new.clone()], now);
    while let Some(out) = fresh.poll_output() {
        assert!(!matches!(out, Output::Dropped { .. }), "{out:?}");
    }
    assert!(fresh.block_tip(&new.hash()).is_some());
}

/// A node whose host has not appended its commits yet judges what comes next over its store
/// with those blocks' effects laid on top (an access log for a record only they hold is valid),
/// keeps those blocks in memory however many there are, and drops them once the store holds
/// them.
#[test]
fn a_node_lays_what_its_store_lacks_over_it_and_drops_it_once_appended() {
    let (mut c, mut n) = Cluster::with_network_key();
    let store = c.over_store(&n, 0, true);
    let record = record_tx(&mut n, 0, 30);
    let log = access_log_of(&mut n, 0, &record, 31);
    commit_everywhere(&mut c, 0, record);
    let log = commit_everywhere(&mut c, 0, log);
    for k in 0..6 {
        commit_everywhere(&mut c, 0, record_tx(&mut n, 0, 40 + k));
    }
    c.assert_agree();
    assert!(c.w.refused.is_empty(), "{:?}", c.w.refused);
    assert!(
        !c.w.dropped
            .iter()
            .any(|(i, r)| *i == 0 && matches!(r, DropReason::InvalidBlock(_))),
        "{:?}",
        c.w.dropped
    );
    assert_eq!(store.lock().height(), 0, "nothing appended yet");
    let node = c.net.peer(0);
    let height = node.committed_height();
    assert!(height > RECENT_COMMITTED_BLOCKS as u64);
    assert_eq!(node.lagging_blocks() as u64, height);
    assert_eq!(node.committed_blocks().len() as u64, height, "none evicted");
    assert!(node.is_committed(&log));

    // The host appends; at its next call the node drops what the store now holds.
    if let Some(a) = c.w.appenders[0].as_mut() {
        a.flush();
        a.hold = false;
    }
    assert_eq!(store.lock().height(), height);
    let now = c.now();
    c.net.peer_mut(0).handle_timeout(now);
    let node = c.net.peer(0);
    assert_eq!(node.lagging_blocks(), 0);
    assert_eq!(node.committed_blocks().len(), RECENT_COMMITTED_BLOCKS);
    assert!(node.is_committed(&log));
    // And it goes on.
    commit_everywhere(&mut c, 0, record_tx(&mut n, 0, 50));
    c.assert_agree();
}
