//! Secure-index search over a stored ledger (issue #17): one-keyword searches over a
//! 100,000-record and a 1,000,000-record ledger in SQLite (and PostgreSQL with
//! `--features postgres` and MEDCHAIN_PG_URL), with the number of hits, blocks and index rows
//! read, and the file size — search time must follow hits and blocks, not bytes.
//!
//! ```sh
//! cargo bench -p medchain-store --bench search
//! scripts/with-postgres.sh cargo bench -p medchain-store --features postgres --bench search
//! ```
//! Environment: MEDCHAIN_SEARCH_SIZES (record counts, default `100000,1000000`),
//! MEDCHAIN_SEARCH_CACHE (directory of the generated ledgers, default
//! `target/medchain-search-cache`; a ledger is generated once and reused (again if it no longer
//! opens, e.g. cached by a build with another encoding), its generation time
//! kept in its `.complete` marker), MEDCHAIN_SEARCH_RUNS (timed searches per query after the
//! first, default 200), MEDCHAIN_SEARCH_QUERIES (`one,many,none`, default all three).
//!
//! Per size and backend it prints the warm-up a node does when it opens its ledger
//! (`Ledger::warm_search_cache`: the block filters read into memory, timed). Per query it
//! prints the first search after that warm-up (its index rows and erasure lookups still cold
//! in the database's caches), then the median (p50) and 99th percentile (p99) of the timed runs,
//! the hits, the blocks read and skipped, the index rows read and the PRFs. Beside them, the
//! raw crypto bound of the same query measured in the same run: the same filter and entry
//! checks (`medchain_core::index::search`) over the ledger's filters and the query's candidate
//! entries held in memory (no store read, no row decryption, no erasure lookup), its median
//! over the same number of runs, and the ratio p50 / bound.
//!
//! The generator assembles 1,000-record blocks with the testkit (no consensus): every record is
//! a sealed FHIR Observation with an index entry for three keywords — its resource type, one
//! of 1,000 codes (`code:bench|c{i % 1000}`: N/1,000 hits), and a code of its own
//! (`code:bench|u{i}`: one hit) — and each block carries its contributors' filter. Blocks are
//! validated once with the ledger rules and appended with `Ledger::append_checked`.
#![allow(missing_docs)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medchain_core::access::record_class;
use medchain_core::index::{
    search, BlockContext, BlockFilter, IndexKey, IndexedRecord, Keyword, Query, SearchableBlock,
};
use medchain_core::keys::Identity;
use medchain_core::ledger::LedgerState;
use medchain_core::seal::{seal_record, NetworkKey};
use medchain_core::testkit::TestNet;
use medchain_core::tx::TxBody;
use medchain_store::{Ledger, PersistentStore};

const SEED: u64 = 1717;
const PER_BLOCK: usize = 1000;

fn copy_key(net: &mut TestNet) -> NetworkKey {
    let env = net
        .network
        .wrap_for(&net.nodes[0].public(), &mut net.rng)
        .expect("wrap");
    NetworkKey::unwrap_from(&env, &net.nodes[0]).expect("unwrap")
}

fn keyword(s: &str) -> Keyword {
    s.parse().expect("keyword")
}

/// The network and patient of a generated ledger (deterministic in the seed).
fn world() -> (TestNet, Identity) {
    let mut net = TestNet::new(SEED, 4, 2);
    let patient = Identity::generate(&mut net.rng);
    (net, patient)
}

/// The generation time a `.complete` marker records, if it does.
fn generation_seconds(done: &Path) -> Option<f64> {
    std::fs::read_to_string(done)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("seconds=")?.trim().parse().ok())
}

