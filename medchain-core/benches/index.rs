//! Secure-index benchmark: search latency, blocks skipped, filter false-positive rate and
//! filter overhead over 1,000 blocks of 1,000 indexed records, against the raw HMAC-SHA256 rate
//! measured in the same run.
//!
//! Run: `cargo bench -p medchain-core --bench index`
//! (smaller: `MEDCHAIN_INDEX_BENCH_BLOCKS=100 cargo bench -p medchain-core --bench index`).
//!
//! The data (fixed seed): 10,000 patients, each record belongs to a random one and is indexed
//! under that patient's key with 5 to 9 keywords (a resource type, 1 to 4 codes from a
//! 5,000-code vocabulary drawn with a Zipf-like law, a year and a month). One record in ten is
//! also research-discoverable: its entry carries the same keywords under the network's
//! research key as well. 100 research records carry the planted code `BENCH-RARE`.
//!
//! Everything runs on one thread. Each query is timed `RUNS` times; the median is printed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use medchain_core::hash::RecordId;
use medchain_core::index::{
    search, search_exhaustive, BlockContext, BlockFilter, BlockIndex, BlockIndexBuilder,
    FilterSegment, IndexEntry, IndexKey, Keyword, NetworkIndexKey, Query, SearchOutcome,
    SearchableBlock, Trapdoor,
};
use medchain_core::keys::Identity;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;

const RUNS: usize = 25;
const PATIENTS: usize = 10_000;
const CODES: usize = 5_000;
const RESEARCH_ONE_IN: u32 = 10;
const RARE_RECORDS: usize = 100;
/// Contributors per block in the multi-party variant (one filter segment each).
const CONTRIBUTORS: usize = 10;

/// A realistic FHIR R4 Observation (HbA1c), as a clinic would store it.
const SAMPLE_OBSERVATION: &str = r#"{"resourceType":"Observation","id":"9f2c1e4a-5b7d-4c1e-8a3f-2d6b9e0c7a15","meta":{"lastUpdated":"2024-03-05T10:22:31.000+01:00","profile":["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c/Hemoglobin.total in Blood"}],"text":"HbA1c"},"subject":{"reference":"Patient/7c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"},"encounter":{"reference":"Encounter/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"},"effectiveDateTime":"2024-03-05T09:40:00+01:00","issued":"2024-03-05T10:22:31.000+01:00","performer":[{"reference":"Organization/lab-central","display":"Central Laboratory"}],"valueQuantity":{"value":6.3,"unit":"%","system":"http://unitsofmeasure.org","code":"%"},"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"H","display":"High"}]}],"referenceRange":[{"low":{"value":4.0,"unit":"%","system":"http://unitsofmeasure.org","code":"%"},"high":{"value":5.6,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}]}"#;

/// Bytes a record transaction carries besides the FHIR JSON and the index entry, from the
/// encodings of `seal.rs` and `tx.rs` at the time of writing: the sealed record (version 1,
/// record id 32, patient 64, commitment 32, nonce 12, ciphertext length 4 + GCM tag 16, envelope
/// count 4, two key envelopes of 112) = 389, and the transaction around it (version, kind,
/// contributor 32, timestamp 8, nonce 8, network-sealed body nonce 32 + length 4 + tag 16,
/// index entry length 4, signature 64) = 170.
const RECORD_TX_OVERHEAD: usize = 389 + 170;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn code(i: usize) -> Keyword {
    Keyword::code("http://loinc.org", &format!("{}-{}", 1000 + i, i % 10)).unwrap()
}

/// A Zipf-like draw from `0..n`: rank `r` with probability about `1 / (r + 1)`.
fn zipf(rng: &mut ChaCha20Rng, n: usize) -> usize {
    let ln_n = (n as f64 + 1.0).ln();
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (((u * ln_n).exp() - 1.0) as usize).min(n - 1)
}

struct Data {
    blocks: Vec<BlockIndex>,
    /// The same blocks' filters built as one segment per contributor.
    segmented: Vec<BlockFilter>,
    patients: Vec<IndexKey>,
    records_of: Vec<Vec<(usize, usize)>>,
    research: IndexKey,
    build_time: Duration,
}

