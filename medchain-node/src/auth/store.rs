//! What the token endpoint remembers, bounded: the access tokens it issued (by the SHA-256 of
//! the token, never the token itself) and the `jti`s of the assertions it accepted, each until
//! it expires.

use std::collections::HashMap;

use medchain_core::hash::sha256;

use super::Principal;

/// Most live access tokens a node holds; past it, issuance answers `503
/// temporarily_unavailable` until some expire.
pub const MAX_TOKENS: usize = 10_000;

/// Most assertion `jti`s a node remembers (each until its assertion's `exp`); past it, new
/// assertions are refused (`503`) rather than accepted without a replay check.
pub const MAX_JTIS: usize = 65_536;

/// The store is full of live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Issued access tokens: SHA-256 of the token → principal and expiry (seconds since the epoch).
#[derive(Debug)]
pub(crate) struct TokenStore {
    cap: usize,
    tokens: HashMap<[u8; 32], (Principal, u64)>,
}

impl TokenStore {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            tokens: HashMap::new(),
        }
    }

    /// Remembers `token` for `principal` until `expires` (seconds), forgetting expired tokens
    /// first when the store is full.
    pub(crate) fn insert(
        &mut self,
        token: &[u8],
        principal: Principal,
        expires: u64,
        now: u64,
    ) -> Result<(), Full> {
        if self.tokens.len() >= self.cap {
            self.tokens.retain(|_, (_, exp)| *exp > now);
            if self.tokens.len() >= self.cap {
                return Err(Full);
            }
        }
        self.tokens.insert(sha256(token), (principal, expires));
        Ok(())
    }

    /// The principal of a live token; an expired one is forgotten.
    pub(crate) fn get(&mut self, token: &[u8], now: u64) -> Option<Principal> {
        let key = sha256(token);
        match self.tokens.get(&key) {
            Some((principal, exp)) if *exp > now => Some(principal.clone()),
            Some(_) => {
                self.tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// The `jti`s of accepted assertions, per client, each kept until its assertion's `exp`.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    cap: usize,
    seen: HashMap<[u8; 32], u64>,
}

/// Whether an assertion's `jti` may be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// Never seen: now remembered.
    Yes,
    /// Seen before.
    Replayed,
    /// The cache is full of live entries.
    Full,
}

impl ReplayCache {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: HashMap::new(),
        }
    }

    /// Remembers `jti` of `client` until `exp` unless it was seen (and has not expired).
    pub(crate) fn check_and_remember(
        &mut self,
        client: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Fresh {
        let mut input = Vec::with_capacity(client.len() + jti.len() + 9);
        input.extend_from_slice(&(client.len() as u64).to_be_bytes());
        input.extend_from_slice(client.as_bytes());
        input.push(0);
        input.extend_from_slice(jti.as_bytes());
        let key = sha256(&input);
        if self.seen.get(&key).is_some_and(|e| *e > now) {
            return Fresh::Replayed;
        }
        if self.seen.len() >= self.cap {
            self.seen.retain(|_, e| *e > now);
            if self.seen.len() >= self.cap {
                return Fresh::Full;
            }
        }
        self.seen.insert(key, exp);
        Fresh::Yes
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str) -> Principal {
        Principal {
            client_id: id.into(),
            scopes: Default::default(),
            patient: None,
            clinicians: Vec::new(),
            operator: false,
        }
    }

    #[test]
    fn tokens_live_until_they_expire_and_the_store_stays_bounded() {
        let mut store = TokenStore::new(3);
        store.insert(b"t1", principal("a"), 100, 0).unwrap();
        store.insert(b"t2", principal("b"), 200, 0).unwrap();
        store.insert(b"t3", principal("c"), 300, 0).unwrap();
        assert_eq!(store.get(b"t2", 150).unwrap().client_id, "b");
        assert!(store.get(b"t4", 0).is_none());
        // Full of live tokens: refused, nothing dropped.
        assert_eq!(store.insert(b"t4", principal("d"), 400, 50), Err(Full));
        assert_eq!(store.len(), 3);
        // Once one expired, its place is taken.
        store.insert(b"t4", principal("d"), 400, 100).unwrap();
        assert_eq!(store.len(), 3);
        assert!(store.get(b"t1", 100).is_none());
        // Expiry is exclusive: at `expires` the token is dead, and forgotten on lookup.
        assert!(store.get(b"t2", 200).is_none());
        assert_eq!(store.len(), 2);
        // The store keys on the token's digest, not the token.
        assert!(store.tokens.contains_key(&sha256(b"t3")));
    }

    #[test]
    fn a_jti_is_accepted_once_per_client_until_it_expires() {
        let mut cache = ReplayCache::new(2);
        assert_eq!(cache.check_and_remember("a", "j1", 100, 0), Fresh::Yes);
        assert_eq!(
            cache.check_and_remember("a", "j1", 100, 50),
            Fresh::Replayed
        );
        // Another client's jti is its own.
        assert_eq!(cache.check_and_remember("b", "j1", 100, 50), Fresh::Yes);
        // Ambiguous splits of client and jti are different entries.
        assert_eq!(cache.check_and_remember("a\0j", "1", 100, 50), Fresh::Full);
        assert_eq!(cache.len(), 2);
        // After expiry the entries are purged to make room; a replay of an expired
        // assertion is refused on its exp anyway.
        assert_eq!(cache.check_and_remember("c", "j", 300, 100), Fresh::Yes);
        assert_eq!(cache.len(), 1);
    }
}
