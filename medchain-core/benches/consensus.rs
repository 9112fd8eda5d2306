//! Validating a 1,000-transaction block on one core, against the raw strict-verify bound for
//! the signatures it needs (1,000 transactions, the miner, the contributors, the parent's
//! quorum certificate), measured in the same run with `ed25519_dalek::VerifyingKey::verify_strict`.
//!
//! A second block holds 1,000 indexed records (`RecordAdded` with secure-index entries) from
//! four contributors, whose filter the contributors build while they sign: the bench reports
//! the time one contributor takes to build its segment, and the validation ratio with the
//! secure-index checks (entry decoding, filter decoding, per-segment key counts, segment
//! digests in the contributors' signatures).
//!
//! Run: `cargo bench -p medchain-core --bench consensus`.
//! Prints one summary line per measurement and the ratio `raw time / validation time`
//! (1.0 = validation costs no more than its signatures).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use medchain_core::block::{
    contribution_hash, contributor_segment, contributor_ticket, tx_leaf, BatchVerifier, Block,
    BlockDraft, ChainTip, NoRules, SerialVerifier, TxVerifier,
};
use medchain_core::election::{self, VrfSecret};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::genesis::{Genesis, Member, Quorum, Timing};
use medchain_core::hash::{domain, ChainId, RecordId};
use medchain_core::index::{
    BlockFilter, FilterSegment, IndexEntry, IndexKey, IndexedRecord, Keyword, Trapdoor,
};
use medchain_core::keys::{Identity, Signature, VerifyKey};
use medchain_core::ledger::LedgerState;
use medchain_core::seal::NetworkKey;
use medchain_core::tx::{Transaction, TxBody};
use medchain_core::vote::{QuorumCertificate, Vote};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const TXS: usize = 1_000;
const VALIDATORS: usize = 4;
const CONTRIBUTORS: usize = 4;

/// What ed25519 signs for medchain: `len(label) || label || chain || message`.
fn framed(chain: &ChainId, label: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![label.len() as u8];
    v.extend_from_slice(label.as_bytes());
    v.extend_from_slice(chain.as_byte_array());
    v.extend_from_slice(msg);
    v
}

struct Fixture {
    genesis: Genesis,
    network: NetworkKey,
    tip: ChainTip,
    block: Block,
    /// (key, framed message, signature) of every signature validation needs.
    sigs: Vec<(VerifyKey, Vec<u8>, Signature)>,
    /// For the indexed block: the median time one contributor took to build its segment.
    segment_time: Option<Duration>,
}

type Material = HashMap<[u8; 32], (IndexedRecord, Vec<Trapdoor>)>;

