//! Searching a sequence of blocks with the trapdoors of a query.
//!
//! A query is a conjunction of keywords (one or more trapdoors). For each block, and within it
//! for each filter segment (one per indexing party; filter keys are computed once per block and
//! shared by its segments):
//!
//! 1. For each keyword, in an order that puts first the keyword that most recently ruled a
//!    segment out or ended a chain, look up its filter key for occurrence 0. The first miss
//!    rules the segment out; a block all of whose segments are ruled out is skipped, which costs
//!    one PRF when the query's rarest keyword leads.
//! 2. Otherwise walk the keywords' occurrence chains (`j = 1, 2, ...`) in lockstep and stop as
//!    soon as one chain ends: that keyword is the rarest here, and its chain lists the
//!    candidates. The walk costs about `terms × (rarest count + 1)` PRFs, not the sum of all
//!    counts.
//! 3. Check each candidate's entry against every keyword's tag (rarest first; one PRF each,
//!    stopping at the first miss). Only candidates that hold every keyword are hits, so a false
//!    positive of the filter, or a wrong or hostile filter, never yields a false match.
//!
//! [`search_exhaustive`] skips the filters and tests every entry: it finds the same records
//! (if the filters were built honestly) at one PRF per record and keyword.

use std::fmt;

use super::entry::IndexEntry;
use super::filter::{BlockContext, BlockFilter, BlockIndex, FilterKey};
use super::keys::Trapdoor;
use crate::hash::RecordId;
use thiserror::Error;
use zeroize::Zeroize;

/// Most keywords in one query.
pub const MAX_QUERY_TERMS: usize = 16;

/// A query could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No keyword.
    #[error("a query needs at least one keyword")]
    Empty,
    /// Too many keywords.
    #[error("a query holds at most {max} keywords, {count} given")]
    TooManyTerms {
        /// Keywords given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A grant was asked for a keyword it does not cover.
    #[error("the grant does not cover every keyword of the query")]
    NotGranted,
}

/// The records holding every one of some keywords, given by their trapdoors.
#[derive(Clone)]
pub struct Query {
    terms: Vec<Trapdoor>,
}

impl Query {
    /// A one-keyword query.
    pub fn keyword(trapdoor: Trapdoor) -> Self {
        Self {
            terms: vec![trapdoor],
        }
    }

    /// A conjunctive query (repeated trapdoors count once).
    ///
    /// # Errors
    /// [`QueryError::Empty`], [`QueryError::TooManyTerms`].
    pub fn all(trapdoors: Vec<Trapdoor>) -> Result<Self, QueryError> {
        let mut terms: Vec<Trapdoor> = Vec::with_capacity(trapdoors.len());
        for t in trapdoors {
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        if terms.is_empty() {
            return Err(QueryError::Empty);
        }
        if terms.len() > MAX_QUERY_TERMS {
            return Err(QueryError::TooManyTerms {
                count: terms.len(),
                max: MAX_QUERY_TERMS,
            });
        }
        Ok(Self { terms })
    }

    /// How many distinct keywords it holds.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Always false: a query holds at least one keyword.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("terms", &self.terms.len())
            .finish()
    }
}

/// A block as search sees it: a context, a filter, and the indexed records by position.
///
/// [`BlockIndex`] implements it; a chain's block type can too, without copying its records.
pub trait SearchableBlock {
    /// The context the filter is keyed by.
    fn context(&self) -> &BlockContext;
    /// The filter.
    fn filter(&self) -> &BlockFilter;
    /// How many indexed records the block has.
    fn record_count(&self) -> usize;
    /// The record at `position`, if there is one.
    fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)>;
}

impl SearchableBlock for BlockIndex {
    fn context(&self) -> &BlockContext {
        BlockIndex::context(self)
    }
    fn filter(&self) -> &BlockFilter {
        BlockIndex::filter(self)
    }
    fn record_count(&self) -> usize {
        self.records().len()
    }
    fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)> {
        self.records()
            .get(position)
            .map(|r| (r.record_id, &r.entry))
    }
}

impl<B: SearchableBlock + ?Sized> SearchableBlock for &B {
    fn context(&self) -> &BlockContext {
        (**self).context()
    }
    fn filter(&self) -> &BlockFilter {
        (**self).filter()
    }
    fn record_count(&self) -> usize {
        (**self).record_count()
    }
    fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)> {
        (**self).record(position)
    }
}

/// A record that holds every keyword of the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hit {
    /// The block's index in the sequence searched (0-based).
    pub block: usize,
    /// The record's position in its block.
    pub position: usize,
    /// The record.
    pub record_id: RecordId,
}

