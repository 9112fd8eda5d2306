//! Who can search: index keys, class keys, trapdoors and search grants.
//!
//! ```text
//! IndexKey ──PRF(INDEX_CLASS_KEY, class)──▶ ClassKey ──PRF(INDEX_TRAPDOOR, keyword)──▶ Trapdoor
//! ```
//!
//! * An [`IndexKey`] is a patient's ([`IndexKey::for_patient`], derived from their
//!   [`Identity`] so that it comes back with a restored backup), one writer's sub-key of it
//!   ([`IndexKey::for_writer`]), or a research purpose's ([`NetworkIndexKey::research_key`]).
//! * A [`ClassKey`] derives the trapdoors of every keyword of one [`KeywordClass`] (all LOINC
//!   codes, all dates, ...) and nothing else.
//! * A [`Trapdoor`] finds (and makes) the tags of one keyword.
//! * A [`SearchGrant`] is what a consent carries to delegate search: class keys for whole classes
//!   and trapdoors for single keywords. It has a canonical encoding, and it is secret.
//!
//! Whoever can search for a keyword can also write entries that match it: the construction is
//! symmetric. A grant therefore delegates writing as well as searching.

use std::fmt;

use rand_core::{CryptoRng, Rng};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use super::filter::{BlockContext, FilterKey};
use super::keywords::{Keyword, KeywordClass};
use super::prf::{frame, Prf};
use super::search::{Query, QueryError};
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{domain, RecordId};
use crate::keys::{Identity, PartyId};

/// Bytes of a tag in an [`IndexEntry`](super::IndexEntry): the PRF output is cut to this.
pub const TAG_LEN: usize = 8;

/// A tag: the first [`TAG_LEN`] bytes of `PRF(trapdoor, INDEX_TAG || record id)`.
pub(crate) type Tag = [u8; TAG_LEN];

fn derive(key: &[u8; 32], label: &str, data: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let (len, label) = frame(label);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + data.len());
    parts.push(&len);
    parts.push(label);
    parts.extend_from_slice(data);
    Zeroizing::new(Prf::new(key).eval(&parts))
}

/// A secure-index key: a patient's, or a research purpose's. Zeroized on drop; `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct IndexKey {
    key: Zeroizing<[u8; 32]>,
}

impl IndexKey {
    /// The patient's index key: `identity.derive_secret(INDEX_KEY, "patient")`. Only the patient
    /// (and whoever holds their identity backup) can compute it.
    pub fn for_patient(identity: &Identity) -> Self {
        Self {
            key: identity.derive_secret(domain::INDEX_KEY, b"patient"),
        }
    }

    /// An index key from its 32 secret bytes (an unwrapped writer key).
    pub(super) fn from_secret(key: Zeroizing<[u8; 32]>) -> Self {
        Self { key }
    }

    /// The 32 secret bytes (to wrap a writer key for its writer).
    pub(super) fn secret(&self) -> &[u8; 32] {
        &self.key
    }

    /// The sub-key for the records that one writer (a contributing institution) indexes under
    /// this key: `PRF(index key, INDEX_WRITER_KEY || writer's 16-byte party id)`.
    ///
    /// Writing an entry takes the trapdoors of its keywords, so a writer given the class keys of
    /// the patient's own key could also search every record other writers indexed for that
    /// patient. Given the class keys of its writer sub-key instead, it can index (and search)
    /// only its own records; the patient searches under each writer's sub-key.
    pub fn for_writer(&self, writer: &PartyId) -> IndexKey {
        IndexKey {
            key: derive(
                &self.key,
                domain::INDEX_WRITER_KEY,
                &[&writer.to_byte_array()],
            ),
        }
    }

    /// The key of one keyword class: `PRF(index key, INDEX_CLASS_KEY || class encoding)`.
    pub fn class_key(&self, class: &KeywordClass) -> ClassKey {
        ClassKey::new(
            class.clone(),
            derive(&self.key, domain::INDEX_CLASS_KEY, &[&class.to_bytes()]),
        )
    }

