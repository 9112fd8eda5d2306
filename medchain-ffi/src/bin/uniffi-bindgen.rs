//! The uniffi bindings generator, pinned to the crate's uniffi version. Use it in library mode:
//! `cargo run -p medchain-ffi --features cli --bin uniffi-bindgen -- generate --library
//! <libmedchain_ffi.so> --language kotlin --out-dir <dir>`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
