//! The C ABI (`libsenet.so`, `include/senet.h`) as a C or C++ user sees it: the committed header
//! is cbindgen's current output and compiles as C99 and C++; the C example classifies the sample
//! photos with logits bit-identical to `senet predict`; the C++ RAII example agrees with it; a C
//! program exercising every function and its misuse runs clean under AddressSanitizer; the
//! generated `senet.pc` works with pkg-config.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where cargo put `libsenet.so` and `senet.pc` for this test build.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/ffi-<hash>
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libsenet.so").is_file(),
        "libsenet.so not found in {}",
        dir.display()
    );
    dir
}

fn generate_header() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root().join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen failed");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_current() {
    let fresh = generate_header();
    let path = root().join("include/senet.h");
    if std::env::var_os("SENET_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/senet.h is not cbindgen's current output: regenerate it with \
         `SENET_UPDATE_HEADER=1 cargo test --test ffi header_is_current`"
    );
}

#[test]
fn header_version_macro_is_the_package_version() {
    let header = std::fs::read_to_string(root().join("include/senet.h")).unwrap();
    let want = format!("#define SENET_VERSION \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(header.contains(&want), "senet.h lacks `{want}` (cbindgen.toml)");
    let parts: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').collect();
    for (name, v) in ["MAJOR", "MINOR", "PATCH"].iter().zip(parts) {
        let want = format!("#define SENET_VERSION_{name} {v}\n");
        assert!(header.contains(&want), "senet.h lacks `{want}`");
    }
}
