//! The secure index (encrypted keyword search). Being written.
