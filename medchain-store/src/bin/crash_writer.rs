//! Test helper for the crash-safety test (not an operator tool): appends blocks to a SQLite
//! ledger until killed, printing `committed <height>` after each append returns.
//!
//! `medchain-store-crash-writer PATH SEED TXS_PER_BLOCK`
//!
//! Blocks are deterministic in SEED, so a restarted writer rebuilds the chain it already
//! stored (checking each stored block's hash), prints `ready <height>`, and goes on appending.

use std::io::Write;
use std::process::ExitCode;

use medchain_core::access::record_class;
use medchain_core::keys::Identity;
use medchain_core::ledger::LedgerState;
use medchain_core::seal::{seal_record, NetworkKey};
use medchain_core::store::LedgerStore;
use medchain_core::testkit::TestNet;
use medchain_core::tx::TxBody;
use medchain_store::Ledger;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-writer: {e}");
            ExitCode::from(3)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: medchain-store-crash-writer PATH SEED TXS_PER_BLOCK".into());
    }
    let path = &args[1];
    let seed: u64 = args[2].parse()?;
    let per_block: usize = args[3].parse()?;
    let mut net = TestNet::new(seed, 4, 1);
    let patient = Identity::generate(&mut net.rng);
    let copy = |net: &mut TestNet| -> Result<NetworkKey, Box<dyn std::error::Error>> {
        let env = net.network.wrap_for(&net.nodes[0].public(), &mut net.rng)?;
        Ok(NetworkKey::unwrap_from(&env, &net.nodes[0])?)
    };
    let key = copy(&mut net)?;
    let mut ledger = if std::path::Path::new(path).exists() {
        Ledger::open_sqlite(path, key)?
    } else {
        Ledger::create_sqlite(path, &net.genesis, key)?
    };
    let stored = ledger.height();
    let mut shadow = LedgerState::new();
    let out = std::io::stdout();
    let mut announced = false;
    for h in 1u64.. {
        if h > stored && !announced {
            writeln!(out.lock(), "ready {stored}")?;
            out.lock().flush()?;
            announced = true;
        }
        let mut txs = Vec::with_capacity(per_block);
        for i in 0..per_block {
            let payload = format!(
                r#"{{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","code":{{"text":"h{h} i{i}"}}}}"#
            );
            let sealed = seal_record(
                payload.as_bytes(),
                &patient.public(),
                &[net.nodes[4].public()],
                &mut net.rng,
            )?;
            let class = record_class(
                payload.as_bytes(),
                &medchain_core::consent::ConsentTagKey::for_patient(&patient),
                &mut net.rng,
            )?;
            let body = TxBody::record_added(sealed, class);
            txs.push(net.tx(4, &body, Vec::new()));
        }
        let (block, effects, proof) = net.next_block(&shadow, txs)?;
        shadow.commit(effects)?;
        if h <= stored {
            let have = ledger
                .store()
                .block(h)?
                .ok_or("a stored block is missing")?;
            if have.hash() != block.hash() {
                return Err(format!("stored block {h} differs from the rebuilt one").into());
            }
            continue;
        }
        ledger.append_committed(block.into_block(), &proof)?;
        writeln!(out.lock(), "committed {h}")?;
        out.lock().flush()?;
    }
    Ok(())
}
