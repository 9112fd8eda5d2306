//! The node state machine (see the module docs of [`crate::protocol`]).

// `VerifyKey` keeps its decompressed point (192 bytes), so errors naming a key are large; they
// are cold paths. Outputs and phases hold whole blocks by design (they are moved, not copied).
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use thiserror::Error;

use super::committed::{Committed, CommittedChain};
use super::message::{CertifiedHeader, Message, MAX_SYNC_BLOCKS};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::block::{
    contribution_hash, contributor_segment, contributor_ticket, sign_contribution, tx_leaf,
    tx_time_fits, BatchVerifier, Block, BlockDraft, BlockHeader, ChainTip, CheckedBlock,
    Contributor, InvalidBlock, TxContext, TxRules, TxVerifier,
};
use crate::chain::{CommitProof, CommitProofError};
use crate::election::{self, ElectionError, VrfSecret};
use crate::encoding::{Decode, DecodeError, Encode};
use crate::genesis::Genesis;
use crate::hash::{domain, tagged_hash, BlockHash, MerkleRoot, RecordId, TxId};
use crate::index::{FilterError, FilterSegment, IndexEntry, IndexedRecord, Trapdoor};
use crate::keys::{Identity, Signature, VerifyKey};
use crate::ledger::{rules_over, BlockEffects, RuleError, StateError};
use crate::seal::NetworkKey;
use crate::tx::{Transaction, TxBody, TxError, VerifiedTx};
use crate::vote::{
    EquivocationEvidence, EvidenceError, InvalidReason, QuorumCertificate, Timeout,
    TimeoutCertificate, Vote, VoteError,
};

/// Most blocks whose parent is unknown a node keeps while it catches up.
const MAX_ORPHAN_BLOCKS: usize = 64;
/// Most unknown blocks a node keeps early votes for.
const MAX_ORPHAN_VOTE_BLOCKS: usize = 64;
/// Most bytes of committed blocks in one sync response (at least one block is always sent).
const MAX_SYNC_BYTES: usize = 8 * 1024 * 1024;

/// How a node is set up.
pub struct NodeConfig {
    /// The network's genesis.
    pub genesis: Genesis,
    /// This node's identity (a member of `genesis`).
    pub identity: Identity,
    /// What the node judges blocks and transactions by: the ledger rules under the network
    /// key ([`NodeConfig::new`]), or consensus only ([`NodeConfig::consensus_only`]).
    pub judging: Judging,
    /// Checks transaction signatures (default [`BatchVerifier`]: all of a block's signatures in
    /// one batch); the application may supply a parallel one.
    pub verifier: Box<dyn TxVerifier + Send>,
    /// How long the miner waits for contributors' block signatures before it drops their
    /// transactions and re-signs (default: genesis `gather_ms`). Like the gather window, it is
    /// backed off with the round timeout and widened after late answers (`docs/protocol.md`
    /// §4).
    pub sign_timeout_ms: u64,
    /// How many times a miner drops silent contributors and asks again before it proposes a
    /// block of its own transactions only (default 2).
    pub max_sign_retries: u32,
    /// Most pending transactions this node holds (default 100,000).
    pub max_mempool: usize,
    /// The round timeout doubles for every round since the last certified block, up to
    /// `2^max_backoff_exponent` times the genesis `round_timeout_ms` (default 3). The miner's
    /// gather and signature windows back off with it.
    pub max_backoff_exponent: u32,
}

/// What a node judges blocks and transactions by.
#[non_exhaustive]
pub enum Judging {
    /// Every ledger rule (consent, erasure, key releases, research logs, duplicates...), under
    /// the network key that opens transaction bodies: what every member of a network runs.
    LedgerRules(NetworkKey),
    /// Consensus only: structure, signatures, elections, certificates and replays; no ledger
    /// rules, and transaction bodies are never opened. For consensus tests and simulations. A
    /// validator set up this way votes for blocks that break patients' consents: never run one
    /// in a network.
    ConsensusOnly,
}

impl NodeConfig {
    /// A member's configuration with the defaults above: it judges by the ledger rules under
    /// `network`, the network key.
    pub fn new(genesis: Genesis, identity: Identity, network: NetworkKey) -> Self {
        Self::with(genesis, identity, Judging::LedgerRules(network))
    }

    /// A configuration that judges by consensus only ([`Judging::ConsensusOnly`]): for
    /// consensus tests and simulations, never for a member of a network.
    pub fn consensus_only(genesis: Genesis, identity: Identity) -> Self {
        Self::with(genesis, identity, Judging::ConsensusOnly)
    }

    fn with(genesis: Genesis, identity: Identity, judging: Judging) -> Self {
        let sign_timeout_ms = genesis.timing.gather_ms;
        Self {
            genesis,
            identity,
            judging,
            verifier: Box::new(BatchVerifier),
            sign_timeout_ms,
            max_sign_retries: 2,
            max_mempool: 100_000,
            max_backoff_exponent: 3,
        }
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("genesis", &self.genesis)
            .field("identity", &self.identity)
            .field(
                "ledger_rules",
                &matches!(self.judging, Judging::LedgerRules(_)),
            )
            .field("sign_timeout_ms", &self.sign_timeout_ms)
            .field("max_sign_retries", &self.max_sign_retries)
            .field("max_mempool", &self.max_mempool)
            .finish_non_exhaustive()
    }
}

/// What a validator must keep on durable storage besides its committed blocks, so that across
/// a restart it never votes twice in one round and never reports a lower certified round in a
/// timeout than it knew when it voted. Persist [`Node::safety_state`] before sending any
/// message produced by the same call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SafetyState {
    /// The highest round this node voted in or timed out.
    pub highest_voted_round: u64,
    /// The highest certified block this node knew.
    pub high_qc: Option<CertifiedHeader>,
}

/// Format version of an encoded [`SafetyState`] and [`DurableState`].
pub const SAFETY_STATE_VERSION: u8 = 1;

/// Everything a validator keeps durable beside its committed blocks
/// ([`Node::durable_state`]): its [`SafetyState`], and the uncommitted blocks from its committed
/// head to the block of its highest certificate. A quorum voted for that block, but in a
/// one-member network (or with every other member down) no one else may hold it: without it a
/// restarted node could never extend its own certificate. Save it before sending any message
/// produced by the same call; give it back with [`Node::restore`] and
/// [`Node::resume_pending`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DurableState {
    /// The voting state.
    pub safety: SafetyState,
    /// The certified, uncommitted blocks, oldest first.
    pub pending: Vec<Block>,
}

impl Encode for DurableState {
    fn encode_to(&self, out: &mut Vec<u8>) {
        use crate::encoding::Writer;
        self.safety.encode_to(out);
        out.put_list(&self.pending);
    }
}

impl Decode for DurableState {
    fn decode_from(r: &mut crate::encoding::Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            safety: SafetyState::decode_from(r)?,
            pending: r.list("durable pending blocks", MAX_SYNC_BLOCKS, 1)?,
        })
    }
}

impl Encode for SafetyState {
    fn encode_to(&self, out: &mut Vec<u8>) {
        use crate::encoding::Writer;
        out.put_u8(SAFETY_STATE_VERSION);
        out.put_u64(self.highest_voted_round);
        out.put_option(self.high_qc.as_ref());
    }
}

impl Decode for SafetyState {
    fn decode_from(r: &mut crate::encoding::Reader<'_>) -> Result<Self, DecodeError> {
        r.version("safety state", SAFETY_STATE_VERSION)?;
        Ok(Self {
            highest_voted_round: r.u64()?,
            high_qc: r.option("safety state certificate")?,
        })
    }
}

/// A node could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The identity is not a member of the genesis.
    #[error("this identity is not a member of the network")]
    NotAMember,
    /// The identity's VRF key could not be derived.
    #[error("election key: {0}")]
    Election(#[from] ElectionError),
    /// The identity's VRF key is not the one genesis registers.
    #[error("the identity's VRF key differs from the one in genesis")]
    VrfKeyMismatch,
}

/// A node could not be restored from its committed blocks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] NodeError),
    /// A stored block does not validate.
    #[error("stored block at height {height} is invalid: {error}")]
    InvalidBlock {
        /// The height.
        height: u64,
        /// Why.
        error: InvalidBlock,
    },
    /// The stored head proof does not prove the last block.
    #[error("stored head proof does not hold: {0}")]
    CommitProof(#[from] CommitProofError),
    /// The committed chain's source could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The source's head has no commit proof.
    #[error("the stored head has no commit proof")]
    MissingProof,
}

/// A submitted transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The transaction's contributor is another node (a node contributes only its own
    /// transactions, since it must sign the block that holds them).
    #[error("transaction is contributed by {0}, not by this node")]
    ForeignContributor(VerifyKey),
    /// The contributor's signature does not verify strictly.
    #[error("transaction signature does not verify")]
    BadSignature,
    /// The body does not open under the network key or fails its checks.
    #[error("transaction body is invalid: {0}")]
    BadBody(TxError),
    /// The transaction is for another network, or lacks its payload
    /// ([`Transaction::check_fresh`]).
    #[error("transaction is not acceptable here: {0}")]
    NotFresh(TxError),
    /// The transaction is already pending or in an uncommitted block.
    #[error("transaction {0} is already pending")]
    Duplicate(TxId),
    /// The transaction is already committed.
    #[error("transaction {0} is already committed")]
    AlreadyCommitted(TxId),
    /// The committed state could not be read to tell whether the transaction is committed
    /// (nothing was queued; submit again).
    #[error(transparent)]
    State(StateError),
    /// The mempool is full.
    #[error("the mempool is full ({0} transactions)")]
    MempoolFull(usize),
    /// The transaction breaks a ledger rule against the committed state (a key release no
    /// consent permits, a revocation by someone else, ...): the rule, named locally; its
    /// coarse wire code is [`RuleError::reason`].
    #[error("transaction breaks a ledger rule: {0}")]
    Rejected(RuleError),
    /// The transaction carries a secure-index entry but was submitted without its
    /// [`IndexMaterial`] (use [`Node::submit_indexed`]): the node could not place the record
    /// in a block's filter.
    #[error("an indexed transaction needs its index material (Node::submit_indexed)")]
    MissingIndexMaterial,
    /// The index material does not fit the transaction: the entry does not decode, a trapdoor
    /// does not match it, the record id is not the body's, or the transaction has no entry.
    #[error("the index material does not fit the transaction: {0}")]
    BadIndexMaterial(&'static str),
}

/// What a node needs to place one of its records in a block's secure-index filter: the
/// record's id and the trapdoors its index entry was built from (the writer's, see
/// `docs/secure-index.md` §10). Held only while the transaction is pending; the trapdoors are
/// zeroized on drop and never printed.
#[derive(Clone)]
pub struct IndexMaterial {
    /// The record the entry indexes (the `RecordAdded` body's record id).
    pub record_id: RecordId,
    /// The trapdoors the entry was built from.
    pub trapdoors: Vec<Trapdoor>,
}

/// A pending indexed transaction's material, checked against its entry at admission.
struct Indexing {
    id: TxId,
    record: IndexedRecord,
    trapdoors: Vec<Trapdoor>,
}

impl fmt::Debug for IndexMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexMaterial")
            .field("record_id", &self.record_id)
            .field("trapdoors", &self.trapdoors.len())
            .finish()
    }
}

/// Why a received message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DropReason {
    /// The bytes do not decode as a [`Message`].
    #[error("malformed message: {0}")]
    Malformed(DecodeError),
    /// The sender is not a member of the network.
    #[error("the sender is not a member of the network")]
    UnknownSender,
    /// The message names another chain.
    #[error("the message belongs to another chain")]
    WrongChain,
    /// A proposed or synced block is invalid.
    #[error("invalid block: {0}")]
    InvalidBlock(InvalidReason),
    /// A vote does not verify.
    #[error("bad vote: {0}")]
    BadVote(VoteError),
    /// A vote names the wrong previous block.
    #[error("the vote's previous block is not the block's parent")]
    VoteParentMismatch,
    /// A timeout does not verify.
    #[error("bad timeout: {0}")]
    BadTimeout(VoteError),
    /// A quorum or timeout certificate does not verify or does not match what it claims.
    #[error("bad certificate: {0}")]
    BadCertificate(VoteError),
    /// A commit proof does not hold.
    #[error("bad commit proof: {0}")]
    BadCommitProof(CommitProofError),
    /// A gather or sign request comes from a node that is not the elected miner.
    #[error("the sender is not the elected miner of that round")]
    NotMiner,
    /// The sender is not the node the message speaks for.
    #[error("the sender is not the node the message speaks for")]
    SenderMismatch,
    /// A contributor's election ticket does not verify.
    #[error("the contributor's election ticket does not verify")]
    BadTicket,
    /// A contributed transaction does not verify.
    #[error("a contributed transaction is invalid: {0}")]
    BadTransaction(TxError),
    /// A contribution holds a transaction of another contributor.
    #[error("a contribution holds another node's transaction")]
    ForeignTransaction,
    /// A draft to sign does not check out.
    #[error("the draft to sign is not acceptable: {0}")]
    BadDraft(&'static str),
    /// A contributor's block signature does not verify.
    #[error("the contributor's block signature does not verify")]
    BadContributorSignature,
    /// A contributor's filter segment is missing, superfluous, or does not fit its records.
    #[error("the contributor's filter segment does not fit its records")]
    BadFilterSegment,
    /// The message is for a round or height this node has left behind.
    #[error("the message is stale")]
    Stale,
    /// The message is not expected in this node's state (no such draft, no gather open, ...).
    #[error("the message is not expected now")]
    Unexpected,
    /// A buffer for out-of-order input is full.
    #[error("the buffer for out-of-order messages is full")]
    BufferFull,
    /// The committed state could not be read to judge the message (not a verdict on it: it
    /// may come again).
    #[error(transparent)]
    State(StateError),
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// Every other member node.
    All,
    /// One node.
    Node(VerifyKey),
}

