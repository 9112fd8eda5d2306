//! Secure index, end to end: FHIR resources to keywords, entries and block filters; search
//! against a plaintext oracle; keys, delegation and research purposes; malformed input; and an
//! independent re-implementation of `docs/secure-index.md` (trapdoors, tags, filter lookups).

use std::collections::BTreeSet;

use medchain_core::encoding::{Decode, DecodeError, Encode};
use medchain_core::hash::{domain, RecordId};
use medchain_core::index::{
    extract_keywords, search, search_exhaustive, BlockContext, BlockFilter, BlockIndex,
    BlockIndexBuilder, FilterSegment, IndexEntry, IndexKey, IndexedRecord, Keyword, KeywordClass,
    NetworkIndexKey, Query, QueryError, SearchGrant,
};
use medchain_core::keys::{BackupParams, Identity};
use proptest::prelude::*;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

fn kw(s: &str) -> Keyword {
    s.parse().unwrap()
}

fn record_id(rng: &mut ChaCha20Rng) -> RecordId {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    RecordId::from_byte_array(id)
}

fn hba1c(date: &str) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}]},
        "effectiveDateTime": date,
        "valueQuantity": {"value": 6.3, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    })
}

fn diabetes(date: &str) -> serde_json::Value {
    json!({
        "resourceType": "Condition",
        "code": {"coding": [
            {"system": "http://snomed.info/sct", "code": "44054006"},
            {"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}
        ]},
        "recordedDate": date
    })
}

fn metformin(date: &str) -> serde_json::Value {
    json!({
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]},
        "authoredOn": date
    })
}

#[test]
fn fhir_records_are_found_by_their_patient_and_after_a_backup_restore() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let resources = [
        (&alice, hba1c("2024-03-05T09:40:00+01:00")),
        (&alice, diabetes("2023-11-20")),
        (&bob, hba1c("2024-03-17")),
        (&alice, metformin("2024-03-06")),
        (&bob, diabetes("2020-01-02")),
    ];
    let mut builder = BlockIndexBuilder::new();
    let mut ids = Vec::new();
    for (who, resource) in &resources {
        let keywords = extract_keywords(resource).unwrap();
        let id = record_id(&mut rng);
        builder
            .add_record(
                id,
                &IndexKey::for_patient(who).trapdoors(&keywords),
                &mut rng,
            )
            .unwrap();
        ids.push(id);
    }
    let index = builder
        .finish(BlockContext::from_byte_array([3; 32]), &mut rng)
        .unwrap();
    // Through the wire format.
    let index = BlockIndex::from_bytes(&index.to_bytes()).unwrap();

    let backup = alice
        .export_backup(b"pw", BackupParams::dangerous_test_only(), &mut rng)
        .unwrap();
    let restored = Identity::restore_backup(&backup, b"pw").unwrap();
    let key = IndexKey::for_patient(&restored);

    let find = |key: &IndexKey, kws: &[&str]| -> Vec<RecordId> {
        let kws: Vec<Keyword> = kws.iter().map(|s| kw(s)).collect();
        search(&key.query(&kws).unwrap(), [&index])
            .hits
            .iter()
            .map(|h| h.record_id)
            .collect()
    };
    assert_eq!(find(&key, &["code:http://loinc.org|4548-4"]), [ids[0]]);
    assert_eq!(find(&key, &["date:2024-03"]), [ids[0], ids[3]]);
    assert_eq!(find(&key, &["date:2023"]), [ids[1]]);
    assert_eq!(
        find(
            &key,
            &[
                "type:Condition",
                "code:http://hl7.org/fhir/sid/icd-10|E11.9"
            ]
        ),
        [ids[1]]
    );
    assert!(find(&key, &["type:Condition", "date:2024"]).is_empty());
    let bob_key = IndexKey::for_patient(&bob);
    assert_eq!(find(&bob_key, &["code:http://loinc.org|4548-4"]), [ids[2]]);
    assert_eq!(find(&bob_key, &["date:2020-01"]), [ids[4]]);
}

