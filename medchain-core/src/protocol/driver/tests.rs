//! The driver on toy peers: delivery order, the policy's hooks, timeouts, stopped peers and
//! bounded runs.

use std::collections::VecDeque;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::keys::Identity;

/// A peer that records what it receives and when; it answers `ping` with `pong` (and `pong`
/// with `ping`) to the sender, broadcasts what it is told to, and times out every `period` ms
/// if it has one.
struct Toy {
    key: VerifyKey,
    got: Vec<(VerifyKey, Vec<u8>, u64)>,
    timeouts: Vec<u64>,
    period: Option<u64>,
    deadline: Option<u64>,
    out: VecDeque<Polled<String>>,
}

fn key(i: u64) -> VerifyKey {
    Identity::generate(&mut ChaCha20Rng::seed_from_u64(i)).verify_key()
}

fn toys(n: u64) -> Vec<Toy> {
    (0..n)
        .map(|i| Toy {
            key: key(i),
            got: Vec::new(),
            timeouts: Vec::new(),
            period: None,
            deadline: None,
            out: VecDeque::new(),
        })
        .collect()
}

impl Toy {
    fn broadcast(&mut self, bytes: &[u8]) {
        self.out.push_back(Polled::Transmit {
            to: Recipient::All,
            bytes: bytes.to_vec(),
        });
    }
}

impl Peer for Toy {
    type Event = String;
    type Error = String;

    fn key(&self) -> VerifyKey {
        self.key
    }

    fn handle_message(&mut self, from: VerifyKey, bytes: &[u8], now_ms: u64) -> Result<(), String> {
        if bytes == b"bad" {
            return Err("bad input".into());
        }
        self.got.push((from, bytes.to_vec(), now_ms));
        self.out.push_back(Polled::Event(format!(
            "got {}",
            String::from_utf8_lossy(bytes)
        )));
        let answer: &[u8] = match bytes {
            b"ping" => b"pong",
            b"pong" => b"ping",
            _ => return Ok(()),
        };
        self.out.push_back(Polled::Transmit {
            to: Recipient::Node(from),
            bytes: answer.to_vec(),
        });
        Ok(())
    }

    fn handle_timeout(&mut self, now_ms: u64) -> Result<(), String> {
        self.timeouts.push(now_ms);
        self.deadline = self.period.map(|p| now_ms + p);
        Ok(())
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    fn poll_output(&mut self) -> Option<Polled<String>> {
        self.out.pop_front()
    }
}

/// Records every hook call; delays each link by `delay[from][to]`, loses what `lose` names and
/// refuses at delivery what `refuse` names.
#[derive(Default)]
struct Log {
    delay: Vec<Vec<u64>>,
    lose: Vec<(usize, usize)>,
    refuse: Vec<Vec<u8>>,
    events: Vec<(u64, usize, String)>,
    drained: Vec<usize>,
    delivered: Vec<(Source, usize, Vec<u8>)>,
}

impl Policy<Toy> for Log {
    fn route(&mut self, wire: &mut Wire<'_>, from: usize, _: &Toy, to: Recipient, bytes: Vec<u8>) {
        let bytes: Bytes = bytes.into();
        for j in wire.targets(from, to) {
            if self.lose.contains(&(from, j)) {
                continue;
            }
            let d = self
                .delay
                .get(from)
                .and_then(|r| r.get(j))
                .copied()
                .unwrap_or(0);
            wire.send(from, j, bytes.clone(), d);
        }
    }

    fn admit(&mut self, _: u64, _: Source, _: usize, bytes: &Bytes, _: &Toy) -> bool {
        !self.refuse.iter().any(|r| r.as_slice() == &bytes[..])
    }

    fn delivered(&mut self, _: u64, from: Source, to: usize, bytes: &Bytes, _: &Toy) {
        self.delivered.push((from, to, bytes.to_vec()));
    }

    fn event(&mut self, now_ms: u64, i: usize, _: &mut Toy, event: String) {
        self.events.push((now_ms, i, event));
    }