    /// The trapdoor of one keyword (through its class key).
    pub fn trapdoor(&self, keyword: &Keyword) -> Trapdoor {
        self.class_key(&keyword.class()).derive(keyword)
    }

    /// The trapdoors of several keywords, in the same order.
    pub fn trapdoors<'a>(&self, keywords: impl IntoIterator<Item = &'a Keyword>) -> Vec<Trapdoor> {
        let mut classes: Vec<ClassKey> = Vec::new();
        let mut out = Vec::new();
        for keyword in keywords {
            let class = keyword.class();
            let i = match classes.iter().position(|c| c.class == class) {
                Some(i) => i,
                None => {
                    classes.push(self.class_key(&class));
                    classes.len() - 1
                }
            };
            out.push(classes[i].derive(keyword));
        }
        out
    }

    /// A query for the records holding every one of `keywords`.
    ///
    /// # Errors
    /// [`QueryError::Empty`] or [`QueryError::TooManyTerms`].
    pub fn query(&self, keywords: &[Keyword]) -> Result<Query, QueryError> {
        Query::all(self.trapdoors(keywords))
    }

    /// A grant of search over whole `classes` and over single `keywords` (those already covered
    /// by a granted class are left out).
    ///
    /// # Errors
    /// [`GrantError::TooManyClasses`] or [`GrantError::TooManyKeywords`].
    pub fn grant<'a>(
        &self,
        classes: impl IntoIterator<Item = &'a KeywordClass>,
        keywords: impl IntoIterator<Item = &'a Keyword>,
    ) -> Result<SearchGrant, GrantError> {
        let mut class_list: Vec<&KeywordClass> = classes.into_iter().collect();
        class_list.sort_by_cached_key(|c| c.to_bytes());
        class_list.dedup();
        if class_list.len() > MAX_GRANT_CLASSES {
            return Err(GrantError::TooManyClasses {
                count: class_list.len(),
                max: MAX_GRANT_CLASSES,
            });
        }
        let mut keyword_list: Vec<&Keyword> = keywords
            .into_iter()
            .filter(|k| !class_list.iter().any(|c| c.contains(k)))
            .collect();
        keyword_list.sort_by_cached_key(|k| k.to_bytes());
        keyword_list.dedup();
        if keyword_list.len() > MAX_GRANT_KEYWORDS {
            return Err(GrantError::TooManyKeywords {
                count: keyword_list.len(),
                max: MAX_GRANT_KEYWORDS,
            });
        }
        Ok(SearchGrant {
            classes: class_list.into_iter().map(|c| self.class_key(c)).collect(),
            keywords: keyword_list
                .into_iter()
                .map(|k| (k.clone(), self.trapdoor(k)))
                .collect(),
        })
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

/// The network's index secret, from which each research purpose gets its own [`IndexKey`].
///
/// Every member of the network holds it (it is distributed like the network sealing key), so
/// every member can search the records a patient made discoverable for a purpose. A record is
/// indexed under a purpose's key only if its consent allows research of that purpose, so a
/// search under that key finds only such records.
pub struct NetworkIndexKey {
    key: Zeroizing<[u8; 32]>,
}

impl NetworkIndexKey {
    /// A fresh key (made once, at network genesis).
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *key);
        Self { key }
    }

    /// The key from its 32 secret bytes (as stored or received by a member).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(*bytes),
        }
    }

    /// The 32 secret bytes, to store or to wrap for a new member.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.key.clone()
    }

    /// The index key of one research purpose:
    /// `PRF(network key, INDEX_RESEARCH_KEY || u32 len || purpose)`.
    pub fn research_key(&self, purpose: &str) -> IndexKey {
        let mut framed = Vec::with_capacity(4 + purpose.len());
        framed.put_bytes(purpose.as_bytes());
        IndexKey {
            key: derive(&self.key, domain::INDEX_RESEARCH_KEY, &[&framed]),
        }
    }
}

impl fmt::Debug for NetworkIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkIndexKey(..)")
    }
}

