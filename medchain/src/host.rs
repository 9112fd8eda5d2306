//! The [`Host`]: one member's node, ledger and keys, driven by the embedding application.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;

use getrandom::SysRng;
use medchain_core::access::{
    record_class, release_key, AccessError, ClassError, KeyRelease, ReleaseRequest,
};
use medchain_core::block::{Block, CheckedBlock};
use medchain_core::chain::CommitProof;
use medchain_core::consent::{Denial, Purpose};
use medchain_core::election::{ElectionError, VrfSecret};
use medchain_core::encoding::Encode;
use medchain_core::genesis::{Genesis, GenesisError, Member, Quorum, Timing};
use medchain_core::hash::{BlockHash, RecordId, TxId};
use medchain_core::index::{
    extract_keywords, EntryError, IndexEntry, KeywordError, SealedWriterKey, WriterKeyError,
};
use medchain_core::keys::{Identity, PublicIdentity, VerifyKey};
use medchain_core::ledger::{AuditEntry, BlockEffects, RecordEntry, RuleError};
use medchain_core::protocol::{
    DropReason, DurableState, Evidence, IndexMaterial, Message, Node, NodeConfig, NodeError,
    Output, Recipient, RestoreError, SafetyState, SubmitError, SHARING_TAGS,
};
use medchain_core::research::{ResearchRelease, ResearchRequest};
use medchain_core::seal::{NetworkKey, OpenedRecord, SealedRecord};
use medchain_core::sharing::{KeyAnswer, KeyRequestId};
use medchain_core::tx::{Transaction, TxBody, TxError};
use medchain_fhir::{seal_validated_as, Options, WriteError};
use medchain_store::{
    AnyStore, Ledger, LedgerError, LedgerLocation, PersistentStore, SharedRecord, SqliteStore,
};
use rand_core::{Rng, UnwrapErr};
use thiserror::Error;

use crate::sharing::Sharing;

/// Why a genesis could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FoundError {
    /// A member's VRF key could not be derived from its identity.
    #[error("a member's VRF key: {0}")]
    Vrf(#[from] ElectionError),
    /// The genesis breaks a rule (names too long, duplicate or weak member keys, ...).
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
}

/// The genesis of a new network whose members (all validators) are `members`, by name and
/// identity, under the network key `network` (only its fingerprint is written), created at
/// `now_ms`, with the default quorum (two thirds), timing and block size. The founder
/// publishes it and wraps the network key to each member (`NetworkKey::wrap_for`).
///
/// # Errors
/// [`FoundError`].
pub fn genesis_of(
    name: &str,
    members: &[(&str, &Identity)],
    network: &NetworkKey,
    now_ms: u64,
) -> Result<Genesis, FoundError> {
    let mut entries = Vec::with_capacity(members.len());
    for (member, id) in members {
        entries.push(Member {
            name: (*member).into(),
            identity: id.public(),
            vrf: VrfSecret::derive(id)?.public(),
            validator: true,
        });
    }
    Ok(Genesis::new(
        name,
        now_ms,
        network.fingerprint(),
        entries,
        Quorum::TWO_THIRDS,
        Timing::DEFAULT,
        10_000,
    )?)
}

/// What this member does in consensus, as its genesis entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkRole {
    /// A trusted validator: votes on blocks and mines in its turn.
    Validator,
    /// A member that contributes transactions and follows the chain, but does not vote.
    Member,
}

/// Bytes for the transport to carry to other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// To whom: every other member, or one.
    pub to: Recipient,
    /// The encoded protocol message (opaque to the transport).
    pub bytes: Vec<u8>,
}

