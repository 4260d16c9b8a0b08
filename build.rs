//! Builds the native CPU kernels in `kernels/cpu/` (plain C99, compiled with `cc`).
fn main() {
    let files = [
        "kernels/cpu/backward_elementwise.c",
        "kernels/cpu/batch_norm_train.c",
        "kernels/cpu/elementwise.c",
        "kernels/cpu/im2col.c",
        "kernels/cpu/pool.c",
    ];
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
    println!("cargo:rerun-if-changed=kernels/cpu/senet_kernels.h");
    build.include("kernels/cpu");
    build.compile("senet_cpu_kernels");
}