/// Derives the trapdoors of the keywords of one [`KeywordClass`], and of no other keyword.
#[derive(Clone)]
pub struct ClassKey {
    class: KeywordClass,
    key: Zeroizing<[u8; 32]>,
}

impl ClassKey {
    fn new(class: KeywordClass, key: Zeroizing<[u8; 32]>) -> Self {
        Self { class, key }
    }

    /// The class it covers.
    pub fn class(&self) -> &KeywordClass {
        &self.class
    }

    fn derive(&self, keyword: &Keyword) -> Trapdoor {
        Trapdoor::new(derive(
            &self.key,
            domain::INDEX_TRAPDOOR,
            &[&keyword.to_bytes()],
        ))
    }

    /// The trapdoor of `keyword`: `PRF(class key, INDEX_TRAPDOOR || keyword encoding)`.
    ///
    /// # Errors
    /// [`GrantError::NotInClass`] if the keyword is not of this key's class.
    pub fn trapdoor(&self, keyword: &Keyword) -> Result<Trapdoor, GrantError> {
        if self.class.contains(keyword) {
            Ok(self.derive(keyword))
        } else {
            Err(GrantError::NotInClass)
        }
    }
}

impl fmt::Debug for ClassKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClassKey({}, ..)", self.class)
    }
}

/// The secret that finds one keyword under one index key. Zeroized on drop; `Debug` shows
/// nothing of it. Holding it lets one search for the keyword, and also make matching tags.
#[derive(Clone)]
pub struct Trapdoor {
    key: Zeroizing<[u8; 32]>,
    prf: Prf,
}

impl Trapdoor {
    fn new(key: Zeroizing<[u8; 32]>) -> Self {
        let prf = Prf::new(&key);
        Self { key, prf }
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.key
    }

    /// The record's tag for this keyword: `PRF(trapdoor, INDEX_TAG || record id)[..8]`.
    pub(crate) fn tag(&self, record: &RecordId) -> Tag {
        let (len, label) = frame(domain::INDEX_TAG);
        let out = self.prf.eval(&[&len, label, record.as_byte_array()]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&out[..TAG_LEN]);
        tag
    }

    /// The filter key of the `occurrence`-th record (0-based) holding this keyword in the block:
    /// `PRF(trapdoor, INDEX_FILTER_KEY || context || u32 occurrence)[..16]`.
    pub(crate) fn filter_key(&self, context: &BlockContext, occurrence: u32) -> FilterKey {
        let (len, label) = frame(domain::INDEX_FILTER_KEY);
        let out = Zeroizing::new(self.prf.eval(&[
            &len,
            label,
            context.as_byte_array(),
            &occurrence.to_be_bytes(),
        ]));
        FilterKey::from_prf_output(&out)
    }
}

impl PartialEq for Trapdoor {
    fn eq(&self, other: &Self) -> bool {
        self.key.ct_eq(&*other.key).into()
    }
}

impl Eq for Trapdoor {}

impl fmt::Debug for Trapdoor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Trapdoor(..)")
    }
}

/// Most classes one grant may carry.
pub const MAX_GRANT_CLASSES: usize = 256;

/// Most single keywords one grant may carry.
pub const MAX_GRANT_KEYWORDS: usize = 4096;

const GRANT_VERSION: u8 = 1;

