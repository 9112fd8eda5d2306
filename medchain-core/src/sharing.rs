//! Cross-institution key requests: how a clinician at one member reads a record another member
//! added, under the patient's consent (`docs/consent.md`, "Across institutions").
//!
//! ```text
//! requester (City General)                       holder (St. Mary's: the member that added R)
//!   KeyRequest{R, holder, grantee, credential,
//!              purpose, at, nonce} signed by the
//!              grantee for this network  ───────▶  checks: signature, addressed to it, fresh,
//!                                                  not replayed, not research
//!                                                  release_key: consent judged exactly as
//!                                                  validators will, nothing wrapped before
//!                                                  KeyShared + AccessLogged submitted
//!                       ◀───────  KeyResponse{request id, Released{key_shared, access_logged}
//!                                                          | Denied | RuleRefused{rule} | ...}
//!   waits for both to commit, opens R with the released envelope
//! ```
//!
//! The request travels over the peer transport as protocol messages (tags 9 and 10 of
//! [`crate::protocol::Message`]); the transport authenticates the member that relays it, and
//! the grantee's signature binds who asks, for which record, from which holder, why and when,
//! on this network. This module is pure: the requester's and holder's bookkeeping lives in the
//! embedding host (`medchain::Host`), with the replay guard here ([`RequestGuard`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use rand_core::{CryptoRng, Rng};
use thiserror::Error;

use crate::access::ReleaseRequest;
use crate::consent::Purpose;
use crate::credential::Credential;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{digest_newtype, domain, tagged_hash, ChainId, RecordId, TxId};
use crate::keys::{Identity, PublicIdentity, Signature, VerifyKey};

digest_newtype!(
    /// A key request's id: the tagged hash of its signed bytes (the signature is not hashed,
    /// so the id does not depend on how the signature is encoded).
    KeyRequestId
);

/// The longest purpose-of-use code a request may carry (as a transaction's).
pub const MAX_PURPOSE_CODE: usize = 64;

/// The longest rule name an answer may carry.
pub const MAX_RULE_NAME: usize = 48;

/// Most requests a holder remembers per requesting member inside the freshness window; past
/// it, that member's requests are answered [`KeyAnswer::Unavailable`] until older ones age out.
pub const MAX_REQUESTS_PER_MEMBER: usize = 1024;

/// Why a key request cannot be made or is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyRequestError {
    /// Research receives de-identified data, never record keys.
    #[error("research access is served de-identified, not by releasing record keys")]
    Research,
    /// The purpose of use is not a code (empty, too long, or not printable ASCII).
    #[error("the purpose of use must be a code of 1 to 64 printable ASCII characters")]
    BadPurpose,
    /// The credential is another person's.
    #[error("the credential is not the grantee's")]
    ForeignCredential,
    /// The grantee's signature does not verify for this network.
    #[error("the key request is not signed by its grantee for this network")]
    BadSignature,
    /// The request is addressed to another member.
    #[error("the key request is addressed to another member")]
    NotAddressedHere,
    /// The request's time is outside the window around the holder's clock.
    #[error("the key request is too old or from the future")]
    Stale,
}

/// A clinician's request, relayed by their institution's node, for the key of a record held by
/// another member. Signed by the grantee (the clinician who will read) for one network, one
/// holder and one record.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// The record.
    pub record: RecordId,
    /// The member asked: the one that added the record.
    pub holder: VerifyKey,
    /// Who will read the record (the key is wrapped to them).
    pub grantee: PublicIdentity,
    /// The grantee's role credential, when a role-based consent or an emergency needs one.
    pub credential: Option<Credential>,
    /// Why (HL7 v3 PurposeOfUse; `ETREAT` is a break-glass emergency access).
    pub purpose: Purpose,
    /// When the grantee signed it (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// Random: two requests made in the same millisecond have distinct ids.
    pub nonce: [u8; 16],
    /// The grantee's signature over everything above, for this network.
    pub signature: Signature,
}

