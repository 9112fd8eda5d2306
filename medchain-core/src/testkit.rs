//! A deterministic test network: identities from a seed, a genesis, and a builder of valid,
//! certified blocks with commit proofs. Used by the store conformance suite, benchmarks,
//! examples and tests; not part of the stable API.

/// The in-process driver, at its old path (it is `crate::protocol::driver`, part of the API).
pub use crate::protocol::driver;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use std::collections::HashMap;

use crate::block::{
    contributor_segment, contributor_ticket, tx_leaf, Block, BlockDraft, ChainTip, CheckedBlock,
    Contributor, InvalidBlock,
};
use crate::chain::CommitProof;
use crate::election::{self, VrfSecret};
use crate::encoding::Encode;
use crate::genesis::{Genesis, Member, Quorum, Timing};
use crate::hash::RecordId;
use crate::index::{FilterSegment, IndexEntry, IndexedRecord, Trapdoor};
use crate::keys::{Identity, Signature, VerifyKey};
use crate::ledger::{rules_over, BlockEffects, StateView};
use crate::seal::NetworkKey;
use crate::tx::{Transaction, TxBody};
use crate::vote::{QuorumCertificate, Vote};

/// A deterministic network of `validators` trusted nodes and `members` other member nodes.
pub struct TestNet {
    /// The genesis.
    pub genesis: Genesis,
    /// The network key.
    pub network: NetworkKey,
    /// Node identities: validators first, then members.
    pub nodes: Vec<Identity>,
    vrfs: Vec<VrfSecret>,
    /// Randomness for transactions.
    pub rng: ChaCha20Rng,
    tip: ChainTip,
    parent_qc: QuorumCertificate,
    nonce: u64,
    /// Index material of the indexed transactions made by [`TestNet::indexed_tx`], by leaf.
    indexing: HashMap<[u8; 32], (IndexedRecord, Vec<Trapdoor>)>,
    /// The time blocks are stamped with; advanced by one second per block.
    pub now_ms: u64,
}

impl std::fmt::Debug for TestNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNet")
            .field("genesis", &self.genesis)
            .field("height", &self.tip.height)
            .finish_non_exhaustive()
    }
}

