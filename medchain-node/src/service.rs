//! The service: one member's [`Host`] driven over the peer [`Transport`], with the client API.
//!
//! The host is sans-I/O and its calls block (ledger writes to SQLite or PostgreSQL, block
//! validation), so it lives on a thread of its own (`medchain-host`), which runs one loop on the
//! tokio runtime's timers and channels (polled by a parking executor of its own, outside the
//! runtime, so the PostgreSQL client may block there):
//!
//! * a message from the transport goes to [`Host::handle_message`] with the sender's key the
//!   handshake authenticated;
//! * at [`Host::poll_timeout`] (wall-clock milliseconds), [`Host::handle_timeout`];
//! * a client API command (submit, a transaction's status, a block) is served between two of
//!   those calls, so the API never sees a half-applied step;
//! * after every call, what [`Host::poll_transmit`] yields goes to [`Transport::send`] (the
//!   host saved its durable state before it made them sendable) and [`Host::poll_event`] feeds
//!   the transaction tracker and the metrics.
//!
//! A stop request is looked at only between two calls: the write in progress finishes, then the
//! transport closes, then the ledger. A ledger write that fails stops the loop with
//! [`RunError`] (the host says its ledger would be behind its node).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use medchain::{
    AnyStore, Event, Genesis, Host, HostError, Identity, KeyAnswer, KeyRequestId, LedgerError,
    LedgerLocation, NetworkKey, PublicIdentity, RecordDraft, RecordError, RecordReceipt,
    RequestKeyError, SealedRecord, SealedWriterKey, SubmitTxError, TxBody,
};
use medchain_core::block::{tx_leaf, Block, BlockHeader};
use medchain_core::hash::{BlockHash, RecordId, TxId};
use medchain_core::keys::VerifyKey;
use medchain_core::light::{commit_path, InclusionError, InclusionProof, MAX_PROOF_DESCENDANTS};
use medchain_core::merkle::{self, MerkleError};
use medchain_core::protocol::DropReason;
use medchain_core::seal::KeyEnvelope;
use medchain_core::sharing::KeyRequest;
use medchain_core::store::LedgerStore;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::api;
use crate::people::{Clinician, Enrolments, PeopleError};
use crate::transport::{self, Incoming, Transport, TransportConfig};

/// Commands from the client API waiting for the host: a full queue answers `503 busy`.
pub const COMMAND_QUEUE: usize = 1024;

/// Transactions whose status the node remembers (submitted here, or committed or refused
/// since); the oldest are forgotten first. A forgotten committed transaction is still found
/// in the ledger.
pub const TRACKED_MAX: usize = 65_536;

/// Key requests relayed here whose answer the node remembers; the oldest are forgotten first.
pub const KEY_REQUESTS_TRACKED_MAX: usize = 4096;

/// Everything a node needs to run.
pub struct ServiceConfig {
    /// The member's identity (moved into the host; a copy signs the transport's handshakes).
    pub identity: Identity,
    /// The network's genesis.
    pub genesis: Genesis,
    /// The network key (unwrapped from the member's key file).
    pub network_key: NetworkKey,
    /// The ledger: a SQLite file or a PostgreSQL database, created with `genesis` if there is
    /// none, reopened otherwise.
    pub ledger: LedgerLocation,
    /// The peer transport: listening address, peers to dial, limits.
    pub transport: TransportConfig,
    /// The client API's address.
    pub api: SocketAddr,
    /// TLS on the client API (`None`: plain HTTP).
    pub api_tls: Option<Arc<rustls::ServerConfig>>,
    /// The directory of the patients' enrolments at this node.
    pub enrolments: PathBuf,
    /// The clinicians whose keys this node holds (the FHIR API acts for them).
    pub clinicians: Vec<Clinician>,
    /// Authentication on the client API (`None`: no bearer token is ever accepted; the
    /// operator API stays open, `docs/node.md`).
    pub auth: Option<crate::auth::AuthSettings>,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("identity", &self.identity)
            .field("genesis", &self.genesis)
            .field("ledger", &self.ledger)
            .field("transport", &self.transport)
            .field("api", &self.api)
            .field("api_tls", &self.api_tls.is_some())
            .field("enrolments", &self.enrolments)
            .field("clinicians", &self.clinicians)
            .field("auth_clients", &self.auth.as_ref().map(|a| a.clients.len()))
            .finish_non_exhaustive()
    }
}

