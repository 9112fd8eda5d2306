//! The clinic example (the README's first command). Filled in below.
fn main() {}
