//! [`MemoryNetwork`]: several members' [`Host`]s in one process, wired in memory.
//!
//! The one driver of the workspace ([`medchain_core::protocol::driver`]) over hosts, with
//! instant, in-order delivery; virtual time jumps to the next deadline when nothing is in flight.
//! It is what libp2p's `MemoryTransport` is to a swarm: the quick start, the clinic example,
//! demos, Python's `LocalNetwork` and an application's own integration tests run real members
//! (real consensus, real SQLite ledgers) without sockets. A hospital in production runs one
//! member per process and moves its host's bytes over the peer transport (`medchain-node`).

use std::path::Path;

use getrandom::SysRng;
use medchain_core::hash::TxId;
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::protocol::driver::{Driver, Peer, Policy, Polled, Stop};
use medchain_core::seal::{NetworkKey, SealError};
use rand_core::UnwrapErr;
use thiserror::Error;

use crate::host::{genesis_of, Event, FoundError, Host, HostError};

/// Why a memory network could not be founded or driven.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MemoryNetworkError {
    /// The genesis could not be built.
    #[error(transparent)]
    Found(#[from] FoundError),
    /// The network key could not be handed to a member.
    #[error("network key: {0}")]
    Seal(#[from] SealError),
    /// A host failed (setup, or a ledger write).
    #[error(transparent)]
    Host(#[from] HostError),
}

impl Peer for Host {
    type Event = Event;
    type Error = HostError;

    fn key(&self) -> VerifyKey {
        Host::key(self)
    }

    fn handle_message(
        &mut self,
        from: VerifyKey,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), HostError> {
        Host::handle_message(self, from, bytes, now_ms)
    }

    fn handle_timeout(&mut self, now_ms: u64) -> Result<(), HostError> {
        Host::handle_timeout(self, now_ms)
    }

    fn poll_timeout(&self) -> Option<u64> {
        Host::poll_timeout(self)
    }

    fn poll_output(&mut self) -> Option<Polled<Event>> {
        if let Some(t) = self.poll_transmit() {
            return Some(Polled::Transmit {
                to: t.to,
                bytes: t.bytes,
            });
        }
        self.poll_event().map(Polled::Event)
    }
}

/// The network's policy: instant, in-order delivery; every host's events kept, by host index.
#[derive(Debug, Default)]
struct EventLog(Vec<(usize, Event)>);

impl Policy<Host> for EventLog {
    fn event(&mut self, _: u64, i: usize, _: &mut Host, event: Event) {
        self.0.push((i, event));
    }
}

/// Several members' hosts and the wire between them, in one process: what one host transmits is
/// delivered to its recipients at once, in order; when nothing is in flight, virtual time moves
/// to the earliest deadline. Drive it with [`run_until_committed`](Self::run_until_committed),
/// [`run_for`](Self::run_for) or [`step`](Self::step); submit through
/// [`host_mut`](Self::host_mut).
#[derive(Debug)]
pub struct MemoryNetwork {
    net: Driver<Host>,
    events: EventLog,
}

impl MemoryNetwork {
    /// Founds a network of `names.len()` validators at `now_ms` (fresh identities, a fresh
    /// network key handed to each member wrapped to its identity), each with a SQLite ledger in
    /// `dir`.
    ///
    /// # Errors
    /// [`MemoryNetworkError`].
    pub fn found(dir: &Path, names: &[&str], now_ms: u64) -> Result<Self, MemoryNetworkError> {
        let mut rng = UnwrapErr(SysRng);
        let network = NetworkKey::generate(&mut rng);
        let identities: Vec<Identity> =
            names.iter().map(|_| Identity::generate(&mut rng)).collect();
        let named: Vec<(&str, &Identity)> = names.iter().copied().zip(&identities).collect();
        let genesis = genesis_of("memory-network", &named, &network, now_ms)?;
        let mut hosts = Vec::with_capacity(names.len());
        for (i, id) in identities.into_iter().enumerate() {
            // What a founder does: wrap the network key to each member's public identity.
            let envelope = network.wrap_for(&id.public(), &mut rng)?;
            let key = NetworkKey::unwrap_from(&envelope, &id)?;
            let path = dir.join(format!("member-{i}.sqlite"));
            hosts.push(Host::create(path, &genesis, id, key, now_ms)?);
        }
        Ok(Self::new(hosts, now_ms))
    }

    /// A network of hosts the caller set up (any genesis, validators and members), at virtual
    /// time `now_ms`.
    pub fn new(hosts: Vec<Host>, now_ms: u64) -> Self {
        let mut cluster = Self {
            net: Driver::new(hosts, now_ms),
            events: EventLog::default(),
        };
        cluster.net.flush_all(&mut cluster.events);
        cluster
    }

    /// The virtual time (milliseconds since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.net.now_ms()
    }

    /// Moves the virtual clock forward to `to_ms` at once (never backwards); deadlines it
    /// passes fire at the next steps, at the new time.
    pub fn advance_clock(&mut self, to_ms: u64) {
        self.net.advance_clock(to_ms);
    }

    /// Host `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn host(&self, i: usize) -> &Host {
        self.net.peer(i)
    }

    /// Host `i`, to submit through it. Call [`pump`](Self::pump) or a `run_*` method after.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn host_mut(&mut self, i: usize) -> &mut Host {
        self.net.peer_mut(i)
    }

    /// The hosts.
    pub fn hosts(&self) -> &[Host] {
        self.net.peers()
    }

    /// Stops host `i`, as a crash would: it neither receives, sends nor times out (messages
    /// for it are lost) until [`restart`](Self::restart).
    pub fn stop(&mut self, i: usize) {
        self.net.stop(i);
    }

    /// Puts `host` in place of host `i` and starts it (a restart: typically [`Host::open`] on
    /// host `i`'s ledger file); returns the old host, whose unsaved state is lost when it is
    /// dropped, as in a crash.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn restart(&mut self, i: usize, host: Host) -> Host {
        let old = self.net.replace(i, host);
        self.net.start(i, &mut self.events);
        old
    }

    /// Delivers `bytes` to host `to` as if the member `from` had sent them.
    pub fn inject(&mut self, to: usize, from: VerifyKey, bytes: Vec<u8>) {
        self.net.inject(to, from, bytes);
    }

    /// Events reported so far, by host index, taken.
    pub fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events.0)
    }

    /// Moves host `i`'s transmits onto the wire and its events into the log.
    pub fn pump(&mut self, i: usize) {
        self.net.flush(i, &mut self.events);
    }

    /// One step: delivers the next message in flight, or advances virtual time to the next
    /// deadline and fires it. Returns `false` when nothing is left to do.
    ///
    /// # Errors
    /// [`MemoryNetworkError::Host`] if a host could not write its ledger.
    pub fn step(&mut self) -> Result<bool, MemoryNetworkError> {
        let idle = self.net.next_at().is_none();
        self.net.step(&mut self.events)?;
        Ok(!idle)
    }

    /// Runs until every host has committed every transaction in `ids`, in at most `max_steps`
    /// steps. Returns whether they all committed.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn run_until_committed(
        &mut self,
        ids: &[TxId],
        max_steps: usize,
    ) -> Result<bool, MemoryNetworkError> {
        let done = |net: &Driver<Host>, _: &EventLog| {
            net.peers()
                .iter()
                .all(|h| ids.iter().all(|id| h.is_committed(id)))
        };
        let stop = self.net.run(&mut self.events, steps(max_steps), done)?;
        Ok(stop == Stop::Done)
    }

    /// Lets `duration_ms` of virtual time pass, handling what falls due, in at most `max_steps`
    /// steps.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn run_for(
        &mut self,
        duration_ms: u64,
        max_steps: usize,
    ) -> Result<(), MemoryNetworkError> {
        let until = self.now_ms().saturating_add(duration_ms);
        self.net
            .run_until(&mut self.events, until, steps(max_steps), |_, _| false)?;
        Ok(())
    }

    /// Delivers everything in flight (no time passes), in at most `max_steps` steps.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn deliver_all(&mut self, max_steps: usize) -> Result<(), MemoryNetworkError> {
        self.run_for(0, max_steps)
    }
}

fn steps(max_steps: usize) -> u64 {
    u64::try_from(max_steps).unwrap_or(u64::MAX)
}