/// Two different blocks signed by one miner for one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalEquivocation {
    /// The first block's header.
    pub first: BlockHeader,
    /// The miner's signature over the first block's hash.
    pub first_signature: Signature,
    /// The second block's header.
    pub second: BlockHeader,
    /// The miner's signature over the second block's hash.
    pub second_signature: Signature,
}

impl ProposalEquivocation {
    /// Checks the evidence: one trusted miner signed two different blocks of one round.
    ///
    /// # Errors
    /// [`EvidenceError::DifferentVoters`] for two miners, [`EvidenceError::Vote`] for a signature
    /// that does not verify or an untrusted miner, [`EvidenceError::NoConflict`] for one block,
    /// [`EvidenceError::DifferentSlot`] for two rounds.
    pub fn verify(&self, genesis: &Genesis) -> Result<VerifyKey, EvidenceError> {
        let miner = self.first.miner;
        if self.second.miner != miner {
            return Err(EvidenceError::DifferentVoters);
        }
        if !genesis.is_validator(&miner) {
            return Err(VoteError::UntrustedVoter(miner).into());
        }
        let (a, b) = (self.first.hash(), self.second.hash());
        if a == b {
            return Err(EvidenceError::NoConflict);
        }
        if self.first.round != self.second.round || self.first.chain != self.second.chain {
            return Err(EvidenceError::DifferentSlot);
        }
        for (h, s) in [(a, &self.first_signature), (b, &self.second_signature)] {
            miner
                .verify(&genesis.chain_id(), domain::BLOCK_SIG, h.as_byte_array(), s)
                .map_err(|_| VoteError::BadSignature(miner))?;
        }
        Ok(miner)
    }
}

/// Verifiable proof of misbehaviour by a validator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Evidence {
    /// A validator voted for two blocks of one height and round.
    Votes(Box<EquivocationEvidence>),
    /// A miner proposed two blocks in one round.
    Proposals(Box<ProposalEquivocation>),
}

/// What the node asks its embedding application to do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Output {
    /// Send these bytes (an encoded [`Message`]).
    Send {
        /// To whom.
        to: Recipient,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// A block is committed (outputs come in height order). `proof` proves this block or a
    /// descendant committed in the same step (the block is its ancestor).
    Committed {
        /// The block.
        block: CheckedBlock,
        /// The commit proof of the highest block committed in the same step.
        proof: CommitProof,
    },
    /// A received message was dropped.
    Dropped {
        /// The sender.
        from: VerifyKey,
        /// Why.
        reason: DropReason,
    },
    /// Evidence of equivocation.
    Evidence(Evidence),
    /// One of this node's own pending transactions was dropped from its mempool: the ledger
    /// rules reject it on top of the chain it would have extended (an access log for an
    /// unknown record, a key release no consent permits, ...), or its time no longer fits
    /// the block's. It is not gathered again.
    Refused {
        /// The transaction.
        id: TxId,
        /// The rule it breaks, named (validators would vote its coarse wire code,
        /// [`RuleError::reason`]).
        reason: RuleError,
    },
}

/// The miner's progress in its round.
enum Phase {
    /// Collecting contributions until `deadline`.
    Gathering { deadline: u64 },
    /// Nothing to propose; woken by a contribution or a submission.
    Idle,
    /// Waiting for contributors' signatures over `draft`.
    Signing {
        draft: BlockDraft,
        hash: BlockHash,
        waiting: BTreeSet<VerifyKey>,
        sigs: Vec<(VerifyKey, Signature)>,
        /// Filter segments received, by contributor.
        segments: Vec<(VerifyKey, FilterSegment)>,
        deadline: u64,
    },
    /// Proposed (or gave up).
    Done,
}

struct Mining {
    round: u64,
    parent: ChainTip,
    parent_qc: QuorumCertificate,
    tc: Option<TimeoutCertificate>,
    ticket: Contributor,
    contributions: BTreeMap<VerifyKey, (Contributor, Vec<Transaction>)>,
    gathered: HashSet<TxId>,
    excluded: BTreeSet<VerifyKey>,
    attempts: u32,
    phase: Phase,
    /// When the gather opened.
    opened: u64,
    /// The gather window it opened with.
    window: u64,
    /// How long after `opened` the last contribution taken from another node came.
    slowest: u64,
    /// A contribution or signature for this round came after its window had closed.
    late: bool,
}

/// What a miner remembers of the last round it mined, to recognise contributions for it that
/// come after it ended.
struct LastMined {
    round: u64,
    parent: BlockHash,
    /// Contributors it heard from in time (or dropped): their copies are not late.
    heard: BTreeSet<VerifyKey>,
    late: bool,
}

/// A contributor's view of the current gather.
struct Gather {
    round: u64,
    parent: BlockHash,
    miner: VerifyKey,
    ticket: Contributor,
    /// Leaves of the transactions sent (`None` until a contribution is sent).
    sent: Option<Vec<[u8; 32]>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Proposal,
    Sync,
}

/// Rejects transactions already committed or in an uncommitted ancestor.
struct ReplayGuard<'a> {
    committed: &'a Committed,
    ancestors: &'a HashSet<TxId>,
    /// The committed state could not be read (the block was not judged).
    state_error: Option<StateError>,
}

impl TxRules for ReplayGuard<'_> {
    fn check(&mut self, _ctx: &TxContext, tx: &VerifiedTx) -> Result<(), InvalidReason> {
        let id = tx.id();
        if self.ancestors.contains(&id) {
            return Err(InvalidReason::DuplicateTransaction);
        }
        match self.committed.contains_tx(&id) {
            Ok(false) => Ok(()),
            Ok(true) => Err(InvalidReason::DuplicateTransaction),
            Err(e) => {
                self.state_error = Some(e);
                Err(InvalidReason::RuleViolation)
            }
        }
    }
}

/// Answers from the node's cache of verified transactions, and sends the rest to the
/// application's verifier.
struct CachingVerifier<'a> {
    cache: &'a HashMap<TxId, VerifiedTx>,
    inner: &'a mut dyn TxVerifier,
    fresh: Vec<VerifiedTx>,
}

impl TxVerifier for CachingVerifier<'_> {
    fn verify_all(&mut self, txs: Vec<Transaction>) -> Vec<Result<VerifiedTx, TxError>> {
        let mut out: Vec<Option<Result<VerifiedTx, TxError>>> = Vec::with_capacity(txs.len());
        let mut misses = Vec::new();
        let mut miss_at = Vec::new();
        for tx in txs {
            match self.cache.get(&tx.id()) {
                Some(v) if v.signature() == tx.signature() => out.push(Some(Ok(v.clone()))),
                _ => {
                    miss_at.push(out.len());
                    out.push(None);
                    misses.push(tx);
                }
            }
        }
        if !misses.is_empty() {
            let n = misses.len();
            let verdicts = self.inner.verify_all(misses);
            if verdicts.len() != n {
                return Vec::new(); // the caller sees a length mismatch and rejects
            }
            for (i, v) in miss_at.into_iter().zip(verdicts) {
                if let Ok(ok) = &v {
                    self.fresh.push(ok.clone());
                }
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(v);
                }
            }
        }
        out.into_iter()
            .map(|v| v.unwrap_or(Err(TxError::BadSignature)))
            .collect()
    }
}

/// A consensus node. See the module docs of [`crate::protocol`].
pub struct Node {
    genesis: Genesis,
    identity: Identity,
    me: VerifyKey,
    vrf: VrfSecret,
    validator: bool,
    network: Option<NetworkKey>,
    verifier: Box<dyn TxVerifier + Send>,
    sign_timeout_ms: u64,
    max_sign_retries: u32,
    max_mempool: usize,
    max_backoff_exponent: u32,

    // Committed state: read from the host's source, with the blocks it does not hold yet laid
    // on top, or kept in memory (`committed.rs`). With the network key every block is
    // validated with the consent rules over it, not only against replays.
    chain: Committed,
    committed_tip: ChainTip,
    head_proof: Option<CommitProof>,
    /// The ledger effects of validated, uncommitted blocks.
    effects: HashMap<BlockHash, BlockEffects>,

    // Validated, uncommitted blocks (descendants of the committed head).
    tree: HashMap<BlockHash, CheckedBlock>,
    certs: HashMap<BlockHash, CertifiedHeader>,
    pub(super) high_qc: Option<CertifiedHeader>,
    orphans: BTreeMap<BlockHash, Vec<Block>>,
    orphan_count: usize,

    // Rounds.
    round: u64,
    round_deadline: u64,
    highest_voted_round: u64,
    invalid_voted_round: u64,
    pub(super) last_tc: Option<TimeoutCertificate>,
    my_timeout: Option<(Timeout, Option<CertifiedHeader>)>,
    timeouts: BTreeMap<VerifyKey, Timeout>,

    // Votes.
    votes: HashMap<BlockHash, BTreeMap<VerifyKey, Vote>>,
    orphan_votes: BTreeMap<BlockHash, BTreeMap<VerifyKey, Vote>>,
    orphan_vote_order: VecDeque<BlockHash>,
    vote_slots: BTreeMap<(VerifyKey, u64), (Vote, BlockHeader)>,
    reported: BTreeSet<(VerifyKey, u64)>,
    reported_proposals: BTreeSet<(u64, VerifyKey)>,
    proposals: BTreeMap<(u64, VerifyKey), (BlockHeader, Signature)>,

    // Transactions.
    mempool_order: Vec<TxId>,
    mempool: HashMap<TxId, VerifiedTx>,
    verified: HashMap<TxId, VerifiedTx>,
    /// Index material of this node's pending indexed transactions, by Merkle leaf (computed
    /// once, at admission: SignBlock names transactions by leaf).
    indexing: HashMap<[u8; 32], Indexing>,

