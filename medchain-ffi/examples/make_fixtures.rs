//! Writes the wallet test fixtures (a real `TestNet` chain, see `medchain_ffi::fixtures`) into
//! the directory given as the only argument. Used by `medchain-ffi/scripts/test.sh` before the
//! Kotlin and Python tests.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make-fixtures <output directory>");
        return ExitCode::from(2);
    };
    let files = match medchain_ffi::fixtures::build() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, bytes) in &files {
        if let Err(e) = std::fs::write(dir.join(name), bytes) {
            eprintln!("cannot write {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{} fixture files in {}", files.len(), dir.display());
    ExitCode::SUCCESS
}
