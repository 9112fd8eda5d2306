//! Secure-index benchmark (being written).
fn main() {}
