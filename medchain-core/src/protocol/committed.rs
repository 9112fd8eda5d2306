//! What a node knows of the committed chain: read from a [`CommittedChain`] its host supplies
//! (the host's store), with the committed blocks the host has not appended yet laid on top;
//! or, for a node without one, kept in memory.
//!
//! A node with a source holds in memory only what the source cannot answer yet and a bounded
//! window of recent blocks: its memory does not grow with the chain (`docs/protocol.md` §7).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::block::{Block, BlockHeader, CheckedBlock};
use crate::consent::{ConsentId, ConsentState};
use crate::genesis::Genesis;
use crate::hash::{BlockHash, RecordId, TxId};
use crate::keys::VerifyKey;
use crate::ledger::{
    block_effects, BlockEffects, LedgerState, Overlay, RecordEntry, StateError, StateView,
};
use crate::seal::NetworkKey;
use crate::store::Head;

/// Most committed blocks a node with a [`CommittedChain`] keeps in memory once its source holds
/// them (for sync answers and hash lookups; older ones are read from the source). Blocks the
/// source does not hold yet are kept however many there are.
pub const RECENT_COMMITTED_BLOCKS: usize = 4;

/// The committed chain as a node's host keeps it (its ledger store): the state the ledger rules
/// read ([`StateView`]), the blocks, and the head with its proof. A node reads it instead of
/// keeping the chain in memory ([`Node::resume`](super::Node::resume)).
///
/// The source may lag the node: it holds a prefix of the node's committed chain (the host
/// appends what the node commits after the node's call returns), never a block the node has
/// not committed. [`StateView::height`] is the height of the last block it holds, read anew at
/// every call. Within one call into the node the source must not change (the host appends
/// between calls).
pub trait CommittedChain: StateView + Send {
    /// The committed block at `height` (1-based); `None` above the source's head.
    ///
    /// # Errors
    /// [`StateError`] when the source cannot be read.
    fn block(&self, height: u64) -> Result<Option<Block>, StateError>;

    /// The height of the committed block `hash`; `None` if the source holds no such block.
    ///
    /// # Errors
    /// [`StateError`] when the source cannot be read.
    fn height_of(&self, hash: &BlockHash) -> Result<Option<u64>, StateError>;

    /// The head and its commit proof; `None` when only genesis is held.
    ///
    /// # Errors
    /// [`StateError`] when the source cannot be read.
    fn head(&self) -> Result<Option<Head>, StateError>;
}

/// The committed chain in memory (a node without a source): every block, every transaction
/// id and, when the node judges the ledger rules, the whole ledger state.
struct MemoryChain {
    blocks: Vec<CheckedBlock>,
    index: HashMap<BlockHash, u64>,
    ids: HashSet<TxId>,
    ledger: Option<LedgerState>,
}

impl StateView for MemoryChain {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.ids.contains(id))
    }
    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.ledger.as_ref().and_then(|l| l.record(id).cloned()))
    }
    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.ledger.as_ref().and_then(|l| l.consent(id).cloned()))
    }
    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        Ok(self
            .ledger
            .as_ref()
            .map(|l| l.consents_of(patient))
            .unwrap_or_default())
    }
    fn height(&self) -> u64 {
        self.blocks.len() as u64
    }
}

impl CommittedChain for MemoryChain {
    fn block(&self, height: u64) -> Result<Option<Block>, StateError> {
        Ok(height
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.blocks.get(i))
            .map(|b| b.block().clone()))
    }
    fn height_of(&self, hash: &BlockHash) -> Result<Option<u64>, StateError> {
        Ok(self.index.get(hash).copied())
    }
    fn head(&self) -> Result<Option<Head>, StateError> {
        // The node keeps the head's proof itself.
        Ok(self.blocks.last().map(|b| Head {
            tip: b.tip(),
            proof: None,
        }))
    }
}

/// A committed block the source does not hold yet.
struct Lagging {
    height: u64,
    /// Its ledger effects (a node that judges the ledger rules).
    effects: Option<BlockEffects>,
}

enum Backing {
    Memory(MemoryChain),
    Source(Box<dyn CommittedChain>),
}

/// The node's committed chain: a source (or memory), the committed blocks the source does not
/// hold yet, and a window of recent blocks.
pub(super) struct Committed {
    backing: Backing,
    /// With a source: the recent committed blocks, consecutive, the last at the committed head
    /// (empty after a resume until the next commit).
    recent: Vec<CheckedBlock>,
    recent_index: HashMap<BlockHash, u64>,
    /// With a source: the committed blocks above the source's height, oldest first.
    lag: VecDeque<Lagging>,
    /// The transactions of the lagging blocks, by height.
    lag_ids: HashMap<TxId, u64>,
    /// The source's height when last read.
    source_height: u64,
}

impl Committed {
    /// In memory, with the ledger state when the node judges the ledger rules.
    pub(super) fn memory(ledger: bool) -> Self {
        Self::with(Backing::Memory(MemoryChain {
            blocks: Vec::new(),
            index: HashMap::new(),
            ids: HashSet::new(),
            ledger: ledger.then(LedgerState::new),
        }))
    }

    /// Over `source`.
    pub(super) fn over(source: Box<dyn CommittedChain>) -> Self {
        let mut c = Self::with(Backing::Source(source));
        c.source_height = c.source().height();
        c
    }

    fn with(backing: Backing) -> Self {
        Self {
            backing,
            recent: Vec::new(),
            recent_index: HashMap::new(),
            lag: VecDeque::new(),
            lag_ids: HashMap::new(),
            source_height: 0,
        }
    }