/// What a search did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchStats {
    /// Blocks searched.
    pub blocks: u64,
    /// Blocks the filters ruled out.
    pub blocks_skipped: u64,
    /// Blocks that passed the filters but held no hit (filter false positives, or for a
    /// conjunction, keywords present in different records).
    pub blocks_without_hit: u64,
    /// Entries checked against the trapdoors.
    pub candidates_checked: u64,
    /// Candidates that turned out not to match.
    pub false_candidates: u64,
    /// HMAC-SHA256 evaluations.
    pub prf_evaluations: u64,
}

/// The hits, in block and position order, and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchOutcome {
    /// The matching records.
    pub hits: Vec<Hit>,
    /// The cost.
    pub stats: SearchStats,
}

/// The filter key of `term` for occurrence `j`, computed once per block and shared by the
/// block's segments.
fn cached_key(
    cache: &mut Vec<FilterKey>,
    term: &Trapdoor,
    ctx: &BlockContext,
    j: usize,
    prfs: &mut u64,
) -> FilterKey {
    while cache.len() <= j {
        *prfs += 1;
        cache.push(term.filter_key(ctx, cache.len() as u32));
    }
    cache[j]
}

/// Searches `blocks` with the filters (see the module docs).
pub fn search<B: SearchableBlock>(
    query: &Query,
    blocks: impl IntoIterator<Item = B>,
) -> SearchOutcome {
    let mut out = SearchOutcome::default();
    let terms = &query.terms;
    let m = terms.len();
    // Terms in the order they are tried: the one that last ruled out a segment or ended a
    // chain first.
    let mut order: Vec<usize> = (0..m).collect();
    let mut keys: Vec<Vec<FilterKey>> = vec![Vec::new(); m];
    let mut chains: Vec<Vec<usize>> = vec![Vec::new(); m];
    let mut candidates: Vec<usize> = Vec::new();
    let mut prfs = 0u64;
    for (block_index, block) in blocks.into_iter().enumerate() {
        out.stats.blocks += 1;
        let ctx = block.context();
        let filter = block.filter();
        let records = block.record_count();
        for k in &mut keys {
            k.zeroize();
            k.clear();
        }
        candidates.clear();
        let mut passed = false;
        for segment in 0..filter.segment_count() {
            // 1. Occurrence 0 of every keyword; the first miss rules the segment out.
            let mut missing = None;
            for (rank, &t) in order.iter().enumerate() {
                chains[t].clear();
                let key = cached_key(&mut keys[t], &terms[t], ctx, 0, &mut prfs);
                match filter.lookup(segment, &key) {
                    Some(p) => chains[t].push(p as usize),
                    None => {
                        missing = Some(rank);
                        break;
                    }
                }
            }
            if let Some(rank) = missing {
                order[..=rank].rotate_right(1);
                continue;
            }
            passed = true;
            // 2. Walk the chains in lockstep until the first one ends. A keyword occurs at most
            //    once per record, so no honest chain is longer than the block.
            let mut rarest = order[0];
            'walk: for j in 1..=records {
                for &t in &order {
                    let key = cached_key(&mut keys[t], &terms[t], ctx, j, &mut prfs);
                    match filter.lookup(segment, &key) {
                        Some(p) => chains[t].push(p as usize),
                        None => {
                            rarest = t;
                            break 'walk;
                        }
                    }
                }
            }
            if let Some(rank) = order.iter().position(|&t| t == rarest) {
                order[..=rank].rotate_right(1);
            }
            candidates.extend_from_slice(&chains[rarest]);
        }
        if !passed {
            out.stats.blocks_skipped += 1;
            continue;
        }

        // 3. Check the candidates against every keyword, rarest first.
        candidates.sort_unstable();
        candidates.dedup();
        let before = out.hits.len();
        for &position in &candidates {
            out.stats.candidates_checked += 1;
            let Some((record_id, entry)) = block.record(position) else {
                out.stats.false_candidates += 1;
                continue;
            };
            let mut all = true;
            for &t in &order {
                prfs += 1;
                if !entry.contains_tag(&terms[t].tag(&record_id)) {
                    all = false;
                    break;
                }
            }
            if all {
                out.hits.push(Hit {
                    block: block_index,
                    position,
                    record_id,
                });
            } else {
                out.stats.false_candidates += 1;
            }
        }
        if out.hits.len() == before {
            out.stats.blocks_without_hit += 1;
        }
    }
    for k in &mut keys {
        k.zeroize();
    }
    out.stats.prf_evaluations = prfs;
    out
}