impl fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRequest")
            .field("record", &self.record)
            .field("grantee", &self.grantee.sign)
            .field("purpose", &self.purpose.code())
            .field("at_ms", &self.at_ms)
            .finish_non_exhaustive()
    }
}

fn check_purpose(purpose: &Purpose) -> Result<(), KeyRequestError> {
    if matches!(purpose, Purpose::Research { .. }) {
        return Err(KeyRequestError::Research);
    }
    let code = purpose.code();
    if code.is_empty()
        || code.len() > MAX_PURPOSE_CODE
        || !code.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(KeyRequestError::BadPurpose);
    }
    Ok(())
}

impl KeyRequest {
    /// The grantee signs a request to `holder` for `record`'s key on the network `chain`.
    ///
    /// # Errors
    /// [`KeyRequestError::Research`] (research never receives keys),
    /// [`KeyRequestError::BadPurpose`], [`KeyRequestError::ForeignCredential`].
    #[allow(clippy::too_many_arguments)] // each is one signed field of the request
    pub fn sign<R: Rng + CryptoRng>(
        grantee: &Identity,
        chain: &ChainId,
        holder: VerifyKey,
        record: RecordId,
        credential: Option<Credential>,
        purpose: Purpose,
        at_ms: u64,
        rng: &mut R,
    ) -> Result<Self, KeyRequestError> {
        check_purpose(&purpose)?;
        if credential
            .as_ref()
            .is_some_and(|c| c.holder != grantee.verify_key())
        {
            return Err(KeyRequestError::ForeignCredential);
        }
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let mut request = Self {
            record,
            holder,
            grantee: grantee.public(),
            credential,
            purpose,
            at_ms,
            nonce,
            signature: Signature::from_byte_array([0; 64]),
        };
        request.signature = grantee.sign(chain, domain::KEY_REQUEST_SIG, &request.signed_bytes());
        Ok(request)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.record.encode_to(&mut out);
        self.holder.encode_to(&mut out);
        self.grantee.encode_to(&mut out);
        out.put_option(self.credential.as_ref());
        out.put_bytes(self.purpose.code().as_bytes());
        out.put_u64(self.at_ms);
        out.put_raw(&self.nonce);
        out
    }

    /// The request's id.
    pub fn id(&self) -> KeyRequestId {
        KeyRequestId::from_byte_array(tagged_hash(domain::KEY_REQUEST_ID, &self.signed_bytes()))
    }

    /// What the holder checks before it judges the consent: the grantee's signature for the
    /// network `chain`, that the request is addressed to `holder`, that it is not research,
    /// that its purpose is a code, that a credential is the grantee's, and that it was signed
    /// within `window_ms` of `now_ms` (either side).
    ///
    /// # Errors
    /// The first [`KeyRequestError`] that applies.
    pub fn check(
        &self,
        chain: &ChainId,
        holder: &VerifyKey,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<(), KeyRequestError> {
        check_purpose(&self.purpose)?;
        if self
            .credential
            .as_ref()
            .is_some_and(|c| c.holder != self.grantee.sign)
        {
            return Err(KeyRequestError::ForeignCredential);
        }
        self.grantee
            .sign
            .verify(
                chain,
                domain::KEY_REQUEST_SIG,
                &self.signed_bytes(),
                &self.signature,
            )
            .map_err(|_| KeyRequestError::BadSignature)?;
        if &self.holder != holder {
            return Err(KeyRequestError::NotAddressedHere);
        }
        if self.at_ms.abs_diff(now_ms) > window_ms {
            return Err(KeyRequestError::Stale);
        }
        Ok(())
    }

    /// The release this request asks for ([`crate::access::release_key`]'s input).
    pub fn release_request(&self) -> ReleaseRequest {
        ReleaseRequest {
            grantee: self.grantee,
            credential: self.credential.clone(),
            purpose: self.purpose.clone(),
        }
    }
}

/// `record [32] || holder [32] || grantee || option<credential> || purpose (u32 len ‖ ASCII) ||
/// at_ms u64 || nonce [16] || signature [64]`.
impl Encode for KeyRequest {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.signed_bytes());
        self.signature.encode_to(out);
    }
}