fn fixture(indexed: bool) -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ids: Vec<Identity> = (0..VALIDATORS + CONTRIBUTORS)
        .map(|_| Identity::generate(&mut rng))
        .collect();
    let net = NetworkKey::generate(&mut rng);
    let members = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Member {
            name: format!("n{i}"),
            identity: id.public(),
            vrf: VrfSecret::derive(id).unwrap().public(),
            validator: i < VALIDATORS,
        })
        .collect();
    let genesis = Genesis::new(
        "bench",
        0,
        net.fingerprint(),
        members,
        Quorum::TWO_THIRDS,
        Timing::DEFAULT,
        10_000,
    )
    .unwrap();
    let by_key = |k: &VerifyKey| ids.iter().position(|i| i.verify_key() == *k).unwrap();
    let mine = |tip: &ChainTip,
                round: u64,
                txs: Vec<Transaction>,
                qc: QuorumCertificate,
                mat: &Material,
                rng: &mut ChaCha20Rng| {
        let v = election::elected(&tip.seed, genesis.validators(), round - tip.round - 1).unwrap();
        let m = by_key(&genesis.validators()[v]);
        let tickets: Vec<_> = ids
            .iter()
            .map(|id| contributor_ticket(&genesis, tip, id, &VrfSecret::derive(id).unwrap()))
            .collect();
        let draft = BlockDraft::assemble(
            &genesis,
            tip,
            round,
            &ids[m],
            &VrfSecret::derive(&ids[m]).unwrap(),
            1,
            txs,
            &tickets,
            qc,
            None,
        )
        .unwrap();
        let leaves = draft.indexed_leaves();
        let mut sigs = Vec::new();
        let mut segments = Vec::new();
        let mut seg_times = Vec::new();
        for c in &draft.header().contributors {
            // Each contributor holds the material of its own records only.
            let own: std::collections::HashSet<[u8; 32]> = draft
                .transactions()
                .iter()
                .filter(|t| *t.contributor() == c.key)
                .map(|t| tx_leaf(&t.id(), t.signature()))
                .collect();
            let t = Instant::now();
            let seg: Option<FilterSegment> = contributor_segment(
                draft.header().merkle_root(),
                &leaves,
                |l| {
                    mat.get(l)
                        .filter(|_| own.contains(l))
                        .map(|(r, t)| (r, t.as_slice()))
                },
                rng,
            )
            .unwrap();
            if seg.is_some() {
                seg_times.push(t.elapsed());
            }
            sigs.push((
                c.key,
                draft.sign_contribution(&ids[by_key(&c.key)], seg.as_ref()),
            ));
            if let Some(seg) = seg {
                segments.push((c.key, seg));
            }
        }
        (
            draft.finish_indexed(&ids[m], &sigs, segments).unwrap(),
            seg_times,
        )
    };
    let tip0 = ChainTip::genesis(&genesis);
    let none = Material::new();
    let (b1, _) = mine(
        &tip0,
        1,
        vec![],
        QuorumCertificate::empty(),
        &none,
        &mut rng,
    );
    let c1 = b1.validate(&genesis, &tip0, &mut NoRules).unwrap();
    let votes: Vec<Vote> = ids[..VALIDATORS - 1]
        .iter()
        .map(|id| {
            Vote::cast(
                id,
                &genesis.chain_id(),
                c1.header().prev,
                c1.hash(),
                Ok(()),
                1,
            )
        })
        .collect();
    let qc = QuorumCertificate::from_votes(&votes, &c1.hash());
    let tip1 = c1.tip();
    let mut mat = Material::new();
    let patient = Identity::generate(&mut rng);
    let class = medchain_core::access::record_class(
        br#"{"resourceType":"Observation"}"#,
        &medchain_core::consent::ConsentTagKey::for_patient(&patient),
        &mut rng,
    )
    .unwrap();
    let chain = genesis.chain_id();
    let txs: Vec<Transaction> = (0..TXS)
        .map(|i| {
            let who = &ids[VALIDATORS + i % CONTRIBUTORS];
            if indexed {
                // A small sealed Observation (bodies are not what this measures) with a real
                // 16-tag entry under the patient's writer key for its contributor.
                let sealed = medchain_core::seal::seal_record(
                    br#"{"resourceType":"Observation","status":"final"}"#,
                    &patient.public(),
                    &[who.public()],
                    &mut rng,
                )
                .unwrap();
                let record_id = sealed.record_id();
                let key = IndexKey::for_patient(&patient).for_writer(&who.id());
                let kws: Vec<Keyword> = [
                    "type:Observation".to_string(),
                    format!("code:http://loinc.org|{}-{}", 1000 + i % 500, i % 10),
                    "date:2024".into(),
                    "date:2024-03".into(),
                ]
                .iter()
                .map(|k| k.parse().unwrap())
                .collect();
                let trapdoors = key.trapdoors(kws.iter());
                let entry = IndexEntry::build(&record_id, &trapdoors, &mut rng).unwrap();
                let body = TxBody::record_added(sealed, class.clone());
                let tx = Transaction::create(
                    who,
                    &chain,
                    1,
                    i as u64,
                    &body,
                    entry.to_bytes(),
                    &net,
                    &mut rng,
                )
                .unwrap();
                mat.insert(
                    tx_leaf(&tx.id(), tx.signature()),
                    (IndexedRecord { record_id, entry }, trapdoors),
                );
                tx
            } else {
                let body = TxBody::AccessLogged {
                    record_id: RecordId::from_byte_array([i as u8; 32]),
                    accessor: who.public(),
                    purpose: "TREAT".into(),
                    consent_id: None,
                    emergency: false,
                    accessed_at_ms: i as u64,
                };
                Transaction::create(who, &chain, 1, i as u64, &body, vec![], &net, &mut rng)
                    .unwrap()
            }
        })
        .collect();
    let (block, mut seg_times) = mine(&tip1, 2, txs, qc.clone(), &mat, &mut rng);
    let segment_time = if indexed {
        seg_times.sort_unstable();
        seg_times.get(seg_times.len() / 2).copied()
    } else {
        None
    };
    let hash = block.hash();
    let draft_hash = block.header.draft_hash();
    let filter = if block.index_filter.is_empty() {
        None
    } else {
        Some(BlockFilter::from_bytes(&block.index_filter).unwrap())
    };
    let mut segment_digests = filter
        .iter()
        .flat_map(|f| f.segments().map(|s| s.digest()).collect::<Vec<_>>());
    let chain = genesis.chain_id();
    let mut sigs = Vec::new();
    for tx in &block.transactions {
        sigs.push((
            *tx.contributor(),
            framed(&chain, domain::TX_SIG, tx.id().as_byte_array()),
            *tx.signature(),
        ));
    }
    sigs.push((
        block.header.miner,
        framed(&chain, domain::BLOCK_SIG, hash.as_byte_array()),
        block.miner_signature,
    ));
    for (c, s) in block
        .header
        .contributors
        .iter()
        .zip(&block.contributor_signatures)
    {
        let digest = if indexed {
            segment_digests.next()
        } else {
            None
        };
        sigs.push((
            c.key,
            framed(
                &chain,
                domain::CONTRIBUTION_SIG,
                &contribution_hash(&draft_hash, digest.as_ref()),
            ),
            *s,
        ));
    }
    for v in qc.votes() {
        sigs.push((
            v.node_pubkey,
            framed(&chain, domain::VOTE_SIG, &v.signed_bytes()),
            v.signature,
        ));
    }
    Fixture {
        genesis,
        network: net,
        tip: tip1,
        block,
        sigs,
        segment_time,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    run("1000-tx-block", &fixture(false));
    let f = fixture(true);
    if let Some(t) = f.segment_time {
        println!(
            "consensus/contributor-segment: one contributor's filter segment over its {} indexed records in {t:.2?}",
            TXS / CONTRIBUTORS
        );
    }
    println!(
        "consensus/indexed-block: filter {} bytes ({:.2}% of the block's {} bytes)",
        f.block.index_filter.len(),
        100.0 * f.block.index_filter.len() as f64 / f.block.to_bytes().len() as f64,
        f.block.to_bytes().len()
    );
    run("1000-record-indexed-block", &f);
}