/// The service could not start. Nothing is left running.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The host could not be set up (ledger, identity, restore).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The ledger file belongs to another network than the configured genesis.
    #[error("the ledger belongs to network {ledger}, the configuration names {configured}")]
    WrongGenesis {
        /// The ledger's genesis hash.
        ledger: BlockHash,
        /// The configured genesis hash.
        configured: BlockHash,
    },
    /// The ledger file's directory could not be created.
    #[error("cannot create the ledger's directory: {0}")]
    LedgerDir(std::io::Error),
    /// The peer transport could not start.
    #[error("peer transport: {0}")]
    Transport(#[from] transport::StartError),
    /// The client API's address could not be bound.
    #[error("cannot listen for the client API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The host's thread could not be started, or ended before it was ready.
    #[error("the host thread failed to start")]
    Thread,
    /// The enrolment directory could not be read, or holds a file not for this member.
    #[error(transparent)]
    People(PeopleError),
}

/// The service stopped on an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// A committed block could not be written to the ledger.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The node's durable state could not be saved after a submission (nothing it produced was
    /// sent).
    #[error("the node's durable state could not be saved: {0}")]
    Durable(String),
    /// The host's thread panicked.
    #[error("the host thread panicked")]
    Panicked,
}

/// Where a transaction stands, as this node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxStatus {
    /// Submitted here, not committed or refused yet.
    Pending,
    /// Committed in the block at this height.
    Committed(u64),
    /// Refused by the ledger rules (it will not commit): the rule's name
    /// ([`medchain::RuleError::name`]).
    Rejected(&'static str),
}

/// A command for the host's thread.
pub(crate) enum Command {
    Submit {
        body: Box<TxBody>,
        reply: oneshot::Sender<Result<TxId, SubmitTxError>>,
    },
    Status {
        id: TxId,
        reply: oneshot::Sender<Result<Option<TxStatus>, LedgerError>>,
    },
    Block {
        height: u64,
        reply: oneshot::Sender<Result<Option<Block>, LedgerError>>,
    },
    Proof {
        id: TxId,
        reply: oneshot::Sender<Result<Option<(u64, InclusionProof)>, ProofError>>,
    },
    AddRecord {
        fhir: Vec<u8>,
        enrolment: Box<SealedWriterKey>,
        readers: Vec<PublicIdentity>,
        reply: oneshot::Sender<Result<RecordReceipt, RecordError>>,
    },
    RelayKeyRequest {
        request: Box<KeyRequest>,
        reply: oneshot::Sender<Result<KeyRequestId, RequestKeyError>>,
    },
    KeyRequestStatus {
        id: KeyRequestId,
        reply: oneshot::Sender<Result<Option<KeyRequestStatus>, LedgerError>>,
    },
    Release {
        reader: PublicIdentity,
        record: RecordId,
        reply: oneshot::Sender<Result<(SealedRecord, KeyEnvelope), LedgerError>>,
    },
    /// Runs on the host's thread with the node's state (the FHIR API's operations, which read
    /// the ledger and act for the node's clinicians and enrolled patients). The closure sends
    /// its own answer.
    Run(Box<dyn FnOnce(&mut Running) + Send>),
}

/// Where a key request relayed by this node stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRequestStatus {
    /// Relayed; the holder has not answered yet.
    Pending,
    /// The holder answered.
    Answered {
        /// The answer.
        answer: KeyAnswer,
        /// For [`KeyAnswer::Released`]: whether both its transactions (the `KeyShared` and its
        /// `AccessLogged`) are committed on this node's ledger.
        committed: bool,
    },
}

/// An inclusion proof could not be made from the ledger (a store error, or a stored chain the
/// proof does not verify against: both are the node's fault, never the client's).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The stored block has no transaction where its index says.
    #[error("the stored block has no transaction at the recorded index")]
    Index,
    /// The Merkle proof could not be built.
    #[error("merkle proof: {0}")]
    Merkle(#[from] MerkleError),
    /// The assembled proof does not verify against the genesis.
    #[error("the assembled proof does not verify: {0}")]
    Verify(#[from] InclusionError),
}

/// The commit latency histogram's upper bounds, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

/// Submit→commit latency of the transactions submitted here.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS`] (not cumulative).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    /// All observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The host loop's counters, for the metrics endpoint.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Transactions accepted by the submit endpoint.
    pub submitted: u64,
    /// Transactions submitted here and not yet committed or refused.
    pub pending: u64,
    /// Blocks committed (appended to the ledger) since the start.
    pub blocks: u64,
    /// Transactions in those blocks.
    pub txs: u64,
    /// Own transactions refused by the ledger rules, by rule.
    pub refused: BTreeMap<&'static str, u64>,
    /// Received messages the protocol dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Equivocation evidence seen.
    pub evidence: u64,
    /// Transmits the transport refused (too large, not a peer, closed).
    pub send_failed: u64,
    /// Submit→commit latency.
    pub latency: Histogram,
    /// Key requests other members relayed (or this node relayed to itself) for records added
    /// here, answered by this node, by answer ([`KeyAnswer::name`]).
    pub key_requests_answered: BTreeMap<String, u64>,
    /// Answers received to the key requests this node relayed, by answer.
    pub key_answers_received: BTreeMap<String, u64>,
}