    /// The committed state without the lagging blocks.
    pub(super) fn source(&self) -> &dyn CommittedChain {
        match &self.backing {
            Backing::Memory(m) => m,
            Backing::Source(s) => s.as_ref(),
        }
    }

    /// Reads the source's height again: drops the lagging blocks it now holds, and the recent
    /// blocks beyond the window that it holds.
    pub(super) fn refresh(&mut self) {
        let Backing::Source(s) = &self.backing else {
            return;
        };
        // The source never goes back (it is append-only); a height it fails to read stays
        // where it was.
        let height = s.height().max(self.source_height);
        self.source_height = height;
        while self.lag.front().is_some_and(|l| l.height <= height) {
            self.lag.pop_front();
        }
        if self.lag.is_empty() {
            self.lag_ids.clear();
        } else {
            self.lag_ids.retain(|_, h| *h > height);
        }
        while self.recent.len() > RECENT_COMMITTED_BLOCKS
            && self
                .recent
                .first()
                .is_some_and(|b| b.header().height <= height)
        {
            let b = self.recent.remove(0);
            self.recent_index.remove(&b.hash());
        }
    }

    /// Adds the next committed block, with the effects its validation produced (`None`: the
    /// node has none, or judges no ledger rules; with the network key they are computed again).
    /// Returns the effects the host may append the block with (`None` when there are none).
    pub(super) fn append(
        &mut self,
        block: CheckedBlock,
        effects: Option<BlockEffects>,
        rules: Option<(&Genesis, &NetworkKey)>,
    ) -> Option<BlockEffects> {
        let height = block.header().height;
        if let Backing::Memory(m) = &mut self.backing {
            let mut handed = None;
            if let (Some(ledger), Some((genesis, network))) = (&mut m.ledger, rules) {
                let done = match effects {
                    Some(e) => {
                        let kept = e.clone();
                        let done = ledger.commit(e).is_ok();
                        if done {
                            handed = Some(kept);
                        }
                        done
                    }
                    None => false,
                };
                if !done {
                    // Validated without effects (restore, or an effects map pruned): apply
                    // again. A committed block that breaks the rules cannot happen with fewer
                    // than a third byzantine validators; the state then stays as it was.
                    let _ = ledger.apply(&block, genesis, network);
                }
            }
            m.ids.extend(block.tx_ids().iter().copied());
            m.index.insert(block.hash(), height);
            m.blocks.push(block);
            return handed;
        }
        let effects = match (effects, rules) {
            (Some(e), _) if e.height() == height => Some(e),
            // Validated without effects: computed again over the committed state (a block that
            // does not apply leaves none; the host then validates it again before appending).
            (_, Some((genesis, network))) => {
                block_effects(&self.view(Vec::new()), &block, genesis, network).ok()
            }
            (_, None) => None,
        };
        for id in block.tx_ids() {
            self.lag_ids.insert(*id, height);
        }
        self.lag.push_back(Lagging {
            height,
            effects: effects.clone(),
        });
        self.recent_index.insert(block.hash(), height);
        self.recent.push(block);
        effects
    }

    /// The committed state with the lagging blocks' effects, then `layers` (the effects of
    /// uncommitted blocks, oldest first), laid over the source.
    pub(super) fn view<'a>(&'a self, layers: Vec<&'a BlockEffects>) -> Overlay<'a> {
        let mut all: Vec<&BlockEffects> =
            self.lag.iter().filter_map(|l| l.effects.as_ref()).collect();
        all.extend(layers);
        Overlay::new(self.source(), all)
    }

    /// Whether the transaction `id` is committed.
    pub(super) fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        if self.lag_ids.contains_key(id) {
            return Ok(true);
        }
        self.source().contains_tx(id)
    }

    /// The height of the committed block `hash` (`None` when it is not committed, or the
    /// source cannot be read).
    pub(super) fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        match &self.backing {
            Backing::Memory(m) => m.index.get(hash).copied(),
            Backing::Source(s) => self
                .recent_index
                .get(hash)
                .copied()
                .or_else(|| s.height_of(hash).ok().flatten()),
        }
    }

    /// The header of the committed block `hash`.
    pub(super) fn header_of(&self, hash: &BlockHash) -> Option<BlockHeader> {
        let height = self.height_of(hash)?;
        self.with_block(height, |b| b.header.clone())
    }

    /// `f` of the committed block at `height` (`None` when there is none or the source cannot
    /// be read).
    pub(super) fn with_block<T>(&self, height: u64, f: impl FnOnce(&Block) -> T) -> Option<T> {
        match &self.backing {
            Backing::Memory(m) => held(&m.blocks, height).map(f),
            Backing::Source(s) => match held(&self.recent, height) {
                Some(b) => Some(f(b)),
                None => s.block(height).ok().flatten().map(|b| f(&b)),
            },
        }
    }

    /// The committed blocks held in memory, oldest first, the last at the committed head: all
    /// of them without a source, the recent window with one.
    pub(super) fn blocks(&self) -> &[CheckedBlock] {
        match &self.backing {
            Backing::Memory(m) => &m.blocks,
            Backing::Source(_) => &self.recent,
        }
    }

    /// How many committed blocks the source does not hold yet.
    #[cfg(test)]
    pub(super) fn lagging(&self) -> usize {
        self.lag.len()
    }
}

/// The block at `height` among consecutive `blocks`.
fn held(blocks: &[CheckedBlock], height: u64) -> Option<&Block> {
    let first = blocks.first()?.header().height;
    let i = usize::try_from(height.checked_sub(first)?).ok()?;
    blocks.get(i).map(CheckedBlock::block)
}