/// Searches `blocks` without the filters: every entry is tested (one PRF per record and
/// keyword, stopping at the first miss). For audits of the filters and for tests.
pub fn search_exhaustive<B: SearchableBlock>(
    query: &Query,
    blocks: impl IntoIterator<Item = B>,
) -> SearchOutcome {
    let mut out = SearchOutcome::default();
    for (block_index, block) in blocks.into_iter().enumerate() {
        out.stats.blocks += 1;
        let before = out.hits.len();
        for position in 0..block.record_count() {
            let Some((record_id, entry)) = block.record(position) else {
                continue;
            };
            out.stats.candidates_checked += 1;
            let mut all = true;
            for term in &query.terms {
                out.stats.prf_evaluations += 1;
                if !entry.contains_tag(&term.tag(&record_id)) {
                    all = false;
                    break;
                }
            }
            if all {
                out.hits.push(Hit {
                    block: block_index,
                    position,
                    record_id,
                });
            } else {
                out.stats.false_candidates += 1;
            }
        }
        if out.hits.len() == before {
            out.stats.blocks_without_hit += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{BlockIndexBuilder, IndexKey, IndexedRecord, Keyword};
    use crate::keys::Identity;
    use rand_chacha::rand_core::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::collections::BTreeSet;

    fn kw(i: usize) -> Keyword {
        Keyword::code("urn:t", &format!("k{i}")).unwrap()
    }

    struct World {
        key: IndexKey,
        blocks: Vec<BlockIndex>,
        /// (block, position) -> keyword numbers.
        truth: Vec<Vec<BTreeSet<usize>>>,
    }

    /// `blocks` blocks of `per_block` records; each record holds 1..=6 keywords drawn from
    /// `0..vocabulary`, keyword 0 being rare (about 1 record in 50).
    fn world(blocks: usize, per_block: usize, vocabulary: usize, seed: u64) -> World {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = IndexKey::for_patient(&Identity::generate(&mut rng));
        let mut out = World {
            key,
            blocks: Vec::new(),
            truth: Vec::new(),
        };
        for b in 0..blocks {
            let mut builder = BlockIndexBuilder::new();
            let mut truth = Vec::new();
            for _ in 0..per_block {
                let n = 1 + rng.next_u32() as usize % 6;
                let mut set: BTreeSet<usize> = (0..n)
                    .map(|_| 1 + rng.next_u32() as usize % (vocabulary - 1))
                    .collect();
                if rng.next_u32() % 50 == 0 {
                    set.insert(0);
                }
                let kws: Vec<Keyword> = set.iter().map(|&i| kw(i)).collect();
                let mut id = [0u8; 32];
                rng.fill_bytes(&mut id);
                builder
                    .add_record(
                        RecordId::from_byte_array(id),
                        &out.key.trapdoors(&kws),
                        &mut rng,
                    )
                    .unwrap();
                truth.push(set);
            }
            let mut ctx = [0u8; 32];
            ctx[..8].copy_from_slice(&(b as u64).to_be_bytes());
            out.blocks.push(
                builder
                    .finish(BlockContext::from_byte_array(ctx), &mut rng)
                    .unwrap(),
            );
            out.truth.push(truth);
        }
        out
    }

    fn oracle(w: &World, wanted: &[usize]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (b, block) in w.truth.iter().enumerate() {
            for (p, set) in block.iter().enumerate() {
                if wanted.iter().all(|k| set.contains(k)) {
                    out.push((b, p));
                }
            }
        }
        out
    }

    fn found(o: &SearchOutcome) -> Vec<(usize, usize)> {
        o.hits.iter().map(|h| (h.block, h.position)).collect()
    }

    #[test]
    fn search_finds_exactly_the_records_holding_the_keywords() {
        let w = world(20, 60, 12, 1);
        for wanted in [
            vec![0],
            vec![1],
            vec![5],
            vec![0, 3],
            vec![2, 7],
            vec![1, 2, 3],
            vec![99],
        ] {
            let kws: Vec<Keyword> = wanted.iter().map(|&i| kw(i)).collect();
            let q = w.key.query(&kws).unwrap();
            let fast = search(&q, &w.blocks);
            let slow = search_exhaustive(&q, &w.blocks);
            assert_eq!(found(&fast), oracle(&w, &wanted), "{wanted:?}");
            assert_eq!(fast.hits, slow.hits);
            for h in &fast.hits {
                assert_eq!(
                    h.record_id,
                    w.blocks[h.block].records()[h.position].record_id
                );
            }
            assert_eq!(fast.stats.blocks, 20);
            assert_eq!(slow.stats.candidates_checked, 20 * 60);
        }
    }

    #[test]
    fn a_rare_keyword_skips_blocks_and_costs_about_one_prf_per_block() {
        let w = world(40, 50, 30, 2);
        let q = Query::keyword(w.key.trapdoor(&kw(0)));
        let o = search(&q, &w.blocks);
        let hits = o.hits.len() as u64;
        let blocks_with = oracle(&w, &[0])
            .iter()
            .map(|x| x.0)
            .collect::<BTreeSet<_>>()
            .len() as u64;
        assert_eq!(
            o.stats.blocks_skipped + blocks_with + o.stats.blocks_without_hit,
            40
        );
        assert!(o.stats.blocks_without_hit <= 2, "{:?}", o.stats);
        // One PRF per block, one per further chain step, one per candidate check.
        assert!(
            o.stats.prf_evaluations <= 40 + 2 * hits + 2 * blocks_with + 6,
            "{:?}",
            o.stats
        );
        let absent = search(&Query::keyword(w.key.trapdoor(&kw(1000))), &w.blocks);
        assert!(absent.hits.is_empty());
        assert!(absent.stats.blocks_skipped >= 38);
    }

    #[test]
    fn conjunction_costs_about_the_rarer_keyword() {
        let w = world(30, 80, 4, 3);
        // Keyword 1 is in about half the records, keyword 0 in about 2%.
        let both = w.key.query(&[kw(1), kw(0)]).unwrap();
        let o = search(&both, &w.blocks);
        assert_eq!(found(&o), oracle(&w, &[1, 0]));
        let common = search(&Query::keyword(w.key.trapdoor(&kw(1))), &w.blocks);
        assert!(
            o.stats.prf_evaluations * 4 < common.stats.prf_evaluations,
            "{:?} vs {:?}",
            o.stats,
            common.stats
        );
        assert!(o.stats.candidates_checked <= oracle(&w, &[0]).len() as u64 + 3);
    }

    #[test]
    fn another_key_finds_nothing() {
        let w = world(5, 40, 6, 4);
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let other = IndexKey::for_patient(&Identity::generate(&mut rng));
        for k in 0..6 {
            let q = Query::keyword(other.trapdoor(&kw(k)));
            assert!(search(&q, &w.blocks).hits.is_empty());
            assert!(search_exhaustive(&q, &w.blocks).hits.is_empty());
        }
    }

    #[test]
    fn a_wrong_filter_never_yields_a_false_match() {
        let w = world(2, 64, 5, 5);
        // Same sizes, other block: the filter fits structurally but describes other records.
        let (ctx, _, records) = w.blocks[0].clone().into_parts();
        let swapped = BlockIndex::from_parts(ctx, w.blocks[1].filter().clone(), records.clone());
        if let Ok(bad) = swapped {
            for k in 0..5 {
                let q = Query::keyword(w.key.trapdoor(&kw(k)));
                for h in search(&q, [&bad]).hits {
                    assert!(w.truth[0][h.position].contains(&k));
                }
            }
        }
        // A block whose records are fewer than the filter claims (not validated): positions
        // past the end are false candidates, not hits or panics.
        struct Truncated<'a>(&'a BlockIndex, &'a [IndexedRecord]);
        impl SearchableBlock for Truncated<'_> {
            fn context(&self) -> &BlockContext {
                self.0.context()
            }
            fn filter(&self) -> &BlockFilter {
                self.0.filter()
            }
            fn record_count(&self) -> usize {
                self.1.len()
            }
            fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)> {
                self.1.get(position).map(|r| (r.record_id, &r.entry))
            }
        }
        let short = Truncated(&w.blocks[0], &records[..3]);
        for k in 0..5 {
            let q = Query::keyword(w.key.trapdoor(&kw(k)));
            for h in search(&q, [&short]).hits {
                assert!(h.position < 3 && w.truth[0][h.position].contains(&k));
            }
        }
    }

    #[test]
    fn query_errors_and_debug() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let key = IndexKey::for_patient(&Identity::generate(&mut rng));
        assert_eq!(Query::all(vec![]).unwrap_err(), QueryError::Empty);
        let many: Vec<Keyword> = (0..17).map(kw).collect();
        assert_eq!(
            key.query(&many).unwrap_err().to_string(),
            "a query holds at most 16 keywords, 17 given"
        );
        let q = key.query(&[kw(1), kw(1), kw(2)]).unwrap();
        assert_eq!(q.len(), 2);
        assert!(!q.is_empty());
        assert_eq!(format!("{q:?}"), "Query { terms: 2 }");
    }
}