/// What the API reads without asking the host: identity, progress, counters.
#[derive(Debug)]
pub struct NodeState {
    /// This member's signing key.
    pub member: VerifyKey,
    /// Its name in genesis.
    pub name: String,
    /// The chain's name.
    pub chain_name: String,
    /// The genesis hash (the chain id).
    pub genesis: BlockHash,
    /// Whether the member is a validator.
    pub validator: bool,
    /// The other members.
    pub peers_total: usize,
    started: Instant,
    height: AtomicU64,
    head: Mutex<BlockHash>,
    round: AtomicU64,
    mempool: AtomicU64,
    running: AtomicBool,
    transport: Arc<transport::Metrics>,
    stats: Mutex<Stats>,
}

impl NodeState {
    fn new(host: &Host<AnyStore>, transport: Arc<transport::Metrics>) -> Self {
        let genesis = host.genesis();
        let member = host.key();
        Self {
            member,
            name: genesis
                .member(&member)
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            chain_name: genesis.chain_name.clone(),
            genesis: genesis.hash(),
            validator: genesis.is_validator(&member),
            peers_total: genesis.members.len().saturating_sub(1),
            started: Instant::now(),
            height: AtomicU64::new(host.ledger().height()),
            head: Mutex::new(host.ledger().tip().hash),
            round: AtomicU64::new(host.current_round()),
            mempool: AtomicU64::new(host.mempool_len() as u64),
            running: AtomicBool::new(true),
            transport,
            stats: Mutex::new(Stats::default()),
        }
    }

    /// The committed height.
    pub fn height(&self) -> u64 {
        self.height.load(Ordering::Relaxed)
    }

    /// The committed head's hash.
    pub fn head(&self) -> BlockHash {
        *lock(&self.head)
    }

    /// The consensus round the node is in ([`Host::current_round`]).
    pub fn round(&self) -> u64 {
        self.round.load(Ordering::Relaxed)
    }

    /// Transactions in the node's mempool ([`Host::mempool_len`]).
    pub fn mempool(&self) -> u64 {
        self.mempool.load(Ordering::Relaxed)
    }

    /// Whether the host loop runs.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Seconds since the service started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The transport's counters.
    pub fn transport(&self) -> &transport::Metrics {
        &self.transport
    }

    /// A copy of the host loop's counters.
    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a plain assignment or increment: a panic while one is
    // held leaves consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch (the host's and the protocol's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A running node. Stop it with [`Service::shutdown`]; [`Service::stopped`] tells when it stopped
/// by itself (a fatal error).
pub struct Service {
    api_addr: SocketAddr,
    p2p_addr: SocketAddr,
    state: Arc<NodeState>,
    stop: watch::Sender<bool>,
    done: Option<oneshot::Receiver<Result<(), RunError>>>,
    result: Option<Result<(), RunError>>,
    thread: Option<std::thread::JoinHandle<()>>,
    api: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("member", &self.state.member)
            .field("api_addr", &self.api_addr)
            .field("p2p_addr", &self.p2p_addr)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Opens (or creates) the ledger, starts the host's thread, the transport and the client
    /// API. Must be called within a multi-threaded tokio runtime with time and I/O enabled.
    ///
    /// # Errors
    /// [`StartError`]; nothing is left running.
    pub async fn start(mut config: ServiceConfig) -> Result<Self, StartError> {
        let api_listener =
            TcpListener::bind(config.api)
                .await
                .map_err(|source| StartError::Api {
                    addr: config.api,
                    source,
                })?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| StartError::Api {
                addr: config.api,
                source,
            })?;
        let api_tls = config.api_tls.clone();
        let auth = config
            .auth
            .take()
            .map(|a| Arc::new(crate::auth::AuthState::new(a, api_addr, api_tls.is_some())));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let (stop, stop_rx) = watch::channel(false);
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let handle = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("medchain-host".into())
            .spawn(move || {
                // The runtime's handle is entered (timers, channels and the transport's tasks
                // need it) but the loop does not run *in* the runtime: the host's blocking
                // calls include the PostgreSQL client's, which runs a runtime of its own.
                let _context = handle.enter();
                let result = park_on(host_main(config, ready_tx, command_rx, stop_rx));
                let _ = done_tx.send(result);
            })
            .map_err(|_| StartError::Thread)?;
        let (state, p2p_addr) = match ready_rx.await {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StartError::Thread);
            }
        };
        let fhir_base = api::fhir_base_url(
            auth.as_deref().map(crate::auth::AuthState::audience),
            api_addr,
            api_tls.is_some(),
        );
        let router = api::router(api::ApiState::new(state.clone(), commands, fhir_base), auth);
        let tls_on = api_tls.is_some();
        let mut stop_api = stop.subscribe();
        let api = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_api.wait_for(|s| *s).await;
            };
            let served = match api_tls {
                None => {
                    axum::serve(api_listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                Some(tls) => match crate::tls::TlsListener::new(api_listener, tls) {
                    Ok(listener) => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(shutdown)
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "client API stopped");
            }
        });
        tracing::info!(
            member = %state.member,
            name = %state.name,
            genesis = %state.genesis,
            height = state.height(),
            %p2p_addr,
            %api_addr,
            api_tls = tls_on,
            "node running"
        );
        Ok(Self {
            api_addr,
            p2p_addr,
            state,
            stop,
            done: Some(done_rx),
            result: None,
            thread: Some(thread),
            api: Some(api),
        })
    }

    /// The client API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The peer transport's address.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.p2p_addr
    }

    /// What the node reports.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// Waits until the host loop has stopped (by itself, on a fatal error, or after
    /// [`Service::shutdown`] was asked for).
    pub async fn stopped(&mut self) {
        if let Some(done) = self.done.take() {
            self.result = Some(done.await.unwrap_or_else(|_| Err(RunError::Panicked)));
        }
    }

    /// Stops the node: the host finishes the call in progress (and its ledger write), the
    /// transport closes its connections, the client API finishes the requests in flight.
    ///
    /// # Errors
    /// The [`RunError`] the host loop stopped on, if it stopped on one.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        self.stop.send_replace(true);
        self.stopped().await;
        if let Some(api) = self.api.take() {
            let _ = api.await;
        }
        if let Some(thread) = self.thread.take() {
            // The loop has ended; the thread only drops the host (closing the ledger) now.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.result.take().unwrap_or(Ok(()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

type Ready = Result<(Arc<NodeState>, SocketAddr), StartError>;

/// Runs `future` to completion on this thread, parking the thread between polls: a minimal
/// executor, not tokio's `block_on`, so that blocking code it calls may start a runtime of its
/// own (the `postgres` crate's synchronous client does; inside `Handle::block_on` that would
/// panic). tokio's timers and channels wake it like any waker, as long as the caller entered a
/// runtime's handle.
fn park_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake-up between the poll and here leaves the token set: park returns at once.
        std::thread::park();
    }
}

