//! The derived-state rows a block writes, the same for both backends: what each row holds,
//! its identity (table, sequence number, lookup columns), and the state commitment kept in the
//! head record. See `docs/storage.md`, "Integrity".

use std::collections::HashMap;

use medchain_core::block::CheckedBlock;
use medchain_core::consent::{Consent, ConsentId, ConsentState};
use medchain_core::encoding::{Decode, Encode, Reader, Writer};
use medchain_core::hash::{RecordId, TxId};
use medchain_core::index::{BlockContext, BlockFilter, IndexEntry, IndexedRecord};
use medchain_core::ledger::{AuditEntry, BlockEffects, RecordEntry};
use medchain_core::store::{index_rows, IndexFilterRow};
use zeroize::Zeroizing;

use crate::common::TX_SEQ_SHIFT;
use crate::crypt::{Lookup, StateKey};
use crate::error::{Corruption, StoreError};

/// The derived-state tables, in the order a block's rows are written and committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Table {
    /// One row per record added: the `RecordEntry` (never updated).
    Records,
    /// One row per record erased: its id.
    Erasures,
    /// One row per consent granted: the consent (never updated).
    Consents,
    /// One row per consent revoked: its id.
    Revocations,
    /// One row per audit entry.
    Audit,
    /// One row per block with indexed records: its filter (public, in clear).
    IndexFilters,
    /// One row per indexed record: its entry (public, in clear) and its record id (sealed).
    IndexEntries,
}

impl Table {
    /// Every table, in write order.
    pub(crate) const ALL: [Table; 7] = [
        Table::Records,
        Table::Erasures,
        Table::Consents,
        Table::Revocations,
        Table::Audit,
        Table::IndexFilters,
        Table::IndexEntries,
    ];

    /// The SQL table name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Erasures => "erasures",
            Self::Consents => "consents",
            Self::Revocations => "revocations",
            Self::Audit => "audit",
            Self::IndexFilters => "index_filters",
            Self::IndexEntries => "index_entries",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Records => 1,
            Self::Erasures => 2,
            Self::Consents => 3,
            Self::Revocations => 4,
            Self::Audit => 5,
            Self::IndexFilters => 6,
            Self::IndexEntries => 7,
        }
    }

    pub(crate) fn index(self) -> usize {
        usize::from(self.code() - 1)
    }

    /// The padded plaintext width of a row (with its 4-byte length): every record entry with up
    /// to 16 code tags (≤ 500 bytes: its class holds a resource type, a year and its blinded
    /// codes) and every audit entry (≤ 324 bytes) fits its table's width, so all rows of those
    /// tables have one length (a record with more than 16 codes takes the next power of two);
    /// consents grow in powers of two from 1 KiB.
    pub(crate) fn min_width(self) -> usize {
        match self {
            Self::Records => 512,
            Self::Audit => 384,
            Self::Consents => 1024,
            Self::Erasures | Self::Revocations | Self::IndexEntries => 64,
            Self::IndexFilters => 0,
        }
    }

    /// The lookup columns (HMAC tags), in the order they are bound.
    pub(crate) fn tag_columns(self) -> &'static [&'static str] {
        match self {
            Self::Records => &["rkey", "pkey"],
            Self::Consents => &["ckey", "pkey"],
            Self::Erasures | Self::Audit => &["rkey"],
            Self::Revocations => &["ckey"],
            Self::IndexFilters | Self::IndexEntries => &[],
        }
    }

    /// The column holding public bytes in clear (authenticated with the row), if any.
    pub(crate) fn clear_column(self) -> Option<&'static str> {
        match self {
            Self::IndexFilters => Some("filter"),
            Self::IndexEntries => Some("entry"),
            _ => None,
        }
    }

    /// Whether rows hold a sealed part (all but the filters, which are public).
    pub(crate) fn sealed(self) -> bool {
        self != Self::IndexFilters
    }

    /// The row-number column: `seq = height << 20 | rank`, or the height for filters.
    pub(crate) fn key_column(self) -> &'static str {
        if self == Self::IndexFilters {
            "height"
        } else {
            "seq"
        }
    }

    /// The column list of an insert or a select, in order: key, tags, clear, sealed.
    pub(crate) fn columns(self) -> Vec<&'static str> {
        let mut c = vec![self.key_column()];
        c.extend_from_slice(self.tag_columns());
        c.extend(self.clear_column());
        if self.sealed() {
            c.push("sealed");
        }
        c
    }

    /// The range of row numbers a block at `height` writes.
    pub(crate) fn range(self, height: u64) -> Result<(i64, i64), StoreError> {
        let h = i64::try_from(height).map_err(|_| StoreError::corrupt("height out of range"))?;
        Ok(if self == Self::IndexFilters {
            (h, h)
        } else {
            let lo = h
                .checked_shl(TX_SEQ_SHIFT)
                .filter(|v| v >> TX_SEQ_SHIFT == h)
                .ok_or_else(|| StoreError::corrupt("height out of range"))?;
            (lo, lo | ((1 << TX_SEQ_SHIFT) - 1))
        })
    }
}