#[test]
fn delegation_by_class_and_by_keyword_through_its_encoding() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let alice = Identity::generate(&mut rng);
    let key = IndexKey::for_patient(&alice);
    let mut builder = BlockIndexBuilder::new();
    let mut ids = Vec::new();
    for r in [
        hba1c("2024-01-01"),
        diabetes("2024-02-01"),
        metformin("2024-02-02"),
    ] {
        let id = record_id(&mut rng);
        let kws = extract_keywords(&r).unwrap();
        builder
            .add_record(id, &key.trapdoors(&kws), &mut rng)
            .unwrap();
        ids.push(id);
    }
    let index = builder.finish(BlockContext::default(), &mut rng).unwrap();

    let loinc = KeywordClass::code_system("http://loinc.org").unwrap();
    let grant = key
        .grant([&loinc], [&kw("code:http://snomed.info/sct|44054006")])
        .unwrap();
    // The grantee receives the bytes (a consent carries them, encrypted).
    let received = SearchGrant::from_bytes(&grant.to_secret_bytes()).unwrap();
    let hits = |q: Query| -> Vec<RecordId> {
        search(&q, [&index])
            .hits
            .iter()
            .map(|h| h.record_id)
            .collect()
    };
    assert_eq!(
        hits(
            received
                .query(&[kw("code:http://loinc.org|4548-4")])
                .unwrap()
        ),
        [ids[0]]
    );
    assert_eq!(
        hits(
            received
                .query(&[kw("code:http://snomed.info/sct|44054006")])
                .unwrap()
        ),
        [ids[1]]
    );
    assert_eq!(
        received
            .query(&[kw(
                "code:http://www.nlm.nih.gov/research/umls/rxnorm|860975"
            )])
            .unwrap_err(),
        QueryError::NotGranted
    );
    assert_eq!(
        received.query(&[kw("date:2024")]).unwrap_err().to_string(),
        "the grant does not cover every keyword of the query"
    );
    // A class key alone: LOINC yes, dates no.
    let class_key = key.class_key(&loinc);
    assert!(class_key.trapdoor(&kw("date:2024")).is_err());
    let t = class_key
        .trapdoor(&kw("code:http://loinc.org|4548-4"))
        .unwrap();
    assert_eq!(hits(Query::keyword(t)), [ids[0]]);
}

#[test]
fn research_search_finds_only_records_indexed_for_that_purpose() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let network = NetworkIndexKey::generate(&mut rng);
    let diabetes_research = network.research_key("diabetes");
    let oncology = network.research_key("oncology");
    let patient = IndexKey::for_patient(&Identity::generate(&mut rng));
    let mut builder = BlockIndexBuilder::new();
    let mut ids = Vec::new();
    for (i, r) in [
        hba1c("2024-01-01"),
        hba1c("2024-01-02"),
        hba1c("2024-01-03"),
    ]
    .iter()
    .enumerate()
    {
        let kws = extract_keywords(r).unwrap();
        let mut trapdoors = patient.trapdoors(&kws);
        // Only the first record's consent allows diabetes research; the second allows oncology.
        match i {
            0 => trapdoors.extend(diabetes_research.trapdoors(&kws)),
            1 => trapdoors.extend(oncology.trapdoors(&kws)),
            _ => {}
        }
        let id = record_id(&mut rng);
        builder.add_record(id, &trapdoors, &mut rng).unwrap();
        ids.push(id);
    }
    let index = builder.finish(BlockContext::default(), &mut rng).unwrap();
    let q = |k: &IndexKey| {
        search(
            &k.query(&[kw("code:http://loinc.org|4548-4")]).unwrap(),
            [&index],
        )
        .hits
        .iter()
        .map(|h| h.record_id)
        .collect::<Vec<_>>()
    };
    assert_eq!(q(&diabetes_research), [ids[0]]);
    assert_eq!(q(&oncology), [ids[1]]);
    assert_eq!(q(&patient), ids);
    assert!(q(&network.research_key("cardiology")).is_empty());
}

#[test]
fn entries_of_few_and_many_keywords_have_equal_size() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let key = IndexKey::for_patient(&Identity::generate(&mut rng));
    let patient = json!({"resourceType": "Patient", "gender": "female"});
    let big = json!({
        "resourceType": "DiagnosticReport",
        "effectiveDateTime": "2024-05-06",
        "issued": "2024-06-01",
        "code": {"coding": (0..12).map(|i| json!({"system": "http://loinc.org", "code": format!("{i}-1")})).collect::<Vec<_>>()}
    });
    let few = extract_keywords(&patient).unwrap();
    let many = extract_keywords(&big).unwrap();
    assert_eq!((few.len(), many.len()), (1, 16));
    let a = IndexEntry::build(&record_id(&mut rng), &key.trapdoors(&few), &mut rng).unwrap();
    let b = IndexEntry::build(&record_id(&mut rng), &key.trapdoors(&many), &mut rng).unwrap();
    assert_eq!(a.to_bytes().len(), b.to_bytes().len());
    assert_eq!(a.to_bytes().len(), 1 + 4 + 16 * 8);
}

