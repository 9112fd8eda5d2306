//! The secure index: find records by keyword without revealing what any record holds.
//!
//! The construction is specified, with its leakage profile, in `docs/secure-index.md`. In
//! short, with every PRF HMAC-SHA256 and every PRF input starting with its own
//! [`domain`](crate::hash::domain) label:
//!
//! * [`extract_keywords`] turns a FHIR R4 resource into at most [`MAX_KEYWORDS`] [`Keyword`]s:
//!   its type, every coded concept, and coarse dates.
//! * An [`IndexKey`] (a patient's, or a research purpose's from the [`NetworkIndexKey`]) gives a
//!   [`ClassKey`] per [`KeywordClass`], which gives a [`Trapdoor`] per keyword.
//! * A record's [`IndexEntry`] holds one 8-byte tag `PRF(trapdoor, record id)` per keyword,
//!   padded with random tags to one of [`ENTRY_BUCKETS`].
//! * A block's [`BlockFilter`], keyed by the block's [`BlockContext`] (its Merkle root), maps
//!   `PRF(trapdoor, context, j)` to the position of the `j`-th record holding the keyword, so a
//!   [`search`] costs about one PRF per block plus the candidates, and a conjunction about the
//!   rarer keyword's work.
//! * A [`SearchGrant`] delegates search over keyword classes or single keywords; a consent
//!   carries it.
//! * A [`SealedWriterKey`] is a patient's enrolment at a hospital: the patient's writer sub-key
//!   for that hospital, sealed to it and signed by the patient, so the hospital can index the
//!   patient's records without the patient's identity.
//!
//! ```
//! use medchain_core::hash::RecordId;
//! use medchain_core::index::{
//!     extract_keywords, search, BlockContext, BlockIndexBuilder, IndexKey, Keyword,
//! };
//! use medchain_core::keys::Identity;
//! use getrandom::SysRng;
//! use rand_core::UnwrapErr;
//!
//! let patient = Identity::generate(&mut UnwrapErr(SysRng));
//! let key = IndexKey::for_patient(&patient);
//! let resource = serde_json::json!({
//!     "resourceType": "Observation",
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
//!     "effectiveDateTime": "2024-03-05"
//! });
//! let keywords = extract_keywords(&resource)?;
//!
//! let mut block = BlockIndexBuilder::new();
//! let record = RecordId::from_byte_array([7; 32]);
//! block.add_record(record, &key.trapdoors(&keywords), &mut UnwrapErr(SysRng))?;
//! let index = block.finish(BlockContext::from_byte_array([1; 32]), &mut UnwrapErr(SysRng))?;
//!
//! let query = key.query(&["code:http://loinc.org|4548-4".parse::<Keyword>()?])?;
//! let found = search(&query, [&index]);
//! assert_eq!(found.hits[0].record_id, record);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod enrol;
mod entry;
mod filter;
mod keys;
mod keywords;
pub(crate) mod prf;
mod search;

pub use enrol::{
    SealedWriterKey, WriterKeyError, SEALED_WRITER_KEY_LEN, SEALED_WRITER_KEY_VERSION,
};
pub use entry::{bucket_for, EntryError, IndexEntry, IndexedRecord, ENTRY_BUCKETS, MAX_ENTRY_TAGS};
pub use filter::{
    BlockContext, BlockFilter, BlockIndex, BlockIndexBuilder, BlockIndexError, FilterDigest,
    FilterError, FilterSegment, FINGERPRINT_BITS, MAX_BLOCK_ENTRIES, MAX_FILTER_SEGMENTS,
};
pub use keys::{
    ClassKey, GrantError, IndexKey, NetworkIndexKey, SearchGrant, Trapdoor, MAX_GRANT_CLASSES,
    MAX_GRANT_KEYWORDS, TAG_LEN,
};
pub use keywords::{
    extract_keywords, Keyword, KeywordClass, KeywordError, Keywords, DATE_FIELDS, MAX_CODE_LEN,
    MAX_KEYWORDS, MAX_RESOURCE_TYPE_LEN, MAX_SYSTEM_LEN, PERIOD_FIELDS,
};
pub use search::{
    search, search_exhaustive, Hit, Query, QueryError, SearchOutcome, SearchStats, SearchableBlock,
    MAX_QUERY_TERMS,
};