/// Something the application may want to know about.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A block is committed and appended to this host's ledger.
    Committed {
        /// Its height.
        height: u64,
        /// Its transactions.
        txs: Vec<TxId>,
    },
    /// One of this host's own transactions was refused by the ledger rules on top of the chain
    /// (it will not commit).
    Refused {
        /// The transaction.
        id: TxId,
        /// The rule it breaks, named ([`RuleError::name`]); its coarse wire code (what
        /// validators vote) is [`RuleError::reason`].
        reason: RuleError,
    },
    /// A received message was dropped (malformed, hostile or stale); nothing changed.
    Dropped {
        /// The member that sent it.
        from: VerifyKey,
        /// Why.
        reason: DropReason,
    },
    /// Evidence that a member equivocated.
    Evidence(Evidence),
    /// A member relayed a clinician's key request for a record this host added, and this
    /// host answered it (the sharing module; on [`KeyAnswer::Released`] the release and its
    /// access log were submitted). Log it: every request is answered once, and a denial's
    /// detail is for the patient's audit view only.
    KeyRequestAnswered {
        /// The member that relayed the request.
        from: VerifyKey,
        /// The request.
        request: KeyRequestId,
        /// The record asked for.
        record: RecordId,
        /// The clinician who asked to read it.
        grantee: PublicIdentity,
        /// Why they asked.
        purpose: Purpose,
        /// What they were told.
        answer: KeyAnswer,
        /// For a consent denial, the reason (which consent and provision) for the patient's
        /// own audit view (`access::denial_audit_event`); never sent to the requester.
        denial: Option<Denial>,
        /// The `AccessDenied` transaction this host submitted for a refusal (the rule's name,
        /// not the detail above), or `None` (released, not a loggable refusal, or the same
        /// refusal logged within the request window).
        denial_logged: Option<TxId>,
    },
    /// A holder answered one of this host's key requests ([`Host::request_key`]).
    KeyAnswered {
        /// The request.
        request: KeyRequestId,
        /// The record asked for.
        record: RecordId,
        /// The answer: on [`KeyAnswer::Released`], open the record once both transactions
        /// commit.
        answer: KeyAnswer,
    },
}

/// Why a host could not be set up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HostError {
    /// The identity is not a member of the genesis, or its VRF key does not match.
    #[error("the identity cannot run a node of this network: {0}")]
    Node(#[from] NodeError),
    /// The ledger could not be created, opened or written (or its network key is not the
    /// genesis's).
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The node could not resume from the ledger (the head's commit proof does not hold, or
    /// the ledger could not be read through the node's connection).
    #[error("the node cannot resume from its ledger: {0}")]
    Restore(#[from] RestoreError),
}

impl HostError {
    /// Whether opening found no ledger at all at the location (no file, no schema): the one
    /// case where creating one is right.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            HostError::Ledger(LedgerError::Store(medchain_store::StoreError::NotFound(_)))
        )
    }
}