/// Generates (or reuses) a SQLite ledger of `records` records at `path`.
fn sqlite_ledger(path: &Path, records: u64) -> Ledger<medchain_store::SqliteStore> {
    let done = path.with_extension("complete");
    if done.exists() {
        let (mut net, _) = world();
        match Ledger::open_sqlite(path, copy_key(&mut net)) {
            Ok(ledger) => {
                match generation_seconds(&done) {
                    Some(s) => {
                        eprintln!("{records} records: cached ledger (generated in {s:.0} s)")
                    }
                    None => {
                        eprintln!("{records} records: cached ledger (generation time not recorded)")
                    }
                }
                return ledger;
            }
            // A ledger cached by an older build (another encoding) is generated again.
            Err(e) => {
                eprintln!("{records} records: cached ledger does not open ({e}); regenerating")
            }
        }
        let _ = std::fs::remove_file(&done);
    }
    let (mut net, patient) = world();
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(medchain_store::wal_path(path));
    let key = copy_key(&mut net);
    let mut ledger = Ledger::create_sqlite(path, &net.genesis, key).expect("create");
    let index = IndexKey::for_patient(&patient);
    let holder = net.nodes[4].public();
    let mut state = LedgerState::new();
    let started = Instant::now();
    let blocks = records / PER_BLOCK as u64;
    for b in 0..blocks {
        let txs = (0..PER_BLOCK)
            .map(|j| {
                let i = b * PER_BLOCK as u64 + j as u64;
                let payload = format!(
                    r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4"}}]}},"note":[{{"text":"r{i}"}}]}}"#
                );
                let sealed = seal_record(payload.as_bytes(), &patient.public(), &[holder], &mut net.rng)
                    .expect("seal");
                let kws = [
                    keyword("type:Observation"),
                    keyword(&format!("code:bench|c{}", i % 1000)),
                    keyword(&format!("code:bench|u{i}")),
                ];
                let class = record_class(payload.as_bytes(), &medchain_core::consent::ConsentTagKey::for_patient(&patient), &mut net.rng).expect("class");
                let body = TxBody::record_added(sealed.clone(), class);
                net.indexed_tx(4, &body, sealed.record_id(), index.trapdoors(kws.iter()))
            })
            .collect();
        let (checked, effects, proof) = net.next_block(&state, txs).expect("block");
        ledger
            .append_checked(&checked, &effects, &proof)
            .expect("append");
        state.commit(effects).expect("state");
        if (b + 1) % 50 == 0 {
            eprintln!(
                "generated {} records in {:.0} s",
                (b + 1) * PER_BLOCK as u64,
                started.elapsed().as_secs_f64()
            );
        }
    }
    drop(ledger);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{records} records: generated in {seconds:.0} s");
    std::fs::write(&done, format!("complete\nseconds={seconds:.1}\n")).expect("marker");
    Ledger::open_sqlite(path, copy_key(&mut net)).expect("reopen")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The first search's time, p50 and p99 of `runs` more, in ms, and the last report.
fn timed<S: PersistentStore>(
    ledger: &Ledger<S>,
    query: &Query,
    runs: usize,
) -> (f64, f64, f64, medchain_store::LedgerSearch) {
    let once = || {
        let t = Instant::now();
        let r = ledger.search_report(query, 1).expect("search");
        (t.elapsed().as_secs_f64() * 1e3, r)
    };
    let (first, mut last) = once();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (ms, r) = once();
        times.push(ms);
        last = r;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (first, pct(0.50), pct(0.99), last)
}

/// A block held in memory for the raw bound: its filter and the entries of the positions
/// loaded; other positions asked for are noted (the candidates).
struct MemBlock {
    height: u64,
    context: BlockContext,
    filter: BlockFilter,
    count: usize,
    entries: HashMap<usize, IndexedRecord>,
    asked: RefCell<Vec<usize>>,
}

impl SearchableBlock for MemBlock {
    fn context(&self) -> &BlockContext {
        &self.context
    }
    fn filter(&self) -> &BlockFilter {
        &self.filter
    }
    fn record_count(&self) -> usize {
        self.count
    }
    fn record(
        &self,
        position: usize,
    ) -> Option<(
        medchain_core::hash::RecordId,
        &medchain_core::index::IndexEntry,
    )> {
        match self.entries.get(&position) {
            Some(r) => Some((r.record_id, &r.entry)),
            None => {
                self.asked.borrow_mut().push(position);
                None
            }
        }
    }
}

/// Every block's filter, in memory.
fn mem_blocks<S: PersistentStore>(ledger: &Ledger<S>) -> Vec<MemBlock> {
    let mut blocks = Vec::new();
    let mut from = 1;
    loop {
        let page = ledger.store().index_filters(from, 4096).expect("filters");
        let Some(last) = page.last() else { break };
        from = last.height + 1;
        for row in page {
            blocks.push(MemBlock {
                height: row.height,
                context: row.context,
                filter: row.filter.expect("the bench's blocks carry filters"),
                count: row.entry_count as usize,
                entries: HashMap::new(),
                asked: RefCell::new(Vec::new()),
            });
        }
    }
    blocks
}

/// The raw crypto bound of `query`, in ms (median of `runs`): its candidates' entries are
/// loaded into `blocks` first (once, untimed), then only the in-memory search is timed.
fn bound_ms<S: PersistentStore>(
    ledger: &Ledger<S>,
    blocks: &mut [MemBlock],
    query: &Query,
    runs: usize,
) -> f64 {
    for b in blocks.iter_mut() {
        b.entries.clear();
    }
    let _ = search(query, blocks.iter());
    for b in blocks.iter_mut() {
        for p in b.asked.take() {
            let r = ledger
                .store()
                .indexed_record(b.height, u32::try_from(p).expect("position"))
                .expect("read")
                .expect("entry");
            b.entries.insert(p, r);
        }
    }
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            let out = search(query, blocks.iter());
            let ms = t.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(out);
            ms
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn report<S: PersistentStore>(backend: &str, records: u64, bytes: Option<u64>, ledger: &Ledger<S>) {
    let (_, patient) = world();
    let index = IndexKey::for_patient(&patient);
    let size = bytes.map_or("-".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
    let runs = env_or("MEDCHAIN_SEARCH_RUNS", 200usize);
    let wanted =
        std::env::var("MEDCHAIN_SEARCH_QUERIES").unwrap_or_else(|_| "one,many,none".into());
    // What a node does when it starts (`Host` opening its ledger): the filters read into memory,
    // so that no search pays for it.
    let t = Instant::now();
    let held = ledger.warm_search_cache().expect("warm-up");
    println!(
        "{backend:8} {records:>8} records {size:>8}  warm-up at open: {:.1} MB of block filters in {:.1} ms",
        held as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut blocks = mem_blocks(ledger);
    for (name, what, kw) in [
        (
            "one",
            "one record (unique code)",
            format!("code:bench|u{}", records / 2),
        ),
        (
            "many",
            "N/1000 records (shared code)",
            "code:bench|c7".to_string(),
        ),
        (
            "none",
            "no record (absent code)",
            "code:bench|absent".to_string(),
        ),
    ] {
        if !wanted.split(',').any(|w| w.trim() == name) {
            continue;
        }
        let query = Query::keyword(index.trapdoor(&keyword(&kw)));
        let (first, p50, p99, r) = timed(ledger, &query, runs);
        let bound = bound_ms(ledger, &mut blocks, &query, runs);
        println!(
            "{backend:8} {records:>8} records {size:>8}  {what:28}  first {first:8.2} ms  p50 {p50:7.2} ms  p99 {p99:7.2} ms  bound {bound:7.3} ms  p50/bound {:6.1}  hits {:>5}  blocks {:>5}  skipped {:>5}  rows read {:>5}  PRFs {:>6}",
            p50 / bound,
            r.hits.len(),
            r.indexed_blocks,
            r.blocks_skipped,
            r.candidates_read,
            r.prf_evaluations
        );
    }
}

fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("MEDCHAIN_SEARCH_CACHE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/medchain-search-cache"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

#[cfg(feature = "postgres")]
fn postgres_copy(url: &str, from: &Ledger<medchain_store::SqliteStore>, records: u64) {
    use medchain_core::block::ChainTip;
    use medchain_core::chain::CommitProof;
    use medchain_core::ledger::rules_over;
    use medchain_core::store::LedgerStore;
    use medchain_store::{ParallelVerifier, PostgresStore};
    // The proof that block h is committed: its child's header and the child's certificate
    // (carried by the grandchild, or by the head's proof).
    let head_proof = from
        .store()
        .head()
        .expect("head")
        .expect("head")
        .proof
        .expect("proof");
    let header = |h: u64| from.store().block(h).expect("read").expect("block").header;
    let proof_of = |h: u64| -> CommitProof {
        let top = from.height();
        if h == top {
            head_proof.clone()
        } else {
            let child_qc = if h + 1 == top {
                head_proof.child.parent_qc.clone()
            } else {
                header(h + 2).parent_qc
            };
            CommitProof {
                child: header(h + 1),
                child_qc,
            }
        }
    };
    let schema = format!("search_{records}");
    let (mut net, _) = world();
    let ledger = match PostgresStore::open(url, &schema, &copy_key(&mut net)) {
        Ok(store) if medchain_core::ledger::StateView::height(&store) == from.height() => {
            Ledger::with_store(store, None, copy_key(&mut net)).expect("ledger")
        }
        _ => {
            let _ = postgres::Client::connect(url, postgres::NoTls).and_then(|mut c| {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            });
            let store = PostgresStore::create(url, &schema, &copy_key(&mut net)).expect("create");
            let mut to = {
                let key = copy_key(&mut net);
                Ledger::with_store(store, Some(&net.genesis), key).expect("ledger")
            };
            // Each block validated once with the ledger rules over an in-memory state, then
            // appended without a second validation.
            let mut state = LedgerState::new();
            let mut tip = ChainTip::genesis(&net.genesis);
            let t = Instant::now();
            for h in 1..=from.height() {
                let block = from.store().block(h).expect("read").expect("block");
                let mut rules = rules_over(&state, &net.genesis, &net.network);
                let checked = block
                    .validate_with(&net.genesis, &tip, &mut rules, &mut ParallelVerifier::new())
                    .expect("valid");
                let effects = rules.into_effects();
                let proof = proof_of(h);
                to.append_checked(&checked, &effects, &proof)
                    .expect("append");
                state.commit(effects).expect("state");
                tip = checked.tip();
            }
            eprintln!(
                "copied {records} records to PostgreSQL in {:.0} s",
                t.elapsed().as_secs_f64()
            );
            to
        }
    };
    let bytes = postgres::Client::connect(url, postgres::NoTls)
        .and_then(|mut c| {
            c.query_one(
                "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'r'",
                &[&schema],
            )
        })
        .ok()
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .and_then(|b| u64::try_from(b).ok());
    report("postgres", records, bytes, &ledger);
}

fn main() {
    let sizes: Vec<u64> = std::env::var("MEDCHAIN_SEARCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = cache_dir();
    for records in sizes {
        let path = dir.join(format!("search-{records}.db"));
        let ledger = sqlite_ledger(&path, records);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).ok();
        report("sqlite", records, bytes, &ledger);
        #[cfg(feature = "postgres")]
        if let Ok(url) = std::env::var("MEDCHAIN_PG_URL") {
            postgres_copy(&url, &ledger, records);
        }
    }
}
