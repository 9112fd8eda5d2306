//! A host stops and reopens its ledger: the node resumes from the stored chain and the
//! validator's saved safety state, and keeps committing.

use getrandom::SysRng;
use medchain::{genesis_of, Host, HostError};
use medchain_core::keys::Identity;
use medchain_core::seal::NetworkKey;
use rand_core::UnwrapErr;

mod common;

use common::{add_hba1c_to, now};

/// At most this many deadlines are fired while waiting for a commit.
const MAX_TIMEOUTS: usize = 200;

/// A one-validator network commits on its own: fire its deadlines (its messages have no one
/// to go to) until `done`, and return the virtual time reached.
fn run_alone(host: &mut Host, mut t: u64, done: impl Fn(&Host) -> bool) -> u64 {
    for _ in 0..MAX_TIMEOUTS {
        if done(host) {
            return t;
        }
        while host.poll_transmit().is_some() {}
        let Some(next) = host.poll_timeout() else {
            break;
        };
        t = t.max(next);
        host.handle_timeout(t).expect("timeout");
    }
    assert!(
        done(host),
        "the host did not get there in {MAX_TIMEOUTS} deadlines"
    );
    t
}

/// A one-member network whose host has committed Alice's HbA1c.
struct Solo {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    host: Host,
    /// A copy of the host's identity, to reopen it.
    kept: Identity,
    network: NetworkKey,
    alice: Identity,
    first: medchain::RecordReceipt,
    /// The virtual time reached.
    t: u64,
}

fn solo() -> Solo {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("st-marys.sqlite");
    let mut rng = UnwrapErr(SysRng);
    let identity = Identity::generate(&mut rng);
    let kept = identity.duplicate();
    let network = NetworkKey::generate(&mut rng);
    let start = now();
    let genesis = genesis_of("solo", &[("St. Mary's", &identity)], &network, start).unwrap();
    let mut host = Host::create(&path, &genesis, identity, network.duplicate(), start).unwrap();
    let alice = Identity::generate(&mut rng);
    let first = add_hba1c_to(&mut host, &alice, start);
    let t = run_alone(&mut host, start, |h| h.is_committed(&first.tx_id));
    Solo {
        _dir: dir,
        path,
        host,
        kept,
        network,
        alice,
        first,
        t,
    }
}

#[test]
fn a_host_reopens_its_ledger_and_resumes_committing() {
    let Solo {
        _dir,
        path,
        host,
        kept,
        network,
        alice,
        first,
        t,
    } = solo();
    let mut rng = UnwrapErr(SysRng);
    let height = host.ledger().height();
    let saved = host
        .ledger()
        .durable_state()
        .unwrap()
        .expect("a validator that voted saved its state");
    let safety = saved.safety.clone();
    assert!(safety.highest_voted_round > 0);
    // The block that certifies the record's (its child) is certified but not committed: only
    // this node holds it, so it is saved too.
    assert!(!saved.pending.is_empty());
    drop(host);

    // The identity must be the member's; the ledger is left as it was.
    let stranger = Identity::generate(&mut rng);
    assert!(matches!(
        Host::open(&path, stranger, network.duplicate(), t),
        Err(HostError::Node(_))
    ));
    // Another network key does not open the ledger.
    assert!(matches!(
        Host::open(&path, kept.duplicate(), NetworkKey::generate(&mut rng), t),
        Err(HostError::Ledger(_))
    ));

    let mut host = Host::open(&path, kept, network, t).unwrap();
    assert_eq!(host.ledger().height(), height);
    assert!(host.is_committed(&first.tx_id));
    assert_eq!(host.records_of(&alice.verify_key()).unwrap().len(), 1);
    assert_eq!(host.ledger().durable_state().unwrap(), Some(saved));

    let second = add_hba1c_to(&mut host, &alice, t);
    run_alone(&mut host, t, |h| h.is_committed(&second.tx_id));
    assert!(host.ledger().height() > height);
    assert_eq!(host.records_of(&alice.verify_key()).unwrap().len(), 2);
    let after = host.ledger().durable_state().unwrap().expect("saved");
    assert!(
        after.safety.highest_voted_round > safety.highest_voted_round,
        "the resumed validator votes only in rounds after the ones it voted in"
    );
    let summary = host.ledger().verify(|_| {}).expect("the chain verifies");
    assert!(summary.head_proven);
    assert_eq!(summary.transactions, 2);
}