/// One derived row: its identity (table, row number, lookup tags), its public part and its
/// secret part (sealed in the store).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) table: Table,
    pub(crate) seq: u64,
    pub(crate) tags: Vec<[u8; 32]>,
    pub(crate) clear: Vec<u8>,
    pub(crate) secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("table", &self.table)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The row number of the `rank`-th row a block at `height` writes to one table.
pub(crate) fn seq_of(height: u64, rank: usize) -> Result<u64, StoreError> {
    if rank >= 1 << TX_SEQ_SHIFT || height >= 1 << (63 - TX_SEQ_SHIFT) {
        return Err(StoreError::corrupt("too many rows in one block"));
    }
    Ok(height << TX_SEQ_SHIFT | rank as u64)
}

/// The height a row number belongs to.
pub(crate) fn height_of(seq: u64) -> u64 {
    seq >> TX_SEQ_SHIFT
}

const COUNTS_VERSION: u8 = 1;

/// Rows per table and pruned transactions: what the head commits to and `open` counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) rows: [u64; 7],
    pub(crate) pruned: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, rows: &[Row], pruned: u64) {
        for r in rows {
            self.rows[r.table.index()] += 1;
        }
        self.pruned += pruned;
    }

    pub(crate) fn of(&self, table: Table) -> u64 {
        self.rows[table.index()]
    }

    /// `version (1) | 7 row counts (u64) | pruned (u64)`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![COUNTS_VERSION];
        for n in self.rows {
            out.put_u64(n);
        }
        out.put_u64(self.pruned);
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(bytes);
        r.version("row counts", COUNTS_VERSION)?;
        let mut rows = [0u64; 7];
        for n in &mut rows {
            *n = r.u64()?;
        }
        let pruned = r.u64()?;
        r.finish()?;
        Ok(Self { rows, pruned })
    }
}

/// The state commitment a head record holds: the running digest of every derived row and the
/// counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Commitment {
    pub(crate) state: [u8; 32],
    pub(crate) counts: Counts,
}

/// What `Ledger::verify` has re-derived so far: the running state digest and the counts of the
/// rows the chain implies. Opaque; built by [`StateAudit::new`] and advanced block by block.
#[derive(Debug, Clone, Default)]
pub struct StateAudit {
    pub(crate) commitment: Commitment,
}