impl Decode for KeyRequest {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            record: RecordId::decode_from(r)?,
            holder: VerifyKey::decode_from(r)?,
            grantee: PublicIdentity::decode_from(r)?,
            credential: r.option("key request credential")?,
            purpose: Purpose::from_code(&r.string("purpose of use", MAX_PURPOSE_CODE)?, None),
            at_ms: r.u64()?,
            nonce: r.array()?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// The holder's answer to a key request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAnswer {
    /// Tag 0. The key was released: both transactions were submitted and commit together.
    Released {
        /// The `KeyShared` transaction (the envelope for the grantee).
        key_shared: TxId,
        /// Its `AccessLogged` transaction.
        access_logged: TxId,
    },
    /// Tag 1. The patient's consent does not permit it (generic: which consent or provision
    /// refused is for the patient's audit view only).
    Denied,
    /// Tag 2. Validators would refuse the release: the rule, named as
    /// [`crate::ledger::RuleError::name`] (`unknown_credential`, `erased`, ...).
    RuleRefused {
        /// The rule's stable name.
        rule: String,
    },
    /// Tag 3. The member asked did not add this record (or does not know it yet).
    NotHolder,
    /// Tag 4. The request's time is outside the holder's window.
    Stale,
    /// Tag 5. The holder answered this request already.
    Replayed,
    /// Tag 6. Research is served de-identified, never with record keys.
    Research,
    /// Tag 7. The request does not check out (signature, addressee, purpose, credential).
    BadRequest,
    /// Tag 8. The holder cannot answer now (too many requests, its ledger unavailable): ask
    /// again later.
    Unavailable,
}

impl KeyAnswer {
    /// A stable `snake_case` name for the answer (`released`, `denied`, the rule's name for
    /// [`KeyAnswer::RuleRefused`], `not_holder`, ...), for APIs and logs.
    pub fn name(&self) -> &str {
        match self {
            Self::Released { .. } => "released",
            Self::Denied => "denied",
            Self::RuleRefused { rule } => rule,
            Self::NotHolder => "not_holder",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::Research => "research",
            Self::BadRequest => "bad_request",
            Self::Unavailable => "unavailable",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Self::Released { .. } => 0,
            Self::Denied => 1,
            Self::RuleRefused { .. } => 2,
            Self::NotHolder => 3,
            Self::Stale => 4,
            Self::Replayed => 5,
            Self::Research => 6,
            Self::BadRequest => 7,
            Self::Unavailable => 8,
        }
    }
}

impl From<KeyRequestError> for KeyAnswer {
    fn from(e: KeyRequestError) -> Self {
        match e {
            KeyRequestError::Research => Self::Research,
            KeyRequestError::Stale => Self::Stale,
            KeyRequestError::NotAddressedHere => Self::NotHolder,
            KeyRequestError::BadPurpose
            | KeyRequestError::ForeignCredential
            | KeyRequestError::BadSignature => Self::BadRequest,
        }
    }
}

/// A holder's answer, addressed by the request's id (the transport authenticates the holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyResponse {
    /// The request answered.
    pub request: KeyRequestId,
    /// The answer.
    pub answer: KeyAnswer,
}

/// `request [32] || tag u8 || fields` (tag 0: `key_shared [32] || access_logged [32]`; tag 2:
/// `rule (u32 len ‖ lower-case ASCII and '_')`; others: nothing).
impl Encode for KeyResponse {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.request.encode_to(out);
        out.put_u8(self.answer.tag());
        match &self.answer {
            KeyAnswer::Released {
                key_shared,
                access_logged,
            } => {
                key_shared.encode_to(out);
                access_logged.encode_to(out);
            }
            KeyAnswer::RuleRefused { rule } => out.put_bytes(rule.as_bytes()),
            _ => {}
        }
    }
}