async fn host_main(
    config: ServiceConfig,
    ready: oneshot::Sender<Ready>,
    commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    match setup(config).await {
        Err(e) => {
            let _ = ready.send(Err(e));
            Ok(())
        }
        Ok((host, transport, incoming, people)) => {
            let state = Arc::new(NodeState::new(&host, transport.metrics()));
            if ready
                .send(Ok((state.clone(), transport.local_addr())))
                .is_err()
            {
                transport.shutdown().await;
                return Ok(());
            }
            let mut node = Running {
                host,
                transport,
                state,
                tracker: Tracker::new(TRACKED_MAX),
                key_requests: KeyRequests::new(KEY_REQUESTS_TRACKED_MAX),
                people,
                exports: crate::fhir::Exports::default(),
                fatal: None,
            };
            let result = node.run(incoming, commands, stop).await;
            node.state.running.store(false, Ordering::Relaxed);
            match &result {
                Ok(()) => tracing::info!(height = node.state.height(), "node stopped"),
                Err(e) => tracing::error!(error = %e, "node stopped on an error"),
            }
            node.transport.shutdown().await;
            result
        }
    }
}

async fn setup(
    config: ServiceConfig,
) -> Result<(Host<AnyStore>, Transport, Incoming, People), StartError> {
    let ServiceConfig {
        identity,
        genesis,
        network_key,
        ledger,
        transport,
        api: _,
        api_tls: _,
        enrolments,
        clinicians,
        auth: _,
    } = config;
    let transport_identity = Arc::new(identity.duplicate());
    let now = now_ms();
    let host = match Host::open_at(&ledger, identity.duplicate(), network_key.duplicate(), now) {
        Ok(host) => {
            if host.genesis().hash() != genesis.hash() {
                return Err(StartError::WrongGenesis {
                    ledger: host.genesis().hash(),
                    configured: genesis.hash(),
                });
            }
            host
        }
        // Nothing there (no file, no schema): the first run creates it.
        Err(e) if e.is_not_found() => {
            if let Some(dir) = ledger
                .sqlite_path()
                .and_then(|p| p.parent())
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(StartError::LedgerDir)?;
            }
            Host::create_at(&ledger, &genesis, identity, network_key, now)?
        }
        Err(e) => return Err(e.into()),
    };
    let chain = genesis.chain_id();
    let enrolments = Enrolments::load(&enrolments, |e| {
        e.import(host.identity(), &chain, e.patient()).is_ok()
    })
    .map_err(StartError::People)?;
    let (transport, incoming) = Transport::start(transport, transport_identity, &genesis).await?;
    Ok((
        host,
        transport,
        incoming,
        People {
            clinicians,
            enrolments,
        },
    ))
}

