//! Storage the app owns.
//!
//! [`WalletStore`] is a foreign trait (`#[uniffi::export(with_foreign)]`): a Kotlin or Swift app
//! implements it (over `EncryptedSharedPreferences`, the Keychain, a file, ...) and passes it to
//! the wallet; [`InMemoryWalletStore`] (Kotlin/Swift: `newInMemoryWalletStore()`) is the default
//! for tests and ephemeral sessions.
//!
//! What the wallet writes (see [`crate::wallet`] for the keys): the **encrypted** identity backup
//! (Argon2id + AES-256-GCM, the core's format), the public identity, and the trusted genesis.
//! Never a plaintext secret key, never a record's content.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::StoreError;

/// Key-value storage for the wallet's state, implemented by the app.
///
/// Keys are short ASCII strings chosen by the wallet; values are opaque bytes. Implementations
/// must be thread-safe (the wallet may be called from several threads).
#[uniffi::export(with_foreign)]
pub trait WalletStore: Send + Sync {
    /// The value under `key`, if any.
    ///
    /// # Errors
    /// A [`StoreError`] if the storage cannot be read.
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key`, replacing what was there. Must be durable when it returns.
    ///
    /// # Errors
    /// A [`StoreError`] if the storage cannot be written.
    fn put(&self, key: String, value: Vec<u8>) -> Result<(), StoreError>;

    /// Removes `key` (nothing happens if it is absent).
    ///
    /// # Errors
    /// A [`StoreError`] if the storage cannot be written.
    fn delete(&self, key: String) -> Result<(), StoreError>;

    /// Every key present, in any order.
    ///
    /// # Errors
    /// A [`StoreError`] if the storage cannot be read.
    fn keys(&self) -> Result<Vec<String>, StoreError>;
}

/// A [`WalletStore`] in memory: lost when the app stops.
#[derive(Debug, Default)]
pub struct InMemoryWalletStore {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl InMemoryWalletStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A poisoned map is still a consistent map (every operation is one insert or remove).
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl WalletStore for InMemoryWalletStore {
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(&key).cloned())
    }

    fn put(&self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        self.lock().insert(key, value);
        Ok(())
    }

    fn delete(&self, key: String) -> Result<(), StoreError> {
        self.lock().remove(&key);
        Ok(())
    }

    fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
    }
}

/// A new, empty in-memory store (the default [`WalletStore`]).
#[uniffi::export]
pub fn new_in_memory_wallet_store() -> Arc<dyn WalletStore> {
    Arc::new(InMemoryWalletStore::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_store_round_trips() {
        let s = new_in_memory_wallet_store();
        assert_eq!(s.get("a".into()).unwrap(), None);
        s.put("a".into(), vec![1, 2]).unwrap();
        s.put("b".into(), vec![]).unwrap();
        assert_eq!(s.get("a".into()).unwrap(), Some(vec![1, 2]));
        assert_eq!(s.keys().unwrap(), vec!["a".to_owned(), "b".to_owned()]);
        s.delete("a".into()).unwrap();
        s.delete("missing".into()).unwrap();
        assert_eq!(s.keys().unwrap(), vec!["b".to_owned()]);
    }
}
