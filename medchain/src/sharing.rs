//! Cross-institution key requests on the [`Host`]: a clinician at this member asks the member
//! that added a record for its key ([`Host::request_key`]); this member answers the requests
//! other members relay for the records it added. The messages and their rules are
//! `medchain_core::sharing`; `docs/consent.md` ("Across institutions") describes the flow.

use std::collections::HashMap;

use getrandom::SysRng;
use medchain_core::access::AccessError;
use medchain_core::consent::{Denial, Purpose};
use medchain_core::credential::Credential;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::{RecordId, TxId};
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::ledger::StateView;
use medchain_core::protocol::{DropReason, Message, Recipient};
use medchain_core::sharing::{
    KeyAnswer, KeyRequest, KeyRequestError, KeyRequestId, KeyResponse, RequestGuard,
};
use medchain_core::tx::TxBody;
use medchain_store::{LedgerError, PersistentStore};
use rand_core::UnwrapErr;
use thiserror::Error;

use crate::host::{Event, Host, HostError, ReleaseError, Transmit};

/// Most key requests of this host awaiting their answer; older ones are forgotten first.
pub const MAX_PENDING_KEY_REQUESTS: usize = 4096;

/// Why [`Host::request_key`] sent nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RequestKeyError {
    /// The request itself is not acceptable (research, a purpose that is not a code, another
    /// clinician's credential).
    #[error(transparent)]
    Request(#[from] KeyRequestError),
    /// No committed record has this id on this host's ledger (yet).
    #[error("no committed record has this id")]
    UnknownRecord,
    /// The patient erased the record: its key is gone.
    #[error("the record was erased")]
    Erased,
    /// This request was relayed already and awaits its answer.
    #[error("this key request was sent already")]
    AlreadySent,
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// One of this host's requests awaiting its answer.
struct Pending {
    record: RecordId,
    holder: VerifyKey,
    at_ms: u64,
}

/// The host's side of the sharing channel: requests it sent, requests it answered.
#[derive(Default)]
pub(crate) struct Sharing {
    guard: RequestGuard,
    pending: HashMap<KeyRequestId, Pending>,
    /// Denials this host logged on chain lately.
    logged_denials: DenialLog,
}

/// Most denials a holder remembers within one request window to coalesce repeats ([`Host`]
/// logs each refused key request on chain as an `AccessDenied`, the same refusal once per
/// request window). When it remembers this many, it logs no new refusal until the oldest leave
/// the window: a flood of distinct refusals cannot make it write without bound.
pub const MAX_REMEMBERED_DENIALS: usize = 4096;

/// A refusal, as coalesced: (grantee, record, purpose, rule).
type DenialKey = (VerifyKey, RecordId, String, String);

/// The refusals a holder logged on chain within the request window, with their times.
#[derive(Default)]
struct DenialLog {
    logged: HashMap<DenialKey, u64>,
}

impl DenialLog {
    /// Whether `key` may be logged at `now_ms`: not logged within `window`, and fewer than
    /// [`MAX_REMEMBERED_DENIALS`] logged within it. Forgets what left the window.
    fn may_log(&mut self, key: &DenialKey, now_ms: u64, window: u64) -> bool {
        self.logged
            .retain(|_, at| now_ms.saturating_sub(*at) <= window);
        !self.logged.contains_key(key) && self.logged.len() < MAX_REMEMBERED_DENIALS
    }

    /// Records that `key` was logged at `now_ms`.
    fn logged(&mut self, key: DenialKey, now_ms: u64) {
        self.logged.insert(key, now_ms);
    }
}

impl<S: PersistentStore> Host<S> {
    /// How far a key request's signed time may be from the holder's clock: the genesis clock
    /// skew bound.
    fn request_window(&self) -> u64 {
        self.genesis().timing.max_clock_skew_ms
    }

    /// Asks the member that added `record` (its key holder) for the record's key, for
    /// `reader` (a clinician of this institution whose identity this host holds) with
    /// `credential` and `purpose`. The reader signs the request; it goes to the holder over the
    /// peer transport, and the answer arrives as [`Event::KeyAnswered`]. On
    /// [`KeyAnswer::Released`], wait for both transactions to commit, then
    /// [`open_for`](Self::open_for) the reader. When this host is the holder, it answers at
    /// once, by the same rules.
    ///
    /// # Errors
    /// [`RequestKeyError`]; nothing was sent.
    pub fn request_key(
        &mut self,
        reader: &Identity,
        record: &RecordId,
        credential: Option<Credential>,
        purpose: Purpose,
        now_ms: u64,
    ) -> Result<KeyRequestId, RequestKeyError> {
        let holder = self.holder_of(record)?;
        let request = KeyRequest::sign(
            reader,
            &self.genesis().chain_id(),
            holder,
            *record,
            credential,
            purpose,
            now_ms,
            &mut UnwrapErr(SysRng),
        )?;
        self.send_key_request(request, holder, now_ms)
    }

    /// Relays a key request the grantee signed elsewhere (a clinician's own device or EHR,
    /// which keeps the clinician's key: the reader then opens the released record itself). The
    /// request is checked first as its holder will check it (signature for this network,
    /// purpose, credential, time) and must be addressed to the member that added the record.
    /// The answer arrives as [`Event::KeyAnswered`].
    ///
    /// # Errors
    /// [`RequestKeyError`]; nothing was sent.
    pub fn relay_key_request(
        &mut self,
        request: KeyRequest,
        now_ms: u64,
    ) -> Result<KeyRequestId, RequestKeyError> {
        let holder = self.holder_of(&request.record)?;
        request.check(
            &self.genesis().chain_id(),
            &holder,
            now_ms,
            self.request_window(),
        )?;
        self.send_key_request(request, holder, now_ms)
    }

    /// Sends a checked request to `holder` (or answers it here when this host is the holder)
    /// and waits for its answer.
    fn send_key_request(
        &mut self,
        request: KeyRequest,
        holder: VerifyKey,
        now_ms: u64,
    ) -> Result<KeyRequestId, RequestKeyError> {
        let id = request.id();
        if self.sharing().pending.contains_key(&id) {
            return Err(RequestKeyError::AlreadySent);
        }
        self.remember_pending(
            id,
            Pending {
                record: request.record,
                holder,
                at_ms: now_ms,
            },
        );
        if holder == self.key() {
            self.on_key_request(holder, &request, now_ms);
        } else {
            let bytes = Message::KeyRequest { request }.to_bytes();
            self.push_transmit(Transmit {
                to: Recipient::Node(holder),
                bytes,
            });
        }
        Ok(id)
    }

    /// The member that added `record` (its key holder), if the record is committed here and
    /// not erased.
    fn holder_of(&self, record: &RecordId) -> Result<VerifyKey, RequestKeyError> {
        let entry = StateView::record(self.ledger().store(), record)
            .map_err(LedgerError::State)?
            .ok_or(RequestKeyError::UnknownRecord)?;
        if entry.erased {
            return Err(RequestKeyError::Erased);
        }
        Ok(entry.contributor)
    }

    fn remember_pending(&mut self, id: KeyRequestId, pending: Pending) {
        // An answer comes within the holder's window or not at all (a later one is stale).
        let cutoff = pending
            .at_ms
            .saturating_sub(self.request_window().saturating_mul(2));
        let sharing = self.sharing_mut();
        sharing.pending.retain(|_, p| p.at_ms >= cutoff);
        if sharing.pending.len() >= MAX_PENDING_KEY_REQUESTS {
            if let Some(oldest) = sharing
                .pending
                .iter()
                .min_by_key(|(_, p)| p.at_ms)
                .map(|(id, _)| *id)
            {
                sharing.pending.remove(&oldest);
            }
        }
        sharing.pending.insert(id, pending);
    }

    /// Handles a message of the sharing channel (tags `SHARING_TAGS`) from the member `from`.
    pub(crate) fn handle_sharing(
        &mut self,
        from: VerifyKey,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), HostError> {
        if self.genesis().member(&from).is_none() {
            self.push_event(Event::Dropped {
                from,
                reason: DropReason::UnknownSender,
            });
            return Ok(());
        }
        match Message::from_bytes(bytes) {
            Ok(Message::KeyRequest { request }) => self.on_key_request(from, &request, now_ms),
            Ok(Message::KeyResponse { response }) => self.on_key_response(from, response),
            Ok(_) => self.push_event(Event::Dropped {
                from,
                reason: DropReason::Unexpected,
            }),
            Err(e) => self.push_event(Event::Dropped {
                from,
                reason: DropReason::Malformed(e),
            }),
        }
        Ok(())
    }

    /// Answers a key request relayed by `from` and sends the answer back.
    fn on_key_request(&mut self, from: VerifyKey, request: &KeyRequest, now_ms: u64) {
        let id = request.id();
        let (answer, denial) = self.judge_key_request(from, id, request, now_ms);
        let denial_logged = self.log_denial(from, request, &answer, now_ms);
        let response = KeyResponse {
            request: id,
            answer: answer.clone(),
        };
        self.push_event(Event::KeyRequestAnswered {
            from,
            request: id,
            record: request.record,
            grantee: request.grantee,
            purpose: request.purpose.clone(),
            answer,
            denial,
            denial_logged,
        });
        if from == self.key() {
            self.on_key_response(from, response);
        } else {
            let bytes = Message::KeyResponse { response }.to_bytes();
            self.push_transmit(Transmit {
                to: Recipient::Node(from),
                bytes,
            });
        }
    }

    /// Logs a refusal on chain as an `AccessDenied` transaction, so that the patient's audit
    /// trail shows who asked, why, and which rule refused: for a consent denial or a ledger
    /// rule's refusal of a request that passed its own checks (signed by its grantee for this
    /// network, addressed here, fresh, not replayed) for a record this host holds and that
    /// still exists. Malformed, stale, replayed or misaddressed requests, erased records and
    /// requests this host could not judge are not logged: they name no reader the network can
    /// trust, or nothing to protect. The same refusal (grantee, record, purpose, rule) is
    /// logged once per request window; the requests per relaying member are bounded by the
    /// replay guard. The denial names `from`, the member that relayed the request. Returns the
    /// transaction's id, or `None` when nothing was submitted.
    fn log_denial(
        &mut self,
        from: VerifyKey,
        request: &KeyRequest,
        answer: &KeyAnswer,
        now_ms: u64,
    ) -> Option<TxId> {
        let rule = match answer {
            KeyAnswer::Denied => "denied",
            KeyAnswer::RuleRefused { rule } if rule != "erased" => rule.as_str(),
            _ => return None,
        };
        let window = self.request_window();
        let key = (
            request.grantee.sign,
            request.record,
            request.purpose.code().to_owned(),
            rule.to_owned(),
        );
        if !self
            .sharing_mut()
            .logged_denials
            .may_log(&key, now_ms, window)
        {
            return None;
        }
        let body = TxBody::AccessDenied {
            record_id: request.record,
            requester: request.grantee,
            purpose: key.2.clone(),
            rule: key.3.clone(),
            requested_at_ms: request.at_ms,
            relayed_by: from,
        };
        let id = self.submit_body(&body, now_ms).ok()?;
        self.sharing_mut().logged_denials.logged(key, now_ms);
        Some(id)
    }

    /// The holder's verdict: the request's own checks, the replay guard, the record, then the
    /// release itself (the consent judged exactly as validators will, nothing wrapped before).
    fn judge_key_request(
        &mut self,
        from: VerifyKey,
        id: KeyRequestId,
        request: &KeyRequest,
        now_ms: u64,
    ) -> (KeyAnswer, Option<Denial>) {
        let window = self.request_window();
        let me = self.key();
        if let Err(e) = request.check(&self.genesis().chain_id(), &me, now_ms, window) {
            return (e.into(), None);
        }
        if let Err(answer) = self
            .sharing_mut()
            .guard
            .admit(from, id, request.at_ms, now_ms, window)
        {
            return (answer, None);
        }
        let stored = match self.ledger().get_record(&request.record) {
            Ok(Some(stored)) => stored,
            Ok(None) => return (KeyAnswer::NotHolder, None),
            Err(_) => return (KeyAnswer::Unavailable, None),
        };
        if stored.entry.contributor != me {
            return (KeyAnswer::NotHolder, None);
        }
        let Some(sealed) = stored.sealed else {
            return (
                KeyAnswer::RuleRefused {
                    rule: "erased".into(),
                },
                None,
            );
        };
        match self.release(&sealed, request.release_request(), now_ms) {
            Ok(receipt) => (
                KeyAnswer::Released {
                    key_shared: receipt.key_shared,
                    access_logged: receipt.access_logged,
                },
                None,
            ),
            Err(ReleaseError::Access(AccessError::Denied(denial))) => {
                (KeyAnswer::Denied, Some(denial))
            }
            Err(ReleaseError::Access(AccessError::ResearchNeedsDeidentification)) => {
                (KeyAnswer::Research, None)
            }
            Err(ReleaseError::Access(AccessError::Rule(rule))) => (
                KeyAnswer::RuleRefused {
                    rule: rule.name().into(),
                },
                None,
            ),
            Err(_) => (KeyAnswer::Unavailable, None),
        }
    }

    /// An answer from `from` to one of this host's requests: reported if `from` is the
    /// holder the request went to; otherwise dropped (an answer no one asked that member for).
    fn on_key_response(&mut self, from: VerifyKey, response: KeyResponse) {
        let sharing = self.sharing_mut();
        let expected = sharing
            .pending
            .get(&response.request)
            .is_some_and(|p| p.holder == from);
        match expected.then(|| sharing.pending.remove(&response.request)) {
            Some(Some(pending)) => self.push_event(Event::KeyAnswered {
                request: response.request,
                record: pending.record,
                answer: response.answer,
            }),
            _ => self.push_event(Event::Dropped {
                from,
                reason: DropReason::Unexpected,
            }),
        }
    }

    /// How many of this host's key requests await their answer.
    pub fn pending_key_requests(&self) -> usize {
        self.sharing().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> DenialKey {
        static GRANTEE: std::sync::OnceLock<VerifyKey> = std::sync::OnceLock::new();
        let grantee = *GRANTEE.get_or_init(|| {
            medchain_core::keys::Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng))
                .verify_key()
        });
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        (
            grantee,
            RecordId::from_byte_array(id),
            "TREAT".into(),
            "denied".into(),
        )
    }

    #[test]
    fn attack_a_flood_of_distinct_refusals_is_remembered_up_to_the_cap_then_not_logged() {
        const WINDOW: u64 = 30_000;
        let mut log = DenialLog::default();
        let cap = u32::try_from(MAX_REMEMBERED_DENIALS).unwrap();
        for i in 0..cap {
            assert!(log.may_log(&key(i), 1_000, WINDOW), "{i}");
            log.logged(key(i), 1_000);
            // The same refusal again within the window: coalesced.
            assert!(!log.may_log(&key(i), 1_000, WINDOW));
        }
        // The cap reached: a new refusal is not logged, however many arrive.
        for i in cap..cap + 100 {
            assert!(!log.may_log(&key(i), 1_000 + WINDOW, WINDOW), "{i}");
        }
        assert_eq!(log.logged.len(), MAX_REMEMBERED_DENIALS);
        // Once the old ones leave the window they are forgotten: logging resumes, and a
        // refusal logged before is logged again (one per window).
        assert!(log.may_log(&key(cap), 1_001 + WINDOW, WINDOW));
        assert!(log.logged.is_empty());
        assert!(log.may_log(&key(0), 1_001 + WINDOW, WINDOW));
    }
}