#[test]
fn one_keyword_in_two_records_gives_unrelated_tags() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let key = IndexKey::for_patient(&Identity::generate(&mut rng));
    let t = key.trapdoors(&[kw("type:Observation")]);
    let (id1, id2) = (record_id(&mut rng), record_id(&mut rng));
    let e1 = IndexEntry::build(&id1, &t, &mut rng).unwrap();
    let e2 = IndexEntry::build(&id2, &t, &mut rng).unwrap();
    // No tag in common (the real ones differ, the padding is random).
    let tags = |e: &IndexEntry| -> BTreeSet<Vec<u8>> {
        e.to_bytes()[5..].chunks(8).map(<[u8]>::to_vec).collect()
    };
    assert!(tags(&e1).is_disjoint(&tags(&e2)));
    assert!(e1.matches(&id1, &t[0]) && e2.matches(&id2, &t[0]));
    // Swapped onto the other record, neither matches.
    assert!(!e1.matches(&id2, &t[0]) && !e2.matches(&id1, &t[0]));
}

#[test]
fn each_contributor_builds_the_segment_of_its_own_records() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let patients: Vec<IndexKey> = (0..4)
        .map(|_| IndexKey::for_patient(&Identity::generate(&mut rng)))
        .collect();
    // 30 records from 3 hospitals, interleaved in the block; each hospital holds the trapdoors
    // of its own records only (delegated to it when it wrote them).
    let resources = [
        hba1c("2024-01-01"),
        diabetes("2024-01-02"),
        metformin("2024-01-03"),
    ];
    let mut records = Vec::new();
    let mut trapdoors = Vec::new();
    let mut truth = Vec::new();
    for i in 0..30usize {
        let patient = i % 4;
        let kws = extract_keywords(&resources[i % 3]).unwrap();
        let t = patients[patient].trapdoors(&kws);
        let id = record_id(&mut rng);
        records.push(IndexedRecord {
            record_id: id,
            entry: IndexEntry::build(&id, &t, &mut rng).unwrap(),
        });
        trapdoors.push(t);
        truth.push((patient, kws));
    }
    let ctx = BlockContext::from_byte_array([0x77; 32]);
    let segments: Vec<_> = (0..3)
        .map(|hospital| {
            let mine = (0..30).filter(|i| i % 3 == hospital);
            let segment = FilterSegment::build(
                &ctx,
                records.len(),
                mine.map(|i| (i, &records[i], trapdoors[i].as_slice())),
                &mut rng,
            )
            .unwrap();
            // Sent to the proposer.
            FilterSegment::from_bytes(&segment.to_bytes()).unwrap()
        })
        .collect();
    let filter = BlockFilter::from_segments(records.len(), segments).unwrap();
    let index = BlockIndex::from_parts(ctx, filter, records).unwrap();
    for (p, key) in patients.iter().enumerate() {
        for k in [
            "type:Observation",
            "date:2024-01",
            "code:http://snomed.info/sct|44054006",
        ] {
            let q = key.query(&[kw(k)]).unwrap();
            let o = search(&q, [&index]);
            let expected: Vec<usize> = (0..30)
                .filter(|&i| truth[i].0 == p && truth[i].1.contains(&kw(k)))
                .collect();
            let got: Vec<usize> = o.hits.iter().map(|h| h.position).collect();
            assert_eq!(got, expected, "patient {p}, {k}");
            assert_eq!(o.hits, search_exhaustive(&q, [&index]).hits);
        }
    }
    // An absent keyword: one PRF for the block, whatever the number of segments.
    let q = patients[0].query(&[kw("type:Patient")]).unwrap();
    let o = search(&q, [&index]);
    assert!(o.hits.is_empty());
    assert_eq!(o.stats.prf_evaluations, 1);
}

/// A record indexed under one key: (key index, keyword indices).
type Indexed = (usize, BTreeSet<usize>);

/// The random world the oracle tests search: `blocks × per_block` records, each with 1 to 6
/// keywords from a 24-keyword vocabulary (several classes), under one of three patient keys and,
/// for one record in four, also the research key.
struct World {
    keys: Vec<IndexKey>,
    vocabulary: Vec<Keyword>,
    blocks: Vec<BlockIndex>,
    /// Per block, per record: (key index, keyword indices); key 3 is research.
    truth: Vec<Vec<Vec<Indexed>>>,
}