fn run(name: &str, f: &Fixture) {
    let rounds = 15;
    let mut raw = Vec::new();
    let mut serial = Vec::new();
    let mut batch = Vec::new();
    let mut full = Vec::new();
    let bytes = f.block.to_bytes();
    // Interleave the four so that machine noise hits them alike.
    for _ in 0..rounds {
        let t = Instant::now();
        for (k, m, s) in &f.sigs {
            let sig = ed25519_dalek::Signature::from_bytes(s.as_byte_array());
            k.as_dalek().verify_strict(m, &sig).unwrap();
        }
        raw.push(t.elapsed());
        for (verifier, times) in [
            (&mut SerialVerifier as &mut dyn TxVerifier, &mut serial),
            (&mut BatchVerifier, &mut batch),
        ] {
            let b = f.block.clone();
            let t = Instant::now();
            let checked = b
                .validate_with(&f.genesis, &f.tip, &mut NoRules, verifier)
                .unwrap();
            times.push(t.elapsed());
            black_box(checked);
        }
        // Full validation, as a node does it: decode the block's bytes, verify (batched), and
        // run the ledger rules (bodies opened with the network key, patient signatures,
        // consent rules) over an empty ledger. Only the records block passes the rules on an
        // empty ledger (the other logs accesses to records it does not hold).
        if f.segment_time.is_none() {
            continue;
        }
        let t = Instant::now();
        let state = LedgerState::new();
        let mut rules = state.rules(&f.genesis, &f.network);
        let checked = Block::from_bytes(black_box(&bytes))
            .unwrap()
            .validate(&f.genesis, &f.tip, &mut rules)
            .unwrap();
        full.push(t.elapsed());
        black_box(checked);
    }
    let (raw, serial, batch) = (median(raw), median(serial), median(batch));
    let n = f.sigs.len();
    println!(
        "consensus/{name}/raw-verify-strict: {n} signatures in {raw:.2?} ({:.0} signatures/s on one core)",
        n as f64 / raw.as_secs_f64()
    );
    for (how, val) in [("serial", serial), ("batch", batch)] {
        println!(
            "consensus/{name}/validate-{how}: {val:.2?} ({:.0} transactions/s on one core; raw single-verification bound / validation = {:.3})",
            TXS as f64 / val.as_secs_f64(),
            raw.as_secs_f64() / val.as_secs_f64()
        );
    }
    println!(
        "consensus/{name}/batch-speedup: serial / batch = {:.2} (target >= 1.6)",
        serial.as_secs_f64() / batch.as_secs_f64()
    );
    if full.is_empty() {
        return;
    }
    let full = median(full);
    let per_core = TXS as f64 / full.as_secs_f64();
    println!(
        "consensus/{name}/full-validation: decode + batch verify + ledger rules {full:.2?}: \
         {per_core:.0} tx/s on one core = {:.1}x BigchainDB 2.2.2's ~880 tx/s per core",
        per_core / 880.0
    );
}
