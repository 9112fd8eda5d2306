//! The one in-process driver of sans-I/O peers: a message-delivery and virtual-time loop written
//! once, generic over what it drives ([`Peer`]: implemented here for [`Node`], and by the
//! `medchain` crate for its `Host`), with the network's behaviour left to a [`Policy`]. It is
//! what wires several members that share one process (`medchain::MemoryNetwork`: demos, the
//! clinic example, an application's own tests; libp2p's `MemoryTransport` plays the same part)
//! and what the deterministic simulator and the protocol tests run on. Like the rest of the
//! protocol it does no I/O and reads no clock: virtual time is what its queue says.
//!
//! Everything that happens is an item in one queue ordered by (virtual time, sequence number):
//! deliveries, each peer's next timeout and the caller's own wake-ups
//! ([`schedule`](Driver::schedule)). [`step`](Driver::step) takes the earliest item, moves the
//! clock to it (never backwards), hands it to its peer, and drains that peer: what it transmits
//! goes through [`Policy::route`] (deliver now, later, twice, never, or something else), what
//! else it reports goes to [`Policy::event`], and its timeout is re-armed. Items of equal time
//! run in the order they were queued, so a run is a deterministic function of its inputs and of
//! the policy's choices.
//!
//! A stopped peer ([`stop`](Driver::stop)) neither receives, sends nor times out, and keeps what
//! it emitted until it is [`start`](Driver::start)ed again: a crash (with
//! [`replace`](Driver::replace) for the restart) or a node that is away.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::convert::Infallible;
use std::sync::Arc;

use crate::keys::VerifyKey;
use crate::protocol::{Node, Output, Recipient};

/// Message bytes on the wire (shared between the copies of a broadcast).
pub type Bytes = Arc<[u8]>;

/// What a peer hands back when it is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled<E> {
    /// Bytes for other peers.
    Transmit {
        /// To whom.
        to: Recipient,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// Anything else it reports (a commit, a drop, evidence, ...).
    Event(E),
}

/// A sans-I/O participant the [`Driver`] moves bytes and time for.
pub trait Peer {
    /// What the peer reports besides transmits.
    type Event;
    /// Why handling an input failed (the driver stops and returns it).
    type Error;

    /// The key other peers know it by (the sender of what it transmits).
    fn key(&self) -> VerifyKey;

    /// Handles bytes from `from`.
    ///
    /// # Errors
    /// The peer's failure.
    fn handle_message(
        &mut self,
        from: VerifyKey,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), Self::Error>;

    /// Lets time pass (called at or after [`poll_timeout`](Self::poll_timeout)).
    ///
    /// # Errors
    /// The peer's failure.
    fn handle_timeout(&mut self, now_ms: u64) -> Result<(), Self::Error>;

    /// When [`handle_timeout`](Self::handle_timeout) is next due (`None`: only on input).
    fn poll_timeout(&self) -> Option<u64>;

    /// The next transmit or event.
    fn poll_output(&mut self) -> Option<Polled<Self::Event>>;
}

impl Peer for Node {
    /// Every output but `Send` (which is a [`Polled::Transmit`]).
    type Event = Output;
    type Error = Infallible;

    fn key(&self) -> VerifyKey {
        Node::key(self)
    }

    fn handle_message(
        &mut self,
        from: VerifyKey,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), Infallible> {
        Node::handle_message(self, from, bytes, now_ms);
        Ok(())
    }

    fn handle_timeout(&mut self, now_ms: u64) -> Result<(), Infallible> {
        Node::handle_timeout(self, now_ms);
        Ok(())
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.next_deadline()
    }

    fn poll_output(&mut self) -> Option<Polled<Output>> {
        Some(match Node::poll_output(self)? {
            Output::Send { to, bytes } => Polled::Transmit { to, bytes },
            other => Polled::Event(other),
        })
    }
}

/// Who a delivery comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Peer number `i`.
    Peer(usize),
    /// Someone outside the driven peers, by key ([`Driver::inject`]).
    Outside(VerifyKey),
}

/// The network's behaviour: where each transmit goes and when, whether it still arrives, and
/// what the caller does with the peers' events. Every method has a default (instant, in-order,
/// lossless delivery; events ignored).
pub trait Policy<P: Peer> {
    /// Routes one transmit of peer `from` (`sender`): queue zero or more deliveries with
    /// [`Wire::send`]. The default delivers it to every addressee now, in order.
    fn route(
        &mut self,
        wire: &mut Wire<'_>,
        from: usize,
        sender: &P,
        to: Recipient,
        bytes: Vec<u8>,
    ) {
        let _ = sender;
        let bytes: Bytes = bytes.into();
        for j in wire.targets(from, to) {
            wire.send(from, j, bytes.clone(), 0);
        }
    }

