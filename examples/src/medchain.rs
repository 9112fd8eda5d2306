//! `medchain`: an operator's tool for a ledger file.
//!
//! ```text
//! medchain verify  LEDGER            verify the whole chain (signatures, certificates, rules)
//! medchain inspect LEDGER [HEIGHT]   the network, the head, and the blocks (or one block)
//! medchain audit   LEDGER IDENTITY   a patient's audit trail (mcid1… identity); --json for FHIR
//! ```
//!
//! The ledger's network key comes from `LEDGER.key` (or `--key FILE`), a file protected by a
//! passphrase read from `MEDCHAIN_PASSPHRASE`. Exit status: 0 on success, 1 when verification
//! fails, 2 on a usage or I/O error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use medchain_core::chain::Progress;
use medchain_core::keys::PublicIdentity;
use medchain_core::seal::NetworkKey;
use medchain_store::Ledger;

const USAGE: &str = "usage: medchain (verify LEDGER | inspect LEDGER [HEIGHT] | audit LEDGER IDENTITY [--json]) [--key FILE]";

struct Args {
    command: String,
    ledger: PathBuf,
    rest: Vec<String>,
    key: Option<PathBuf>,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let mut words = Vec::new();
    let mut key = None;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "--key" => key = Some(PathBuf::from(it.next().ok_or("--key needs a file")?)),
            "--json" => json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => words.push(w),
        }
    }
    if words.len() < 2 {
        return Err(USAGE.into());
    }
    let command = words.remove(0);
    let ledger = PathBuf::from(words.remove(0));
    Ok(Args {
        command,
        ledger,
        rest: words,
        key,
        json,
    })
}

fn open(args: &Args) -> Result<Ledger<medchain_store::SqliteStore>, String> {
    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", args.ledger.display())));
    let file = std::fs::read(&key_path)
        .map_err(|e| format!("cannot read key file {}: {e}", key_path.display()))?;
    let pass = std::env::var("MEDCHAIN_PASSPHRASE")
        .map_err(|_| "set MEDCHAIN_PASSPHRASE to the key file's passphrase")?;
    let key = NetworkKey::import_protected(&file, pass.as_bytes())
        .map_err(|e| format!("key file {}: {e}", key_path.display()))?;
    Ledger::open_sqlite(&args.ledger, key)
        .map_err(|e| format!("cannot open {}: {e}", args.ledger.display()))
}

/// A one-line progress bar on standard error.
fn bar(total: u64) -> impl FnMut(Progress) {
    let mut last = 0u64;
    move |p: Progress| {
        let pct = (p.height * 100).checked_div(total).unwrap_or(100);
        if pct != last || p.height == total {
            last = pct;
            let filled = (pct / 4) as usize;
            eprint!(
                "\r[{}{}] {pct:>3}%  block {}/{total}  {} txs",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                p.height,
                p.transactions
            );
            let _ = std::io::stderr().flush();
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let ledger = open(args)?;
    match args.command.as_str() {
        "verify" => {
            let total = ledger.height();
            let started = std::time::Instant::now();
            let result = ledger.verify(bar(total));
            eprintln!();
            match result {
                Ok(s) => {
                    println!(
                        "ok: {} blocks, {} transactions verified in {:.2?}; head {} is proven committed: {}",
                        s.blocks, s.transactions, started.elapsed(), s.tip.hash, s.head_proven
                    );
                    Ok(true)
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    Ok(false)
                }
            }
        }
        "inspect" => {
            let g = ledger.genesis();
            println!(
                "chain {} ({}), genesis {}",
                g.chain_name,
                g.hash(),
                medchain_core::fhir::format_instant(g.created_at_ms)
            );
            for m in &g.members {
                println!(
                    "  {} {:<9} {}",
                    m.identity.sign,
                    if m.validator { "validator" } else { "member" },
                    m.name
                );
            }
            println!(
                "quorum {} of {} validators; head at height {}",
                g.quorum_size(),
                g.validators().len(),
                ledger.height()
            );
            let only: Option<u64> = args
                .rest
                .first()
                .map(|h| h.parse().map_err(|_| format!("not a height: {h}")))
                .transpose()?;
            for (i, block) in ledger.blocks_from(only.unwrap_or(1)).enumerate() {
                let block = block.map_err(|e| e.to_string())?;
                let h = &block.header;
                println!(
                    "block {:>5}  round {:>5}  {}  {}  miner {}…  {} tx",
                    h.height,
                    h.round,
                    block.hash(),
                    medchain_core::fhir::format_instant(h.timestamp_ms),
                    &h.miner.to_string()[..12],
                    block.transactions.len()
                );
                for tx in &block.transactions {
                    println!(
                        "    {:?} {} from {}…{}",
                        tx.kind(),
                        tx.id(),
                        &tx.contributor().to_string()[..12],
                        if tx.is_pruned() {
                            " (payload erased)"
                        } else {
                            ""
                        }
                    );
                }
                if only.is_some() && i == 0 {
                    break;
                }
            }
            Ok(true)
        }
        "audit" => {
            let who = args.rest.first().ok_or(USAGE)?;
            let patient = PublicIdentity::from_text(who).map_err(|e| e.to_string())?;
            if args.json {
                let events = ledger
                    .audit_events_of_patient(&patient.sign)
                    .map_err(|e| e.to_string())?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&events).map_err(|e| e.to_string())?
                );
            } else {
                for a in ledger
                    .audit_of_patient(&patient.sign)
                    .map_err(|e| e.to_string())?
                {
                    println!(
                        "{}  {:?}  record {}…  by {}  purpose {}{}{}",
                        medchain_core::fhir::format_instant(a.at_ms),
                        a.kind,
                        &a.record_id.to_string()[..12],
                        a.actor.id(),
                        a.purpose,
                        a.consent_id
                            .map(|c| format!("  consent {}…", &c.to_string()[..12]))
                            .unwrap_or_default(),
                        if a.emergency { "  EMERGENCY" } else { "" }
                    );
                }
            }
            Ok(true)
        }
        other => Err(format!("unknown command {other}\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    match parse().and_then(|a| run(&a)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