/// A grant could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Too many classes for one grant.
    #[error("a grant carries at most {max} keyword classes, {count} given")]
    TooManyClasses {
        /// Classes given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many single keywords for one grant.
    #[error("a grant carries at most {max} single keywords, {count} given")]
    TooManyKeywords {
        /// Keywords given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A class key was asked for a keyword of another class.
    #[error("the keyword is not in the class of this key")]
    NotInClass,
}

/// Delegated search: class keys for whole keyword classes and trapdoors for single keywords,
/// all under one index key. A consent carries it (encrypted to the grantee).
///
/// Canonical encoding (secret bytes: see [`SearchGrant::to_secret_bytes`]):
/// `u8 version (1) | u32 n | n × (class encoding | 32-byte class key) | u32 m |
/// m × (keyword encoding | 32-byte trapdoor)`, each list strictly ascending by the bytes of its
/// class or keyword encoding.
#[derive(Clone)]
pub struct SearchGrant {
    classes: Vec<ClassKey>,
    keywords: Vec<(Keyword, Trapdoor)>,
}

impl SearchGrant {
    /// The trapdoor of `keyword`, if the grant covers it.
    pub fn trapdoor(&self, keyword: &Keyword) -> Option<Trapdoor> {
        if let Some(class) = self.classes.iter().find(|c| c.class.contains(keyword)) {
            return Some(class.derive(keyword));
        }
        self.keywords
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, t)| t.clone())
    }

    /// Whether the grant covers `keyword`.
    pub fn covers(&self, keyword: &Keyword) -> bool {
        self.classes.iter().any(|c| c.class.contains(keyword))
            || self.keywords.iter().any(|(k, _)| k == keyword)
    }

    /// A query for the records holding every one of `keywords`.
    ///
    /// # Errors
    /// [`QueryError::NotGranted`] if a keyword is not covered, or as [`Query::all`].
    pub fn query(&self, keywords: &[Keyword]) -> Result<Query, QueryError> {
        let terms = keywords
            .iter()
            .map(|k| self.trapdoor(k).ok_or(QueryError::NotGranted))
            .collect::<Result<Vec<_>, _>>()?;
        Query::all(terms)
    }

    /// The classes granted whole.
    pub fn classes(&self) -> impl Iterator<Item = &KeywordClass> + '_ {
        self.classes.iter().map(|c| &c.class)
    }

    /// The single keywords granted.
    pub fn keywords(&self) -> impl Iterator<Item = &Keyword> + '_ {
        self.keywords.iter().map(|(k, _)| k)
    }

    /// The canonical encoding in memory that is zeroized on drop. (It holds secret keys;
    /// [`Encode::to_bytes`] gives the same bytes in a plain vector.)
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        self.encode_to(&mut out);
        out
    }
}

impl fmt::Debug for SearchGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchGrant")
            .field("classes", &self.classes.len())
            .field("keywords", &self.keywords.len())
            .finish_non_exhaustive()
    }
}

impl Encode for SearchGrant {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(GRANT_VERSION);
        out.put_u32(self.classes.len() as u32);
        for c in &self.classes {
            c.class.encode_to(out);
            out.put_raw(&*c.key);
        }
        out.put_u32(self.keywords.len() as u32);
        for (k, t) in &self.keywords {
            k.encode_to(out);
            out.put_raw(t.secret());
        }
    }
}

impl Decode for SearchGrant {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("search grant", GRANT_VERSION)?;
        // Smallest class: tag byte + key; smallest keyword: tag + u16 year + trapdoor.
        let n = r.length("search grant classes", MAX_GRANT_CLASSES, 1 + 32)?;
        let mut classes: Vec<ClassKey> = Vec::with_capacity(n);
        let mut last: Option<Vec<u8>> = None;
        for _ in 0..n {
            let class = KeywordClass::decode_from(r)?;
            let key = Zeroizing::new(r.array::<32>()?);
            let enc = class.to_bytes();
            if last.as_ref().is_some_and(|l| *l >= enc) {
                return Err(DecodeError::NonCanonical {
                    what: "search grant classes",
                });
            }
            last = Some(enc);
            classes.push(ClassKey::new(class, key));
        }
        let m = r.length("search grant keywords", MAX_GRANT_KEYWORDS, 3 + 32)?;
        let mut keywords = Vec::with_capacity(m);
        let mut last: Option<Vec<u8>> = None;
        for _ in 0..m {
            let keyword = Keyword::decode_from(r)?;
            let trapdoor = Trapdoor::new(Zeroizing::new(r.array::<32>()?));
            let enc = keyword.to_bytes();
            if last.as_ref().is_some_and(|l| *l >= enc) {
                return Err(DecodeError::NonCanonical {
                    what: "search grant keywords",
                });
            }
            last = Some(enc);
            keywords.push((keyword, trapdoor));
        }
        Ok(Self { classes, keywords })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn kw(s: &str) -> Keyword {
        s.parse().unwrap()
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(11)
    }