    /// Whether a due delivery still reaches `to` (`receiver`), at `now_ms`; `false` loses it.
    /// Only asked for running peers. The default admits everything.
    fn admit(&mut self, now_ms: u64, from: Source, to: usize, bytes: &Bytes, receiver: &P) -> bool {
        let _ = (now_ms, from, to, bytes, receiver);
        true
    }

    /// After `receiver` (peer `to`) handled a delivery, before it is drained.
    fn delivered(&mut self, now_ms: u64, from: Source, to: usize, bytes: &Bytes, receiver: &P) {
        let _ = (now_ms, from, to, bytes, receiver);
    }

    /// One event of peer `i`, in the order the peer reported it among its transmits.
    fn event(&mut self, now_ms: u64, i: usize, peer: &mut P, event: P::Event) {
        let _ = (now_ms, i, peer, event);
    }

    /// Peer `i` was drained (persist what must survive a crash here).
    fn drained(&mut self, now_ms: u64, i: usize, peer: &P) {
        let _ = (now_ms, i, peer);
    }
}

/// The default [`Policy`]: instant, in-order, lossless delivery; events ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct InOrder;

impl<P: Peer> Policy<P> for InOrder {}

/// A queued item.
#[derive(Debug, Clone)]
pub enum Item {
    /// Bytes for peer `to`.
    Deliver {
        /// The sender.
        from: Source,
        /// The receiving peer.
        to: usize,
        /// The message.
        bytes: Bytes,
    },
    /// Peer `peer`'s timeout.
    Timer {
        /// The peer.
        peer: usize,
    },
    /// The caller's wake-up ([`Driver::schedule`]).
    Wake(u64),
}

#[derive(Debug)]
struct Queued {
    at: u64,
    seq: u64,
    item: Item,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The queue as a [`Policy`] sees it while it routes a transmit.
#[derive(Debug)]
pub struct Wire<'a> {
    queue: &'a mut Queue,
    keys: &'a [VerifyKey],
}

impl Wire<'_> {
    /// The virtual time.
    pub fn now_ms(&self) -> u64 {
        self.queue.now_ms
    }

    /// The peers `to` addresses when `from` sends: every other peer, or the one with that key.
    pub fn targets(&self, from: usize, to: Recipient) -> Vec<usize> {
        targets(self.keys, from, to)
    }

    /// Queues `bytes` from peer `from` to peer `to`, due `delay_ms` from now.
    pub fn send(&mut self, from: usize, to: usize, bytes: Bytes, delay_ms: u64) {
        let at = self.queue.now_ms.saturating_add(delay_ms);
        self.queue.push(
            at,
            Item::Deliver {
                from: Source::Peer(from),
                to,
                bytes,
            },
        );
    }
}

fn targets(keys: &[VerifyKey], from: usize, to: Recipient) -> Vec<usize> {
    match to {
        Recipient::All => (0..keys.len()).filter(|&j| j != from).collect(),
        Recipient::Node(k) => keys.iter().position(|x| *x == k).into_iter().collect(),
    }
}

#[derive(Debug)]
struct Queue {
    heap: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now_ms: u64,
}

impl Queue {
    fn push(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.heap.push(Reverse(Queued {
            at,
            seq: self.seq,
            item,
        }));
    }
}

/// What one [`Driver::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing was queued: nothing happened.
    Idle,
    /// A delivery reached peer `to`.
    Delivered {
        /// The sender.
        from: Source,
        /// The receiver.
        to: usize,
    },
    /// Peer `peer` handled its timeout.
    TimedOut {
        /// The peer.
        peer: usize,
    },
    /// The caller's wake-up `token` is due (the caller acts on it).
    Woke(u64),
    /// An item had no effect: a delivery to a stopped peer or one the policy did not admit, a
    /// timer that was re-armed or disarmed since.
    Skipped,
}

/// How a bounded run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The condition holds.
    Done,
    /// Nothing is left to do before the time limit (the clock now stands at it), or at all.
    Quiet,
    /// The step budget ran out.
    OutOfSteps,
}

/// Peers, the wire between them and the virtual clock; see the [module docs](self).
#[derive(Debug)]
pub struct Driver<P> {
    peers: Vec<P>,
    keys: Vec<VerifyKey>,
    running: Vec<bool>,
    armed: Vec<Option<u64>>,
    queue: Queue,
}