fn build(blocks: usize, per_block: usize) -> Data {
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    let patients: Vec<IndexKey> = (0..PATIENTS)
        .map(|_| IndexKey::for_patient(&Identity::generate(&mut rng)))
        .collect();
    let research = NetworkIndexKey::generate(&mut rng).research_key("diabetes");
    let types = [
        "Observation",
        "Observation",
        "Observation",
        "Condition",
        "MedicationRequest",
    ]
    .map(|t| Keyword::resource_type(t).unwrap());
    let total = blocks * per_block;
    // The planted code goes into RARE_RECORDS research records, picked in advance.
    let mut rare: Vec<usize> = Vec::new();
    while rare.len() < RARE_RECORDS.min(total / RESEARCH_ONE_IN as usize) {
        let r = (rng.next_u64() % total as u64) as usize;
        if !rare.contains(&r) {
            rare.push(r);
        }
    }
    let rare_kw = Keyword::code("http://loinc.org", "BENCH-RARE").unwrap();
    let mut records_of = vec![Vec::new(); PATIENTS];
    let start = Instant::now();
    let mut out = Vec::with_capacity(blocks);
    let mut segmented = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let mut builder = BlockIndexBuilder::new();
        let mut block_trapdoors: Vec<Vec<Trapdoor>> = Vec::with_capacity(per_block);
        for p in 0..per_block {
            let n = b * per_block + p;
            let patient = (rng.next_u64() % PATIENTS as u64) as usize;
            records_of[patient].push((b, p));
            let mut kws = vec![types[(rng.next_u32() % 5) as usize].clone()];
            for _ in 0..1 + rng.next_u32() % 4 {
                kws.push(code(zipf(&mut rng, CODES)));
            }
            let year = 2015 + (rng.next_u32() % 10) as u16;
            kws.push(Keyword::year(year).unwrap());
            kws.push(Keyword::month(year, 1 + (rng.next_u32() % 12) as u8).unwrap());
            let is_rare = rare.contains(&n);
            let mut trapdoors: Vec<Trapdoor> = patients[patient].trapdoors(&kws);
            if is_rare || rng.next_u32() % RESEARCH_ONE_IN == 0 {
                if is_rare {
                    kws.push(rare_kw.clone());
                }
                trapdoors.extend(research.trapdoors(&kws));
            }
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            builder
                .add_record(RecordId::from_byte_array(id), &trapdoors, &mut rng)
                .unwrap();
            block_trapdoors.push(trapdoors);
        }
        let mut ctx = [0u8; 32];
        rng.fill_bytes(&mut ctx);
        let ctx = BlockContext::from_byte_array(ctx);
        let index = builder.finish(ctx, &mut rng).unwrap();
        let segments = (0..CONTRIBUTORS.min(per_block))
            .map(|c| {
                let mine = (c..per_block).step_by(CONTRIBUTORS);
                FilterSegment::build(
                    &ctx,
                    per_block,
                    mine.map(|p| (p, &index.records()[p], block_trapdoors[p].as_slice())),
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        segmented.push(BlockFilter::from_segments(per_block, segments).unwrap());
        out.push(index);
    }
    Data {
        blocks: out,
        segmented,
        patients,
        records_of,
        research,
        build_time: start.elapsed(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A block searched with its multi-segment filter.
struct Segmented<'a> {
    index: &'a BlockIndex,
    filter: &'a BlockFilter,
}

impl SearchableBlock for Segmented<'_> {
    fn context(&self) -> &BlockContext {
        self.index.context()
    }
    fn filter(&self) -> &BlockFilter {
        self.filter
    }
    fn record_count(&self) -> usize {
        self.index.records().len()
    }
    fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)> {
        self.index
            .records()
            .get(position)
            .map(|r| (r.record_id, &r.entry))
    }
}

/// Runs `f` once for the outcome, then `runs` times for the median time.
fn timed(runs: usize, f: impl Fn() -> SearchOutcome) -> (Duration, SearchOutcome) {
    let outcome = f();
    let times = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    (median(times), outcome)
}

fn hmac_rates() -> (f64, f64) {
    let n = 1_000_000u32;
    let msg = [0x5au8; 64];
    let t = Instant::now();
    for i in 0..n {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(&msg);
        black_box(mac.finalize());
    }
    let fresh = f64::from(n) / t.elapsed().as_secs_f64();
    let keyed = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let mut mac = keyed.clone();
        mac.update(&i.to_be_bytes());
        mac.update(&msg[4..]);
        black_box(mac.finalize());
    }
    let precomputed = f64::from(n) / t.elapsed().as_secs_f64();
    (fresh, precomputed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let blocks = env_usize("MEDCHAIN_INDEX_BENCH_BLOCKS", 1000);
    let per_block = env_usize("MEDCHAIN_INDEX_BENCH_RECORDS", 1000);
    println!("secure index: {blocks} blocks x {per_block} records (one thread)");
    let (fresh, precomputed) = hmac_rates();
    println!(
        "raw HMAC-SHA256 (64-byte message): {:.2} M ops/s with key setup, {:.2} M ops/s keyed state precomputed",
        fresh / 1e6,
        precomputed / 1e6
    );
    let data = build(blocks, per_block);
    let total = blocks * per_block;
    println!(
        "built {total} entries and {blocks} filters in {:.1} s",
        data.build_time.as_secs_f64()
    );

    // Sizes.
    let entries: usize = data
        .blocks
        .iter()
        .flat_map(|b| b.records())
        .map(|r| 32 + r.entry.encoded_len())
        .sum();
    let filters: usize = data.blocks.iter().map(|b| b.filter().encoded_len()).sum();
    let buckets: Vec<usize> = [16, 32, 64, 128]
        .iter()
        .map(|&s| {
            data.blocks
                .iter()
                .flat_map(|b| b.records())
                .filter(|r| r.entry.padded_len() == s)
                .count()
        })
        .collect();
    let record_tx = SAMPLE_OBSERVATION.len() + RECORD_TX_OVERHEAD;
    let block_bytes = entries + total * record_tx;
    println!("entry buckets 16/32/64/128 tags: {buckets:?}");
    println!(
        "index entries + record ids: {:.1} MB ({:.0} B/record); filters: {:.1} MB ({:.1} KB/block, {:.1} B/record)",
        entries as f64 / 1e6,
        entries as f64 / total as f64,
        filters as f64 / 1e6,
        filters as f64 / blocks as f64 / 1e3,
        filters as f64 / total as f64
    );
    println!(
        "filter overhead: {:.2}% of the blocks' records (entries + record transactions of {record_tx} B: a {} B FHIR Observation + {RECORD_TX_OVERHEAD} B sealing and transaction overhead); {:.1}% of the index entries alone",
        100.0 * filters as f64 / block_bytes as f64,
        SAMPLE_OBSERVATION.len(),
        100.0 * filters as f64 / entries as f64
    );

    // Queries.
    let rare = Keyword::code("http://loinc.org", "BENCH-RARE").unwrap();
    let observation = Keyword::resource_type("Observation").unwrap();
    let y2020 = Keyword::year(2020).unwrap();
    let patient = (0..PATIENTS)
        .filter(|&p| data.records_of[p].len() <= 100)
        .max_by_key(|&p| data.records_of[p].len())
        .unwrap_or(0);
    let queries: Vec<(String, Query)> = vec![
        (
            "research: rare code (100 records)".into(),
            data.research.query(std::slice::from_ref(&rare)).unwrap(),
        ),
        (
            format!(
                "patient ({} records): type:Observation",
                data.records_of[patient].len()
            ),
            data.patients[patient]
                .query(std::slice::from_ref(&observation))
                .unwrap(),
        ),
        (
            "research: absent code".into(),
            data.research
                .query(&[Keyword::code("http://loinc.org", "ABSENT").unwrap()])
                .unwrap(),
        ),
        (
            "research: rare code AND date:2020".into(),
            data.research.query(&[y2020.clone(), rare.clone()]).unwrap(),
        ),
        (
            "research: date:2020".into(),
            data.research.query(std::slice::from_ref(&y2020)).unwrap(),
        ),
        (
            "research: type:Observation AND date:2020".into(),
            data.research
                .query(&[observation.clone(), y2020.clone()])
                .unwrap(),
        ),
    ];
    let single: Vec<&BlockIndex> = data.blocks.iter().collect();
    let multi: Vec<Segmented<'_>> = data
        .blocks
        .iter()
        .zip(&data.segmented)
        .map(|(index, filter)| Segmented { index, filter })
        .collect();
    let multi: Vec<&Segmented<'_>> = multi.iter().collect();
    println!(
        "{:<48} {:>9} {:>7} {:>8} {:>7} {:>10} {:>9} {:>10}",
        "query", "median ms", "hits", "skipped", "no-hit", "candidates", "PRFs", "x raw HMAC"
    );
    let row = |name: &str, t: Duration, o: &SearchOutcome| {
        let s = o.stats;
        println!(
            "{:<48} {:>9.3} {:>7} {:>8} {:>7} {:>10} {:>9} {:>10.0}",
            name,
            ms(t),
            o.hits.len(),
            s.blocks_skipped,
            s.blocks_without_hit,
            s.candidates_checked,
            s.prf_evaluations,
            t.as_secs_f64() * fresh
        );
    };
    for (name, q) in &queries {
        let (t, o) = timed(RUNS, || search(q, single.iter().copied()));
        row(name, t, &o);
    }
    let (t, o) = timed(RUNS, || search(&queries[0].1, multi.iter().copied()));
    row(
        &format!("  same, {CONTRIBUTORS} filter segments per block"),
        t,
        &o,
    );
    let (t, o) = timed(3, || {
        search_exhaustive(&queries[0].1, single.iter().copied())
    });
    row("  same, exhaustive (no filters)", t, &o);
    println!("(x raw HMAC: the search time expressed in HMAC-SHA256 operations with key setup)");
    let seg_bytes: usize = data.segmented.iter().map(BlockFilter::encoded_len).sum();
    println!(
        "{CONTRIBUTORS}-segment filters: {:.1} MB ({:.2}% of the blocks' records)",
        seg_bytes as f64 / 1e6,
        100.0 * seg_bytes as f64 / block_bytes as f64
    );

    // False-positive rate: one-keyword searches for absent keywords; every block that passes
    // the filter is a false positive.
    let trials = 200usize;
    let mut passed = 0u64;
    let mut looked = 0u64;
    for i in 0..trials {
        let k = Keyword::code("urn:absent", &i.to_string()).unwrap();
        let o = search(&Query::keyword(data.research.trapdoor(&k)), &data.blocks);
        passed += o.stats.blocks - o.stats.blocks_skipped;
        looked += o.stats.blocks;
    }
    println!(
        "filter false-positive rate: {passed} of {looked} block lookups = {:.3}% (bound: entries / 2^(8 + position bits) = {:.3}%)",
        100.0 * passed as f64 / looked as f64,
        100.0 * per_block as f64 / (1u64 << (8 + (usize::BITS - (per_block - 1).leading_zeros()))) as f64
    );
}