/// Why a submission was refused before it reached the network. Nothing was queued.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SubmitTxError {
    /// The transaction could not be built (its body breaks a stateless rule).
    #[error("the transaction could not be built: {0}")]
    Build(#[from] TxError),
    /// The node refused it.
    #[error("the node refused the transaction: {0}")]
    Node(#[from] SubmitError),
    /// The node's safety state could not be saved: the transaction is queued, but nothing the
    /// submission produced is sent (stop the host).
    #[error("the node's safety state could not be saved: {0}")]
    Ledger(#[from] LedgerError),
}

/// Why a record could not be added. Nothing was submitted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The FHIR resource does not pass the network's profile, or could not be sealed.
    #[error(transparent)]
    Fhir(#[from] WriteError),
    /// The patient's enrolment does not open for this host (wrong patient, chain or writer,
    /// bad signature).
    #[error("the patient's enrolment does not hold: {0}")]
    Enrolment(#[from] WriterKeyError),
    /// The record's network-visible class could not be derived.
    #[error("the record cannot be classified: {0}")]
    Class(#[from] ClassError),
    /// The record's search keywords could not be extracted.
    #[error("the record's keywords cannot be extracted: {0}")]
    Keywords(#[from] KeywordError),
    /// The secure-index entry could not be built.
    #[error("the secure-index entry cannot be built: {0}")]
    Index(#[from] EntryError),
    /// The transaction was refused.
    #[error(transparent)]
    Submit(#[from] SubmitTxError),
}

/// Why a key release was refused. No key was wrapped and nothing was submitted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The local check (exactly what validators check) refuses it, or the record cannot be
    /// opened by this host.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The release's transactions were refused.
    #[error(transparent)]
    Submit(#[from] SubmitTxError),
}

/// A record to add: FHIR R4 JSON for a patient who enrolled at this hospital.
pub struct RecordDraft<'a> {
    /// The FHIR resource (JSON bytes), validated against the genesis profile before sealing.
    pub fhir: &'a [u8],
    /// What the patient's wallet handed this hospital at enrolment: the writer index key and
    /// the consent tag key, sealed to this hospital. The record is classified with the tag key
    /// (so validators can match it against the patient's blinded consents) and indexed with the
    /// writer key.
    pub enrolment: &'a SealedWriterKey,
    /// Who else may open the record from the start (the hospital itself always can).
    pub readers: &'a [PublicIdentity],
}

/// A record validated, sealed, classified and indexed by [`Host::prepare_record`], not yet
/// submitted ([`Host::submit_records`]). `Debug` shows its id only.
pub struct PreparedRecord {
    body: TxBody,
    entry: Vec<u8>,
    material: IndexMaterial,
    sealed: SealedRecord,
}

impl fmt::Debug for PreparedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedRecord")
            .field("record_id", &self.material.record_id)
            .finish_non_exhaustive()
    }
}

impl PreparedRecord {
    /// The record's id (fixed when it was sealed).
    pub fn record_id(&self) -> RecordId {
        self.material.record_id
    }
}

/// A record submitted by [`Host::add_record`].
#[derive(Debug, Clone)]
pub struct RecordReceipt {
    /// The record.
    pub record_id: RecordId,
    /// Its `RecordAdded` transaction.
    pub tx_id: TxId,
    /// The sealed record (keep it to release its key later).
    pub sealed: SealedRecord,
}

/// A key release submitted by [`Host::release`].
#[derive(Debug, Clone)]
pub struct ReleaseReceipt {
    /// The `KeyShared` transaction.
    pub key_shared: TxId,
    /// The `AccessLogged` transaction (it commits in the same block).
    pub access_logged: TxId,
    /// The release (its `key_shared` body holds the envelope for the grantee).
    pub release: KeyRelease,
}

/// One member's node, its persistent ledger and its keys, as one sans-I/O object: the
/// application moves bytes and time ([`handle_message`](Self::handle_message),
/// [`handle_timeout`](Self::handle_timeout), [`poll_timeout`](Self::poll_timeout),
/// [`poll_transmit`](Self::poll_transmit)) and reads [`poll_event`](Self::poll_event); the host
/// signs and nonces its submissions and appends every committed block to its ledger with the
/// effects the node computed when it validated it (one validation).
///
/// The node always holds the network key: every transaction and block is judged by the
/// consent rules (there is no mode that skips them).
///
/// The ledger's store is `S`: a SQLite file by default ([`Host::create`], [`Host::open`]), or
/// either backend chosen at run time by a [`LedgerLocation`] ([`Host::create_at`],
/// [`Host::open_at`]: `Host<AnyStore>`, a PostgreSQL database with the `postgres` feature).
pub struct Host<S: PersistentStore = SqliteStore> {
    node: Node,
    ledger: Ledger<S>,
    network: NetworkKey,
    fhir: Options,
    nonce: u64,
    /// The blocks of the commit step being handed over (see [`Host::drain`]).
    step: Vec<(CheckedBlock, Option<BlockEffects>)>,
    /// The durable state last saved to the ledger: its safety state and its blocks' hashes.
    saved: (SafetyState, Vec<BlockHash>),
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Key requests sent and answered (`crate::sharing`).
    sharing: Sharing,
}

impl<S: PersistentStore> fmt::Debug for Host<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("member", &self.node.key())
            .field("height", &self.ledger.height())
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Creates the ledger file at `path` for `genesis` and starts this member's node on it. The
    /// identity and the network key are moved in (the host keeps them; they zeroize on drop).
    ///
    /// # Errors
    /// [`HostError::Ledger`] (the file exists, the key is not the genesis's, a store error),
    /// [`HostError::Node`] (the identity is not a member).
    pub fn create(
        path: impl AsRef<Path>,
        genesis: &Genesis,
        identity: Identity,
        network: NetworkKey,
        now_ms: u64,
    ) -> Result<Self, HostError> {
        let ledger = Ledger::create_sqlite(path, genesis, network.duplicate())?;
        Self::from_ledger(ledger, identity, network, now_ms)
    }

    /// Reopens the ledger file at `path` (created by [`create`](Self::create)) and resumes this
    /// member's node on it after a stop or a crash: the ledger checks its head when it opens
    /// (the head block against its parent and its commit proof, and the state commitment over
    /// every table's rows), the node resumes at that head without validating the chain again
    /// (its cost does not grow with the ledger; [`Ledger::verify`] is the full check), and the
    /// validator's saved safety state is restored, so that it never votes twice in a round it
    /// voted in before the stop. The node then asks its peers for the blocks it missed.
    ///
    /// # Errors
    /// [`HostError::Ledger`] (not a ledger, another network key, a corrupt or unreadable
    /// store), [`HostError::Node`] (the identity is not a member), [`HostError::Restore`].
    pub fn open(
        path: impl AsRef<Path>,
        identity: Identity,
        network: NetworkKey,
        now_ms: u64,
    ) -> Result<Self, HostError> {
        let ledger = Ledger::open_sqlite(path, network.duplicate())?;
        Self::from_ledger(ledger, identity, network, now_ms)
    }
}

impl Host<AnyStore> {
    /// As [`Host::create`], at `location`: a SQLite file, or a PostgreSQL database (the
    /// ledger in its schema `medchain`; TLS as the URL asks, `docs/storage.md`).
    ///
    /// # Errors
    /// As [`Host::create`]; [`LedgerError::NoPostgres`] for a PostgreSQL location in a build
    /// without the `postgres` feature.
    pub fn create_at(
        location: &LedgerLocation,
        genesis: &Genesis,
        identity: Identity,
        network: NetworkKey,
        now_ms: u64,
    ) -> Result<Self, HostError> {
        let ledger = Ledger::create_at(location, genesis, network.duplicate())?;
        Self::from_ledger(ledger, identity, network, now_ms)
    }

    /// As [`Host::open`], at `location` (created by [`create_at`](Self::create_at)). Nothing
    /// there gives [`HostError::Ledger`] with `StoreError::NotFound` ([`HostError::is_not_found`]).
    ///
    /// # Errors
    /// As [`Host::open`]; [`LedgerError::NoPostgres`].
    pub fn open_at(
        location: &LedgerLocation,
        identity: Identity,
        network: NetworkKey,
        now_ms: u64,
    ) -> Result<Self, HostError> {
        let ledger = Ledger::open_at(location, network.duplicate())?;
        Self::from_ledger(ledger, identity, network, now_ms)
    }
}

impl<S: PersistentStore> Host<S> {
    /// This member's node over an open `ledger` (just created, or reopened after a stop or a
    /// crash: the durable state saved in it, if any, is restored as [`Host::open`] describes).
    /// `network` must be the ledger's network key. The secure index's block filters are read
    /// into memory here ([`Ledger::warm_search_cache`]), so that no search pays for it.
    ///
    /// # Errors
    /// [`HostError::Ledger`] (the key is not the genesis's, the durable state or the filters
    /// cannot be read), [`HostError::Node`] (the identity is not a member),
    /// [`HostError::Restore`].
    pub fn from_ledger(
        ledger: Ledger<S>,
        identity: Identity,
        network: NetworkKey,
        now_ms: u64,
    ) -> Result<Self, HostError> {
        if ledger.genesis().network_key_fingerprint != network.fingerprint() {
            return Err(LedgerError::WrongNetworkKey.into());
        }
        // The secure index's block filters are read now, not by the first search.
        ledger.warm_search_cache()?;
        let saved = ledger.durable_state()?.unwrap_or_default();
        let node = Self::node_over(&ledger, identity, &network, saved.safety.clone(), now_ms)?;
        Self::with(node, ledger, network, saved, now_ms)
    }

    /// This member's node over `ledger`: it reads the committed chain through a second,
    /// read-only connection to the ledger's store (`SqliteReader`, `PostgresReader`; the
    /// consistency argument is in `docs/storage.md`), so it keeps in memory only the blocks
    /// it committed that the ledger does not hold yet, and a few recent ones.
    fn node_over(
        ledger: &Ledger<S>,
        identity: Identity,
        network: &NetworkKey,
        safety: SafetyState,
        now_ms: u64,
    ) -> Result<Node, HostError> {
        let reader = ledger
            .store()
            .committed_reader(network)
            .map_err(LedgerError::from)?;
        let config = NodeConfig::new(ledger.genesis().clone(), identity, network.duplicate());
        Node::resume(config, reader, safety, now_ms).map_err(|e| match e {
            RestoreError::Config(e) => HostError::Node(e),
            e => HostError::Restore(e),
        })
    }

    fn with(
        mut node: Node,
        ledger: Ledger<S>,
        network: NetworkKey,
        saved: DurableState,
        now_ms: u64,
    ) -> Result<Self, HostError> {
        let hashes = saved.pending.iter().map(Block::hash).collect();
        node.resume_pending(saved.pending, now_ms);
        let saved = (saved.safety, hashes);
        let fhir = Options::for_genesis(ledger.genesis());
        let mut host = Self {
            node,
            ledger,
            network,
            fhir,
            // Transaction ids bind the nonce: a random start keeps a reopened host's ids apart
            // from the ones it made before.
            nonce: UnwrapErr(SysRng).next_u64(),
            step: Vec::new(),
            saved,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            sharing: Sharing::default(),
        };
        host.drain()?;
        Ok(host)
    }

    /// This member's signing key (how peers and the genesis name it).
    pub fn key(&self) -> VerifyKey {
        self.node.key()
    }

    /// This member's public identity.
    pub fn public(&self) -> PublicIdentity {
        self.node.identity().public()
    }

    /// This member's identity (to sign credentials it issues, or open records sealed to it).
    pub fn identity(&self) -> &Identity {
        self.node.identity()
    }

    /// Validator or member, as the genesis says.
    pub fn role(&self) -> NetworkRole {
        if self.node.is_validator() {
            NetworkRole::Validator
        } else {
            NetworkRole::Member
        }
    }

    /// The network's genesis.
    pub fn genesis(&self) -> &Genesis {
        self.ledger.genesis()
    }

    /// The persistent ledger (committed blocks, records, consents, audit).
    pub fn ledger(&self) -> &Ledger<S> {
        &self.ledger
    }

    /// The consensus round the node is in (it moves on with each certificate or timeout
    /// certificate; after a restart, from the saved safety state on).
    pub fn current_round(&self) -> u64 {
        self.node.current_round()
    }

    /// Transactions in the node's mempool: submitted here or received from other members,
    /// neither committed nor dropped yet.
    pub fn mempool_len(&self) -> usize {
        self.node.mempool_len()
    }

    /// Whether `id` is committed.
    pub fn is_committed(&self, id: &TxId) -> bool {
        self.node.is_committed(id)
    }

    /// Handles bytes received from the member `from` (authenticated by the transport).
    /// Malformed or hostile bytes are dropped ([`Event::Dropped`]) and change nothing.
    ///
    /// # Errors
    /// [`HostError::Ledger`] if a committed block could not be written (stop the host: its
    /// ledger is behind its node).
    pub fn handle_message(
        &mut self,
        from: VerifyKey,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), HostError> {
        if Message::peek_tag(bytes).is_some_and(|tag| SHARING_TAGS.contains(&tag)) {
            return self.handle_sharing(from, bytes, now_ms);
        }
        self.node.handle_message(from, bytes, now_ms);
        Ok(self.drain()?)
    }

    /// Lets time pass: call at (or after) [`poll_timeout`](Self::poll_timeout).
    ///
    /// # Errors
    /// As [`handle_message`](Self::handle_message).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), HostError> {
        self.node.handle_timeout(now_ms);
        Ok(self.drain()?)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called (`None`: only on
    /// input).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.node.next_deadline()
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    pub(crate) fn push_transmit(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
    }

    pub(crate) fn sharing(&self) -> &Sharing {
        &self.sharing
    }

    pub(crate) fn sharing_mut(&mut self) -> &mut Sharing {
        &mut self.sharing
    }

    /// Moves the node's outputs into transmits and events, appending each commit step to the
    /// ledger; then saves the node's safety state if it changed, before any message produced
    /// here becomes sendable (a vote must never leave before the round it is in is durable).
    fn drain(&mut self) -> Result<(), LedgerError> {
        let mut sends = Vec::new();
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { to, bytes } => sends.push(Transmit { to, bytes }),
                Output::Committed { block, proof } => {
                    let effects = self.node.take_committed_effects(&block.hash());
                    // One commit step can commit a block and its uncommitted ancestors: the
                    // node hands them over oldest first, each with the proof of the step's
                    // highest block. They go to the ledger together, in one write.
                    let last_of_step = proof.child.prev == block.hash();
                    self.step.push((block, effects));
                    if last_of_step {
                        self.append_step(&proof)?;
                    }
                }
                Output::Dropped { from, reason } => {
                    self.events.push_back(Event::Dropped { from, reason });
                }
                Output::Evidence(e) => self.events.push_back(Event::Evidence(e)),
                Output::Refused { id, reason } => {
                    self.events.push_back(Event::Refused { id, reason });
                }
                _ => {}
            }
        }
        // Compared by safety state and block hashes: the blocks are copied only when it changed.
        let safety = self.node.safety_state();
        let pending = self.node.durable_pending_hashes();
        if safety != self.saved.0 || pending != self.saved.1 {
            // On failure the messages are dropped: nothing leaves that the state does not cover.
            self.ledger.save_durable_state(&self.node.durable_state())?;
            self.saved = (safety, pending);
        }
        self.transmits.extend(sends);
        Ok(())
    }

    /// Appends the blocks of one commit step (see [`Host::drain`]) in one atomic write: with
    /// the effects the node computed when it validated them, or — when it has none for one of
    /// them (it validated them before a restart) — validated once by the ledger.
    fn append_step(&mut self, proof: &CommitProof) -> Result<(), LedgerError> {
        let step = std::mem::take(&mut self.step);
        let with_effects: Option<Vec<(&CheckedBlock, &BlockEffects)>> = step
            .iter()
            .map(|(b, e)| e.as_ref().map(|e| (b, e)))
            .collect();
        match with_effects {
            Some(pairs) => self.ledger.append_checked_chain(&pairs, proof)?,
            None => {
                let blocks = step.iter().map(|(b, _)| b.block().clone()).collect();
                self.ledger.append_committed_chain(blocks, proof)?;
            }
        }
        for (block, _) in step {
            self.events.push_back(Event::Committed {
                height: block.header().height,
                txs: block.tx_ids().to_vec(),
            });
        }
        Ok(())
    }

    /// Builds one transaction contributed by this host (signed, sealed under the network key,
    /// with a fresh nonce).
    fn build(
        &mut self,
        body: &TxBody,
        entry: Vec<u8>,
        now_ms: u64,
    ) -> Result<Transaction, TxError> {
        self.nonce = self.nonce.wrapping_add(1);
        Transaction::create(
            self.node.identity(),
            &self.ledger.genesis().chain_id(),
            now_ms,
            self.nonce,
            body,
            entry,
            &self.network,
            &mut UnwrapErr(SysRng),
        )
    }

    /// Submits bodies as one batch (they reach the miner together). The first refusal is
    /// returned; a body of the batch the node accepted stays queued (the ledger rules then
    /// refuse what cannot commit alone, such as a key release without its access log).
    fn submit_batch(
        &mut self,
        items: Vec<(&TxBody, Vec<u8>, Option<IndexMaterial>)>,
        now_ms: u64,
    ) -> Result<Vec<TxId>, SubmitTxError> {
        let mut txs = Vec::with_capacity(items.len());
        for (body, entry, material) in items {
            txs.push((self.build(body, entry, now_ms)?, material));
        }
        let results = self.node.submit_batch_indexed(txs, now_ms);
        let ids = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        self.drain()?;
        Ok(ids)
    }

    /// Submits a body signed by someone else (a patient's consent grant, revocation or erasure
    /// request, as the wallet produced it): this host contributes it to the network.
    ///
    /// # Errors
    /// [`SubmitTxError`]; nothing was queued.
    pub fn submit_patient_signed(
        &mut self,
        body: &TxBody,
        now_ms: u64,
    ) -> Result<TxId, SubmitTxError> {
        let ids = self.submit_batch(vec![(body, Vec::new(), None)], now_ms)?;
        ids.into_iter()
            .next()
            .ok_or(SubmitTxError::Node(SubmitError::BadSignature))
    }

    /// Adds a FHIR record for an enrolled patient: validates it against the genesis profile,
    /// seals it for the patient, this hospital and `readers`, classifies it under the patient's
    /// consent tag key, indexes it under the patient's writer key, and submits it.
    ///
    /// # Errors
    /// [`RecordError`]; nothing was submitted.
    pub fn add_record(
        &mut self,
        draft: RecordDraft<'_>,
        now_ms: u64,
    ) -> Result<RecordReceipt, RecordError> {
        let prepared = self.prepare_record(draft)?;
        self.submit_records(vec![prepared], now_ms)?
            .into_iter()
            .next()
            .ok_or(RecordError::Submit(SubmitTxError::Node(
                SubmitError::BadSignature,
            )))
    }

    /// The first half of [`add_record`](Self::add_record): validates, seals, classifies and
    /// indexes the record, and submits nothing. The record id is known from here on, so a
    /// caller adding several records that refer to each other (a FHIR transaction Bundle)
    /// prepares them in order, writing each one's id into the next, and submits them together
    /// with [`submit_records`](Self::submit_records).
    ///
    /// # Errors
    /// [`RecordError`] (never [`RecordError::Submit`]).
    pub fn prepare_record(&self, draft: RecordDraft<'_>) -> Result<PreparedRecord, RecordError> {
        let chain = self.ledger.genesis().chain_id();
        let patient = *draft.enrolment.patient();
        let identity = self.node.identity();
        let writer_key = draft.enrolment.import(identity, &chain, &patient)?;
        let tag_key = draft.enrolment.import_tag_key(identity, &chain, &patient)?;
        let mut readers = vec![identity.public()];
        readers.extend(
            draft
                .readers
                .iter()
                .copied()
                .filter(|r| *r != identity.public()),
        );
        let mut rng = UnwrapErr(SysRng);
        let sealed = seal_validated_as(
            identity, draft.fhir, &self.fhir, &patient, &readers, &mut rng,
        )?
        .record;
        let json: serde_json::Value =
            serde_json::from_slice(draft.fhir).map_err(|_| KeywordError::NotAnObject)?;
        let keywords = extract_keywords(&json)?;
        let trapdoors = writer_key.trapdoors(keywords.iter());
        let entry = IndexEntry::build(&sealed.record_id(), &trapdoors, &mut rng)?;
        let class = record_class(draft.fhir, &tag_key, &mut rng)?;
        let record_id = sealed.record_id();
        Ok(PreparedRecord {
            body: TxBody::record_added(sealed.clone(), class),
            entry: entry.to_bytes(),
            material: IndexMaterial {
                record_id,
                trapdoors,
            },
            sealed,
        })
    }

    /// Submits prepared records as one batch (they reach the miner together), in order.
    ///
    /// # Errors
    /// [`RecordError::Submit`]: the first refusal; a record of the batch the node accepted
    /// before it stays queued (the node refuses only what cannot be queued: a full mempool, a
    /// duplicate).
    pub fn submit_records(
        &mut self,
        records: Vec<PreparedRecord>,
        now_ms: u64,
    ) -> Result<Vec<RecordReceipt>, RecordError> {
        let mut bodies = Vec::with_capacity(records.len());
        let mut rest = Vec::with_capacity(records.len());
        for r in records {
            bodies.push(r.body);
            rest.push((r.entry, r.material, r.sealed));
        }
        let mut receipts = Vec::with_capacity(rest.len());
        let mut items = Vec::with_capacity(rest.len());
        for (body, (entry, material, sealed)) in bodies.iter().zip(rest) {
            receipts.push((material.record_id, sealed));
            items.push((body, entry, Some(material)));
        }
        let ids = self.submit_batch(items, now_ms)?;
        Ok(receipts
            .into_iter()
            .zip(ids)
            .map(|((record_id, sealed), tx_id)| RecordReceipt {
                record_id,
                tx_id,
                sealed,
            })
            .collect())
    }

    /// Releases `sealed`'s key to `request.grantee`: judges the request locally over the
    /// committed ledger, exactly as validators will (consent, credential, record holder,
    /// erasure), before any key is wrapped; then submits the `KeyShared` and its `AccessLogged`
    /// together.
    ///
    /// # Errors
    /// [`ReleaseError::Access`] (refused: nothing wrapped, nothing submitted),
    /// [`ReleaseError::Submit`].
    pub fn release(
        &mut self,
        sealed: &SealedRecord,
        request: ReleaseRequest,
        now_ms: u64,
    ) -> Result<ReleaseReceipt, ReleaseError> {
        let release = release_key(
            self.node.identity(),
            sealed,
            request,
            self.ledger.view(),
            now_ms,
            &mut UnwrapErr(SysRng),
        )?;
        let ids = self.submit_batch(
            vec![
                (&release.key_shared, Vec::new(), None),
                (&release.access_logged, Vec::new(), None),
            ],
            now_ms,
        )?;
        let (Some(key_shared), Some(access_logged)) = (ids.first(), ids.get(1)) else {
            return Err(SubmitTxError::Node(SubmitError::BadSignature).into());
        };
        Ok(ReleaseReceipt {
            key_shared: *key_shared,
            access_logged: *access_logged,
            release,
        })
    }

    /// The committed records of `patient`.
    ///
    /// # Errors
    /// Store errors.
    pub fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, LedgerError> {
        self.ledger.records_of(patient)
    }

    /// The committed audit trail of `patient`'s records (key releases, reads, erasures).
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_trail(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, LedgerError> {
        self.ledger.audit_of_patient(patient)
    }

    /// A research release by this member for the researcher's signed `request`: the one
    /// research policy ([`Ledger::research_release`]). Submit its `log_body` with
    /// [`submit_body`](Self::submit_body) and hand the rows over once it is committed.
    ///
    /// # Errors
    /// As [`Ledger::research_release`].
    pub fn research_release(
        &self,
        request: &ResearchRequest,
    ) -> Result<ResearchRelease, LedgerError> {
        self.ledger.research_release(self.node.identity(), request)
    }

    /// Submits a body this host produced itself (a research release's log, an access log).
    ///
    /// # Errors
    /// [`SubmitTxError`]; nothing was queued.
    pub fn submit_body(&mut self, body: &TxBody, now_ms: u64) -> Result<TxId, SubmitTxError> {
        self.submit_patient_signed(body, now_ms)
    }

    /// The committed records whose key was released to `reader` (a committed `KeyShared` to
    /// it) and that are not erased: [`Ledger::records_shared_with`]. A release made before
    /// its consent was revoked stays listed, with the revocation's height
    /// ([`SharedRecord::consent_revoked_at`]).
    ///
    /// # Errors
    /// As [`Ledger::records_shared_with`].
    pub fn records_shared_with(
        &self,
        reader: &PublicIdentity,
    ) -> Result<Vec<SharedRecord>, LedgerError> {
        self.ledger.records_shared_with(reader)
    }

    /// Opens `record` for `reader` with the key released to it by a committed `KeyShared`:
    /// [`Ledger::open_for`].
    ///
    /// # Errors
    /// As [`Ledger::open_for`] ([`medchain_store::OpenError`] in [`LedgerError::Open`]: not
    /// released to this reader, erased, unknown).
    pub fn open_for(
        &self,
        reader: &Identity,
        record: &RecordId,
    ) -> Result<OpenedRecord, LedgerError> {
        self.ledger.open_for(reader, record)
    }
}
