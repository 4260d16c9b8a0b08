//! Builds the native CPU kernels in `kernels/cpu/` (plain C99, compiled with `cc`). On x86_64
//! targets it adds the AVX-512 conv GEMM (`sgemm_*avx512.c`): its functions carry their own
//! `target` attributes, so the build stays baseline x86-64 and the Rust side picks them only
//! after run-time detection. Other targets do not compile those files at all.
fn main() {
    let mut files = vec![
        "kernels/cpu/elementwise.c",
        "kernels/cpu/im2col.c",
        "kernels/cpu/pool.c",
    ];
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        files.push("kernels/cpu/sgemm_avx512.c");
        files.push("kernels/cpu/sgemm_pack_avx512.c");
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
    println!("cargo:rerun-if-changed=kernels/cpu/senet_kernels.h");
    println!("cargo:rerun-if-changed=kernels/cpu/sgemm_avx512.h");
    build.include("kernels/cpu");
    build.compile("senet_cpu_kernels");
}