impl StateAudit {
    /// The audit before block 1.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Every derived row block `block` writes, in table order then rank.
///
/// # Errors
/// [`StoreError::Index`] if the index rows cannot be derived; [`StoreError::Corrupt`] for a
/// block with more than 2^20 rows in one table.
pub(crate) fn block_rows(
    key: &StateKey,
    block: &CheckedBlock,
    effects: &BlockEffects,
) -> Result<Vec<Row>, StoreError> {
    let height = block.header().height;
    let position: HashMap<&TxId, usize> = block
        .tx_ids()
        .iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let mut rows = Vec::new();
    let mut push =
        |table: Table, rank: usize, tags: Vec<[u8; 32]>, clear: Vec<u8>, secret: Vec<u8>| {
            rows.push(Row {
                table,
                seq: if table == Table::IndexFilters {
                    height
                } else {
                    seq_of(height, rank)?
                },
                tags,
                clear,
                secret: Zeroizing::new(secret),
            });
            Ok::<(), StoreError>(())
        };
    let mut records: Vec<&RecordEntry> = effects.records().collect();
    records.sort_by_key(|r| position.get(&r.tx_id).copied().unwrap_or(usize::MAX));
    for (i, r) in records.into_iter().enumerate() {
        let tags = vec![
            key.lookup(Lookup::Record, r.record_id.as_byte_array()),
            key.lookup(Lookup::RecordPatient, r.patient.sign.as_byte_array()),
        ];
        let mut entry = r.clone();
        entry.erased = false;
        push(Table::Records, i, tags, Vec::new(), entry.to_bytes())?;
    }
    let mut erased: Vec<&RecordId> = effects.erased().collect();
    erased.sort();
    for (i, id) in erased.into_iter().enumerate() {
        let tags = vec![key.lookup(Lookup::Record, id.as_byte_array())];
        push(
            Table::Erasures,
            i,
            tags,
            Vec::new(),
            id.as_byte_array().to_vec(),
        )?;
    }
    for (i, c) in effects.consents().iter().enumerate() {
        let tags = vec![
            key.lookup(Lookup::Consent, c.id.as_byte_array()),
            key.lookup(
                Lookup::ConsentPatient,
                c.consent.patient.sign.as_byte_array(),
            ),
        ];
        push(Table::Consents, i, tags, Vec::new(), c.consent.to_bytes())?;
    }
    let mut revoked: Vec<&ConsentId> = effects.revoked().collect();
    revoked.sort();
    for (i, id) in revoked.into_iter().enumerate() {
        let tags = vec![key.lookup(Lookup::Consent, id.as_byte_array())];
        push(
            Table::Revocations,
            i,
            tags,
            Vec::new(),
            id.as_byte_array().to_vec(),
        )?;
    }
    for (i, a) in effects.audit().iter().enumerate() {
        let tags = vec![key.lookup(Lookup::AuditRecord, a.record_id.as_byte_array())];
        push(Table::Audit, i, tags, Vec::new(), a.to_bytes())?;
    }
    if let Some(index) = index_rows(block, effects)? {
        push(
            Table::IndexFilters,
            0,
            Vec::new(),
            filter_clear(&index.filter),
            Vec::new(),
        )?;
        for (i, r) in index.records.iter().enumerate() {
            push(
                Table::IndexEntries,
                i,
                Vec::new(),
                r.entry.to_bytes(),
                r.record_id.as_byte_array().to_vec(),
            )?;
        }
    }
    Ok(rows)
}

/// The clear part of a filter row: `context (32) | entry count (u32) | filter (canonical, or
/// empty for a block without one)`.
fn filter_clear(f: &IndexFilterRow) -> Vec<u8> {
    let mut out = f.context.to_bytes();
    out.put_u32(f.entry_count);
    if let Some(filter) = &f.filter {
        filter.encode_to(&mut out);
    }
    out
}

/// A filter row from its stored clear part.
pub(crate) fn filter_row(height: u64, clear: &[u8]) -> Result<IndexFilterRow, StoreError> {
    let bad = || {
        StoreError::corrupt(format!(
            "the index filter of block {height} does not decode"
        ))
    };
    if clear.len() < 36 {
        return Err(bad());
    }
    let (ctx, rest) = clear.split_at(32);
    let context = BlockContext::from_byte_array(ctx.try_into().map_err(|_| bad())?);
    let entry_count = u32::from_be_bytes(rest[..4].try_into().map_err(|_| bad())?);
    let filter = match &rest[4..] {
        [] => None,
        f => Some(BlockFilter::from_bytes(f).map_err(|_| bad())?),
    };
    Ok(IndexFilterRow {
        height,
        context,
        filter,
        entry_count,
    })
}

/// An indexed record from its stored row.
pub(crate) fn indexed_record(row: &Row) -> Result<IndexedRecord, StoreError> {
    let id: [u8; 32] = row.secret[..]
        .try_into()
        .map_err(|_| StoreError::corrupt("an index row's record id is not 32 bytes"))?;
    Ok(IndexedRecord {
        record_id: RecordId::from_byte_array(id),
        entry: IndexEntry::from_bytes(&row.clear)?,
    })
}

/// A record entry from its row and, if erased, its erasure row.
pub(crate) fn record_entry(row: &Row, erasure: Option<&Row>) -> Result<RecordEntry, StoreError> {
    let mut entry = RecordEntry::from_bytes(&row.secret)?;
    entry.erased = erased(&entry.record_id, erasure)?;
    Ok(entry)
}

/// Whether record `id` is erased: its erasure row (found under the record's lookup tag and
/// opened under its identity), if any, must name it.
pub(crate) fn erased(id: &RecordId, erasure: Option<&Row>) -> Result<bool, StoreError> {
    match erasure {
        Some(e) if e.secret[..] != id.as_byte_array()[..] => {
            Err(StoreError::corrupt("an erasure row names another record"))
        }
        e => Ok(e.is_some()),
    }
}

/// A consent state from its row and, if revoked, its revocation row.
pub(crate) fn consent_state(
    row: &Row,
    revocation: Option<&Row>,
) -> Result<ConsentState, StoreError> {
    let mut state = ConsentState::new(Consent::from_bytes(&row.secret)?);
    if let Some(r) = revocation {
        if r.secret[..] != state.id.as_byte_array()[..] {
            return Err(StoreError::corrupt(
                "a revocation row names another consent",
            ));
        }
        state.revoked_at = Some(height_of(r.seq));
    }
    Ok(state)
}

/// An audit entry from its row.
pub(crate) fn audit_entry(row: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry::from_bytes(&row.secret)?)
}