    fn drained(&mut self, _: u64, i: usize, _: &Toy) {
        self.drained.push(i);
    }
}

#[test]
fn equal_times_run_in_queue_order_and_delays_reorder() {
    let mut d = Driver::new(toys(3), 1_000);
    let mut log = Log {
        delay: vec![vec![0, 50, 10], vec![0; 3], vec![0; 3]],
        ..Log::default()
    };
    d.peer_mut(0).broadcast(b"a");
    d.peer_mut(0).broadcast(b"b");
    d.flush(0, &mut log);
    assert_eq!(d.queued(), 4);
    while d.step(&mut log).unwrap() != Step::Idle {}
    // Peer 2's link is faster: it gets both first, in the order they were sent.
    let order: Vec<(usize, Vec<u8>)> = log
        .delivered
        .iter()
        .map(|(_, to, b)| (*to, b.clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            (2, b"a".to_vec()),
            (2, b"b".to_vec()),
            (1, b"a".to_vec()),
            (1, b"b".to_vec())
        ]
    );
    assert_eq!(d.peer(1).got[0], (key(0), b"a".to_vec(), 1_050));
    assert_eq!(d.peer(2).got[1].2, 1_010);
    assert_eq!(d.now_ms(), 1_050);
    // Events come with the time and the peer that reported them, in order.
    assert_eq!(log.events[0], (1_010, 2, "got a".to_string()));
    assert_eq!(log.events[3], (1_050, 1, "got b".to_string()));
}

#[test]
fn the_policy_loses_refuses_and_sees_every_drain() {
    let mut d = Driver::new(toys(3), 0);
    let mut log = Log {
        lose: vec![(0, 1)],
        refuse: vec![b"secret".to_vec()],
        ..Log::default()
    };
    d.peer_mut(0).broadcast(b"hello");
    d.peer_mut(0).broadcast(b"secret");
    d.flush(0, &mut log);
    assert_eq!(log.drained, vec![0]);
    let mut steps = Vec::new();
    loop {
        match d.step(&mut log).unwrap() {
            Step::Idle => break,
            s => steps.push(s),
        }
    }
    // Lost on the way to 1; "secret" refused at 2 when due.
    assert!(d.peer(1).got.is_empty());
    assert_eq!(d.peer(2).got.len(), 1);
    assert_eq!(
        steps,
        vec![
            Step::Delivered {
                from: Source::Peer(0),
                to: 2
            },
            Step::Skipped
        ]
    );
    assert_eq!(log.drained, vec![0, 2]);
}

#[test]
fn the_default_policy_delivers_everything_now_in_order() {
    let mut d = Driver::new(toys(2), 7);
    d.peer_mut(1).broadcast(b"x");
    d.peer_mut(1).broadcast(b"y");
    d.flush_all(&mut InOrder);
    assert_eq!(d.run(&mut InOrder, 10, |_, _| false).unwrap(), Stop::Quiet);
    let got: Vec<&[u8]> = d.peer(0).got.iter().map(|g| g.1.as_slice()).collect();
    assert_eq!(got, vec![&b"x"[..], &b"y"[..]]);
    assert_eq!(d.now_ms(), 7);
}

#[test]
fn timeouts_fire_at_their_deadline_and_stale_timers_are_skipped() {
    let mut peers = toys(2);
    peers[0].deadline = Some(100);
    peers[1].deadline = Some(50);
    peers[1].period = Some(30);
    let mut d = Driver::new(peers, 0);
    d.flush_all(&mut InOrder);
    assert_eq!(d.step(&mut InOrder).unwrap(), Step::TimedOut { peer: 1 });
    assert_eq!(d.now_ms(), 50);
    // Peer 0's deadline moves earlier: its timer at 100 becomes stale.
    d.peer_mut(0).deadline = Some(60);
    d.flush(0, &mut InOrder);
    assert_eq!(d.step(&mut InOrder).unwrap(), Step::TimedOut { peer: 0 });
    assert_eq!(d.step(&mut InOrder).unwrap(), Step::TimedOut { peer: 1 });
    assert_eq!(d.peer(1).timeouts, vec![50, 80]);
    assert_eq!(d.peer(0).timeouts, vec![60]);
    assert_eq!(
        d.step(&mut InOrder).unwrap(),
        Step::Skipped,
        "the stale timer at 100"
    );
    assert_eq!(d.peer(0).timeouts, vec![60]);
    assert_eq!(d.step(&mut InOrder).unwrap(), Step::TimedOut { peer: 1 });
    assert_eq!(d.peer(1).timeouts, vec![50, 80, 110]);
    // A deadline in the past fires now, not in the past.
    d.peer_mut(0).deadline = Some(1);
    d.flush(0, &mut InOrder);
    assert_eq!(d.next_at(), Some(d.now_ms()));
}

#[test]
fn a_stopped_peer_neither_receives_sends_nor_times_out_until_started() {
    let mut peers = toys(2);
    peers[1].deadline = Some(10);
    let mut d = Driver::new(peers, 0);
    let mut log = Log::default();
    d.flush_all(&mut log);
    d.stop(1);
    assert!(!d.is_running(1));
    d.peer_mut(0).broadcast(b"while away");
    d.flush(0, &mut log);
    d.peer_mut(1).broadcast(b"held");
    d.flush(1, &mut log);
    assert_eq!(d.run(&mut log, 100, |_, _| false).unwrap(), Stop::Quiet);
    assert!(d.peer(1).got.is_empty() && d.peer(1).timeouts.is_empty());
    assert!(d.peer(0).got.is_empty(), "a stopped peer's output is held");
    d.start(1, &mut log);
    assert_eq!(d.run(&mut log, 100, |_, _| false).unwrap(), Stop::Quiet);
    assert_eq!(d.peer(0).got[0].1, b"held");
    assert_eq!(d.peer(1).timeouts, vec![10]);
    // A restart: the new peer replaces the old one, stopped until started.
    let mut fresh = toys(2).remove(1);
    fresh.deadline = Some(500);
    let old = d.replace(1, fresh);
    assert_eq!(old.timeouts, vec![10]);
    assert!(!d.is_running(1));
    d.start(1, &mut log);
    assert_eq!(d.step(&mut log).unwrap(), Step::TimedOut { peer: 1 });
    assert_eq!(d.peer(1).timeouts, vec![500]);
}

#[test]
fn runs_are_bounded_in_steps_and_in_time() {
    let mut d = Driver::new(toys(2), 0);
    let mut log = Log {
        delay: vec![vec![0, 5], vec![5, 0]],
        ..Log::default()
    };
    // A ping-pong never ends by itself.
    d.inject(0, key(1), b"pong".to_vec());
    assert_eq!(
        d.run(&mut log, 100, |_, _| false).unwrap(),
        Stop::OutOfSteps
    );
    assert_eq!(log.delivered.len(), 100);
    // A time bound: what is due by then runs, and the clock stands at the bound.
    let now = d.now_ms();
    assert_eq!(
        d.run_until(&mut log, now + 52, 1_000, |_, _| false)
            .unwrap(),
        Stop::Quiet
    );
    assert_eq!(d.now_ms(), now + 52);
    assert_eq!(log.delivered.len(), 110);
    // A condition ends it early.
    let stop = d
        .run(&mut log, 1_000, |d, _| d.peer(1).got.len() >= 60)
        .unwrap();
    assert_eq!(stop, Stop::Done);
    assert_eq!(d.peer(1).got.len(), 60);
}

#[test]
fn outside_senders_wake_ups_and_errors() {
    let mut d = Driver::new(toys(2), 0);
    let stranger = key(99);
    d.schedule(20, 7);
    d.inject(1, stranger, b"ping".to_vec());
    assert_eq!(
        d.step(&mut InOrder).unwrap(),
        Step::Delivered {
            from: Source::Outside(stranger),
            to: 1
        }
    );
    // The answer goes to nobody (no peer has that key).
    assert_eq!(d.queued(), 1);
    assert_eq!(d.step(&mut InOrder).unwrap(), Step::Woke(7));
    assert_eq!(d.now_ms(), 20);
    // The clock only moves forward.
    d.advance_clock(10);
    assert_eq!(d.now_ms(), 20);
    d.advance_clock(1_000);
    assert_eq!(d.now_ms(), 1_000);
    d.inject(0, stranger, b"bad".to_vec());
    assert_eq!(d.step(&mut InOrder), Err("bad input".to_string()));
    assert_eq!(d.step(&mut InOrder).unwrap(), Step::Idle);
}

/// Routes every transmit to a peer that does not exist, and from one.
struct Astray;

impl Policy<Toy> for Astray {
    fn route(&mut self, wire: &mut Wire<'_>, from: usize, _: &Toy, _: Recipient, bytes: Vec<u8>) {
        let bytes = Bytes::from(bytes);
        wire.send(from, 9, bytes.clone(), 0);
        wire.send(9, 0, bytes, 0);
    }
}

#[test]
fn deliveries_to_or_from_peers_that_do_not_exist_are_skipped() {
    let mut d = Driver::new(toys(2), 0);
    d.peer_mut(1).broadcast(b"x");
    d.flush(1, &mut Astray);
    assert_eq!(d.step(&mut Astray).unwrap(), Step::Skipped);
    assert_eq!(d.step(&mut Astray).unwrap(), Step::Skipped);
    assert_eq!(d.step(&mut Astray).unwrap(), Step::Idle);
    assert!(d.peer(0).got.is_empty());
    // Stopping or starting a peer that does not exist changes nothing.
    d.stop(9);
    d.start(9, &mut Astray);
    assert!(!d.is_running(9));
}