/// The clinicians and enrolled patients the node acts for (`crate::people`).
#[derive(Debug)]
pub(crate) struct People {
    pub(crate) clinicians: Vec<Clinician>,
    pub(crate) enrolments: Enrolments,
}

impl People {
    /// The clinician named `name`.
    pub(crate) fn clinician(&self, name: &str) -> Option<&Clinician> {
        self.clinicians.iter().find(|c| c.name == name)
    }
}

/// The host loop's owned state.
pub(crate) struct Running {
    pub(crate) host: Host<AnyStore>,
    transport: Transport,
    state: Arc<NodeState>,
    tracker: Tracker,
    key_requests: KeyRequests,
    pub(crate) people: People,
    pub(crate) exports: crate::fhir::Exports,
    /// A store failure met by the command being run: it stops the node after the command.
    fatal: Option<RunError>,
}

/// How long the loop sleeps when the host asks for no timer (it wakes on input anyway).
const IDLE: Duration = Duration::from_secs(3600);

impl Running {
    async fn run(
        &mut self,
        mut incoming: Incoming,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        self.flush();
        loop {
            let wait = self
                .host
                .poll_timeout()
                .map_or(IDLE, |t| Duration::from_millis(t.saturating_sub(now_ms())));
            // Unbiased: under a flood of messages, timers and API commands still get their turn.
            let step = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                message = incoming.recv() => match message {
                    Some(m) => self
                        .host
                        .handle_message(m.from, &m.bytes, now_ms())
                        .map_err(RunError::from),
                    None => return Ok(()),
                },
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return Ok(()),
                },
                () = tokio::time::sleep(wait) => self.host.handle_timeout(now_ms()).map_err(RunError::from),
            };
            step?;
            self.flush();
        }
    }

    fn command(&mut self, command: Command) -> Result<(), RunError> {
        match command {
            Command::Submit { body, reply } => {
                let result = self.host.submit_patient_signed(&body, now_ms());
                self.track_submission(result.as_ref().map(std::slice::from_ref));
                let _ = reply.send(result);
                self.fatal.take().map_or(Ok(()), Err)
            }
            Command::Status { id, reply } => {
                let _ = reply.send(self.status(&id));
                Ok(())
            }
            Command::Proof { id, reply } => {
                let _ = reply.send(self.proof(&id));
                Ok(())
            }
            Command::Block { height, reply } => {
                let block = LedgerStore::block(self.host.ledger().store(), height)
                    .map_err(LedgerError::from);
                let _ = reply.send(block);
                Ok(())
            }
            Command::AddRecord {
                fhir,
                enrolment,
                readers,
                reply,
            } => {
                let draft = RecordDraft {
                    fhir: &fhir,
                    enrolment: &enrolment,
                    readers: &readers,
                };
                let result = self.host.add_record(draft, now_ms());
                self.track_record(result.as_ref().map(|r| std::slice::from_ref(&r.tx_id)));
                let _ = reply.send(result);
                self.fatal.take().map_or(Ok(()), Err)
            }
            Command::RelayKeyRequest { request, reply } => {
                let result = self.host.relay_key_request(*request, now_ms());
                if let Ok(id) = &result {
                    self.key_requests.relayed(*id);
                }
                let _ = reply.send(result);
                Ok(())
            }
            Command::KeyRequestStatus { id, reply } => {
                let _ = reply.send(self.key_request_status(&id));
                Ok(())
            }
            Command::Release {
                reader,
                record,
                reply,
            } => {
                let _ = reply.send(self.host.ledger().released_to(&reader, &record));
                Ok(())
            }
            Command::Run(f) => {
                f(self);
                self.fatal.take().map_or(Ok(()), Err)
            }
        }
    }

    /// Records the outcome of a submission made on the host's thread: the transactions it
    /// queued are this node's (tracked for their status and counted); a store failure is kept
    /// as the error that stops the node once the command is done.
    pub(crate) fn track_submission(&mut self, result: Result<&[TxId], &SubmitTxError>) {
        match result {
            Ok(ids) => {
                for id in ids {
                    self.tracker.submitted(*id);
                }
                lock(&self.state.stats).submitted += ids.len() as u64;
            }
            Err(SubmitTxError::Ledger(e)) => self.fatal = Some(RunError::Durable(e.to_string())),
            Err(_) => {}
        }
    }

    /// [`track_submission`](Self::track_submission) for records.
    pub(crate) fn track_record(&mut self, result: Result<&[TxId], &RecordError>) {
        match result {
            Ok(ids) => self.track_submission(Ok(ids)),
            Err(RecordError::Submit(e)) => self.track_submission(Err(e)),
            Err(_) => {}
        }
    }

    /// Tracks a key request this node sent, so that its answer is kept.
    pub(crate) fn key_request_sent(&mut self, id: KeyRequestId) {
        self.key_requests.relayed(id);
    }

    /// Where a key request this node sent stands.
    pub(crate) fn key_request(
        &self,
        id: &KeyRequestId,
    ) -> Result<Option<KeyRequestStatus>, LedgerError> {
        self.key_request_status(id)
    }

    /// Whether the transaction `id` is committed here.
    pub(crate) fn is_committed(&self, id: &TxId) -> bool {
        self.host.is_committed(id)
    }

    /// A relayed key request's status; for a release, whether both transactions committed.
    fn key_request_status(
        &self,
        id: &KeyRequestId,
    ) -> Result<Option<KeyRequestStatus>, LedgerError> {
        let Some(answer) = self.key_requests.get(id) else {
            return Ok(None);
        };
        let Some(answer) = answer else {
            return Ok(Some(KeyRequestStatus::Pending));
        };
        let committed = match answer {
            KeyAnswer::Released {
                key_shared,
                access_logged,
            } => {
                let store = self.host.ledger().store();
                LedgerStore::tx_location(store, key_shared)
                    .map_err(LedgerError::from)?
                    .is_some()
                    && LedgerStore::tx_location(store, access_logged)
                        .map_err(LedgerError::from)?
                        .is_some()
            }
            _ => false,
        };
        Ok(Some(KeyRequestStatus::Answered {
            answer: answer.clone(),
            committed,
        }))
    }

    fn status(&self, id: &TxId) -> Result<Option<TxStatus>, LedgerError> {
        if let Some(status) = self.tracker.get(id) {
            return Ok(Some(status));
        }
        let location =
            LedgerStore::tx_location(self.host.ledger().store(), id).map_err(LedgerError::from)?;
        Ok(location.map(|(height, _)| TxStatus::Committed(height)))
    }

    /// A light-client inclusion proof for a committed transaction (`None`: not committed here,
    /// or its block's commit is not yet shown by the stored chain), checked against the
    /// genesis before it is handed out.
    fn proof(&self, id: &TxId) -> Result<Option<(u64, InclusionProof)>, ProofError> {
        let ledger = self.host.ledger();
        let store = ledger.store();
        let location = LedgerStore::tx_location(store, id).map_err(LedgerError::from)?;
        let Some((height, index)) = location else {
            return Ok(None);
        };
        // The block, then up to MAX_PROOF_DESCENDANTS descendants and the two blocks that show
        // the last of them committed.
        let head = ledger.height();
        let last = head.min(height.saturating_add(MAX_PROOF_DESCENDANTS as u64 + 2));
        let mut blocks = Vec::new();
        for h in height..=last {
            match LedgerStore::block(store, h).map_err(LedgerError::from)? {
                Some(b) => blocks.push(b),
                None => break,
            }
        }
        let headers: Vec<BlockHeader> = blocks.iter().map(|b| b.header.clone()).collect();
        let head_proof = if height + blocks.len() as u64 == head + 1 {
            LedgerStore::head(store)
                .map_err(LedgerError::from)?
                .and_then(|h| h.proof)
        } else {
            None
        };
        let Ok((descendants, commit)) = commit_path(&headers, head_proof.as_ref()) else {
            return Ok(None);
        };
        let Some(block) = blocks.into_iter().next() else {
            return Ok(None);
        };
        let index = usize::try_from(index).map_err(|_| ProofError::Index)?;
        let mut tx = block
            .transactions
            .get(index)
            .cloned()
            .ok_or(ProofError::Index)?;
        let leaves: Vec<[u8; 32]> = block
            .transactions
            .iter()
            .map(|t| tx_leaf(&t.id(), t.signature()))
            .collect();
        let merkle = merkle::proof(&leaves, index)?;
        tx.prune();
        let proof = InclusionProof {
            tx,
            merkle,
            header: block.header,
            descendants,
            commit,
        };
        proof.verify(self.host.genesis())?;
        Ok(Some((height, proof)))
    }

    /// Sends what the host produced and takes in its events.
    fn flush(&mut self) {
        while let Some(t) = self.host.poll_transmit() {
            if let Err(e) = self.transport.send(t.to, t.bytes) {
                lock(&self.state.stats).send_failed += 1;
                tracing::warn!(error = %e, "a protocol message could not be sent");
            }
        }
        let mut stats = lock(&self.state.stats);
        while let Some(event) = self.host.poll_event() {
            match event {
                Event::Committed { height, txs } => {
                    stats.blocks += 1;
                    stats.txs += txs.len() as u64;
                    for id in &txs {
                        if let Some(latency) = self.tracker.committed(*id, height) {
                            stats.latency.observe(latency.as_secs_f64());
                        }
                    }
                    tracing::debug!(height, txs = txs.len(), "block committed");
                }
                Event::Refused { id, reason } => {
                    *stats.refused.entry(reason.name()).or_default() += 1;
                    self.tracker.rejected(id, reason.name());
                    tracing::info!(tx = %id, rule = reason.name(), "transaction refused");
                }
                Event::Dropped { from, reason } => {
                    let label = drop_label(&reason);
                    *stats.dropped.entry(label).or_default() += 1;
                    tracing::debug!(peer = %from, reason = label, "message dropped");
                }
                Event::Evidence(_) => {
                    stats.evidence += 1;
                    tracing::warn!("equivocation evidence received");
                }
                // A denial's detail (which consent refused) is for the patient's audit view:
                // never logged.
                Event::KeyRequestAnswered {
                    from,
                    request,
                    record,
                    grantee,
                    purpose,
                    answer,
                    denial: _,
                    denial_logged,
                } => {
                    *stats
                        .key_requests_answered
                        .entry(answer.name().to_owned())
                        .or_default() += 1;
                    tracing::info!(
                        request = %request,
                        record = %record,
                        relayed_by = %from,
                        grantee = %grantee.sign,
                        purpose = purpose.code(),
                        answer = answer.name(),
                        denial_logged = denial_logged.map(|id| id.to_string()),
                        "key request answered"
                    );
                }
                Event::KeyAnswered {
                    request,
                    record,
                    answer,
                } => {
                    *stats
                        .key_answers_received
                        .entry(answer.name().to_owned())
                        .or_default() += 1;
                    tracing::info!(
                        request = %request,
                        record = %record,
                        answer = answer.name(),
                        "key request answer received"
                    );
                    self.key_requests.answered(request, answer);
                }
                _ => {}
            }
        }
        stats.pending = self.tracker.pending;
        drop(stats);
        self.state
            .height
            .store(self.host.ledger().height(), Ordering::Relaxed);
        *lock(&self.state.head) = self.host.ledger().tip().hash;
        self.state
            .round
            .store(self.host.current_round(), Ordering::Relaxed);
        self.state
            .mempool
            .store(self.host.mempool_len() as u64, Ordering::Relaxed);
    }
}

