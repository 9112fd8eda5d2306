//! Validating a 1,000-transaction block on one core, against the raw strict-verify bound for
//! the signatures it needs (1,000 transactions, the miner, the contributors, the parent's
//! quorum certificate), measured in the same run with `ed25519_dalek::VerifyingKey::verify_strict`.
//!
//! Run: `cargo bench -p medchain-core --bench consensus`.
//! Prints one summary line per measurement and the ratio `raw time / validation time`
//! (1.0 = validation costs no more than its signatures).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use medchain_core::block::{
    contributor_ticket, Block, BlockDraft, ChainTip, NoRules, SerialVerifier,
};
use medchain_core::election::{self, VrfSecret};
use medchain_core::genesis::{Genesis, Member, Quorum, Timing};
use medchain_core::hash::{domain, RecordId};
use medchain_core::keys::{Identity, Signature, VerifyKey};
use medchain_core::seal::NetworkKey;
use medchain_core::tx::{Transaction, TxBody};
use medchain_core::vote::{QuorumCertificate, Vote};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const TXS: usize = 1_000;
const VALIDATORS: usize = 4;
const CONTRIBUTORS: usize = 4;

fn framed(label: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![label.len() as u8];
    v.extend_from_slice(label.as_bytes());
    v.extend_from_slice(msg);
    v
}

struct Fixture {
    genesis: Genesis,
    tip: ChainTip,
    block: Block,
    /// (key, framed message, signature) of every signature validation needs.
    sigs: Vec<(VerifyKey, Vec<u8>, Signature)>,
}

fn fixture() -> Fixture {
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
    let mine = |tip: &ChainTip, round: u64, txs: Vec<Transaction>, qc: QuorumCertificate| {
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
            vec![],
            qc,
            None,
        )
        .unwrap();
        let sigs: Vec<_> = draft
            .header()
            .contributors
            .iter()
            .map(|c| (c.key, draft.sign_as_contributor(&ids[by_key(&c.key)])))
            .collect();
        draft.finish(&ids[m], &sigs).unwrap()
    };
    let tip0 = ChainTip::genesis(&genesis);
    let b1 = mine(&tip0, 1, vec![], QuorumCertificate::empty());
    let c1 = b1.validate(&genesis, &tip0, &mut NoRules).unwrap();
    let votes: Vec<Vote> = ids[..VALIDATORS - 1]
        .iter()
        .map(|id| Vote::cast(id, c1.header().prev, c1.hash(), Ok(()), 1))
        .collect();
    let qc = QuorumCertificate::from_votes(&votes, &c1.hash());
    let tip1 = c1.tip();
    let txs: Vec<Transaction> = (0..TXS)
        .map(|i| {
            let who = &ids[VALIDATORS + i % CONTRIBUTORS];
            let body = TxBody::AccessLogged {
                record_id: RecordId::from_byte_array([i as u8; 32]),
                accessor: who.public(),
                purpose: "TREAT".into(),
                consent_id: None,
                emergency: false,
                accessed_at_ms: i as u64,
            };
            Transaction::create(who, 1, i as u64, &body, vec![], &net, &mut rng).unwrap()
        })
        .collect();
    let block = mine(&tip1, 2, txs, qc.clone());
    let hash = block.hash();
    let mut sigs = Vec::new();
    for tx in &block.transactions {
        sigs.push((
            *tx.contributor(),
            framed(domain::TX_SIG, tx.id().as_byte_array()),
            *tx.signature(),
        ));
    }
    sigs.push((
        block.header.miner,
        framed(domain::BLOCK_SIG, hash.as_byte_array()),
        block.miner_signature,
    ));
    for (c, s) in block
        .header
        .contributors
        .iter()
        .zip(&block.contributor_signatures)
    {
        sigs.push((c.key, framed(domain::BLOCK_SIG, hash.as_byte_array()), *s));
    }
    for v in qc.votes() {
        sigs.push((
            v.node_pubkey,
            framed(domain::VOTE_SIG, &v.signed_bytes()),
            v.signature,
        ));
    }
    Fixture {
        genesis,
        tip: tip1,
        block,
        sigs,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let f = fixture();
    let rounds = 15;
    let mut raw = Vec::new();
    let mut val = Vec::new();
    // Interleave the two so that machine noise hits both alike.
    for _ in 0..rounds {
        let t = Instant::now();
        for (k, m, s) in &f.sigs {
            let sig = ed25519_dalek::Signature::from_bytes(s.as_byte_array());
            k.as_dalek().verify_strict(m, &sig).unwrap();
        }
        raw.push(t.elapsed());
        let b = f.block.clone();
        let t = Instant::now();
        let checked = b
            .validate_with(&f.genesis, &f.tip, &mut NoRules, &mut SerialVerifier)
            .unwrap();
        val.push(t.elapsed());
        black_box(checked);
    }
    let (raw, val) = (median(raw), median(val));
    let n = f.sigs.len();
    println!(
        "consensus/raw-verify-strict: {n} signatures in {raw:.2?} ({:.0} signatures/s on one core)",
        n as f64 / raw.as_secs_f64()
    );
    println!(
        "consensus/validate-1000-tx-block: {val:.2?} ({:.0} transactions/s on one core)",
        TXS as f64 / val.as_secs_f64()
    );
    println!(
        "consensus/ratio: raw bound / validation = {:.3} (target >= 0.8)",
        raw.as_secs_f64() / val.as_secs_f64()
    );
}
