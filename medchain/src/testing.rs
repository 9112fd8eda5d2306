//! An in-memory network of [`Host`]s for tests and demos (cargo feature `testing`): every
//! message is delivered at once and in order, and virtual time jumps to the next deadline when
//! nothing is in flight. Never part of a production build.

use std::collections::VecDeque;
use std::path::Path;

use getrandom::SysRng;
use medchain_core::hash::TxId;
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::protocol::Recipient;
use medchain_core::seal::{NetworkKey, SealError};
use rand_core::UnwrapErr;
use thiserror::Error;

use crate::host::{genesis_of, Event, FoundError, Host, HostError};

/// Why a cluster could not be founded or driven.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClusterError {
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

/// N hosts and the wire between them.
#[derive(Debug)]
pub struct LocalCluster {
    hosts: Vec<Host>,
    keys: Vec<VerifyKey>,
    wire: VecDeque<(usize, VerifyKey, Vec<u8>)>,
    now_ms: u64,
    events: Vec<(usize, Event)>,
}

impl LocalCluster {
    /// Founds a network of `names.len()` validators at `now_ms` (fresh identities, a fresh
    /// network key handed to each member wrapped to its identity), each with a SQLite ledger in
    /// `dir`.
    ///
    /// # Errors
    /// [`ClusterError`].
    pub fn found(dir: &Path, names: &[&str], now_ms: u64) -> Result<Self, ClusterError> {
        let mut rng = UnwrapErr(SysRng);
        let network = NetworkKey::generate(&mut rng);
        let identities: Vec<Identity> =
            names.iter().map(|_| Identity::generate(&mut rng)).collect();
        let named: Vec<(&str, &Identity)> = names.iter().copied().zip(&identities).collect();
        let genesis = genesis_of("local-cluster", &named, &network, now_ms)?;
        let mut hosts = Vec::with_capacity(names.len());
        for (i, id) in identities.into_iter().enumerate() {
            // What a founder does: wrap the network key to each member's public identity.
            let envelope = network.wrap_for(&id.public(), &mut rng)?;
            let key = NetworkKey::unwrap_from(&envelope, &id)?;
            let path = dir.join(format!("member-{i}.sqlite"));
            hosts.push(Host::create(path, &genesis, id, key, now_ms)?);
        }
        let keys = hosts.iter().map(Host::key).collect();
        let mut cluster = Self {
            hosts,
            keys,
            wire: VecDeque::new(),
            now_ms,
            events: Vec::new(),
        };
        for i in 0..cluster.hosts.len() {
            cluster.pump(i);
        }
        Ok(cluster)
    }

    /// The virtual time (milliseconds since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Host `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Host `i`, to submit through it. Call [`pump`](Self::pump) or a `run_*` method after.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn host_mut(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i]
    }

    /// The hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Delivers `bytes` to host `to` as if the member `from` had sent them.
    pub fn inject(&mut self, to: usize, from: VerifyKey, bytes: Vec<u8>) {
        self.wire.push_back((to, from, bytes));
    }

    /// Events reported so far, by host index, taken.
    pub fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Moves host `i`'s transmits onto the wire and its events into the log.
    pub fn pump(&mut self, i: usize) {
        let Some(host) = self.hosts.get_mut(i) else {
            return;
        };
        let from = host.key();
        while let Some(t) = host.poll_transmit() {
            match t.to {
                Recipient::All => {
                    for j in (0..self.keys.len()).filter(|j| *j != i) {
                        self.wire.push_back((j, from, t.bytes.clone()));
                    }
                }
                Recipient::Node(k) => {
                    if let Some(j) = self.keys.iter().position(|x| *x == k) {
                        self.wire.push_back((j, from, t.bytes));
                    }
                }
            }
        }
        while let Some(e) = host.poll_event() {
            self.events.push((i, e));
        }
    }

    /// One step: delivers one message if any is in flight, else advances virtual time to the
    /// next deadline and fires it. Returns `false` when nothing is left to do.
    ///
    /// # Errors
    /// [`ClusterError::Host`] if a host could not write its ledger.
    pub fn step(&mut self) -> Result<bool, ClusterError> {
        if let Some((to, from, bytes)) = self.wire.pop_front() {
            if let Some(h) = self.hosts.get_mut(to) {
                h.handle_message(from, &bytes, self.now_ms)?;
                self.pump(to);
            }
            return Ok(true);
        }
        let Some(next) = self.hosts.iter().filter_map(Host::poll_timeout).min() else {
            return Ok(false);
        };
        self.now_ms = self.now_ms.max(next);
        for i in 0..self.hosts.len() {
            if let Some(h) = self.hosts.get_mut(i) {
                if h.poll_timeout().is_some_and(|d| d <= self.now_ms) {
                    h.handle_timeout(self.now_ms)?;
                    self.pump(i);
                }
            }
        }
        Ok(true)
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
    ) -> Result<bool, ClusterError> {
        for _ in 0..max_steps {
            if self.all_committed(ids) {
                return Ok(true);
            }
            if !self.step()? {
                break;
            }
        }
        Ok(self.all_committed(ids))
    }

    /// Delivers everything in flight (no time passes), in at most `max_steps` deliveries.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn deliver_all(&mut self, max_steps: usize) -> Result<(), ClusterError> {
        for _ in 0..max_steps {
            if self.wire.is_empty() {
                break;
            }
            self.step()?;
        }
        Ok(())
    }

    fn all_committed(&self, ids: &[TxId]) -> bool {
        self.hosts
            .iter()
            .all(|h| ids.iter().all(|id| h.is_committed(id)))
    }
}