/// The metric label of a protocol drop reason.
pub fn drop_label(reason: &DropReason) -> &'static str {
    match reason {
        DropReason::Malformed(_) => "malformed",
        DropReason::UnknownSender => "unknown_sender",
        DropReason::WrongChain => "wrong_chain",
        DropReason::InvalidBlock(_) => "invalid_block",
        DropReason::BadVote(_) => "bad_vote",
        DropReason::VoteParentMismatch => "vote_parent_mismatch",
        DropReason::BadTimeout(_) => "bad_timeout",
        DropReason::BadCertificate(_) => "bad_certificate",
        DropReason::BadCommitProof(_) => "bad_commit_proof",
        DropReason::NotMiner => "not_miner",
        DropReason::SenderMismatch => "sender_mismatch",
        DropReason::BadTicket => "bad_ticket",
        DropReason::BadTransaction(_) => "bad_transaction",
        DropReason::ForeignTransaction => "foreign_transaction",
        DropReason::BadDraft(_) => "bad_draft",
        DropReason::BadContributorSignature => "bad_contributor_signature",
        DropReason::BadFilterSegment => "bad_filter_segment",
        DropReason::Stale => "stale",
        DropReason::Unexpected => "unexpected",
        DropReason::BufferFull => "buffer_full",
        _ => "other",
    }
}

