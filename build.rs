//! Builds the native CPU kernels in `kernels/cpu/` (plain C99, compiled with `cc`), and writes
//! the pkg-config file `senet.pc` of the C ABI beside `libsenet.so` in `target/<profile>/`.
//! On x86_64 targets it adds the AVX-512 conv GEMM, Winograd transforms, grouped conv and max pool (`*_avx512.c`): their
//! functions carry their own `target` attributes, so the build stays baseline x86-64 and the Rust
//! side picks them only after run-time detection. Other targets do not compile those files at all.
fn main() {
    write_pkg_config();
    let mut files = vec![
        "kernels/cpu/backward_elementwise.c",
        "kernels/cpu/batch_norm_train.c",
        "kernels/cpu/elementwise.c",
        "kernels/cpu/im2col.c",
        "kernels/cpu/pool.c",
    ];
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        files.push("kernels/cpu/conv_grouped_avx512.c");
        files.push("kernels/cpu/pool_avx512.c");
        files.push("kernels/cpu/sgemm_avx512.c");
        files.push("kernels/cpu/sgemm_pack_avx512.c");
        files.push("kernels/cpu/winograd_avx512.c");
        files.push("kernels/cpu/winograd2_avx512.c");
    }
    let mut build = cc::Build::new();
    build
        .std("c99")
        .opt_level(3)
        .warnings(true)
        .extra_warnings(true);
    for f in files {
        build.file(f);
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=kernels/cpu/senet_train_kernels.h");
    println!("cargo:rerun-if-changed=kernels/cpu/lanes.h");
    println!("cargo:rerun-if-changed=kernels/cpu/pool_window.h");
    println!("cargo:rerun-if-changed=kernels/cpu/senet_kernels.h");
    println!("cargo:rerun-if-changed=kernels/cpu/conv_grouped_avx512.h");
    println!("cargo:rerun-if-changed=kernels/cpu/sgemm_avx512.h");
    println!("cargo:rerun-if-changed=kernels/cpu/winograd_avx512.h");
    println!("cargo:rerun-if-changed=kernels/cpu/winograd_body.h");
    println!("cargo:rerun-if-changed=kernels/cpu/winograd_common.h");
    build.include("kernels/cpu");
    build.compile("senet_cpu_kernels");
}

/// Writes `target/<profile>/senet.pc`: headers from `include/` of this source tree, the library
/// from `target/<profile>/` (with an rpath, so programs run without LD_LIBRARY_PATH).
/// `PKG_CONFIG_PATH=target/release pkg-config --cflags --libs senet` then works after
/// `cargo build --release`. Skipped silently if the profile directory cannot be found.
fn write_pkg_config() {
    let (Some(out), Some(root), Some(version)) = (
        std::env::var_os("OUT_DIR"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
        std::env::var_os("CARGO_PKG_VERSION"),
    ) else {
        return;
    };
    // OUT_DIR = target/<profile>/build/senet-<hash>/out
    let Some(profile_dir) = std::path::Path::new(&out).ancestors().nth(3) else {
        return;
    };
    let root = std::path::Path::new(&root);
    let pc = format!(
        "prefix={}\nincludedir=${{prefix}}/include\nlibdir={}\n\n\
         Name: senet\n\
         Description: SE-ResNet / SE-ResNeXt inference (MindCV-exact), C ABI\n\
         Version: {}\n\
         Cflags: -I${{includedir}}\n\
         Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lsenet\n",
        root.display(),
        profile_dir.display(),
        version.to_string_lossy()
    );
    let path = profile_dir.join("senet.pc");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(pc.as_str()) {
        let _ = std::fs::write(&path, pc);
    }
}