/// The commitment after a block: the running digest advanced over its rows, the counts
/// increased by its rows and the transactions its erasures pruned.
pub(crate) fn advance(
    key: &StateKey,
    prev: &Commitment,
    block: &CheckedBlock,
    rows: &[Row],
    pruned: u64,
) -> Commitment {
    let height = block.header().height;
    let mut counts = prev.counts.clone();
    counts.add(rows, pruned);
    Commitment {
        state: key.state_step(&prev.state, height, &block.hash(), rows),
        counts,
    }
}

/// `Ledger::verify`'s check of one block: the rows the chain implies equal the stored rows,
/// table by table, and the running commitment advances over them.
pub(crate) fn check_block(
    key: &StateKey,
    block: &CheckedBlock,
    effects: &BlockEffects,
    stored: &[Row],
    audit: &mut StateAudit,
) -> Result<(), StoreError> {
    let height = block.header().height;
    let derived = block_rows(key, block, effects)?;
    for table in Table::ALL {
        let want = derived.iter().filter(|r| r.table == table);
        let got = stored.iter().filter(|r| r.table == table);
        if !want.eq(got) {
            return Err(Corruption::StateMismatch {
                height,
                table: table.name(),
            }
            .into());
        }
    }
    let pruned = block
        .block()
        .transactions
        .iter()
        .filter(|t| t.is_pruned())
        .count() as u64;
    audit.commitment = advance(key, &audit.commitment, block, &derived, pruned);
    Ok(())
}

/// `Ledger::verify`'s last check: the re-derived commitment is the head's.
pub(crate) fn check_commitment(
    stored: Option<&Commitment>,
    audit: &StateAudit,
) -> Result<(), StoreError> {
    let empty = Commitment::default();
    if stored.unwrap_or(&empty) == &audit.commitment {
        Ok(())
    } else {
        Err(Corruption::CommitmentMismatch.into())
    }
}

/// A stored row before it is opened: `seq`, its lookup tags, its clear column and its sealed
/// column (if the table has one).
pub(crate) type RawRow = (i64, Vec<[u8; 32]>, Vec<u8>, Option<Vec<u8>>);

/// Reads a row of `table` whose `seq` (column `at`) is `seq`: its tag columns, clear column and
/// sealed column follow in that order and are fetched by `bytes(column)`. Shared by the SQLite
/// and PostgreSQL backends, which differ only in how a column is read.
pub(crate) fn raw_row<E>(
    table: Table,
    at: usize,
    seq: i64,
    mut bytes: impl FnMut(usize) -> Result<Vec<u8>, E>,
) -> Result<RawRow, E> {
    let mut i = at + 1;
    let mut tags = Vec::with_capacity(2);
    for _ in table.tag_columns() {
        // A tag of the wrong length cannot open the row; keep the row to report it.
        tags.push(bytes(i)?.try_into().unwrap_or([0; 32]));
        i += 1;
    }
    let clear = match table.clear_column() {
        Some(_) => {
            i += 1;
            bytes(i - 1)?
        }
        None => Vec::new(),
    };
    let sealed = if table.sealed() {
        Some(bytes(i)?)
    } else {
        None
    };
    Ok((seq, tags, clear, sealed))
}