/// The key requests relayed here and their answers (`None`: pending), bounded: the oldest
/// entry goes first.
struct KeyRequests {
    entries: HashMap<KeyRequestId, Option<KeyAnswer>>,
    order: VecDeque<KeyRequestId>,
    cap: usize,
}

impl KeyRequests {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn get(&self, id: &KeyRequestId) -> Option<&Option<KeyAnswer>> {
        self.entries.get(id)
    }

    /// Records a relayed request as pending; one relayed again keeps its first answer.
    fn relayed(&mut self, id: KeyRequestId) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.entries.entry(id) {
            slot.insert(None);
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }

    /// Records the first answer to a request still remembered (a forgotten one stays
    /// forgotten; a later answer, `replayed` to the same request relayed again, does not hide
    /// the first).
    fn answered(&mut self, id: KeyRequestId, answer: KeyAnswer) {
        if let Some(slot @ None) = self.entries.get_mut(&id) {
            *slot = Some(answer);
        }
    }
}

/// The statuses the node remembers, bounded: the oldest entry goes first.
struct Tracker {
    entries: HashMap<TxId, Tracked>,
    order: VecDeque<TxId>,
    cap: usize,
    pending: u64,
}

#[derive(Debug, Clone, Copy)]
enum Tracked {
    Pending(Instant),
    Done(TxStatus),
}