    #[test]
    fn patient_key_is_stable_and_personal() {
        let mut rng = rng();
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let k = kw("type:Observation");
        let t1 = IndexKey::for_patient(&alice).trapdoor(&k);
        let t2 = IndexKey::for_patient(&alice).trapdoor(&k);
        assert_eq!(t1, t2);
        assert_ne!(t1, IndexKey::for_patient(&bob).trapdoor(&k));
        assert_ne!(
            t1,
            IndexKey::for_patient(&alice).trapdoor(&kw("type:Patient"))
        );
    }

    #[test]
    fn writer_sub_keys_are_separate() {
        let mut rng = rng();
        let key = IndexKey::for_patient(&Identity::generate(&mut rng));
        let (a, b) = (
            Identity::generate(&mut rng).id(),
            Identity::generate(&mut rng).id(),
        );
        let k = kw("type:Observation");
        let ta = key.for_writer(&a).trapdoor(&k);
        assert_eq!(ta, key.for_writer(&a).trapdoor(&k));
        assert_ne!(ta, key.for_writer(&b).trapdoor(&k));
        assert_ne!(ta, key.trapdoor(&k));
    }

    #[test]
    fn class_keys_derive_only_their_class() {
        let key = IndexKey::for_patient(&Identity::generate(&mut rng()));
        let loinc = KeywordClass::code_system("http://loinc.org").unwrap();
        let ck = key.class_key(&loinc);
        let k = kw("code:http://loinc.org|4548-4");
        assert_eq!(ck.trapdoor(&k).unwrap(), key.trapdoor(&k));
        let err = ck
            .trapdoor(&kw("code:http://snomed.info/sct|1"))
            .unwrap_err();
        assert_eq!(err, GrantError::NotInClass);
        assert_eq!(
            err.to_string(),
            "the keyword is not in the class of this key"
        );
        assert_eq!(format!("{ck:?}"), "ClassKey(code:http://loinc.org, ..)");
    }

    #[test]
    fn research_keys_differ_by_purpose_and_network() {
        let mut rng = rng();
        let net = NetworkIndexKey::generate(&mut rng);
        let k = kw("date:2024");
        let a = net.research_key("oncology").trapdoor(&k);
        assert_eq!(a, net.research_key("oncology").trapdoor(&k));
        assert_ne!(a, net.research_key("cardiology").trapdoor(&k));
        assert_ne!(
            a,
            NetworkIndexKey::generate(&mut rng)
                .research_key("oncology")
                .trapdoor(&k)
        );
        let copy = NetworkIndexKey::from_secret_bytes(&net.to_secret_bytes());
        assert_eq!(copy.research_key("oncology").trapdoor(&k), a);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut rng = rng();
        let key = IndexKey::for_patient(&Identity::generate(&mut rng));
        let t = key.trapdoor(&kw("type:Patient"));
        assert_eq!(format!("{key:?}"), "IndexKey(..)");
        assert_eq!(format!("{t:?}"), "Trapdoor(..)");
        assert_eq!(
            format!("{:?}", NetworkIndexKey::generate(&mut rng)),
            "NetworkIndexKey(..)"
        );
        let g = key
            .grant([&KeywordClass::DATE], [&kw("type:Patient")])
            .unwrap();
        let dbg = format!("{g:?}");
        assert_eq!(dbg, "SearchGrant { classes: 1, keywords: 1, .. }");
        assert!(!dbg.contains(&hex::encode(t.secret())));
    }

