//! Roles and the credentials that attest them.
//!
//! A consent may name an actor by key ("Dr. Ana Ruiz") or by role ("any clinician of St. Mary's",
//! "any researcher"). A role is attested by a [`Credential`]: the institution — a member node of
//! the network's genesis — signs the holder's key, the role and an expiry. Validators check the
//! credential when a key is shared under a role-based consent or in an emergency.

use std::fmt;

use thiserror::Error;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::genesis::Genesis;
use crate::hash::{domain, ChainId};
use crate::keys::{Identity, Signature, VerifyKey};

/// A role a party holds at an institution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A clinician (physician, nurse, ...) of an institution.
    Clinician {
        /// The institution's node key.
        institution: VerifyKey,
    },
    /// A researcher of an institution.
    Researcher {
        /// The institution's node key.
        institution: VerifyKey,
    },
}

impl Role {
    /// The institution that vouches for the role.
    pub fn institution(&self) -> &VerifyKey {
        match self {
            Self::Clinician { institution } | Self::Researcher { institution } => institution,
        }
    }

    /// Whether the role is a clinician's.
    pub fn is_clinician(&self) -> bool {
        matches!(self, Self::Clinician { .. })
    }

    /// Whether the role is a researcher's.
    pub fn is_researcher(&self) -> bool {
        matches!(self, Self::Researcher { .. })
    }
}

impl Encode for Role {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Clinician { institution } => {
                out.put_u8(1);
                institution.encode_to(out);
            }
            Self::Researcher { institution } => {
                out.put_u8(2);
                institution.encode_to(out);
            }
        }
    }
}

impl Decode for Role {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Clinician {
                institution: VerifyKey::decode_from(r)?,
            }),
            2 => Ok(Self::Researcher {
                institution: VerifyKey::decode_from(r)?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "role",
                tag: tag.into(),
            }),
        }
    }
}

/// An institution's signed statement that `holder` has `role` until `expires_ms`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The holder's signing key.
    pub holder: VerifyKey,
    /// The role.
    pub role: Role,
    /// When the credential expires (milliseconds since the Unix epoch).
    pub expires_ms: u64,
    /// The institution's signature (label `medchain/v1/credential-signature`).
    pub signature: Signature,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("holder", &self.holder)
            .field("role", &self.role)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// A credential does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The issuing institution is not a member of the network.
    #[error("credential issuer is not a member institution of this network")]
    UnknownInstitution,
    /// The institution's signature does not verify.
    #[error("credential signature does not verify")]
    BadSignature,
    /// The credential has expired.
    #[error("credential expired")]
    Expired,
    /// The credential is for someone else.
    #[error("credential is for another holder")]
    WrongHolder,
}

impl Credential {
    /// The institution `issuer` attests, on the network `chain`, that `holder` has `role` (whose
    /// institution must be the issuer's key) until `expires_ms`.
    pub fn issue(
        issuer: &Identity,
        chain: &ChainId,
        holder: VerifyKey,
        role: Role,
        expires_ms: u64,
    ) -> Self {
        let mut c = Self {
            holder,
            role,
            expires_ms,
            signature: Signature::from_byte_array([0; 64]),
        };
        c.signature = issuer.sign(chain, domain::CREDENTIAL_SIG, &c.signed_bytes());
        c
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 33 + 8);
        self.holder.encode_to(&mut out);
        self.role.encode_to(&mut out);
        out.put_u64(self.expires_ms);
        out
    }

    /// Checks the credential for `holder` at time `now_ms`: a member institution signed it and
    /// it has not expired.
    ///
    /// # Errors
    /// A [`CredentialError`].
    pub fn verify(
        &self,
        genesis: &Genesis,
        holder: &VerifyKey,
        now_ms: u64,
    ) -> Result<(), CredentialError> {
        if &self.holder != holder {
            return Err(CredentialError::WrongHolder);
        }
        let institution = self.role.institution();
        if genesis.member(institution).is_none() {
            return Err(CredentialError::UnknownInstitution);
        }
        institution
            .verify(
                &genesis.chain_id(),
                domain::CREDENTIAL_SIG,
                &self.signed_bytes(),
                &self.signature,
            )
            .map_err(|_| CredentialError::BadSignature)?;
        if now_ms > self.expires_ms {
            return Err(CredentialError::Expired);
        }
        Ok(())
    }
}

impl Encode for Credential {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.signed_bytes());
        self.signature.encode_to(out);
    }
}

impl Decode for Credential {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            holder: VerifyKey::decode_from(r)?,
            role: Role::decode_from(r)?,
            expires_ms: r.u64()?,
            signature: Signature::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::tests::network;

    #[test]
    fn issue_verify_and_reject() {
        let (g, ids) = network(3, 1, 21);
        let hospital = &ids[3];
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1);
        let doctor = Identity::generate(&mut rng);
        let role = Role::Clinician {
            institution: hospital.verify_key(),
        };
        let c = Credential::issue(hospital, &g.chain_id(), doctor.verify_key(), role, 1_000);
        c.verify(&g, &doctor.verify_key(), 999).unwrap();
        assert_eq!(Credential::from_bytes(&c.to_bytes()).unwrap(), c);
        assert_eq!(
            c.verify(&g, &doctor.verify_key(), 1_001),
            Err(CredentialError::Expired)
        );
        assert_eq!(
            c.verify(&g, &hospital.verify_key(), 1),
            Err(CredentialError::WrongHolder)
        );
        // Signed by someone other than the institution named in the role.
        let forged = Credential::issue(&doctor, &g.chain_id(), doctor.verify_key(), role, 1_000);
        assert_eq!(
            forged.verify(&g, &doctor.verify_key(), 1),
            Err(CredentialError::BadSignature)
        );
        // An institution outside the network.
        let rogue = Credential::issue(
            &doctor,
            &g.chain_id(),
            doctor.verify_key(),
            Role::Researcher {
                institution: doctor.verify_key(),
            },
            1_000,
        );
        assert_eq!(
            rogue
                .verify(&g, &doctor.verify_key(), 1)
                .unwrap_err()
                .to_string(),
            "credential issuer is not a member institution of this network"
        );
    }
}
