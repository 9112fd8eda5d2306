//! medchain for embedders: one [`Host`] per member.
//!
//! (Crate guide below.)

mod host;
#[cfg(feature = "testing")]
pub mod testing;

pub use host::{
    Event, Host, HostError, NetworkRole, RecordDraft, RecordError, RecordReceipt, ReleaseError,
    ReleaseReceipt, SubmitTxError, Transmit,
};