#[test]
fn a_forged_pending_block_in_the_saved_state_is_dropped_on_reopen() {
    let Solo {
        _dir,
        path,
        host,
        kept,
        network,
        t,
        ..
    } = solo();
    let height = host.ledger().height();
    drop(host);

    // Someone with write access to the store alters the saved pending block (its timestamp:
    // the miner's signature no longer covers the header).
    let mut ledger = medchain_store::Ledger::open_sqlite(&path, network.duplicate()).unwrap();
    let mut state = ledger.durable_state().unwrap().expect("saved");
    let Some(forged) = state.pending.first_mut() else {
        panic!("the certified child is saved");
    };
    forged.header.timestamp_ms += 1;
    ledger.save_durable_state(&state).unwrap();
    drop(ledger);

    let mut host = Host::open(&path, kept, network, t).unwrap();
    let mut dropped = false;
    while let Some(e) = host.poll_event() {
        dropped |= matches!(e, medchain::Event::Dropped { .. });
    }
    assert!(dropped, "the forged block is dropped, and said so");
    assert_eq!(
        host.ledger().height(),
        height,
        "nothing was committed from it"
    );
    assert!(host.ledger().verify(|_| {}).is_ok());
}

/// Four hospitals on the in-process driver, each with a kept copy of its identity.
struct Four {
    net: medchain::MemoryNetwork,
    ids: Vec<Identity>,
    network: NetworkKey,
    paths: Vec<std::path::PathBuf>,
}

fn four(dir: &tempfile::TempDir) -> Four {
    let mut rng = UnwrapErr(SysRng);
    let network = NetworkKey::generate(&mut rng);
    let ids: Vec<Identity> = (0..4).map(|_| Identity::generate(&mut rng)).collect();
    let names = ["St. Mary's", "City General", "Riverside", "Northgate"];
    let named: Vec<(&str, &Identity)> = names.iter().copied().zip(&ids).collect();
    let start = now();
    let genesis = genesis_of("four", &named, &network, start).unwrap();
    let paths: Vec<_> = (0..4)
        .map(|i| dir.path().join(format!("member-{i}.sqlite")))
        .collect();
    let hosts = ids
        .iter()
        .zip(&paths)
        .map(|(id, p)| Host::create(p, &genesis, id.duplicate(), network.duplicate(), start))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Four {
        net: medchain::MemoryNetwork::new(hosts, start),
        ids,
        network,
        paths,
    }
}

fn add(f: &mut Four, at: usize, patient: &Identity) -> medchain_core::hash::TxId {
    let t = f.net.now_ms();
    let receipt = add_hba1c_to(f.net.host_mut(at), patient, t);
    f.net.pump(at);
    receipt.tx_id
}

/// Every host's ledger: the same chain, and it verifies.
fn same_verified_chains(f: &Four) -> Vec<u64> {
    let tip = f.net.host(0).ledger().tip().clone();
    for h in f.net.hosts() {
        assert_eq!(h.ledger().tip(), &tip);
        assert!(h.ledger().verify(|_| {}).unwrap().head_proven);
    }
    f.net
        .host(0)
        .ledger()
        .blocks_from(1)
        .map(|b| b.unwrap().header.round)
        .collect()
}

/// A virtual clock that jumps past round timeouts at every phase of a commit makes commit
/// steps that cover several blocks (a block, then its child after a skipped round): every host
/// appends each such step in one write, and the chains agree.
#[test]
fn commit_steps_of_several_blocks_reach_every_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = four(&dir);
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    for phase in 0..12 {
        let id = add(&mut f, phase % 4, &alice);
        for _ in 0..phase * 3 {
            f.net.step().unwrap();
        }
        // Past several round timeouts, within the transactions' ten-minute age limit.
        let jump = f.net.now_ms() + 120_000;
        f.net.advance_clock(jump);
        assert!(
            f.net.run_until_committed(&[id], 50_000).unwrap(),
            "phase {phase}"
        );
    }
    let rounds = same_verified_chains(&f);
    assert!(
        rounds.windows(2).any(|w| w[1] > w[0] + 1),
        "some block's child came after a skipped round (its commit step covered two blocks): {rounds:?}"
    );
}

/// A hospital's process dies (its unsaved state is lost), the others go on, and it reopens its
/// ledger, catches up and takes part again.
#[test]
fn a_hospital_restarts_from_its_ledger_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = four(&dir);
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let first = add(&mut f, 0, &alice);
    assert!(f.net.run_until_committed(&[first], 50_000).unwrap());

    f.net.stop(3);
    let second = add(&mut f, 1, &alice);
    let ok = |f: &Four| (0..3).all(|i| f.net.host(i).is_committed(&second));
    for _ in 0..50_000 {
        if ok(&f) {
            break;
        }
        f.net.step().unwrap();
    }
    assert!(ok(&f), "three of four validators commit without the fourth");
    assert!(!f.net.host(3).is_committed(&second));

    let t = f.net.now_ms();
    let reopened =
        Host::open(&f.paths[3], f.ids[3].duplicate(), f.network.duplicate(), t).expect("reopen");
    drop(f.net.restart(3, reopened));
    let third = add(&mut f, 3, &alice);
    assert!(
        f.net.run_until_committed(&[second, third], 50_000).unwrap(),
        "the restarted hospital catches up and its own record commits"
    );
    same_verified_chains(&f);
    assert_eq!(
        f.net.host(3).records_of(&alice.verify_key()).unwrap().len(),
        3
    );
}