fn vocabulary() -> Vec<Keyword> {
    let mut v: Vec<Keyword> = ["Observation", "Condition", "Patient", "Encounter"]
        .iter()
        .map(|t| Keyword::resource_type(t).unwrap())
        .collect();
    for i in 0..10 {
        v.push(Keyword::code("http://loinc.org", &format!("{i}-{i}")).unwrap());
    }
    for i in 0..6 {
        v.push(Keyword::code("http://snomed.info/sct", &format!("{}", 1000 + i)).unwrap());
    }
    v.push(Keyword::year(2023).unwrap());
    v.push(Keyword::year(2024).unwrap());
    v.push(Keyword::month(2024, 1).unwrap());
    v.push(Keyword::month(2024, 2).unwrap());
    v
}

fn world(seed: u64, blocks: usize, per_block: usize) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut keys: Vec<IndexKey> = (0..3)
        .map(|_| IndexKey::for_patient(&Identity::generate(&mut rng)))
        .collect();
    keys.push(NetworkIndexKey::generate(&mut rng).research_key("study"));
    let vocabulary = vocabulary();
    let mut w = World {
        keys,
        vocabulary,
        blocks: Vec::new(),
        truth: Vec::new(),
    };
    for b in 0..blocks {
        let mut builder = BlockIndexBuilder::new();
        let mut truth = Vec::new();
        for _ in 0..per_block {
            let owner = (rng.next_u32() % 3) as usize;
            // Skewed: low keyword numbers are common, high ones rare.
            let n = 1 + (rng.next_u32() % 6) as usize;
            let set: BTreeSet<usize> = (0..n)
                .map(|_| {
                    let a = (rng.next_u32() % 24) as usize;
                    let b = (rng.next_u32() % 24) as usize;
                    a.min(b)
                })
                .collect();
            let kws: Vec<&Keyword> = set.iter().map(|&i| &w.vocabulary[i]).collect();
            let mut trapdoors = w.keys[owner].trapdoors(kws.iter().copied());
            let mut rec = vec![(owner, set.clone())];
            if rng.next_u32() % 4 == 0 {
                trapdoors.extend(w.keys[3].trapdoors(kws.iter().copied()));
                rec.push((3, set));
            }
            builder
                .add_record(record_id(&mut rng), &trapdoors, &mut rng)
                .unwrap();
            truth.push(rec);
        }
        let mut ctx = [0u8; 32];
        ctx[0] = b as u8;
        ctx[1] = (seed % 251) as u8;
        w.blocks.push(
            builder
                .finish(BlockContext::from_byte_array(ctx), &mut rng)
                .unwrap(),
        );
        w.truth.push(truth);
    }
    w
}

fn oracle(w: &World, key: usize, wanted: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (b, block) in w.truth.iter().enumerate() {
        for (p, rec) in block.iter().enumerate() {
            if rec
                .iter()
                .any(|(k, set)| *k == key && wanted.iter().all(|x| set.contains(x)))
            {
                out.push((b, p));
            }
        }
    }
    out
}