impl Tracker {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            cap,
            pending: 0,
        }
    }

    fn get(&self, id: &TxId) -> Option<TxStatus> {
        self.entries.get(id).map(|t| match t {
            Tracked::Pending(_) => TxStatus::Pending,
            Tracked::Done(s) => *s,
        })
    }

    fn set(&mut self, id: TxId, tracked: Tracked) -> Option<Tracked> {
        let before = self.entries.insert(id, tracked);
        if matches!(before, Some(Tracked::Pending(_))) {
            self.pending -= 1;
        }
        if matches!(tracked, Tracked::Pending(_)) {
            self.pending += 1;
        }
        if before.is_none() {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    if let Some(Tracked::Pending(_)) = self.entries.remove(&old) {
                        self.pending -= 1;
                    }
                }
            }
        }
        before
    }

    fn submitted(&mut self, id: TxId) {
        self.set(id, Tracked::Pending(Instant::now()));
    }

    /// Records a commit; the latency when it was submitted here and pending.
    fn committed(&mut self, id: TxId, height: u64) -> Option<Duration> {
        match self.set(id, Tracked::Done(TxStatus::Committed(height))) {
            Some(Tracked::Pending(since)) => Some(since.elapsed()),
            _ => None,
        }
    }

    fn rejected(&mut self, id: TxId, rule: &'static str) {
        self.set(id, Tracked::Done(TxStatus::Rejected(rule)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TxId {
        TxId::from_byte_array([n; 32])
    }

    #[test]
    fn tracker_follows_a_transaction_and_stays_bounded() {
        let mut t = Tracker::new(3);
        t.submitted(id(1));
        t.submitted(id(2));
        assert_eq!((t.get(&id(1)), t.pending), (Some(TxStatus::Pending), 2));
        assert!(t.committed(id(1), 7).is_some());
        assert_eq!(t.get(&id(1)), Some(TxStatus::Committed(7)));
        assert_eq!(t.pending, 1);
        // A transaction of another node committed here is remembered, with no latency.
        assert!(t.committed(id(3), 7).is_none());
        t.rejected(id(2), "consent_exists");
        assert_eq!(t.get(&id(2)), Some(TxStatus::Rejected("consent_exists")));
        assert_eq!(t.pending, 0);
        // Over the cap, the oldest entry is forgotten; pending counts stay right.
        t.submitted(id(4));
        assert_eq!(t.get(&id(1)), None);
        assert_eq!(t.entries.len(), 3);
        t.submitted(id(5));
        t.submitted(id(6));
        t.submitted(id(7));
        assert_eq!((t.entries.len(), t.pending), (3, 3));
    }

    #[test]
    fn key_request_tracker_records_answers_and_stays_bounded() {
        let rid = |n: u8| KeyRequestId::from_byte_array([n; 32]);
        let mut k = KeyRequests::new(2);
        k.relayed(rid(1));
        assert_eq!(k.get(&rid(1)), Some(&None));
        k.answered(rid(1), KeyAnswer::Denied);
        assert_eq!(k.get(&rid(1)), Some(&Some(KeyAnswer::Denied)));
        // An answer to a request never relayed here is not remembered.
        k.answered(rid(9), KeyAnswer::Denied);
        assert_eq!(k.get(&rid(9)), None);
        // Relaying again does not forget the answer or grow the queue; the holder's `replayed`
        // to the second relay does not hide it.
        k.relayed(rid(1));
        k.answered(rid(1), KeyAnswer::Replayed);
        assert_eq!(k.get(&rid(1)), Some(&Some(KeyAnswer::Denied)));
        k.relayed(rid(2));
        k.relayed(rid(3));
        assert_eq!(k.get(&rid(1)), None, "the oldest is forgotten");
        assert_eq!((k.entries.len(), k.order.len()), (2, 2));
    }

    /// The host thread's executor drives tokio timers from outside the runtime, and code it
    /// runs may start a runtime of its own (as the PostgreSQL client does).
    #[test]
    fn park_on_runs_tokio_timers_and_lets_blocking_code_start_a_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let _context = rt.handle().enter();
        let out = park_on(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let inner = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("inner runtime");
            inner.block_on(async { 7 })
        });
        assert_eq!(out, 7);
    }

    #[test]
    fn histogram_buckets_observations() {
        let mut h = Histogram::default();
        for s in [0.01, 0.3, 0.3, 99.0] {
            h.observe(s);
        }
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[3], 2);
        assert_eq!(h.buckets.iter().sum::<u64>(), 3, "99 s is only in +Inf");
        assert!((h.sum - 99.61).abs() < 1e-9);
    }
}