impl Decode for KeyResponse {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let request = KeyRequestId::decode_from(r)?;
        let answer = match r.u8()? {
            0 => KeyAnswer::Released {
                key_shared: TxId::decode_from(r)?,
                access_logged: TxId::decode_from(r)?,
            },
            1 => KeyAnswer::Denied,
            2 => {
                let rule = r.string("rule name", MAX_RULE_NAME)?;
                if rule.is_empty() || !rule.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Err(DecodeError::NonCanonical { what: "rule name" });
                }
                KeyAnswer::RuleRefused { rule }
            }
            3 => KeyAnswer::NotHolder,
            4 => KeyAnswer::Stale,
            5 => KeyAnswer::Replayed,
            6 => KeyAnswer::Research,
            7 => KeyAnswer::BadRequest,
            8 => KeyAnswer::Unavailable,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "key answer",
                    tag: tag.into(),
                })
            }
        };
        Ok(Self { request, answer })
    }
}

/// The holder's replay guard: each request id is answered once. A request is only accepted
/// within the freshness window of its signed time, so an id needs remembering only until its
/// time leaves the window; at most [`MAX_REQUESTS_PER_MEMBER`] are remembered per relaying
/// member, so one member cannot fill the holder's memory or crowd out the others.
#[derive(Debug, Default)]
pub struct RequestGuard {
    seen: HashSet<KeyRequestId>,
    by_member: HashMap<VerifyKey, VecDeque<(u64, KeyRequestId)>>,
}