fn positions(o: &medchain_core::index::SearchOutcome) -> Vec<(usize, usize)> {
    o.hits.iter().map(|h| (h.block, h.position)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    /// 2,500 random records per case: every keyword under every key, and random conjunctions,
    /// give exactly the oracle's records, with and without the filters.
    #[test]
    fn search_matches_a_plaintext_oracle(
        seed in any::<u64>(),
        conjunctions in proptest::collection::vec(proptest::collection::vec(0usize..24, 2..4), 8),
    ) {
        let w = world(seed, 25, 100);
        for key in 0..4 {
            for k in 0..w.vocabulary.len() {
                let q = Query::keyword(w.keys[key].trapdoor(&w.vocabulary[k]));
                let fast = search(&q, &w.blocks);
                prop_assert_eq!(positions(&fast), oracle(&w, key, &[k]));
                prop_assert_eq!(fast.stats.blocks, 25);
                prop_assert_eq!(
                    fast.stats.blocks_skipped + fast.stats.blocks_without_hit
                        + fast.hits.iter().map(|h| h.block).collect::<BTreeSet<_>>().len() as u64,
                    25
                );
            }
            for c in &conjunctions {
                let kws: Vec<Keyword> = c.iter().map(|&i| w.vocabulary[i].clone()).collect();
                let q = w.keys[key].query(&kws).unwrap();
                let fast = search(&q, &w.blocks);
                let mut wanted = c.clone();
                wanted.sort_unstable();
                wanted.dedup();
                prop_assert_eq!(positions(&fast), oracle(&w, key, &wanted));
                prop_assert_eq!(fast.hits, search_exhaustive(&q, &w.blocks).hits);
            }
        }
    }

    /// Tags made under one key never match a trapdoor of another key.
    #[test]
    fn tags_under_one_key_never_match_another_keys_trapdoors(seed in any::<u64>()) {
        let w = world(seed, 4, 100);
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 1);
        let stranger = IndexKey::for_patient(&Identity::generate(&mut rng));
        for (b, block) in w.blocks.iter().enumerate() {
            for (p, rec) in block.records().iter().enumerate() {
                let owners: BTreeSet<usize> = w.truth[b][p].iter().map(|x| x.0).collect();
                for k in &w.vocabulary {
                    prop_assert!(!rec.entry.matches(&rec.record_id, &stranger.trapdoor(k)));
                    for key in (0..4).filter(|key| !owners.contains(key)) {
                        prop_assert!(!rec.entry.matches(&rec.record_id, &w.keys[key].trapdoor(k)));
                    }
                }
            }
        }
    }

    /// Damaged block indexes are typed errors; if the damage still decodes (a flipped slot bit),
    /// search may miss records but never returns one that does not hold the keyword.
    #[test]
    fn damaged_indexes_never_yield_false_matches(seed in any::<u64>(), flips in proptest::collection::vec(any::<(usize, u8)>(), 1..8)) {
        let w = world(seed, 1, 40);
        let bytes = w.blocks[0].to_bytes();
        let mut damaged = bytes.clone();
        for (at, bit) in &flips {
            damaged[at % bytes.len()] ^= 1 << (bit % 8);
        }
        if let Ok(index) = BlockIndex::from_bytes(&damaged) {
            for key in 0..4 {
                for k in 0..w.vocabulary.len() {
                    let q = Query::keyword(w.keys[key].trapdoor(&w.vocabulary[k]));
                    let truth = oracle(&w, key, &[k]);
                    for h in search(&q, [&index]).hits {
                        prop_assert!(truth.contains(&(0, h.position)));
                    }
                }
            }
        }
        let cut = flips[0].0 % bytes.len();
        prop_assert!(BlockIndex::from_bytes(&bytes[..cut]).is_err());
    }

    #[test]
    fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = BlockIndex::from_bytes(&data);
        let _ = BlockFilter::from_bytes(&data);
        let _ = IndexEntry::from_bytes(&data);
        let _ = IndexedRecord::from_bytes(&data);
        let _ = SearchGrant::from_bytes(&data);
        let _ = Keyword::from_bytes(&data);
    }
}

#[test]
fn malformed_filters_and_entries_are_typed_errors() {
    let w = world(9, 1, 10);
    let filter = w.blocks[0].filter().to_bytes();
    let mut bad = filter.clone();
    bad[0] = 7;
    assert_eq!(
        BlockFilter::from_bytes(&bad).unwrap_err(),
        DecodeError::UnknownVersion {
            what: "block filter",
            found: 7
        }
    );
    let mut bad = filter.clone();
    bad[17..21].copy_from_slice(&17u32.to_be_bytes());
    assert_eq!(
        BlockFilter::from_bytes(&bad).unwrap_err().to_string(),
        "block filter segment: invalid value (key count does not fit the entry count)"
    );
    assert!(matches!(
        BlockFilter::from_bytes(&filter[..filter.len() - 1]).unwrap_err(),
        DecodeError::UnexpectedEnd { .. }
    ));
    let entry = w.blocks[0].records()[0].entry.to_bytes();
    assert!(matches!(
        IndexEntry::from_bytes(&entry[..20]).unwrap_err(),
        DecodeError::LengthExceedsInput { .. }
    ));
}