impl<P: Peer> Driver<P> {
    /// Drives `peers` from `now_ms` (virtual milliseconds, usually since the Unix epoch). Nothing
    /// is drained yet: call [`flush_all`](Self::flush_all) (after scheduling what must come
    /// first, if the order matters).
    pub fn new(peers: Vec<P>, now_ms: u64) -> Self {
        let keys = peers.iter().map(P::key).collect();
        let n = peers.len();
        Self {
            peers,
            keys,
            running: vec![true; n],
            armed: vec![None; n],
            queue: Queue {
                heap: BinaryHeap::new(),
                seq: 0,
                now_ms,
            },
        }
    }

    /// The virtual time.
    pub fn now_ms(&self) -> u64 {
        self.queue.now_ms
    }

    /// Moves the clock forward to `to_ms` at once (never backwards); what is queued before it is
    /// handled next, at the new time.
    pub fn advance_clock(&mut self, to_ms: u64) {
        self.queue.now_ms = self.queue.now_ms.max(to_ms);
    }

    /// The peers (running or not).
    pub fn peers(&self) -> &[P] {
        &self.peers
    }

    /// Ends the run, handing the peers back.
    pub fn into_peers(self) -> Vec<P> {
        self.peers
    }

    /// Peer `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn peer(&self, i: usize) -> &P {
        &self.peers[i]
    }

    /// Peer `i`, to submit through it; [`flush`](Self::flush) it after.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn peer_mut(&mut self, i: usize) -> &mut P {
        &mut self.peers[i]
    }

    /// The peers' keys, by index.
    pub fn keys(&self) -> &[VerifyKey] {
        &self.keys
    }

    /// Whether peer `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.running.get(i).copied().unwrap_or(false)
    }

    /// Stops peer `i`: it neither receives, sends nor times out until it is started again.
    pub fn stop(&mut self, i: usize) {
        if let (Some(r), Some(a)) = (self.running.get_mut(i), self.armed.get_mut(i)) {
            *r = false;
            *a = None;
        }
    }

    /// Starts peer `i` again and drains it (what it emitted meanwhile goes out now).
    pub fn start(&mut self, i: usize, policy: &mut impl Policy<P>) {
        if let Some(r) = self.running.get_mut(i) {
            *r = true;
            self.flush(i, policy);
        }
    }

    /// Puts `peer` in place of peer `i` (a restart from what it persisted), stopped; returns
    /// the old one. [`start`](Self::start) it.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn replace(&mut self, i: usize, peer: P) -> P {
        self.stop(i);
        self.keys[i] = peer.key();
        std::mem::replace(&mut self.peers[i], peer)
    }

    /// Queues `bytes` for peer `to` as if `from` (anyone) had sent them, due now.
    pub fn inject(&mut self, to: usize, from: VerifyKey, bytes: Vec<u8>) {
        let at = self.queue.now_ms;
        self.queue.push(
            at,
            Item::Deliver {
                from: Source::Outside(from),
                to,
                bytes: bytes.into(),
            },
        );
    }

    /// Queues the caller's wake-up `token` at `at_ms`: [`step`](Self::step) returns
    /// [`Step::Woke`] in its turn among the deliveries and timeouts.
    pub fn schedule(&mut self, at_ms: u64, token: u64) {
        self.queue.push(at_ms, Item::Wake(token));
    }

    /// The time of the next queued item.
    pub fn next_at(&self) -> Option<u64> {
        self.queue.heap.peek().map(|Reverse(q)| q.at)
    }

    /// How many items are queued.
    pub fn queued(&self) -> usize {
        self.queue.heap.len()
    }

    /// The queued items with their times, in no particular order (for diagnostics).
    pub fn in_flight(&self) -> impl Iterator<Item = (u64, &Item)> {
        self.queue.heap.iter().map(|Reverse(q)| (q.at, &q.item))
    }

    /// Drains running peer `i`: its transmits go through [`Policy::route`], its events to
    /// [`Policy::event`], then [`Policy::drained`]; its timeout is re-armed. A stopped peer is
    /// left as it is.
    pub fn flush(&mut self, i: usize, policy: &mut impl Policy<P>) {
        if !self.is_running(i) {
            return;
        }
        let Some(peer) = self.peers.get_mut(i) else {
            return;
        };
        let now = self.queue.now_ms;
        while let Some(out) = peer.poll_output() {
            match out {
                Polled::Transmit { to, bytes } => {
                    let mut wire = Wire {
                        queue: &mut self.queue,
                        keys: &self.keys,
                    };
                    policy.route(&mut wire, i, peer, to, bytes);
                }
                Polled::Event(e) => policy.event(now, i, peer, e),
            }
        }
        policy.drained(now, i, peer);
        match peer.poll_timeout() {
            Some(t) => {
                let at = t.max(now);
                if self.armed[i] != Some(at) {
                    self.armed[i] = Some(at);
                    self.queue.push(at, Item::Timer { peer: i });
                }
            }
            None => self.armed[i] = None,
        }
    }

    /// Drains every peer, in index order.
    pub fn flush_all(&mut self, policy: &mut impl Policy<P>) {
        for i in 0..self.peers.len() {
            self.flush(i, policy);
        }
    }

    /// Handles the earliest queued item (the clock moves to its time if that is later).
    ///
    /// # Errors
    /// The receiving peer's error; the item is consumed and the peer not drained.
    pub fn step(&mut self, policy: &mut impl Policy<P>) -> Result<Step, P::Error> {
        let Some(Reverse(q)) = self.queue.heap.pop() else {
            return Ok(Step::Idle);
        };
        self.queue.now_ms = self.queue.now_ms.max(q.at);
        let now = self.queue.now_ms;
        match q.item {
            Item::Deliver { from, to, bytes } => {
                if !self.is_running(to) {
                    return Ok(Step::Skipped);
                }
                let peer = &mut self.peers[to];
                if !policy.admit(now, from, to, &bytes, peer) {
                    return Ok(Step::Skipped);
                }
                let key = match from {
                    Source::Peer(i) => match self.keys.get(i) {
                        Some(k) => *k,
                        None => return Ok(Step::Skipped),
                    },
                    Source::Outside(k) => k,
                };
                peer.handle_message(key, &bytes, now)?;
                policy.delivered(now, from, to, &bytes, peer);
                self.flush(to, policy);
                Ok(Step::Delivered { from, to })
            }
            Item::Timer { peer } => {
                if self.armed.get(peer).copied().flatten() != Some(q.at) {
                    return Ok(Step::Skipped);
                }
                self.armed[peer] = None;
                self.peers[peer].handle_timeout(now)?;
                self.flush(peer, policy);
                Ok(Step::TimedOut { peer })
            }
            Item::Wake(token) => Ok(Step::Woke(token)),
        }
    }

    /// Steps until `done` holds (checked before every step), nothing is left to do, or
    /// `max_steps` steps were taken. Wake-ups are consumed without effect: a caller that
    /// schedules them drives [`step`](Self::step) itself.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn run<Q: Policy<P>>(
        &mut self,
        policy: &mut Q,
        max_steps: u64,
        done: impl FnMut(&Self, &Q) -> bool,
    ) -> Result<Stop, P::Error> {
        self.run_inner(policy, None, max_steps, done)
    }

    /// As [`run`](Self::run), handling only what is due by `until_ms`; when nothing more is,
    /// the clock moves to `until_ms` (time passes all the same) and the run ends
    /// [`Stop::Quiet`] (or [`Stop::Done`] if `done` holds then).
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn run_until<Q: Policy<P>>(
        &mut self,
        policy: &mut Q,
        until_ms: u64,
        max_steps: u64,
        done: impl FnMut(&Self, &Q) -> bool,
    ) -> Result<Stop, P::Error> {
        self.run_inner(policy, Some(until_ms), max_steps, done)
    }

    fn run_inner<Q: Policy<P>>(
        &mut self,
        policy: &mut Q,
        until_ms: Option<u64>,
        max_steps: u64,
        mut done: impl FnMut(&Self, &Q) -> bool,
    ) -> Result<Stop, P::Error> {
        for _ in 0..max_steps {
            if done(self, policy) {
                return Ok(Stop::Done);
            }
            let due = match (self.next_at(), until_ms) {
                (None, _) => false,
                (Some(at), Some(until)) => at <= until,
                (Some(_), None) => true,
            };
            if !due {
                if let Some(until) = until_ms {
                    self.advance_clock(until);
                }
                return Ok(if done(self, policy) {
                    Stop::Done
                } else {
                    Stop::Quiet
                });
            }
            self.step(policy)?;
        }
        Ok(if done(self, policy) {
            Stop::Done
        } else {
            Stop::OutOfSteps
        })
    }
}

#[cfg(test)]
mod tests;