impl TestNet {
    /// A network from a seed.
    ///
    /// # Panics
    /// If `validators` is zero.
    pub fn new(seed: u64, validators: usize, members: usize) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let nodes: Vec<Identity> = (0..validators + members)
            .map(|_| Identity::generate(&mut rng))
            .collect();
        let vrfs: Vec<VrfSecret> = nodes
            .iter()
            .map(|n| {
                VrfSecret::derive(n).unwrap_or_else(|_| unreachable!("derived scalar is non-zero"))
            })
            .collect();
        let network = NetworkKey::generate(&mut rng);
        let list = nodes
            .iter()
            .zip(&vrfs)
            .enumerate()
            .map(|(i, (n, v))| Member {
                name: if i < validators {
                    format!("validator-{i}")
                } else {
                    format!("member-{i}")
                },
                identity: n.public(),
                vrf: v.public(),
                validator: i < validators,
            })
            .collect();
        let now_ms = 1_790_000_000_000;
        let genesis = Genesis::new(
            "medchain-testnet",
            now_ms,
            network.fingerprint(),
            list,
            Quorum::TWO_THIRDS,
            Timing::DEFAULT,
            100_000,
        )
        .unwrap_or_else(|e| panic!("test genesis: {e}"));
        let tip = ChainTip::genesis(&genesis);
        Self {
            genesis,
            network,
            nodes,
            vrfs,
            rng,
            tip,
            parent_qc: QuorumCertificate::empty(),
            nonce: 0,
            indexing: HashMap::new(),
            now_ms,
        }
    }

    /// The chain tip.
    pub fn tip(&self) -> &ChainTip {
        &self.tip
    }

    /// Signs a transaction from node `node`.
    ///
    /// # Panics
    /// If the body is invalid (a test bug).
    pub fn tx(&mut self, node: usize, body: &TxBody, index_entry: Vec<u8>) -> Transaction {
        self.nonce += 1;
        Transaction::create(
            &self.nodes[node],
            &self.genesis.chain_id(),
            self.now_ms,
            self.nonce,
            body,
            index_entry,
            &self.network,
            &mut self.rng,
        )
        .unwrap_or_else(|e| panic!("test transaction: {e}"))
    }

    /// Signs a record transaction from node `node` with the index entry of `record_id` built
    /// from `trapdoors`, and keeps the trapdoors so that the block that takes it carries a
    /// secure-index filter (as the consensus node does).
    ///
    /// # Panics
    /// If the body or the trapdoors are invalid (a test bug).
    pub fn indexed_tx(
        &mut self,
        node: usize,
        body: &TxBody,
        record_id: RecordId,
        trapdoors: Vec<Trapdoor>,
    ) -> Transaction {
        let entry = IndexEntry::build(&record_id, &trapdoors, &mut self.rng)
            .unwrap_or_else(|e| panic!("test index entry: {e}"));
        let tx = self.tx(node, body, entry.to_bytes());
        self.indexing.insert(
            tx_leaf(&tx.id(), tx.signature()),
            (IndexedRecord { record_id, entry }, trapdoors),
        );
        tx
    }

    fn index_of(&self, key: &VerifyKey) -> usize {
        self.nodes
            .iter()
            .position(|n| &n.verify_key() == key)
            .unwrap_or(0)
    }

    fn draft(
        &mut self,
        tip: &ChainTip,
        round: u64,
        txs: Vec<Transaction>,
        qc: QuorumCertificate,
    ) -> Result<Block, InvalidBlock> {
        let attempt = round - tip.round - 1;
        let m = election::elected(&tip.seed, self.genesis.validators(), attempt)
            .map_err(|_| InvalidBlock::from(crate::vote::InvalidReason::WrongMiner))?;
        let miner = self.index_of(&self.genesis.validators()[m]);
        let tickets: Vec<Contributor> = self
            .nodes
            .iter()
            .zip(&self.vrfs)
            .map(|(n, v)| contributor_ticket(&self.genesis, tip, n, v))
            .collect();
        let draft = BlockDraft::assemble(
            &self.genesis,
            tip,
            round,
            &self.nodes[miner],
            &self.vrfs[miner],
            self.now_ms,
            txs,
            &tickets,
            qc,
            None,
        )
        .map_err(|_| InvalidBlock::from(crate::vote::InvalidReason::Malformed))?;
        // Each contributor's filter segment, when the index material of every indexed
        // transaction is known; otherwise the block has no filter.
        let leaves = draft.indexed_leaves();
        let complete = leaves.iter().all(|l| self.indexing.contains_key(l));
        let mut segments: Vec<(VerifyKey, FilterSegment)> = Vec::new();
        if complete && !leaves.is_empty() {
            for c in &draft.header().contributors {
                let mine: HashMap<[u8; 32], &(IndexedRecord, Vec<Trapdoor>)> = draft
                    .transactions()
                    .iter()
                    .filter(|t| *t.contributor() == c.key)
                    .map(|t| tx_leaf(&t.id(), t.signature()))
                    .filter_map(|l| self.indexing.get(&l).map(|m| (l, m)))
                    .collect();
                let segment = contributor_segment(
                    draft.header().merkle_root(),
                    &leaves,
                    |l| mine.get(l).map(|m| (&m.0, m.1.as_slice())),
                    &mut self.rng,
                )
                .map_err(|_| InvalidBlock::from(crate::vote::InvalidReason::BadIndexFilter))?;
                if let Some(segment) = segment {
                    segments.push((c.key, segment));
                }
            }
        }
        let sigs: Vec<(VerifyKey, Signature)> = self
            .nodes
            .iter()
            .map(|n| {
                let k = n.verify_key();
                let seg = segments.iter().find(|(s, _)| *s == k).map(|(_, s)| s);
                (k, draft.sign_contribution(n, seg))
            })
            .collect();
        for l in &leaves {
            self.indexing.remove(l);
        }
        draft
            .finish_indexed(&self.nodes[miner], &sigs, segments)
            .map_err(|_| InvalidBlock::from(crate::vote::InvalidReason::BadContributorSignature))
    }

    /// A quorum certificate for `block` from every validator.
    pub fn certify(&self, block: &CheckedBlock) -> QuorumCertificate {
        let votes: Vec<Vote> = self.nodes[..self.genesis.validators().len()]
            .iter()
            .map(|n| {
                Vote::cast(
                    n,
                    &self.genesis.chain_id(),
                    block.header().prev,
                    block.hash(),
                    Ok(()),
                    self.now_ms,
                )
            })
            .collect();
        QuorumCertificate::from_votes(&votes, &block.hash())
    }

    /// Builds, validates (with the ledger rules over `state`) and certifies the next block, and
    /// a commit proof for it (a certified empty child in the next round).
    ///
    /// # Errors
    /// The block's [`InvalidBlock`] if a transaction breaks a rule.
    pub fn next_block(
        &mut self,
        state: &dyn StateView,
        txs: Vec<Transaction>,
    ) -> Result<(CheckedBlock, BlockEffects, CommitProof), InvalidBlock> {
        self.now_ms += 1000;
        let round = self.tip.round + 1;
        let parent = self.tip.clone();
        let block = self.draft(&parent, round, txs, self.parent_qc.clone())?;
        let mut rules = rules_over(state, &self.genesis, &self.network);
        let checked = block.validate(&self.genesis, &self.tip, &mut rules)?;
        let effects = rules.into_effects();
        let qc = self.certify(&checked);
        let tip = checked.tip();
        let child = self.draft(&tip, round + 1, Vec::new(), qc.clone())?;
        let child = child.validate(&self.genesis, &tip, &mut crate::block::NoRules)?;
        let proof = CommitProof {
            child: child.header().clone(),
            child_qc: self.certify(&child),
        };
        self.tip = tip;
        self.parent_qc = qc;
        Ok((checked, effects, proof))
    }
}