// ---- An independent implementation of docs/secure-index.md ----

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for i in 0..32 {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn labelled(key: &[u8; 32], label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let len = [label.len() as u8];
    let mut all: Vec<&[u8]> = vec![&len, label.as_bytes()];
    all.extend_from_slice(parts);
    hmac(key, &all)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The document's filter lookup, from the bytes of a filter with one segment.
fn spec_lookup(filter: &[u8], a: u64, b: u64) -> Option<u32> {
    let entries = u32::from_be_bytes(filter[1..5].try_into().unwrap());
    assert_eq!(u32::from_be_bytes(filter[5..9].try_into().unwrap()), 1);
    let seed = u64::from_be_bytes(filter[9..17].try_into().unwrap());
    let keys = u64::from(u32::from_be_bytes(filter[17..21].try_into().unwrap()));
    let data = &filter[21..];
    let slots = (32 + (123 * keys).div_ceil(100)).div_ceil(3) * 3;
    let third = slots / 3;
    let pbits = if entries <= 1 {
        0
    } else {
        32 - (entries - 1).leading_zeros()
    };
    let width = 8 + pbits;
    let h = fmix64(a ^ fmix64(b ^ seed));
    let reduce = |x: u64| ((x & 0xffff_ffff) * third) >> 32;
    let idx = [
        reduce(h),
        third + reduce(h.rotate_left(21)),
        2 * third + reduce(h.rotate_left(42)),
    ];
    let mut v = 0u32;
    for i in idx {
        let mut x = 0u32;
        for k in 0..width as u64 {
            let bit = i * u64::from(width) + k;
            let byte = data[(bit / 8) as usize];
            x = (x << 1) | u32::from((byte >> (7 - bit % 8)) & 1);
        }
        v ^= x;
    }
    let pos = v ^ (b as u32 & ((1u32 << width) - 1));
    (pos < entries).then_some(pos)
}

#[test]
fn the_document_alone_reproduces_trapdoors_tags_and_filter_lookups() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let alice = Identity::generate(&mut rng);
    let key = IndexKey::for_patient(&alice);
    let keyword = kw("code:http://loinc.org|4548-4");

    // Index key, class key, trapdoor.
    let index_key = alice.derive_secret(domain::INDEX_KEY, b"patient");
    let mut class_enc = vec![2u8];
    class_enc.extend_from_slice(&16u32.to_be_bytes());
    class_enc.extend_from_slice(b"http://loinc.org");
    let class_key = labelled(&index_key, domain::INDEX_CLASS_KEY, &[&class_enc]);
    let mut kw_enc = class_enc.clone();
    kw_enc.extend_from_slice(&6u32.to_be_bytes());
    kw_enc.extend_from_slice(b"4548-4");
    assert_eq!(kw_enc, keyword.to_bytes());
    let trapdoor = labelled(&class_key, domain::INDEX_TRAPDOOR, &[&kw_enc]);

    // Three records in a block; the keyword is in the first and the third.
    let ids: Vec<RecordId> = (0..3).map(|_| record_id(&mut rng)).collect();
    let mut builder = BlockIndexBuilder::new();
    for (i, id) in ids.iter().enumerate() {
        let kws = if i == 1 {
            vec![kw("type:Patient")]
        } else {
            vec![keyword.clone(), kw("date:2024")]
        };
        builder
            .add_record(*id, &key.trapdoors(&kws), &mut rng)
            .unwrap();
    }
    let ctx = BlockContext::from_byte_array([0x42; 32]);
    let index = builder.finish(ctx, &mut rng).unwrap();

    // Tags: the entry of record 0 holds PRF(trapdoor, INDEX_TAG || id)[..8].
    for (i, rec) in index.records().iter().enumerate() {
        let tag = labelled(&trapdoor, domain::INDEX_TAG, &[ids[i].as_byte_array()]);
        let enc = rec.entry.to_bytes();
        let found = enc[5..].chunks(8).any(|t| t == &tag[..8]);
        assert_eq!(found, i != 1, "record {i}");
    }

    // Filter keys for occurrences 0 and 1 point at positions 0 and 2.
    let filter = index.filter().to_bytes();
    let fk = |j: u32| {
        let out = labelled(
            &trapdoor,
            domain::INDEX_FILTER_KEY,
            &[ctx.as_byte_array(), &j.to_be_bytes()],
        );
        (
            u64::from_be_bytes(out[..8].try_into().unwrap()),
            u64::from_be_bytes(out[8..16].try_into().unwrap()),
        )
    };
    let (a, b) = fk(0);
    assert_eq!(spec_lookup(&filter, a, b), Some(0));
    let (a, b) = fk(1);
    assert_eq!(spec_lookup(&filter, a, b), Some(2));
    // The digest the header commits to.
    let mut framed = vec![domain::INDEX_FILTER.len() as u8];
    framed.extend_from_slice(domain::INDEX_FILTER.as_bytes());
    framed.extend_from_slice(&filter);
    let digest: [u8; 32] = Sha256::digest(&framed).into();
    assert_eq!(index.filter().digest().to_byte_array(), digest);
}
