//! Merkle trees over transactions (RFC 6962 hashing on rs_merkle). Being written.