impl RequestGuard {
    /// Admits the request `id` signed at `at_ms` and relayed by `member`, remembering it; or
    /// says why not ([`KeyAnswer::Replayed`], [`KeyAnswer::Unavailable`] when `member` has
    /// [`MAX_REQUESTS_PER_MEMBER`] requests in the window). Forgets what left the window first.
    ///
    /// # Errors
    /// The answer to send instead of judging the request.
    pub fn admit(
        &mut self,
        member: VerifyKey,
        id: KeyRequestId,
        at_ms: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<(), KeyAnswer> {
        self.forget_before(now_ms.saturating_sub(window_ms));
        if self.seen.contains(&id) {
            return Err(KeyAnswer::Replayed);
        }
        let queue = self.by_member.entry(member).or_default();
        if queue.len() >= MAX_REQUESTS_PER_MEMBER {
            return Err(KeyAnswer::Unavailable);
        }
        // Kept in signed-time order, so the oldest leave first.
        let at = queue.partition_point(|(t, _)| *t <= at_ms);
        queue.insert(at, (at_ms, id));
        self.seen.insert(id);
        Ok(())
    }

    /// Forgets requests signed before `cutoff_ms` (they are refused as stale anyway).
    fn forget_before(&mut self, cutoff_ms: u64) {
        let seen = &mut self.seen;
        self.by_member.retain(|_, queue| {
            while queue.front().is_some_and(|(t, _)| *t < cutoff_ms) {
                if let Some((_, id)) = queue.pop_front() {
                    seen.remove(&id);
                }
            }
            !queue.is_empty()
        });
    }

    /// How many request ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Role;
    use getrandom::SysRng;
    use rand_core::UnwrapErr;

    const NOW: u64 = 1_800_000_000_000;
    const WINDOW: u64 = 30_000;

    fn rng() -> UnwrapErr<SysRng> {
        UnwrapErr(SysRng)
    }

    struct Fixture {
        chain: ChainId,
        holder: Identity,
        doctor: Identity,
        record: RecordId,
    }

    fn fixture() -> Fixture {
        let holder = Identity::generate(&mut rng());
        Fixture {
            chain: ChainId::from_byte_array([5; 32]),
            holder,
            doctor: Identity::generate(&mut rng()),
            record: RecordId::from_byte_array([7; 32]),
        }
    }

    fn request(f: &Fixture, purpose: Purpose) -> KeyRequest {
        let credential = Credential::issue(
            &f.holder,
            &f.chain,
            f.doctor.verify_key(),
            Role::Clinician {
                institution: f.holder.verify_key(),
            },
            NOW + 1_000_000,
        );
        KeyRequest::sign(
            &f.doctor,
            &f.chain,
            f.holder.verify_key(),
            f.record,
            Some(credential),
            purpose,
            NOW,
            &mut rng(),
        )
        .expect("request")
    }

    #[test]
    fn a_signed_request_checks_round_trips_and_has_a_stable_id() {
        let f = fixture();
        let req = request(&f, Purpose::Treat);
        req.check(&f.chain, &f.holder.verify_key(), NOW, WINDOW)
            .expect("checks");
        let back = KeyRequest::from_bytes(&req.to_bytes()).expect("decodes");
        assert_eq!(back, req);
        assert_eq!(back.id(), req.id());
        let again = request(&f, Purpose::Treat);
        assert_ne!(again.id(), req.id(), "the nonce separates two requests");
        assert_eq!(req.release_request().grantee, f.doctor.public());
    }

    #[test]
    fn every_signed_field_is_bound_by_the_signature() {
        let f = fixture();
        let req = request(&f, Purpose::Treat);
        let holder = f.holder.verify_key();
        let tampered: [fn(&mut KeyRequest); 5] = [
            |r| r.record = RecordId::from_byte_array([8; 32]),
            |r| r.purpose = Purpose::EmergencyTreat,
            |r| r.at_ms += 1,
            |r| r.nonce[0] ^= 1,
            |r| r.credential = None,
        ];
        for tamper in tampered {
            let mut bad = req.clone();
            tamper(&mut bad);
            assert_eq!(
                bad.check(&f.chain, &holder, NOW, WINDOW),
                Err(KeyRequestError::BadSignature)
            );
        }
        // Another network's chain id: the same bytes do not verify.
        let other = ChainId::from_byte_array([9; 32]);
        assert_eq!(
            req.check(&other, &holder, NOW, WINDOW),
            Err(KeyRequestError::BadSignature)
        );
        // Redirected to another holder: signature first, then the addressee.
        let mut redirected = req.clone();
        redirected.holder = f.doctor.verify_key();
        assert_eq!(
            redirected.check(&f.chain, &holder, NOW, WINDOW),
            Err(KeyRequestError::BadSignature)
        );
        assert_eq!(
            req.check(&f.chain, &f.doctor.verify_key(), NOW, WINDOW),
            Err(KeyRequestError::NotAddressedHere)
        );
    }

    #[test]
    fn stale_research_and_borrowed_credentials_are_refused() {
        let f = fixture();
        let req = request(&f, Purpose::Treat);
        let holder = f.holder.verify_key();
        assert_eq!(
            req.check(&f.chain, &holder, NOW + WINDOW + 1, WINDOW),
            Err(KeyRequestError::Stale)
        );
        assert_eq!(
            req.check(&f.chain, &holder, NOW - WINDOW - 1, WINDOW),
            Err(KeyRequestError::Stale)
        );
        assert!(req.check(&f.chain, &holder, NOW + WINDOW, WINDOW).is_ok());
        let research = KeyRequest::sign(
            &f.doctor,
            &f.chain,
            holder,
            f.record,
            None,
            Purpose::Research { topic: None },
            NOW,
            &mut rng(),
        );
        assert_eq!(research, Err(KeyRequestError::Research));
        // A research code smuggled in a decoded request is research all the same.
        let mut smuggled = req.clone();
        smuggled.purpose = Purpose::from_code("HRESCH", None);
        assert_eq!(
            smuggled.check(&f.chain, &holder, NOW, WINDOW),
            Err(KeyRequestError::Research)
        );
        let mut odd = req.clone();
        odd.purpose = Purpose::Other("has space".into());
        assert_eq!(
            odd.check(&f.chain, &holder, NOW, WINDOW),
            Err(KeyRequestError::BadPurpose)
        );
        // Another clinician's credential cannot be presented.
        let other = Identity::generate(&mut rng());
        let borrowed = KeyRequest::sign(
            &other,
            &f.chain,
            holder,
            f.record,
            req.credential.clone(),
            Purpose::Treat,
            NOW,
            &mut rng(),
        );
        assert_eq!(borrowed, Err(KeyRequestError::ForeignCredential));
    }

    #[test]
    fn responses_round_trip_and_bad_rule_names_do_not_decode() {
        let id = KeyRequestId::from_byte_array([1; 32]);
        let answers = [
            KeyAnswer::Released {
                key_shared: TxId::from_byte_array([2; 32]),
                access_logged: TxId::from_byte_array([3; 32]),
            },
            KeyAnswer::Denied,
            KeyAnswer::RuleRefused {
                rule: "unknown_credential".into(),
            },
            KeyAnswer::NotHolder,
            KeyAnswer::Stale,
            KeyAnswer::Replayed,
            KeyAnswer::Research,
            KeyAnswer::BadRequest,
            KeyAnswer::Unavailable,
        ];
        for answer in answers {
            let resp = KeyResponse {
                request: id,
                answer,
            };
            assert_eq!(KeyResponse::from_bytes(&resp.to_bytes()), Ok(resp));
        }
        for bad in ["", "Has-Caps", "semi;colon"] {
            let resp = KeyResponse {
                request: id,
                answer: KeyAnswer::RuleRefused { rule: bad.into() },
            };
            assert!(
                KeyResponse::from_bytes(&resp.to_bytes()).is_err(),
                "{bad:?}"
            );
        }
        let mut unknown = KeyResponse {
            request: id,
            answer: KeyAnswer::Denied,
        }
        .to_bytes();
        unknown[32] = 9;
        assert!(KeyResponse::from_bytes(&unknown).is_err());
    }

    #[test]
    fn the_guard_answers_each_request_once_and_bounds_each_member() {
        let mut guard = RequestGuard::default();
        let member = Identity::generate(&mut rng()).verify_key();
        let other = Identity::generate(&mut rng()).verify_key();
        let id = |n: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_be_bytes());
            KeyRequestId::from_byte_array(b)
        };
        assert_eq!(guard.admit(member, id(0), NOW, NOW, WINDOW), Ok(()));
        assert_eq!(
            guard.admit(member, id(0), NOW, NOW, WINDOW),
            Err(KeyAnswer::Replayed)
        );
        // Relayed by another member, the same request is still a replay.
        assert_eq!(
            guard.admit(other, id(0), NOW, NOW, WINDOW),
            Err(KeyAnswer::Replayed)
        );
        for n in 1..MAX_REQUESTS_PER_MEMBER as u32 {
            assert_eq!(guard.admit(member, id(n), NOW, NOW, WINDOW), Ok(()));
        }
        let over = MAX_REQUESTS_PER_MEMBER as u32;
        assert_eq!(
            guard.admit(member, id(over), NOW, NOW, WINDOW),
            Err(KeyAnswer::Unavailable)
        );
        // The other members are not crowded out.
        assert_eq!(guard.admit(other, id(over + 1), NOW, NOW, WINDOW), Ok(()));
        // Once the window has passed, the old ids are forgotten (they would be stale).
        let later = NOW + WINDOW + 1;
        assert_eq!(guard.admit(member, id(over), later, later, WINDOW), Ok(()));
        assert_eq!(guard.len(), 1);
    }
}