    #[test]
    fn grant_round_trip_and_coverage() {
        let key = IndexKey::for_patient(&Identity::generate(&mut rng()));
        let loinc = KeywordClass::code_system("http://loinc.org").unwrap();
        let covered = kw("code:http://loinc.org|1-8");
        let single = kw("code:http://snomed.info/sct|44054006");
        let g = key
            .grant(
                [&loinc, &KeywordClass::DATE, &loinc],
                [&single, &covered, &single],
            )
            .unwrap();
        assert_eq!(g.classes().count(), 2);
        assert_eq!(g.keywords().collect::<Vec<_>>(), [&single]);
        assert_eq!(g.trapdoor(&covered), Some(key.trapdoor(&covered)));
        assert_eq!(g.trapdoor(&single), Some(key.trapdoor(&single)));
        assert_eq!(
            g.trapdoor(&kw("date:2020-01")),
            Some(key.trapdoor(&kw("date:2020-01")))
        );
        assert!(g.trapdoor(&kw("type:Patient")).is_none());
        assert!(!g.covers(&kw("code:http://snomed.info/sct|1")));
        assert!(g.covers(&single));

        let bytes = g.to_secret_bytes();
        assert_eq!(*bytes, g.to_bytes());
        let back = SearchGrant::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), g.to_bytes());
        assert_eq!(back.trapdoor(&covered), Some(key.trapdoor(&covered)));

        assert_eq!(
            key.query(&[]).unwrap_err().to_string(),
            "a query needs at least one keyword"
        );
        assert_eq!(
            g.query(&[covered.clone(), kw("type:Patient")])
                .unwrap_err()
                .to_string(),
            "the grant does not cover every keyword of the query"
        );
        assert_eq!(g.query(&[covered]).unwrap().len(), 1);
    }

    #[test]
    fn grant_limits() {
        let key = IndexKey::for_patient(&Identity::generate(&mut rng()));
        let classes: Vec<KeywordClass> = (0..=MAX_GRANT_CLASSES)
            .map(|i| KeywordClass::code_system(&format!("urn:s{i}")).unwrap())
            .collect();
        assert_eq!(
            key.grant(&classes, []).unwrap_err().to_string(),
            "a grant carries at most 256 keyword classes, 257 given"
        );
        let keywords: Vec<Keyword> = (0..=MAX_GRANT_KEYWORDS)
            .map(|i| Keyword::code("urn:s", &i.to_string()).unwrap())
            .collect();
        assert_eq!(
            key.grant([], &keywords).unwrap_err().to_string(),
            "a grant carries at most 4096 single keywords, 4097 given"
        );
    }

    #[test]
    fn grant_decoding_rejects_malformed_input() {
        let key = IndexKey::for_patient(&Identity::generate(&mut rng()));
        let g = key
            .grant([&KeywordClass::DATE, &KeywordClass::RESOURCE_TYPE], [])
            .unwrap();
        let bytes = g.to_bytes();
        // Swap the two classes: unsorted.
        let mut unsorted = bytes[..5].to_vec();
        unsorted.extend_from_slice(&bytes[5 + 33..5 + 66]);
        unsorted.extend_from_slice(&bytes[5..5 + 33]);
        unsorted.extend_from_slice(&bytes[5 + 66..]);
        assert_eq!(
            SearchGrant::from_bytes(&unsorted).unwrap_err().to_string(),
            "search grant classes: non-canonical encoding"
        );
        let mut lying = bytes.clone();
        lying[1..5].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            SearchGrant::from_bytes(&lying).unwrap_err(),
            DecodeError::TooLong { .. }
        ));
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert_eq!(
            SearchGrant::from_bytes(&bad).unwrap_err().to_string(),
            "search grant: unknown format version 2"
        );
        for cut in 0..bytes.len() {
            assert!(SearchGrant::from_bytes(&bytes[..cut]).is_err());
        }
        // Repeated single keywords.
        let mut rep = vec![GRANT_VERSION, 0, 0, 0, 0, 0, 0, 0, 2];
        for _ in 0..2 {
            kw("date:2024").encode_to(&mut rep);
            rep.extend_from_slice(&[7; 32]);
        }
        assert_eq!(
            SearchGrant::from_bytes(&rep).unwrap_err().to_string(),
            "search grant keywords: non-canonical encoding"
        );
    }
}