    mining: Option<Mining>,
    /// Widens this node's gather and signature windows as a miner: raised (up to
    /// `max_backoff_exponent`) by each round it mined in which a contributor's answer came after
    /// the window had closed, lowered by each one it proposed in with every answer on time and
    /// every contribution within the first half of the gather window.
    lateness: u32,
    last_mined: Option<LastMined>,
    gather: Option<Gather>,
    sync_until: Option<u64>,
    /// Turns through a certificate's signers when asking for its block (so a signer that does
    /// not answer is not asked again and again).
    sync_turn: usize,
    outputs: VecDeque<Output>,
    /// The ledger effects of committed blocks whose [`Output::Committed`] is still queued.
    committed_effects: HashMap<BlockHash, BlockEffects>,
    /// The effects of the block of the last [`Output::Committed`] polled (see
    /// [`Node::take_committed_effects`]).
    last_effects: Option<(BlockHash, BlockEffects)>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("key", &self.me)
            .field("round", &self.round)
            .field("committed_height", &self.committed_tip.height)
            .field("mempool", &self.mempool.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node at genesis.
    ///
    /// # Errors
    /// A [`NodeError`] when the identity is not a member or its VRF key does not match.
    pub fn new(config: NodeConfig, now_ms: u64) -> Result<Self, NodeError> {
        let mut node = Self::blank(config, now_ms)?;
        node.try_start_mining(now_ms);
        Ok(node)
    }

    fn blank(config: NodeConfig, now_ms: u64) -> Result<Self, NodeError> {
        let NodeConfig {
            genesis,
            identity,
            judging,
            verifier,
            sign_timeout_ms,
            max_sign_retries,
            max_mempool,
            max_backoff_exponent,
        } = config;
        let network = match judging {
            Judging::LedgerRules(key) => Some(key),
            Judging::ConsensusOnly => None,
        };
        let me = identity.verify_key();
        let member = genesis.member(&me).ok_or(NodeError::NotAMember)?;
        let vrf = VrfSecret::derive(&identity)?;
        if vrf.public() != member.vrf {
            return Err(NodeError::VrfKeyMismatch);
        }
        let validator = member.validator;
        let chain = Committed::memory(network.is_some());
        let committed_tip = ChainTip::genesis(&genesis);
        let mut node = Self {
            genesis,
            identity,
            me,
            vrf,
            validator,
            network,
            verifier,
            sign_timeout_ms: sign_timeout_ms.max(1),
            max_sign_retries,
            max_mempool,
            max_backoff_exponent: max_backoff_exponent.min(16),
            chain,
            committed_tip,
            effects: HashMap::new(),
            head_proof: None,
            tree: HashMap::new(),
            certs: HashMap::new(),
            high_qc: None,
            orphans: BTreeMap::new(),
            orphan_count: 0,
            round: 1,
            round_deadline: 0,
            highest_voted_round: 0,
            invalid_voted_round: 0,
            last_tc: None,
            my_timeout: None,
            timeouts: BTreeMap::new(),
            votes: HashMap::new(),
            orphan_votes: BTreeMap::new(),
            orphan_vote_order: VecDeque::new(),
            vote_slots: BTreeMap::new(),
            reported: BTreeSet::new(),
            reported_proposals: BTreeSet::new(),
            proposals: BTreeMap::new(),
            mempool_order: Vec::new(),
            mempool: HashMap::new(),
            verified: HashMap::new(),
            indexing: HashMap::new(),
            mining: None,
            lateness: 0,
            last_mined: None,
            gather: None,
            sync_until: None,
            sync_turn: 0,
            outputs: VecDeque::new(),
            committed_effects: HashMap::new(),
            last_effects: None,
        };
        node.round_deadline = now_ms.saturating_add(node.round_timeout());
        Ok(node)
    }

    /// A node that resumes from its own committed blocks (heights 1, 2, ... in order), the proof
    /// that the last of them is committed, and its [`SafetyState`]. Every block is validated
    /// again from genesis, and the proof is checked. The node then asks its peers for what it
    /// missed.
    ///
    /// # Errors
    /// A [`RestoreError`].
    pub fn restore(
        config: NodeConfig,
        committed_blocks: Vec<Block>,
        head_proof: Option<CommitProof>,
        safety: SafetyState,
        now_ms: u64,
    ) -> Result<Self, RestoreError> {
        let mut node = Self::blank(config, now_ms)?;
        for block in committed_blocks {
            let height = node.committed_tip.height + 1;
            let empty = HashSet::new();
            let mut guard = ReplayGuard {
                committed: &node.chain,
                ancestors: &empty,
                state_error: None,
            };
            let checked = block
                .validate_with(
                    &node.genesis,
                    &node.committed_tip,
                    &mut guard,
                    node.verifier.as_mut(),
                )
                .map_err(|error| RestoreError::InvalidBlock { height, error })?;
            node.append_committed(checked);
        }
        node.resume_at(head_proof, safety, now_ms)?;
        node.request_sync(Recipient::All, now_ms);
        node.try_start_mining(now_ms);
        Ok(node)
    }

    /// A node that reads its committed chain from `source`, the store its host keeps (see
    /// [`CommittedChain`]), instead of keeping it in memory: it resumes at the source's head,
    /// whose commit proof is checked, with its [`SafetyState`], without validating the stored
    /// blocks again (the store checked its head when it opened; its own full check, such as
    /// `medchain_store::Ledger::verify`, re-validates the chain). Only the blocks it commits that
    /// the source does not hold yet, and a few recent ones, stay in memory: the host appends
    /// what the node commits, and the node drops a block's effects once the source holds it.
    /// A node resumed above genesis, or with a safety state, asks its peers for what it missed.
    ///
    /// # Errors
    /// A [`RestoreError`]: the configuration, a source that cannot be read, a head without a
    /// proof, a proof that does not hold.
    pub fn resume(
        config: NodeConfig,
        source: Box<dyn CommittedChain>,
        safety: SafetyState,
        now_ms: u64,
    ) -> Result<Self, RestoreError> {
        let mut node = Self::blank(config, now_ms)?;
        node.chain = Committed::over(source);
        let head = node.chain.source().head()?;
        let fresh = head.is_none() && safety == SafetyState::default();
        let proof = match head {
            Some(head) => {
                node.committed_tip = head.tip;
                Some(head.proof.ok_or(RestoreError::MissingProof)?)
            }
            None => None,
        };
        node.resume_at(proof, safety, now_ms)?;
        if !fresh {
            node.request_sync(Recipient::All, now_ms);
        }
        node.try_start_mining(now_ms);
        Ok(node)
    }

    /// Takes up the committed head's proof and the safety state, and enters the round after
    /// the highest certificate.
    fn resume_at(
        &mut self,
        head_proof: Option<CommitProof>,
        safety: SafetyState,
        now_ms: u64,
    ) -> Result<(), RestoreError> {
        let node = self;
        if let Some(proof) = head_proof {
            proof.verify(
                &node.genesis,
                &node.committed_tip.hash,
                node.committed_tip.round,
            )?;
            let cert = CertifiedHeader {
                header: proof.child.clone(),
                qc: proof.child_qc.clone(),
            };
            node.certs.insert(cert.header.hash(), cert.clone());
            node.high_qc = Some(cert);
            node.head_proof = Some(proof);
        }
        node.highest_voted_round = safety.highest_voted_round;
        node.invalid_voted_round = safety.highest_voted_round;
        if let Some(c) = safety.high_qc {
            let hash = c.header.hash();
            let valid = c.header.chain == node.genesis.hash()
                && c.qc.verify(&node.genesis, &c.header.prev, &hash).is_ok();
            if valid && c.header.round > node.high_qc_round() {
                if c.header.height > node.committed_tip.height {
                    node.certs.insert(hash, c.clone());
                }
                node.high_qc = Some(c);
            }
        }
        // Resume in the round after the highest certificate: the rounds this node voted or
        // timed out in are not voted in again (`highest_voted_round`), but it may time them
        // out again, so that the others can form a timeout certificate with it.
        let round = node.high_qc_round().max(node.committed_tip.round) + 1;
        node.round = round;
        node.round_deadline = now_ms.saturating_add(node.round_timeout());
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Accessors.

    /// This node's signing key.
    pub fn key(&self) -> VerifyKey {
        self.me
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Whether this node is a trusted validator.
    pub fn is_validator(&self) -> bool {
        self.validator
    }

    /// Height of the last committed block (0 at genesis).
    pub fn committed_height(&self) -> u64 {
        self.committed_tip.height
    }

    /// Hash of the last committed block (the genesis hash at genesis).
    pub fn committed_head(&self) -> BlockHash {
        self.committed_tip.hash
    }

    /// The committed blocks this node holds in memory, oldest first, the last at the
    /// committed head: every one (heights 1, 2, ...) for a node that keeps its chain in memory
    /// ([`Node::new`], [`Node::restore`]); for a node over a [`CommittedChain`]
    /// ([`Node::resume`]) the recent ones only (those its source does not hold yet, and up to
    /// [`RECENT_COMMITTED_BLOCKS`](super::RECENT_COMMITTED_BLOCKS) it does; none right after
    /// the resume) — read older ones from the source.
    pub fn committed_blocks(&self) -> &[CheckedBlock] {
        self.chain.blocks()
    }

    /// The proof that the committed head is committed (`None` at genesis or after a restore
    /// without one).
    pub fn head_proof(&self) -> Option<&CommitProof> {
        self.head_proof.as_ref()
    }

    /// Whether the transaction `id` is committed (`false` when the committed chain's source
    /// cannot be read).
    pub fn is_committed(&self, id: &TxId) -> bool {
        self.chain.contains_tx(id).unwrap_or(false)
    }

    /// How many committed blocks the source does not hold yet.
    #[cfg(test)]
    pub(super) fn lagging_blocks(&self) -> usize {
        self.chain.lagging()
    }

    /// The current round.
    pub fn current_round(&self) -> u64 {
        self.round
    }

    /// The round of the highest certified block this node knows (0 for genesis).
    pub fn high_qc_round(&self) -> u64 {
        self.high_qc.as_ref().map_or(0, |c| c.header.round)
    }

    /// Pending transactions of this node.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// What must be persisted to vote safely after a restart.
    pub fn safety_state(&self) -> SafetyState {
        SafetyState {
            highest_voted_round: self.highest_voted_round,
            high_qc: self.high_qc.clone(),
        }
    }

    /// The tip made by a known block (committed head or validated uncommitted block): what a
    /// child of it is validated against.
    pub fn block_tip(&self, hash: &BlockHash) -> Option<ChainTip> {
        if *hash == self.committed_tip.hash {
            Some(self.committed_tip.clone())
        } else {
            self.tree.get(hash).map(CheckedBlock::tip)
        }
    }

    /// What this node must keep durable beside its committed blocks ([`DurableState`]).
    pub fn durable_state(&self) -> DurableState {
        DurableState {
            safety: self.safety_state(),
            pending: self.certified_pending_blocks(),
        }
    }

    /// The hashes of [`DurableState::pending`], oldest first: a cheap way to tell whether the
    /// durable state changed without copying its blocks.
    pub fn durable_pending_hashes(&self) -> Vec<BlockHash> {
        self.high_qc
            .as_ref()
            .and_then(|c| self.ancestor_chain(&c.header.hash()))
            .unwrap_or_default()
    }

    /// The uncommitted blocks from the committed head to the block of this node's highest
    /// certificate, oldest first (empty when that block is committed or not held).
    fn certified_pending_blocks(&self) -> Vec<Block> {
        self.durable_pending_hashes()
            .iter()
            .filter_map(|h| self.tree.get(h))
            .map(|b| b.block().clone())
            .collect()
    }

    /// Gives a node made by [`Node::restore`] the certified, uncommitted blocks it saved
    /// before it stopped ([`DurableState::pending`]), oldest first. Each is validated as a
    /// block received by sync (over the committed state and the ones before it; never voted
    /// on again); the first that does not validate, and those after it, are dropped
    /// ([`Output::Dropped`] naming this node). Then the node mines if it is its turn.
    pub fn resume_pending(&mut self, blocks: Vec<Block>, now_ms: u64) {
        self.chain.refresh();
        let me = self.me;
        for b in blocks {
            if !self.accept_block(me, b, now_ms, Via::Sync) {
                break;
            }
        }
        self.try_start_mining(now_ms);
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if let Some(Output::Committed { block, .. }) = &out {
            let hash = block.hash();
            self.last_effects = self.committed_effects.remove(&hash).map(|e| (hash, e));
        }
        out
    }

    /// The ledger effects of the block of the [`Output::Committed`] just polled, as this node
    /// computed them when it validated the block over its committed state (only a node with
    /// the network key computes them). A store that holds exactly the blocks this node
    /// committed appends the block with them without validating it a second time
    /// (`medchain_store::Ledger::append_checked`). `None` once taken, for another block, or
    /// when the node has none; then validate the block again.
    pub fn take_committed_effects(&mut self, block: &BlockHash) -> Option<BlockEffects> {
        match self.last_effects.take() {
            Some((hash, effects)) if hash == *block => Some(effects),
            other => {
                self.last_effects = other;
                None
            }
        }
    }

    /// This node's identity (the member it runs as).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// When [`Node::handle_timeout`] should next be called (`None`: only on input).
    pub fn next_deadline(&self) -> Option<u64> {
        let mut d = if self.validator {
            Some(self.round_deadline)
        } else {
            None
        };
        if let Some(m) = &self.mining {
            let md = match &m.phase {
                Phase::Gathering { deadline } | Phase::Signing { deadline, .. } => Some(*deadline),
                Phase::Idle | Phase::Done => None,
            };
            d = match (d, md) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        d
    }

    // ----------------------------------------------------------------------------------------
    // Inputs.

    /// Submits a transaction contributed by this node: strictly verifies it (and opens its body
    /// when the node has the network key), checks it is neither pending nor committed, and
    /// queues it for the next block.
    ///
    /// # Errors
    /// A [`SubmitError`].
    ///
    /// A transaction that carries a secure-index entry must come through
    /// [`submit_indexed`](Self::submit_indexed) instead.
    pub fn submit(&mut self, tx: Transaction, now_ms: u64) -> Result<TxId, SubmitError> {
        self.submit_batch(vec![tx], now_ms)
            .pop()
            .unwrap_or(Err(SubmitError::BadSignature))
    }

    /// Submits a transaction with the material that places its record in the secure-index
    /// filter of the block that takes it (the node builds its filter segment when it signs that
    /// block). `material` is `None` for a transaction without an index entry.
    ///
    /// # Errors
    /// A [`SubmitError`]; [`SubmitError::BadIndexMaterial`] when the material does not fit.
    pub fn submit_indexed(
        &mut self,
        tx: Transaction,
        material: Option<IndexMaterial>,
        now_ms: u64,
    ) -> Result<TxId, SubmitError> {
        self.submit_batch_indexed(vec![(tx, material)], now_ms)
            .pop()
            .unwrap_or(Err(SubmitError::BadSignature))
    }

    /// Submits many transactions at once, so the application's [`TxVerifier`] can check their
    /// signatures in parallel. One result per transaction, in order. Indexed transactions need
    /// [`submit_batch_indexed`](Self::submit_batch_indexed).
    pub fn submit_batch(
        &mut self,
        txs: Vec<Transaction>,
        now_ms: u64,
    ) -> Vec<Result<TxId, SubmitError>> {
        self.submit_batch_indexed(txs.into_iter().map(|t| (t, None)).collect(), now_ms)
    }

    /// [`submit_batch`](Self::submit_batch) with each transaction's [`IndexMaterial`] (`None`
    /// for a transaction without an index entry).
    pub fn submit_batch_indexed(
        &mut self,
        txs: Vec<(Transaction, Option<IndexMaterial>)>,
        now_ms: u64,
    ) -> Vec<Result<TxId, SubmitError>> {
        self.chain.refresh();
        let mut results: Vec<Option<Result<TxId, SubmitError>>> = vec![None; txs.len()];
        let mut to_verify = Vec::new();
        let mut materials = Vec::new();
        let mut at = Vec::new();
        for (i, (tx, material)) in txs.into_iter().enumerate() {
            let id = tx.id();
            let indexed = check_material(&tx, material);
            let early = if *tx.contributor() != self.me {
                Some(SubmitError::ForeignContributor(*tx.contributor()))
            } else if let Err(e) = tx.check_fresh(&self.genesis.chain_id()) {
                Some(SubmitError::NotFresh(e))
            } else if let Err(e) = self.committed_check(&id) {
                Some(e)
            } else if self.mempool.contains_key(&id) {
                Some(SubmitError::Duplicate(id))
            } else {
                indexed.as_ref().err().cloned()
            };
            match (early, results.get_mut(i)) {
                (Some(e), Some(slot)) => *slot = Some(Err(e)),
                _ => {
                    at.push(i);
                    to_verify.push(tx);
                    materials.push(indexed.ok().flatten());
                }
            }
        }
        let n = to_verify.len();
        let verdicts = if n == 0 {
            Vec::new()
        } else {
            self.verifier.verify_all(to_verify)
        };
        let mut added = false;
        if verdicts.len() == n {
            for ((i, verdict), material) in at.into_iter().zip(verdicts).zip(materials) {
                let r = self.admit(verdict, material);
                added |= r.is_ok();
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
        if added {
            self.on_new_pending(now_ms);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(SubmitError::BadSignature)))
            .collect()
    }

    fn admit(
        &mut self,
        verdict: Result<VerifiedTx, TxError>,
        material: Option<(IndexedRecord, Vec<Trapdoor>)>,
    ) -> Result<TxId, SubmitError> {
        let v = verdict.map_err(|_| SubmitError::BadSignature)?;
        let id = v.id();
        if let Some(net) = &self.network {
            let body = v.open_body(net).map_err(SubmitError::BadBody)?;
            if let (Some((record, _)), TxBody::RecordAdded { record_id, .. }) = (&material, &body) {
                if *record_id != record.record_id {
                    return Err(SubmitError::BadIndexMaterial(
                        "the record id is not the transaction's",
                    ));
                }
            }
        }
        if self.mempool.contains_key(&id) {
            return Err(SubmitError::Duplicate(id));
        }
        if self.mempool.len() >= self.max_mempool {
            return Err(SubmitError::MempoolFull(self.mempool.len()));
        }
        if let Some((record, trapdoors)) = material {
            self.indexing.insert(
                tx_leaf(&id, v.signature()),
                Indexing {
                    id,
                    record,
                    trapdoors,
                },
            );
        }
        self.mempool_order.push(id);
        self.verified.insert(id, v.clone());
        self.mempool.insert(id, v);
        Ok(id)
    }

    /// This node's filter segment for a draft: over its records among `indexed_leaves`, with
    /// randomness derived from its own key and the draft (deterministic, unpredictable to
    /// others).
    fn own_segment(
        &self,
        merkle_root: MerkleRoot,
        draft: &BlockHash,
        indexed_leaves: &[[u8; 32]],
    ) -> Result<Option<FilterSegment>, FilterError> {
        let seed = self.identity.sign(
            &self.genesis.chain_id(),
            domain::FILTER_SEED_SIG,
            draft.as_byte_array(),
        );
        let mut rng =
            ChaCha20Rng::from_seed(tagged_hash(domain::FILTER_SEED_SIG, seed.as_byte_array()));
        contributor_segment(
            merkle_root,
            indexed_leaves,
            |leaf| {
                self.indexing
                    .get(leaf)
                    .map(|m| (&m.record, m.trapdoors.as_slice()))
            },
            &mut rng,
        )
    }

    /// Handles an encoded [`Message`] from the member node `from` (authenticated by the
    /// transport). Anything malformed or hostile is dropped with an [`Output::Dropped`].
    pub fn handle_message(&mut self, from: VerifyKey, bytes: &[u8], now_ms: u64) {
        self.chain.refresh();
        if from == self.me {
            return;
        }
        if self.genesis.member(&from).is_none() {
            return self.drop_msg(from, DropReason::UnknownSender);
        }
        let msg = match Message::from_bytes(bytes) {
            Ok(m) => m,
            Err(e) => return self.drop_msg(from, DropReason::Malformed(e)),
        };
        match msg {
            Message::GatherRequest { round, parent } => {
                self.on_gather_request(from, round, parent, now_ms)
            }
            Message::Contribution {
                round,
                parent,
                contributor,
                transactions,
            } => self.on_contribution(from, round, parent, contributor, transactions, now_ms),
            Message::SignRequest {
                round,
                header,
                leaves,
                indexed,
            } => self.on_sign_request(from, round, header, &leaves, &indexed),
            Message::SignResponse {
                round,
                block,
                segment,
                signature,
            } => self.on_sign_response(from, round, block, segment, signature, now_ms),
            Message::Proposal { block } => {
                self.accept_block(from, block, now_ms, Via::Proposal);
            }
            Message::Vote { vote } => self.on_vote(from, vote, now_ms),
            Message::Timeout {
                timeout,
                high_qc,
                last_tc,
            } => self.on_timeout_msg(from, timeout, high_qc, last_tc, now_ms),
            Message::SyncRequest { from_height } => self.on_sync_request(from, from_height),
            Message::SyncResponse {
                blocks,
                head_proof,
                pending,
                high_qc,
            } => self.on_sync_response(from, blocks, head_proof, pending, high_qc, now_ms),
            // The sharing channel is the embedding host's (it holds the records).
            Message::KeyRequest { .. } | Message::KeyResponse { .. } => {
                self.drop_msg(from, DropReason::Unexpected);
            }
        }
    }

    /// Advances timers: the miner's gather and signature deadlines and the round timeout.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.chain.refresh();
        let phase_due = match self.mining.as_ref().map(|m| &m.phase) {
            Some(Phase::Gathering { deadline }) if now_ms >= *deadline => Some(true),
            Some(Phase::Signing { deadline, .. }) if now_ms >= *deadline => Some(false),
            _ => None,
        };
        match phase_due {
            Some(true) => self.assemble(now_ms),
            Some(false) => self.signatures_overdue(now_ms),
            None => {}
        }
        if self.validator && now_ms >= self.round_deadline {
            self.local_timeout(now_ms);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Helpers.

    /// `Err` when `id` is committed, or the committed state cannot tell.
    fn committed_check(&self, id: &TxId) -> Result<(), SubmitError> {
        match self.chain.contains_tx(id) {
            Ok(false) => Ok(()),
            Ok(true) => Err(SubmitError::AlreadyCommitted(*id)),
            Err(e) => Err(SubmitError::State(e)),
        }
    }

    /// Whether `hash` is a committed block (genesis included).
    fn is_committed_block(&self, hash: &BlockHash) -> bool {
        *hash == self.genesis.hash() || self.chain.height_of(hash).is_some()
    }

    fn drop_msg(&mut self, from: VerifyKey, reason: DropReason) {
        self.outputs.push_back(Output::Dropped { from, reason });
    }

    fn send(&mut self, to: Recipient, msg: &Message) {
        self.outputs.push_back(Output::Send {
            to,
            bytes: msg.to_bytes(),
        });
    }

    /// The pacemaker's backoff exponent in the current round: the rounds since the highest
    /// certificate, capped at `max_backoff_exponent`.
    fn backoff_exponent(&self) -> u32 {
        let behind = self
            .round
            .saturating_sub(1)
            .saturating_sub(self.high_qc_round());
        // At most `max_backoff_exponent` (itself at most 16), so the cast and shifts are exact.
        behind.min(u64::from(self.max_backoff_exponent)) as u32
    }

    /// `base` scaled by the pacemaker's backoff (`base · 2^k`).
    fn backed_off(&self, base: u64) -> u64 {
        base.saturating_mul(1u64 << self.backoff_exponent())
    }

    fn round_timeout(&self) -> u64 {
        self.backed_off(self.genesis.timing.round_timeout_ms)
    }

    /// A miner's window of `base` ms: backed off with the round timeout (so that once rounds
    /// fail it outgrows any contributor's round trip), and widened by this node's `lateness`
    /// (so that a contributor too slow for it gets in even while every round is certified) up
    /// to a quarter of the round timeout.
    fn window(&self, base: u64) -> u64 {
        let widened = base
            .saturating_mul(1u64 << self.lateness)
            .min(self.round_timeout() / 4);
        self.backed_off(base).max(widened)
    }

    /// How long the miner gathers: the paper's `T` (`gather_ms`), see [`Self::window`].
    fn gather_window(&self) -> u64 {
        self.window(self.genesis.timing.gather_ms)
    }

    /// How long the miner waits for contributors' signatures, see [`Self::window`].
    fn sign_window(&self) -> u64 {
        self.window(self.sign_timeout_ms)
    }

    /// A contributor answered the round this node is mining after the window had closed: widen
    /// the windows of the rounds it mines next (once per round).
    fn saw_late_answer(&mut self) {
        if let Some(m) = &mut self.mining {
            if !m.late {
                m.late = true;
                self.lateness = (self.lateness + 1).min(self.max_backoff_exponent);
            }
        }
    }

    /// A contribution for the last round this node mined, from a node it had not heard from,
    /// came after that round ended: likewise.
    fn late_for_last_mined(&mut self, from: VerifyKey, round: u64, parent: BlockHash) {
        if let Some(p) = &mut self.last_mined {
            if p.round == round && p.parent == parent && !p.late && !p.heard.contains(&from) {
                p.late = true;
                self.lateness = (self.lateness + 1).min(self.max_backoff_exponent);
            }
        }
    }

    fn header_of(&self, hash: &BlockHash) -> Option<BlockHeader> {
        if let Some(b) = self.tree.get(hash) {
            return Some(b.header().clone());
        }
        self.chain.header_of(hash)
    }

    /// Ids of the transactions in the uncommitted blocks from `parent` back to the committed
    /// head (`None` if `parent` does not lead there).
    fn ancestor_ids(&self, parent: &BlockHash) -> Option<HashSet<TxId>> {
        let mut ids = HashSet::new();
        let mut h = *parent;
        let mut steps = 0usize;
        while h != self.committed_tip.hash {
            let b = self.tree.get(&h)?;
            ids.extend(b.tx_ids().iter().copied());
            h = b.header().prev;
            steps += 1;
            if steps > self.tree.len() {
                return None;
            }
        }
        Some(ids)
    }

    /// The uncommitted blocks from the committed head to `parent`, oldest first (`None` if
    /// `parent` does not lead to the committed head).
    fn ancestor_chain(&self, parent: &BlockHash) -> Option<Vec<BlockHash>> {
        let mut chain = Vec::new();
        let mut h = *parent;
        while h != self.committed_tip.hash {
            let b = self.tree.get(&h)?;
            chain.push(h);
            h = b.header().prev;
            if chain.len() > self.tree.len() {
                return None;
            }
        }
        chain.reverse();
        Some(chain)
    }

    /// Whether this node holds the block of its highest certificate (committed or in the tree).
    fn holds_high_qc_block(&self) -> bool {
        self.high_qc.as_ref().is_none_or(|c| {
            let h = c.header.hash();
            self.tree.contains_key(&h) || self.is_committed_block(&h)
        })
    }

    /// Whether an uncommitted block from `parent` back to the committed head holds
    /// transactions (then a child must be proposed to commit them).
    fn uncommitted_work(&self, parent: &BlockHash) -> bool {
        let mut h = *parent;
        let mut steps = 0usize;
        while h != self.committed_tip.hash && steps <= self.tree.len() {
            match self.tree.get(&h) {
                Some(b) => {
                    if !b.tx_ids().is_empty() {
                        return true;
                    }
                    h = b.header().prev;
                }
                None => return false,
            }
            steps += 1;
        }
        false
    }

    /// Whether a sync request may go out now (at most one per genesis round timeout).
    fn may_sync(&self, now: u64) -> bool {
        !matches!(self.sync_until, Some(t) if now < t)
    }

    fn request_sync(&mut self, to: Recipient, now: u64) {
        if !self.may_sync(now) {
            return;
        }
        self.sync_until = Some(now.saturating_add(self.genesis.timing.round_timeout_ms));
        let msg = Message::SyncRequest {
            from_height: self.committed_tip.height + 1,
        };
        self.send(to, &msg);
    }

    fn on_new_pending(&mut self, now: u64) {
        let deadline = now.saturating_add(self.gather_window());
        if let Some(m) = &mut self.mining {
            if m.round == self.round && matches!(m.phase, Phase::Idle) {
                m.phase = Phase::Gathering { deadline };
            }
        }
        self.send_contribution(now);
    }

    // ----------------------------------------------------------------------------------------
    // Rounds and the pacemaker.

    fn enter_round(&mut self, round: u64, now: u64) {
        if round <= self.round {
            return;
        }
        self.round = round;
        self.round_deadline = now.saturating_add(self.round_timeout());
        if let Some(m) = self.mining.take_if(|m| m.round < round) {
            // A round this node proposed in with every answer on time, and early in the gather
            // window, narrows its windows.
            if !m.late && m.slowest <= m.window / 2 && matches!(m.phase, Phase::Done) {
                self.lateness = self.lateness.saturating_sub(1);
            }
            let heard = m.contributions.keys().chain(&m.excluded).copied().collect();
            self.last_mined = Some(LastMined {
                round: m.round,
                parent: m.parent.hash,
                heard,
                late: m.late,
            });
        }
        self.try_start_mining(now);
    }

    fn try_start_mining(&mut self, now: u64) {
        // A miner never proposes twice in one round, not even across a restart (it voted for
        // its own block, or timed out, in every round it proposed in).
        if !self.validator
            || self.round <= self.highest_voted_round
            || self.mining.as_ref().is_some_and(|m| m.round >= self.round)
        {
            return;
        }
        let round = self.round;
        let (parent_hash, parent_qc) = match &self.high_qc {
            Some(c) => (c.header.hash(), c.qc.clone()),
            None => (self.genesis.hash(), QuorumCertificate::empty()),
        };
        let Some(parent) = self.block_tip(&parent_hash) else {
            if parent_hash != self.genesis.hash() {
                self.request_sync(Recipient::All, now);
            }
            return;
        };
        if parent.height < self.committed_tip.height || round <= parent.round {
            return;
        }
        let tc = if round == parent.round + 1 {
            None
        } else {
            match &self.last_tc {
                Some(tc)
                    if tc.round() == Some(round - 1) && tc.max_high_qc_round() <= parent.round =>
                {
                    Some(tc.clone())
                }
                _ => return,
            }
        };
        let attempt = round - parent.round - 1;
        let validators = self.genesis.validators();
        let Ok(idx) = election::elected(&parent.seed, validators, attempt) else {
            return;
        };
        if validators.get(idx) != Some(&self.me) {
            return;
        }
        let ticket = contributor_ticket(&self.genesis, &parent, &self.identity, &self.vrf);
        let window = self.gather_window();
        self.mining = Some(Mining {
            round,
            parent: parent.clone(),
            parent_qc,
            tc,
            ticket,
            contributions: BTreeMap::new(),
            gathered: HashSet::new(),
            excluded: BTreeSet::new(),
            attempts: 0,
            opened: now,
            window,
            slowest: 0,
            late: false,
            phase: Phase::Gathering {
                deadline: now.saturating_add(window),
            },
        });
        let msg = Message::GatherRequest {
            round,
            parent: parent.hash,
        };
        self.send(Recipient::All, &msg);
    }

    fn local_timeout(&mut self, now: u64) {
        let round = self.round;
        let (timeout, cert) = match &self.my_timeout {
            Some((t, c)) if t.round == round => (t.clone(), c.clone()),
            _ => {
                let t = Timeout::sign(
                    &self.identity,
                    &self.genesis.chain_id(),
                    round,
                    self.high_qc_round(),
                );
                let c = self.high_qc.clone();
                self.highest_voted_round = self.highest_voted_round.max(round);
                self.my_timeout = Some((t.clone(), c.clone()));
                (t, c)
            }
        };
        let last_tc = self
            .last_tc
            .as_ref()
            .filter(|tc| tc.round() == Some(round.saturating_sub(1)))
            .cloned();
        let msg = Message::Timeout {
            timeout: timeout.clone(),
            high_qc: cert,
            last_tc,
        };
        self.send(Recipient::All, &msg);
        self.round_deadline = now.saturating_add(self.round_timeout());
        self.add_timeout(timeout, now);
    }

    fn add_timeout(&mut self, timeout: Timeout, now: u64) {
        let voter = timeout.node_pubkey;
        if self
            .timeouts
            .get(&voter)
            .is_some_and(|t| t.round >= timeout.round)
        {
            return;
        }
        self.timeouts.insert(voter, timeout);
        let round = self.round;
        let same: Vec<&Timeout> = self
            .timeouts
            .values()
            .filter(|t| t.round == round)
            .collect();
        let count = same.len();
        if count >= self.genesis.quorum_size() {
            let tc = TimeoutCertificate::from_timeouts(same, round);
            self.process_tc(tc, now);
        } else if self.validator
            && count > self.genesis.fault_tolerance()
            && self
                .my_timeout
                .as_ref()
                .is_none_or(|(t, _)| t.round != round)
        {
            // f + 1 validators gave up on this round: at least one honest one did, so join them.
            self.local_timeout(now);
        }
    }

    fn process_tc(&mut self, tc: TimeoutCertificate, now: u64) {
        let Some(r) = tc.round() else { return };
        if self.last_tc.as_ref().and_then(|t| t.round()) < Some(r) {
            self.last_tc = Some(tc);
        }
        self.enter_round(r.saturating_add(1), now);
    }

    fn on_timeout_msg(
        &mut self,
        from: VerifyKey,
        timeout: Timeout,
        high_qc: Option<CertifiedHeader>,
        last_tc: Option<TimeoutCertificate>,
        now: u64,
    ) {
        if let Err(e) = timeout.verify(&self.genesis) {
            return self.drop_msg(from, DropReason::BadTimeout(e));
        }
        match (timeout.high_qc_round, high_qc) {
            (0, None) => {}
            (r, Some(c)) if r == c.header.round && r > 0 => {
                if let Err(reason) = self.check_cert(&c) {
                    return self.drop_msg(from, reason);
                }
                self.record_qc(Some(from), c, now);
            }
            _ => return self.drop_msg(from, DropReason::BadCertificate(VoteError::MixedRounds)),
        }
        if let Some(tc) = last_tc {
            let r = tc.round().unwrap_or(0);
            let known = self.last_tc.as_ref().and_then(|t| t.round()) >= Some(r);
            // `r` is attacker-chosen until the certificate verifies: compare without
            // arithmetic (`r + 1 > round` would overflow on `u64::MAX`).
            if !known && r >= self.round {
                if let Err(e) = tc.verify(&self.genesis, r) {
                    return self.drop_msg(from, DropReason::BadCertificate(e));
                }
                self.process_tc(tc, now);
            }
        }
        if timeout.round < self.round {
            return;
        }
        self.add_timeout(timeout, now);
    }

    /// Verifies a certified header (skipping blocks already known certified).
    fn check_cert(&self, c: &CertifiedHeader) -> Result<(), DropReason> {
        if c.header.chain != self.genesis.hash() {
            return Err(DropReason::WrongChain);
        }
        let hash = c.header.hash();
        if self.certs.contains_key(&hash) {
            return Ok(());
        }
        c.qc.verify(&self.genesis, &c.header.prev, &hash)
            .map_err(DropReason::BadCertificate)
    }

    // ----------------------------------------------------------------------------------------
    // Certificates and commits.

    /// Records a verified certificate: updates the highest certificate, applies the two-chain
    /// commit rule, and advances the round.
    fn record_qc(&mut self, from: Option<VerifyKey>, cert: CertifiedHeader, now: u64) {
        let hash = cert.header.hash();
        let round = cert.header.round;
        if cert.header.height < self.committed_tip.height {
            return;
        }
        if round > self.high_qc_round() {
            self.high_qc = Some(cert.clone());
        }
        let held = self.tree.contains_key(&hash);
        if !held && !self.is_committed_block(&hash) {
            // A certified block this node does not hold: it is behind. Ask again (rate-limited)
            // every time the certificate is heard, not only the first time, or one lost answer
            // would leave it behind for good while it hears only what it already knows.
            self.sync_from_signer(&cert, from, now);
        }
        if !self.certs.contains_key(&hash) && cert.header.height > self.committed_tip.height {
            self.certs.insert(hash, cert);
        }
        if held {
            self.apply_commit_rule(&hash);
        }
        self.enter_round(round.saturating_add(1), now);
    }

    /// Asks a node that holds `cert`'s block for what this node misses: the certificate's
    /// signers in turn (each validated the block to vote for it, so each is at least that far
    /// ahead), so a silent or byzantine signer costs one rate-limited attempt, not all of them.
    fn sync_from_signer(&mut self, cert: &CertifiedHeader, from: Option<VerifyKey>, now: u64) {
        if !self.may_sync(now) {
            return;
        }
        let me = self.me;
        let signers: Vec<VerifyKey> = cert
            .qc
            .votes()
            .iter()
            .map(|v| v.node_pubkey)
            .filter(|k| *k != me)
            .collect();
        let to = match signers.get(self.sync_turn % signers.len().max(1)) {
            Some(k) => Recipient::Node(*k),
            None => from.map_or(Recipient::All, Recipient::Node),
        };
        self.sync_turn = self.sync_turn.wrapping_add(1);
        self.request_sync(to, now);
    }

    /// Commits `hash`'s parent if `hash` is certified, known, and one round after its parent.
    fn apply_commit_rule(&mut self, hash: &BlockHash) {
        let Some(cert) = self.certs.get(hash) else {
            return;
        };
        let Some(block) = self.tree.get(hash) else {
            return;
        };
        let parent = block.header().prev;
        let Some(parent_tip) = self.block_tip(&parent) else {
            return;
        };
        if block.header().round != parent_tip.round + 1 || !self.tree.contains_key(&parent) {
            return;
        }
        let proof = CommitProof {
            child: cert.header.clone(),
            child_qc: cert.qc.clone(),
        };
        self.commit_chain(parent, proof);
    }

    /// Commits `target` and its uncommitted ancestors.
    fn commit_chain(&mut self, target: BlockHash, proof: CommitProof) {
        let mut chain = Vec::new();
        let mut h = target;
        while h != self.committed_tip.hash {
            let Some(b) = self.tree.get(&h) else {
                return; // does not lead to the committed head: never commit it
            };
            chain.push(h);
            h = b.header().prev;
            if chain.len() > self.tree.len() {
                return;
            }
        }
        for h in chain.into_iter().rev() {
            if let Some(b) = self.tree.remove(&h) {
                self.append_committed(b.clone());
                self.outputs.push_back(Output::Committed {
                    block: b,
                    proof: proof.clone(),
                });
            }
        }
        self.head_proof = Some(proof);
        self.prune();
    }

    fn append_committed(&mut self, b: CheckedBlock) {
        let hash = b.hash();
        for id in b.tx_ids() {
            self.verified.remove(id);
            self.mempool.remove(id);
        }
        self.committed_tip = b.tip();
        let effects = self.effects.remove(&hash);
        let rules = self.network.as_ref().map(|n| (&self.genesis, n));
        if let Some(e) = self.chain.append(b, effects, rules) {
            self.committed_effects.insert(hash, e);
        }
    }

    /// Drops blocks, certificates and votes that cannot matter after a commit.
    fn prune(&mut self) {
        let mempool = &self.mempool;
        self.mempool_order.retain(|id| mempool.contains_key(id));
        self.indexing.retain(|_, m| mempool.contains_key(&m.id));
        let head = self.committed_tip.clone();
        let mut blocks: Vec<(u64, BlockHash, BlockHash)> = self
            .tree
            .iter()
            .map(|(h, b)| (b.header().height, *h, b.header().prev))
            .collect();
        blocks.sort_unstable();
        let mut keep: HashSet<BlockHash> = HashSet::new();
        keep.insert(head.hash);
        for (_, h, prev) in &blocks {
            if keep.contains(prev) {
                keep.insert(*h);
            }
        }
        self.tree.retain(|h, _| keep.contains(h));
        self.certs.retain(|_, c| c.header.height > head.height);
        let tree = &self.tree;
        let certs = &self.certs;
        self.votes
            .retain(|h, _| tree.contains_key(h) || certs.contains_key(h));
        self.vote_slots.retain(|(_, r), _| *r >= head.round);
        self.reported.retain(|(_, r)| *r >= head.round);
        self.proposals.retain(|(r, _), _| *r >= head.round);
        self.reported_proposals.retain(|(r, _)| *r >= head.round);
        let mut dropped = 0;
        self.orphans.retain(|_, bs| {
            let before = bs.len();
            bs.retain(|b| b.header.height > head.height);
            dropped += before - bs.len();
            !bs.is_empty()
        });
        self.orphan_count -= dropped.min(self.orphan_count);
        if self.verified.len() > 4 * self.genesis.max_block_txs as usize + self.max_mempool {
            self.verified.retain(|id, _| mempool.contains_key(id));
        }
        let tree = &self.tree;
        self.effects.retain(|h, _| tree.contains_key(h));
    }

    // ----------------------------------------------------------------------------------------
    // Blocks.

    /// Validates a block from a proposal or a sync response against its parent and adds it to
    /// the tree; processes its certificates, votes on it (proposals only), and then its
    /// buffered children. Returns whether the block is now known.
    fn accept_block(&mut self, from: VerifyKey, block: Block, now: u64, via: Via) -> bool {
        let mut queue = VecDeque::new();
        queue.push_back((from, block, via));
        let mut first = None;
        while let Some((from, block, via)) = queue.pop_front() {
            let ok = self.accept_one(from, block, now, via, &mut queue);
            first.get_or_insert(ok);
        }
        first.unwrap_or(false)
    }

    fn accept_one(
        &mut self,
        from: VerifyKey,
        block: Block,
        now: u64,
        via: Via,
        queue: &mut VecDeque<(VerifyKey, Block, Via)>,
    ) -> bool {
        let header = &block.header;
        if header.chain != self.genesis.hash() {
            self.drop_msg(from, DropReason::WrongChain);
            return false;
        }
        let hash = block.hash();
        if self.tree.contains_key(&hash) || self.is_committed_block(&hash) {
            return true;
        }
        if header.height <= self.committed_tip.height {
            if via == Via::Proposal {
                self.drop_msg(from, DropReason::Stale);
            }
            return false;
        }
        let Some(parent) = self.block_tip(&header.prev) else {
            let buffered = self
                .orphans
                .get(&header.prev)
                .is_some_and(|bs| bs.iter().any(|b| b.hash() == hash));
            if buffered {
                // A duplicate: keep one copy (the request below is rate-limited).
            } else if self.orphan_count >= MAX_ORPHAN_BLOCKS {
                self.drop_msg(from, DropReason::BufferFull);
            } else {
                self.orphan_count += 1;
                self.orphans.entry(header.prev).or_default().push(block);
            }
            self.request_sync(Recipient::Node(from), now);
            return false;
        };
        let round = header.round;
        let max_ts = now.saturating_add(self.genesis.timing.max_clock_skew_ms);
        let mut unjudged = None;
        let result = if via == Via::Proposal && header.timestamp_ms > max_ts {
            Err(InvalidReason::BadTimestamp)
        } else {
            let ancestors = self.ancestor_ids(&header.prev).unwrap_or_default();
            let chain = self.ancestor_chain(&header.prev).unwrap_or_default();
            let mut verifier = CachingVerifier {
                cache: &self.verified,
                inner: self.verifier.as_mut(),
                fresh: Vec::new(),
            };
            let (r, effects) = match &self.network {
                Some(network) => {
                    // The consent rules over the committed state and the effects of the
                    // uncommitted ancestors.
                    let layers: Vec<&BlockEffects> =
                        chain.iter().filter_map(|h| self.effects.get(h)).collect();
                    let view = self.chain.view(layers);
                    let mut rules = rules_over(&view, &self.genesis, network);
                    let r = block.validate_with(&self.genesis, &parent, &mut rules, &mut verifier);
                    unjudged = rules.take_state_error();
                    (r, Some(rules.into_effects()))
                }
                None => {
                    let mut guard = ReplayGuard {
                        committed: &self.chain,
                        ancestors: &ancestors,
                        state_error: None,
                    };
                    let r = block.validate_with(&self.genesis, &parent, &mut guard, &mut verifier);
                    unjudged = guard.state_error;
                    (r, None)
                }
            };
            let fresh = std::mem::take(&mut verifier.fresh);
            for v in fresh {
                self.verified.insert(v.id(), v);
            }
            if let (Ok(c), Some(e)) = (&r, effects) {
                self.effects.insert(c.hash(), e);
            }
            r.map_err(|e| e.reason)
        };
        if let (Err(_), Some(e)) = (&result, unjudged) {
            // The committed state could not be read: not a verdict on the block (no vote, and
            // it may come again).
            self.drop_msg(from, DropReason::State(e));
            return false;
        }
        let checked = match result {
            Ok(c) => c,
            Err(reason) => {
                // Not remembered as bad: the hash does not cover the signatures and the
                // transaction list, so a tampered copy must not condemn the real block.
                self.drop_msg(from, DropReason::InvalidBlock(reason));
                if via == Via::Proposal
                    && self.validator
                    && round >= self.round
                    && round > self.invalid_voted_round
                {
                    self.invalid_voted_round = round;
                    let vote = Vote::cast(
                        &self.identity,
                        &self.genesis.chain_id(),
                        parent.hash,
                        hash,
                        Err(reason),
                        now,
                    );
                    self.send(Recipient::All, &Message::Vote { vote });
                }
                return false;
            }
        };
        let header = checked.header().clone();
        let miner_sig = checked.block().miner_signature;
        self.tree.insert(hash, checked);
        // The certificates the block carries.
        if !header.parent_qc.is_empty() {
            if let Some(ph) = self.header_of(&header.prev) {
                let cert = CertifiedHeader {
                    header: ph,
                    qc: header.parent_qc.clone(),
                };
                self.record_qc(Some(from), cert, now);
            }
        }
        if let Some(tc) = &header.timeout_cert {
            self.process_tc(tc.clone(), now);
        }
        if self.certs.contains_key(&hash) {
            self.apply_commit_rule(&hash);
        }
        if via == Via::Proposal {
            self.check_proposal_equivocation(&header, miner_sig);
            self.maybe_vote(&header, hash, now);
        }
        // Early votes for this block.
        if let Some(votes) = self.orphan_votes.remove(&hash) {
            self.orphan_vote_order.retain(|h| *h != hash);
            for (_, v) in votes {
                self.add_vote(v, &header, now);
            }
        }
        if let Some(children) = self.orphans.remove(&hash) {
            self.orphan_count -= children.len().min(self.orphan_count);
            for c in children {
                queue.push_back((from, c, Via::Sync));
            }
        }
        self.try_start_mining(now);
        true
    }

    fn check_proposal_equivocation(&mut self, header: &BlockHeader, sig: Signature) {
        let key = (header.round, header.miner);
        match self.proposals.get(&key) {
            None => {
                self.proposals.insert(key, (header.clone(), sig));
            }
            Some((first, first_sig)) if first.hash() != header.hash() => {
                let ev = ProposalEquivocation {
                    first: first.clone(),
                    first_signature: *first_sig,
                    second: header.clone(),
                    second_signature: sig,
                };
                if ev.verify(&self.genesis).is_ok() && self.reported_proposals.insert(key) {
                    self.outputs
                        .push_back(Output::Evidence(Evidence::Proposals(Box::new(ev))));
                }
            }
            Some(_) => {}
        }
    }

    /// The voting rule: a valid vote only for a block of the current round above the highest
    /// round voted or timed out in.
    fn maybe_vote(&mut self, header: &BlockHeader, hash: BlockHash, now: u64) {
        if !self.validator || header.round != self.round || header.round <= self.highest_voted_round
        {
            return;
        }
        self.highest_voted_round = header.round;
        let vote = Vote::cast(
            &self.identity,
            &self.genesis.chain_id(),
            header.prev,
            hash,
            Ok(()),
            now,
        );
        self.send(Recipient::All, &Message::Vote { vote: vote.clone() });
        self.add_vote(vote, header, now);
    }

    // ----------------------------------------------------------------------------------------
    // Votes.

    fn on_vote(&mut self, from: VerifyKey, vote: Vote, now: u64) {
        if let Err(e) = vote.verify(&self.genesis) {
            return self.drop_msg(from, DropReason::BadVote(e));
        }
        let hash = vote.voting_for_block;
        // The tree holds only uncommitted blocks: a block in it needs no look-up in the
        // committed chain.
        if !self.tree.contains_key(&hash) && self.is_committed_block(&hash) {
            return self.drop_msg(from, DropReason::Stale);
        }
        if !vote.is_block_valid {
            return; // an invalid vote informs; it never counts
        }
        if let Some(header) = self.tree.get(&hash).map(|b| b.header().clone()) {
            if vote.previous_block != header.prev {
                return self.drop_msg(from, DropReason::VoteParentMismatch);
            }
            return self.add_vote(vote, &header, now);
        }
        // Unknown block: keep the vote until the block arrives.
        if !self.orphan_votes.contains_key(&hash) {
            if self.orphan_vote_order.len() >= MAX_ORPHAN_VOTE_BLOCKS {
                if let Some(old) = self.orphan_vote_order.pop_front() {
                    self.orphan_votes.remove(&old);
                }
            }
            self.orphan_vote_order.push_back(hash);
        }
        let pool = self.orphan_votes.entry(hash).or_default();
        pool.insert(vote.node_pubkey, vote);
        if pool.len() >= self.genesis.quorum_size() {
            self.request_sync(Recipient::Node(from), now);
        }
    }

    /// Adds a verified valid vote for a known block: equivocation check, then the quorum.
    fn add_vote(&mut self, vote: Vote, header: &BlockHeader, now: u64) {
        if !vote.is_block_valid || vote.previous_block != header.prev {
            return;
        }
        let hash = vote.voting_for_block;
        let voter = vote.node_pubkey;
        let slot = (voter, header.round);
        match self.vote_slots.get(&slot) {
            None => {
                self.vote_slots.insert(slot, (vote.clone(), header.clone()));
            }
            Some((first, first_header)) if first.voting_for_block != hash => {
                let ev = EquivocationEvidence {
                    first: first.clone(),
                    first_header: first_header.clone(),
                    second: vote.clone(),
                    second_header: header.clone(),
                };
                if ev.verify(&self.genesis).is_ok() && self.reported.insert(slot) {
                    self.outputs
                        .push_back(Output::Evidence(Evidence::Votes(Box::new(ev))));
                }
            }
            Some(_) => {}
        }
        let pool = self.votes.entry(hash).or_default();
        if pool.contains_key(&voter) {
            return;
        }
        pool.insert(voter, vote);
        if pool.len() >= self.genesis.quorum_size() && !self.certs.contains_key(&hash) {
            let qc = QuorumCertificate::from_votes(pool.values(), &hash);
            let cert = CertifiedHeader {
                header: header.clone(),
                qc,
            };
            self.record_qc(None, cert, now);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Gather and SignBlock: the contributor's side.

    fn on_gather_request(&mut self, from: VerifyKey, round: u64, parent: BlockHash, now: u64) {
        // A newer gather replaces the open one; so does any current one when the open one is
        // for a round far ahead (which only a faulty miner asks for).
        let current = self.round;
        if round < current
            || self
                .gather
                .as_ref()
                .is_some_and(|g| g.round == round || (g.round > round && g.round <= current + 1))
        {
            return;
        }
        let Some(tip) = self.block_tip(&parent) else {
            self.request_sync(Recipient::Node(from), now);
            return;
        };
        if round <= tip.round {
            return self.drop_msg(from, DropReason::Stale);
        }
        let validators = self.genesis.validators();
        let elected = election::elected(&tip.seed, validators, round - tip.round - 1)
            .ok()
            .and_then(|i| validators.get(i));
        if elected != Some(&from) {
            return self.drop_msg(from, DropReason::NotMiner);
        }
        let ticket = contributor_ticket(&self.genesis, &tip, &self.identity, &self.vrf);
        self.gather = Some(Gather {
            round,
            parent,
            miner: from,
            ticket,
            sent: None,
        });
        self.send_contribution(now);
    }

    /// Splits `txs`, in block order, into those a block at `ctx` on top of `chain` (the
    /// uncommitted blocks from the committed head to the parent, oldest first) may hold and
    /// those it may not, with the reason: a transaction whose claimed time no longer fits the
    /// block's is refused with [`RuleError::StaleTimestamp`]; with the network key, the ledger
    /// rules judge the rest in phase order, as validators will. An emergency key release
    /// without its access log is held back (in neither list) until both come together; so is
    /// a transaction the rules could not judge because the state could not be read (it is
    /// judged again next round, not refused).
    fn rule_check(
        &self,
        ctx: &TxContext,
        chain: &[BlockHash],
        txs: Vec<Transaction>,
    ) -> (Vec<Transaction>, Vec<(Transaction, RuleError)>) {
        let mut verdicts: HashMap<TxId, RuleError> = HashMap::new();
        let mut unjudged: HashSet<TxId> = HashSet::new();
        for tx in &txs {
            if !tx_time_fits(&self.genesis, ctx.block_time_ms, tx.timestamp_ms()) {
                verdicts.insert(tx.id(), RuleError::StaleTimestamp);
            }
        }
        let mut hold_key_releases = false;
        if let Some(network) = &self.network {
            let layers: Vec<&BlockEffects> =
                chain.iter().filter_map(|h| self.effects.get(h)).collect();
            let overlay = self.chain.view(layers);
            let mut rules = rules_over(&overlay, &self.genesis, network);
            for phase in [0u8, 1] {
                for tx in txs.iter().filter(|t| t.kind().phase() == phase) {
                    if verdicts.contains_key(&tx.id()) {
                        continue;
                    }
                    let verdict = match self
                        .verified
                        .get(&tx.id())
                        .or_else(|| self.mempool.get(&tx.id()))
                    {
                        Some(v) if v.signature() == tx.signature() => rules.check(ctx, v),
                        _ => match tx.clone().verify() {
                            Ok(v) => rules.check(ctx, &v),
                            Err(e) => {
                                verdicts.insert(tx.id(), RuleError::Unverified(e));
                                continue;
                            }
                        },
                    };
                    if verdict.is_err() {
                        match rules.take_rule_error() {
                            Some(rule) => {
                                verdicts.insert(tx.id(), rule);
                            }
                            None => {
                                rules.take_state_error();
                                unjudged.insert(tx.id());
                            }
                        }
                    }
                }
            }
            hold_key_releases = rules.finish().is_err();
        }
        let mut kept = Vec::with_capacity(txs.len());
        let mut rejected = Vec::new();
        for tx in txs {
            match verdicts.remove(&tx.id()) {
                Some(reason) => rejected.push((tx, reason)),
                None if unjudged.contains(&tx.id()) => {}
                None if hold_key_releases && tx.kind() == crate::tx::TxKind::KeyShared => {}
                None => kept.push(tx),
            }
        }
        (kept, rejected)
    }

    /// Drops this node's own transactions among `rejected` from its mempool and reports each
    /// with [`Output::Refused`] (others' are theirs to refuse).
    fn refuse_own(&mut self, rejected: Vec<(Transaction, RuleError)>) {
        for (tx, reason) in rejected {
            let id = tx.id();
            if self.mempool.remove(&id).is_some() {
                self.indexing.remove(&tx_leaf(&id, tx.signature()));
                self.outputs.push_back(Output::Refused { id, reason });
            }
        }
    }

    /// Sends this node's pending transactions to the miner of the open gather (once a round),
    /// less those the ledger rules reject on top of the miner's parent: those it refuses, so a
    /// draft that leaves them out (as the miner must) is one it signs.
    fn send_contribution(&mut self, now: u64) {
        let Some(g) = &self.gather else { return };
        if g.sent.is_some() || g.round < self.round {
            return;
        }
        let parent = g.parent;
        let Some(skip) = self.ancestor_ids(&parent) else {
            return;
        };
        let cap = self.genesis.max_block_txs as usize;
        let txs: Vec<Transaction> = self
            .mempool_order
            .iter()
            // A pending transaction is never committed: it leaves the mempool when its block
            // commits, and a committed one is refused at submission.
            .filter(|id| !skip.contains(id))
            .filter_map(|id| self.mempool.get(id))
            .take(cap)
            .map(|v| (**v).clone())
            .collect();
        let chain = self.ancestor_chain(&parent).unwrap_or_default();
        // The earliest time the miner's block can carry: our clock, never before the parent.
        let Some(ctx) = self.block_tip(&parent).map(|t| TxContext {
            height: t.height + 1,
            block_time_ms: now.max(t.timestamp_ms),
        }) else {
            return;
        };
        let (txs, rejected) = self.rule_check(&ctx, &chain, txs);
        self.refuse_own(rejected);
        let Some(g) = &mut self.gather else { return };
        if txs.is_empty() {
            return;
        }
        g.sent = Some(
            txs.iter()
                .map(|t| tx_leaf(&t.id(), t.signature()))
                .collect(),
        );
        let msg = Message::Contribution {
            round: g.round,
            parent,
            contributor: g.ticket.clone(),
            transactions: txs,
        };
        let miner = g.miner;
        self.send(Recipient::Node(miner), &msg);
    }

    fn on_sign_request(
        &mut self,
        from: VerifyKey,
        round: u64,
        header: BlockHeader,
        leaves: &[[u8; 32]],
        indexed: &[u32],
    ) {
        let Some(g) = &self.gather else {
            return self.drop_msg(from, DropReason::Unexpected);
        };
        if g.round != round || g.parent != header.prev {
            return self.drop_msg(from, DropReason::Unexpected);
        }
        if g.miner != from || header.miner != from {
            return self.drop_msg(from, DropReason::NotMiner);
        }
        let Some(sent) = &g.sent else {
            return self.drop_msg(from, DropReason::Unexpected);
        };
        let check = if header.round != round || header.chain != self.genesis.hash() {
            Err("wrong round or chain")
        } else if !header
            .contributors
            .iter()
            .any(|c| c.key == self.me && c.ticket == g.ticket.ticket)
        {
            Err("this node is not listed with its ticket")
        } else if leaves.len() != header.tx_count as usize
            || crate::block::merkle_children(leaves) != (header.merkle_left, header.merkle_right)
        {
            Err("the leaves do not match the Merkle children")
        } else {
            let present: HashSet<&[u8; 32]> = leaves.iter().collect();
            let full = leaves.len() >= self.genesis.max_block_txs as usize;
            if !full && !sent.iter().all(|l| present.contains(l)) {
                Err("a contributed transaction is missing")
            } else if !sent.iter().any(|l| present.contains(l)) {
                Err("no contributed transaction is included")
            } else if header.index_filter_digest != [0; 32] {
                Err("the draft already has a filter")
            } else if indexed.iter().any(|&p| p as usize >= leaves.len()) {
                Err("an indexed position is outside the draft")
            } else {
                // This node's own transactions are listed as indexed exactly when they carry an
                // entry (it holds material for each of its indexed transactions).
                let mine: HashSet<&[u8; 32]> = sent.iter().collect();
                let listed: HashSet<u32> = indexed.iter().copied().collect();
                let mislisted = leaves.iter().enumerate().any(|(p, l)| {
                    mine.contains(l)
                        && self.indexing.contains_key(l) != listed.contains(&(p as u32))
                });
                if mislisted {
                    Err("the indexed positions misstate this node's records")
                } else {
                    Ok(())
                }
            }
        };
        if let Err(why) = check {
            return self.drop_msg(from, DropReason::BadDraft(why));
        }
        let indexed_leaves: Vec<[u8; 32]> = indexed
            .iter()
            .filter_map(|&p| leaves.get(p as usize).copied())
            .collect();
        let block = header.hash();
        let segment = match self.own_segment(header.merkle_root(), &block, &indexed_leaves) {
            Ok(s) => s,
            Err(_) => {
                return self.drop_msg(
                    from,
                    DropReason::BadDraft("this node's filter segment cannot be built"),
                )
            }
        };
        let signature = sign_contribution(
            &self.identity,
            &self.genesis.chain_id(),
            &block,
            segment.as_ref(),
        );
        let msg = Message::SignResponse {
            round,
            block,
            segment,
            signature,
        };
        self.send(Recipient::Node(from), &msg);
    }

    // ----------------------------------------------------------------------------------------
    // Gather, AssembleBlock, SignBlock: the miner's side.

    fn on_contribution(
        &mut self,
        from: VerifyKey,
        round: u64,
        parent: BlockHash,
        contributor: Contributor,
        transactions: Vec<Transaction>,
        now: u64,
    ) {
        let gather_ms = self.gather_window();
        let Some(m) = &self.mining else {
            self.late_for_last_mined(from, round, parent);
            return self.drop_msg(from, DropReason::Unexpected);
        };
        if m.round != round || m.parent.hash != parent {
            self.late_for_last_mined(from, round, parent);
            return self.drop_msg(from, DropReason::Stale);
        }
        if !matches!(m.phase, Phase::Gathering { .. } | Phase::Idle) {
            // For this round, after the gather closed (not a copy of one taken in time).
            if !m.contributions.contains_key(&from) && !m.excluded.contains(&from) {
                self.saw_late_answer();
            }
            return self.drop_msg(from, DropReason::Stale);
        }
        if contributor.key != from {
            return self.drop_msg(from, DropReason::SenderMismatch);
        }
        if m.contributions.contains_key(&from) || m.excluded.contains(&from) {
            return;
        }
        if transactions.iter().any(|t| *t.contributor() != from) {
            return self.drop_msg(from, DropReason::ForeignTransaction);
        }
        // A transaction for another network or without its payload would make the block
        // invalid.
        let chain = self.genesis.chain_id();
        if let Some(e) = transactions
            .iter()
            .find_map(|t| t.check_fresh(&chain).err())
        {
            return self.drop_msg(from, DropReason::BadTransaction(e));
        }
        // An index entry that does not decode would make the block invalid.
        if let Some(e) = transactions.iter().find_map(|t| {
            if t.index_entry().is_empty() {
                None
            } else {
                IndexEntry::from_bytes(t.index_entry()).err()
            }
        }) {
            return self.drop_msg(from, DropReason::BadTransaction(TxError::Decode(e)));
        }
        let input =
            election::ticket_input(&self.genesis.hash(), m.parent.height + 1, &m.parent.seed);
        let ticket_ok = self
            .genesis
            .member(&from)
            .is_some_and(|mb| mb.vrf.verify(&input, &contributor.ticket).is_ok());
        if !ticket_ok {
            return self.drop_msg(from, DropReason::BadTicket);
        }
        let parent_hash = m.parent.hash;
        let Some(skip) = self.ancestor_ids(&parent_hash) else {
            return self.drop_msg(from, DropReason::Stale);
        };
        let mut verifier = CachingVerifier {
            cache: &self.verified,
            inner: self.verifier.as_mut(),
            fresh: Vec::new(),
        };
        let n = transactions.len();
        let verdicts = verifier.verify_all(transactions);
        let fresh = std::mem::take(&mut verifier.fresh);
        if verdicts.len() != n {
            return self.drop_msg(from, DropReason::BadTransaction(TxError::BadSignature));
        }
        let mut ok = Vec::with_capacity(n);
        for v in verdicts {
            match v {
                Ok(v) => ok.push(v),
                Err(e) => return self.drop_msg(from, DropReason::BadTransaction(e)),
            }
        }
        for v in fresh {
            self.verified.insert(v.id(), v);
        }
        let cap = self.genesis.max_block_txs as usize;
        let Some(m) = &mut self.mining else { return };
        let mut kept = Vec::new();
        for v in ok {
            let id = v.id();
            if m.gathered.len() >= cap {
                break;
            }
            if skip.contains(&id)
                || self.chain.contains_tx(&id).unwrap_or(true)
                || !m.gathered.insert(id)
            {
                continue;
            }
            kept.push(v.into_inner());
        }
        if kept.is_empty() {
            return;
        }
        m.contributions.insert(from, (contributor, kept));
        m.slowest = m.slowest.max(now.saturating_sub(m.opened));
        if matches!(m.phase, Phase::Idle) {
            m.phase = Phase::Gathering {
                deadline: now.saturating_add(gather_ms),
            };
        }
    }

    /// AssembleBlock at the end of the gather phase (or again after dropping silent
    /// contributors).
    fn assemble(&mut self, now: u64) {
        let Some(parent_hash) = self.mining.as_ref().map(|m| m.parent.hash) else {
            return;
        };
        let Some(skip) = self.ancestor_ids(&parent_hash) else {
            self.mining = None;
            return;
        };
        let must_propose = self.uncommitted_work(&parent_hash);
        let chain = self.ancestor_chain(&parent_hash).unwrap_or_default();
        let cap = self.genesis.max_block_txs as usize;
        let Some(m) = &mut self.mining else { return };
        // This node's own pending transactions.
        let foreign: usize = m
            .contributions
            .iter()
            .filter(|(k, _)| **k != self.me)
            .map(|(_, (_, t))| t.len())
            .sum();
        let own: Vec<Transaction> = self
            .mempool_order
            .iter()
            .filter(|id| {
                // Never committed (see `send_contribution`).
                !skip.contains(id) && !m.gathered.contains(id)
            })
            .filter_map(|id| self.mempool.get(id))
            .take(cap.saturating_sub(foreign))
            .map(|v| (**v).clone())
            .collect();
        if !own.is_empty() {
            for t in &own {
                m.gathered.insert(t.id());
            }
            let entry = m
                .contributions
                .entry(self.me)
                .or_insert_with(|| (m.ticket.clone(), Vec::new()));
            entry.1.extend(own);
        }
        let total: usize = m.contributions.values().map(|(_, t)| t.len()).sum();
        if total == 0 && !must_propose {
            m.phase = Phase::Idle;
            return;
        }
        let mut txs = Vec::with_capacity(total.min(cap));
        let mut tickets = Vec::new();
        for (c, t) in m.contributions.values() {
            tickets.push(c.clone());
            txs.extend(t.iter().cloned());
        }
        txs.truncate(cap);
        // The block's time, as `BlockDraft::assemble` sets it: a transaction whose claimed time
        // no longer fits it (pending longer than `max_tx_age_ms`) is refused (`rule_check`) and
        // leaves the mempool; its maker must sign it again.
        let ctx = TxContext {
            height: m.parent.height + 1,
            block_time_ms: now.max(m.parent.timestamp_ms),
        };
        // With the network key, leave out what the ledger rules would reject (a consent revoked
        // since submission, a key release no consent permits), so one stale transaction cannot
        // make every miner's block invalid. The rules see the transactions in phase order, as
        // validators will.
        let (txs, rejected) = self.rule_check(&ctx, &chain, txs);
        self.refuse_own(rejected);
        let Some(m) = &mut self.mining else { return };
        let draft = match BlockDraft::assemble(
            &self.genesis,
            &m.parent,
            m.round,
            &self.identity,
            &self.vrf,
            now,
            txs,
            &tickets,
            m.parent_qc.clone(),
            m.tc.clone(),
        ) {
            Ok(d) => d,
            Err(_) => {
                m.phase = Phase::Done;
                return;
            }
        };
        let round = m.round;
        let hash = draft.hash();
        let me = self.me;
        let others: BTreeSet<VerifyKey> = draft
            .header()
            .contributors
            .iter()
            .map(|c| c.key)
            .filter(|k| *k != me)
            .collect();
        let mut sigs = Vec::new();
        let mut segments = Vec::new();
        if draft.header().contributors.iter().any(|c| c.key == me) {
            let own =
                self.own_segment(draft.header().merkle_root(), &hash, &draft.indexed_leaves());
            let Ok(own) = own else {
                // Cannot happen for material checked at submission; give the round up.
                if let Some(m) = &mut self.mining {
                    m.phase = Phase::Done;
                }
                return;
            };
            sigs.push((me, draft.sign_contribution(&self.identity, own.as_ref())));
            if let Some(seg) = own {
                segments.push((me, seg));
            }
        }
        if others.is_empty() {
            if let Some(m) = &mut self.mining {
                m.phase = Phase::Done;
            }
            return self.propose(draft, &sigs, segments, now);
        }
        let leaves: Vec<[u8; 32]> = draft
            .transactions()
            .iter()
            .map(|t| tx_leaf(&t.id(), t.signature()))
            .collect();
        let msg = Message::SignRequest {
            round,
            header: draft.header().clone(),
            leaves,
            indexed: draft.indexed_positions(),
        };
        let deadline = now.saturating_add(self.sign_window());
        let Some(m) = &mut self.mining else { return };
        m.phase = Phase::Signing {
            draft,
            hash,
            waiting: others.clone(),
            sigs,
            segments,
            deadline,
        };
        let bytes = msg.to_bytes();
        for k in others {
            self.outputs.push_back(Output::Send {
                to: Recipient::Node(k),
                bytes: bytes.clone(),
            });
        }
    }

    fn on_sign_response(
        &mut self,
        from: VerifyKey,
        round: u64,
        block: BlockHash,
        segment: Option<FilterSegment>,
        signature: Signature,
        now: u64,
    ) {
        let Some(m) = &mut self.mining else {
            return self.drop_msg(from, DropReason::Unexpected);
        };
        let current = match &m.phase {
            Phase::Signing { hash, waiting, .. } => *hash == block && waiting.contains(&from),
            _ => false,
        };
        if m.round != round || !current {
            // A signature for this round from a contributor dropped for not signing in time.
            if m.round == round && m.excluded.contains(&from) {
                self.saw_late_answer();
            }
            return self.drop_msg(from, DropReason::Stale);
        }
        let Phase::Signing {
            draft,
            waiting,
            sigs,
            segments,
            ..
        } = &mut m.phase
        else {
            return self.drop_msg(from, DropReason::Stale);
        };
        let position = draft
            .header()
            .contributors
            .binary_search_by(|c| c.key.cmp(&from));
        let fits = match (position, draft.index_tags()) {
            (Ok(k), Some(tags)) => tags.fits(k, segment.as_ref()),
            _ => false,
        };
        if !fits {
            return self.drop_msg(from, DropReason::BadFilterSegment);
        }
        let digest = segment.as_ref().map(FilterSegment::digest);
        if from
            .verify(
                &self.genesis.chain_id(),
                domain::CONTRIBUTION_SIG,
                &contribution_hash(&block, digest.as_ref()),
                &signature,
            )
            .is_err()
        {
            return self.drop_msg(from, DropReason::BadContributorSignature);
        }
        waiting.remove(&from);
        sigs.push((from, signature));
        if let Some(seg) = segment {
            segments.push((from, seg));
        }
        if waiting.is_empty() {
            if let Phase::Signing {
                draft,
                sigs,
                segments,
                ..
            } = std::mem::replace(&mut m.phase, Phase::Done)
            {
                self.propose(draft, &sigs, segments, now);
            }
        }
    }

    /// Contributors that did not sign in time lose their transactions; the draft is assembled
    /// again (a bounded number of times, then with this node's transactions only).
    fn signatures_overdue(&mut self, now: u64) {
        let max_retries = self.max_sign_retries;
        let me = self.me;
        let Some(m) = &mut self.mining else { return };
        let Phase::Signing { waiting, .. } = &m.phase else {
            return;
        };
        let silent: Vec<VerifyKey> = waiting.iter().copied().collect();
        for k in silent {
            m.excluded.insert(k);
            if let Some((_, txs)) = m.contributions.remove(&k) {
                for t in txs {
                    m.gathered.remove(&t.id());
                }
            }
        }
        m.attempts += 1;
        if m.attempts > max_retries {
            let others: Vec<VerifyKey> = m
                .contributions
                .keys()
                .copied()
                .filter(|k| *k != me)
                .collect();
            for k in others {
                m.excluded.insert(k);
                if let Some((_, txs)) = m.contributions.remove(&k) {
                    for t in txs {
                        m.gathered.remove(&t.id());
                    }
                }
            }
        }
        // The node's own transactions are picked up again by `assemble`.
        if let Some((_, txs)) = m.contributions.remove(&me) {
            for t in txs {
                m.gathered.remove(&t.id());
            }
        }
        m.phase = Phase::Gathering { deadline: now };
        self.assemble(now);
    }

    fn propose(
        &mut self,
        draft: BlockDraft,
        sigs: &[(VerifyKey, Signature)],
        segments: Vec<(VerifyKey, FilterSegment)>,
        now: u64,
    ) {
        let Ok(block) = draft.finish_indexed(&self.identity, sigs, segments) else {
            return;
        };
        let msg = Message::Proposal { block };
        self.send(Recipient::All, &msg);
        if let Message::Proposal { block } = msg {
            let me = self.me;
            self.accept_block(me, block, now, Via::Proposal);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Catch-up.

    fn on_sync_request(&mut self, from: VerifyKey, from_height: u64) {
        let start = from_height.max(1);
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let mut h = start;
        while h <= self.committed_tip.height && blocks.len() < MAX_SYNC_BLOCKS {
            // Recent blocks from memory, older ones from the source.
            let Some(b) = self.chain.with_block(h, Block::clone) else {
                break;
            };
            let size = b.to_bytes().len();
            if !blocks.is_empty() && bytes + size > MAX_SYNC_BYTES {
                break;
            }
            bytes += size;
            blocks.push(b);
            h += 1;
        }
        let complete = h > self.committed_tip.height;
        let head_proof = if complete && !blocks.is_empty() {
            self.head_proof.clone()
        } else {
            None
        };
        let mut pending = Vec::new();
        if complete {
            if let Some(c) = &self.high_qc {
                let mut chain = Vec::new();
                let mut hash = c.header.hash();
                while let Some(b) = self.tree.get(&hash) {
                    chain.push(b.block().clone());
                    hash = b.header().prev;
                    if chain.len() > MAX_SYNC_BLOCKS {
                        break;
                    }
                }
                if hash == self.committed_tip.hash {
                    chain.reverse();
                    chain.truncate(MAX_SYNC_BLOCKS - blocks.len());
                    pending = chain;
                }
            }
        }
        let msg = Message::SyncResponse {
            blocks,
            head_proof,
            pending,
            high_qc: self.high_qc.clone(),
        };
        self.send(Recipient::Node(from), &msg);
    }

    fn on_sync_response(
        &mut self,
        from: VerifyKey,
        blocks: Vec<Block>,
        head_proof: Option<CommitProof>,
        pending: Vec<Block>,
        high_qc: Option<CertifiedHeader>,
        now: u64,
    ) {
        let before = (self.committed_tip.height, self.tree.len());
        let full = blocks.len() >= MAX_SYNC_BLOCKS;
        let last = blocks.last().map(|b| (b.hash(), b.header.round));
        for b in blocks.into_iter().chain(pending) {
            if !self.accept_block(from, b, now, Via::Sync) {
                break;
            }
        }
        if let (Some(proof), Some((hash, round))) = (head_proof, last) {
            if self.tree.contains_key(&hash) {
                match proof.verify(&self.genesis, &hash, round) {
                    Ok(()) => {
                        let cert = CertifiedHeader {
                            header: proof.child.clone(),
                            qc: proof.child_qc.clone(),
                        };
                        self.commit_chain(hash, proof);
                        self.record_qc(Some(from), cert, now);
                    }
                    Err(e) => self.drop_msg(from, DropReason::BadCommitProof(e)),
                }
            }
        }
        if let Some(c) = high_qc {
            match self.check_cert(&c) {
                Ok(()) => self.record_qc(Some(from), c, now),
                Err(reason) => self.drop_msg(from, reason),
            }
        }
        // Only a response that taught something lifts the rate limit (so that many responses
        // to one broadcast request do not each set off another broadcast). One that was cut
        // short (64 blocks, or 8 MiB) or still leaves the highest certified block missing is
        // followed up at once, from the same peer.
        let progress = (self.committed_tip.height, self.tree.len()) != before;
        if progress && (full || !self.holds_high_qc_block()) {
            self.sync_until = None;
            self.request_sync(Recipient::Node(from), now);
        }
        self.try_start_mining(now);
    }
}

/// Checks a submission's index material against its transaction: `Ok(None)` for a
/// transaction without an entry and no material.
fn check_material(
    tx: &Transaction,
    material: Option<IndexMaterial>,
) -> Result<Option<(IndexedRecord, Vec<Trapdoor>)>, SubmitError> {
    match (tx.index_entry().is_empty(), material) {
        (true, None) => Ok(None),
        (true, Some(_)) => Err(SubmitError::BadIndexMaterial(
            "the transaction carries no index entry",
        )),
        (false, None) => Err(SubmitError::MissingIndexMaterial),
        (false, Some(m)) => {
            let entry = IndexEntry::from_bytes(tx.index_entry())
                .map_err(|_| SubmitError::BadIndexMaterial("the index entry does not decode"))?;
            if m.trapdoors.is_empty() {
                return Err(SubmitError::BadIndexMaterial("no trapdoor is given"));
            }
            if !m.trapdoors.iter().all(|t| entry.matches(&m.record_id, t)) {
                return Err(SubmitError::BadIndexMaterial(
                    "a trapdoor does not match the entry for that record",
                ));
            }
            let record = IndexedRecord {
                record_id: m.record_id,
                entry,
            };
            Ok(Some((record, m.trapdoors)))
        }
    }
}
