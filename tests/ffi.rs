//! The C ABI (`libsenet.so`, `include/senet.h`) as a C or C++ user sees it: the committed header
//! is cbindgen's current output and compiles as C99 and C++; the C example classifies the sample
//! photos with logits bit-identical to `senet predict`; the C++ RAII example agrees with it; a C
//! program exercising every function and its misuse runs clean under AddressSanitizer; the
//! generated `senet.pc` works with pkg-config.
mod common;

use common::sample_dir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where `libsenet.so` and `senet.pc` are for this test build. `cargo test`
/// builds the cdylib into `target/<profile>/deps/` only (`cargo build` also copies it up), so
/// the first call copies it beside `senet.pc`, where the examples link it from.
fn profile_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/ffi-<hash>
        let deps = exe.parent().unwrap().to_path_buf();
        let dir = deps.parent().unwrap().to_path_buf();
        let built = deps.join("libsenet.so");
        let lib = dir.join("libsenet.so");
        let stale = match (std::fs::metadata(&built), std::fs::metadata(&lib)) {
            (Ok(b), Ok(l)) => b.modified().unwrap() > l.modified().unwrap(),
            (Ok(_), Err(_)) => true,
            _ => false,
        };
        if stale {
            senet::fsutil::write_atomic(&lib, &std::fs::read(&built).unwrap()).unwrap();
            let mut perm = std::fs::metadata(&lib).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&lib, perm).unwrap();
        }
        assert!(
            lib.is_file(),
            "libsenet.so not found in {} nor {}",
            dir.display(),
            deps.display()
        );
        dir
    })
    .clone()
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
    assert!(
        header.contains(&want),
        "senet.h lacks `{want}` (cbindgen.toml)"
    );
    let parts: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').collect();
    for (name, v) in ["MAJOR", "MINOR", "PATCH"].iter().zip(parts) {
        let want = format!("#define SENET_VERSION_{name} {v}\n");
        assert!(header.contains(&want), "senet.h lacks `{want}`");
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compiles C (`cc`) or C++ (`c++`) sources against `include/` and `libsenet.so` into `exe`.
fn compile(compiler: &str, sources: &[PathBuf], exe: &Path, flags: &[&str]) {
    let lib = profile_dir();
    run(Command::new(compiler)
        .args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(root().join("include"))
        .args(sources)
        .arg("-o")
        .arg(exe)
        .arg("-L")
        .arg(&lib)
        .arg("-lsenet")
        .arg("-pthread"));
}

/// A command running `exe` with `libsenet.so` found through LD_LIBRARY_PATH.
fn with_lib(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env("LD_LIBRARY_PATH", profile_dir());
    cmd
}

/// `senet init --formula` checkpoint of `model` with `classes` classes.
fn make_checkpoint(dir: &Path, model: &str, classes: usize) -> PathBuf {
    let ckpt = dir.join(format!("{model}_{classes}.ckpt"));
    run(Command::new(env!("CARGO_BIN_EXE_senet")).args([
        "init",
        "--model",
        model,
        "--formula",
        "--num_classes",
        &classes.to_string(),
        "--out",
        ckpt.to_str().unwrap(),
    ]));
    ckpt
}

fn class_map_1000() -> PathBuf {
    let shared = common::shared().join("datasets/imagenet_classes.tsv");
    if shared.is_file() {
        shared
    } else {
        root().join("configs/imagenet_classes.tsv")
    }
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("use.c");
    std::fs::write(
        &src,
        "#include <senet.h>\nint main(void) { return senet_version() == 0 \
         || SENET_STATUS_OK != 0 || SENET_IMAGE_VALUES != 3 * 224 * 224; }\n",
    )
    .unwrap();
    let exe = dir.path().join("use_c");
    compile(
        "cc",
        std::slice::from_ref(&src),
        &exe,
        &["-std=c99", "-pedantic"],
    );
    run(&mut with_lib(&exe));
    let cpp = dir.path().join("use.cpp");
    std::fs::copy(&src, &cpp).unwrap();
    let exe = dir.path().join("use_cpp");
    compile("c++", &[cpp], &exe, &["-std=c++11", "-pedantic"]);
    run(&mut with_lib(&exe));
}

/// The C example on the 100 sample photos: logits bit-identical to `senet predict
/// --save_logits`, and the same printed top-5; the C++ example prints the same on a few.
#[test]
fn c_example_matches_senet_predict() {
    let samples = sample_dir();
    assert!(samples.is_dir(), "{} missing", samples.display());
    let dir = tempfile::tempdir().unwrap();
    let ckpt = make_checkpoint(dir.path(), "seresnet18", 1000);
    let classes = class_map_1000();
    let files = senet::data::list_images(std::slice::from_ref(&samples)).unwrap();
    assert_eq!(files.len(), 100);

    let npy = dir.path().join("cli.npy");
    let cli = run(Command::new(env!("CARGO_BIN_EXE_senet"))
        .args(["predict", "--model", "seresnet18", "--ckpt_path"])
        .arg(&ckpt)
        .arg("--class_map")
        .arg(&classes)
        .arg("--save_logits")
        .arg(&npy)
        // The C ABI's transform is the SENet recipes' (bicubic); predict's default without -c
        // is config.py's (bilinear).
        .args(["--interpolation", "bicubic"])
        .arg(&samples));
    let want = senet::npy::read_f32(&npy).unwrap();
    assert_eq!(want.shape, vec![100, 1000]);

    let exe = dir.path().join("classify");
    compile(
        "cc",
        &[root().join("examples/c/classify.c")],
        &exe,
        &["-std=c99", "-pedantic"],
    );
    let raw = dir.path().join("c.f32");
    let c = run(with_lib(&exe)
        .arg("seresnet18")
        .arg(&ckpt)
        .arg(&classes)
        .arg("--logits")
        .arg(&raw)
        .args(&files));
    let bytes = std::fs::read(&raw).unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got.len(), want.data.len());
    let differ = got
        .iter()
        .zip(&want.data)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} logits differ from senet predict's");
    assert_eq!(
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&cli.stdout),
        "the C example's top-5 differs from senet predict's"
    );
    // --batch sizes whose buffer sizes overflow, or that are no positive integer, are refused
    // with a message (issue 13: the multiplication used to wrap).
    for (batch, want, status) in [
        (
            "18446744073709551615",
            "--batch 18446744073709551615 is too large",
            1,
        ),
        ("-1", "--batch needs a positive integer, got '-1'", 2),
        ("0", "need a positive --batch", 2),
    ] {
        let out = with_lib(&exe)
            .arg("seresnet18")
            .arg(&ckpt)
            .arg(&classes)
            .args(["--batch", batch])
            .arg(&files[0])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "--batch {batch}: {stderr}");
        assert!(stderr.contains(want), "--batch {batch}: {stderr}");
    }

    // The C++ RAII example, on the first three images (one batch, as the C example's).
    let exe = dir.path().join("classify_cpp");
    compile(
        "c++",
        &[root().join("examples/cpp/classify.cpp")],
        &exe,
        &[
            "-std=c++17",
            "-I",
            root().join("examples/cpp").to_str().unwrap(),
        ],
    );
    let cpp = run(with_lib(&exe)
        .arg("seresnet18")
        .arg(&ckpt)
        .arg(&classes)
        .args(&files[..3]));
    let c3 = run(with_lib(&dir.path().join("classify"))
        .arg("seresnet18")
        .arg(&ckpt)
        .arg(&classes)
        .args(&files[..3]));
    assert_eq!(
        String::from_utf8_lossy(&cpp.stdout),
        String::from_utf8_lossy(&c3.stdout),
        "the C++ example's top-5 differs from the C example's"
    );
}

/// Every function, used right and in each documented wrong way, under AddressSanitizer
/// (invalid accesses and leaks fail the run).
#[test]
fn c_misuse_program_is_clean_under_asan() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = make_checkpoint(dir.path(), "seresnet18", 10);
    let map = dir.path().join("ten.txt");
    let names = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let lines: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i}\tn{i:08}\tclass {n}\n"))
        .collect();
    std::fs::write(&map, lines.concat()).unwrap();
    let not_image = dir.path().join("bad.tsv");
    std::fs::write(&not_image, "x\tnot a class map line\n").unwrap();
    let image = senet::data::list_images(&[sample_dir()]).unwrap()[0].clone();

    let exe = dir.path().join("abi_misuse");
    compile(
        "cc",
        &[root().join("tests/c/abi_misuse.c")],
        &exe,
        &["-std=c99", "-fsanitize=address", "-fno-omit-frame-pointer"],
    );
    let out = run(with_lib(&exe)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=99",
        )
        .arg(&ckpt)
        .arg(&map)
        .arg(class_map_1000())
        .arg(&image)
        .arg(&not_image));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("checks passed"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
}

/// `senet.pc` (written by build.rs beside libsenet.so) gives working flags: the C example
/// builds with `cc $(pkg-config --cflags --libs senet)` alone and runs without LD_LIBRARY_PATH.
#[test]
fn pkg_config_file_builds_the_c_example() {
    let lib = profile_dir();
    assert!(
        lib.join("senet.pc").is_file(),
        "no senet.pc in {}",
        lib.display()
    );
    let flags = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", &lib)
        .args(["--cflags", "--libs", "senet"]));
    let flags = String::from_utf8(flags.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("classify");
    run(Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror"])
        .arg(root().join("examples/c/classify.c"))
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace()));
    // No LD_LIBRARY_PATH: the rpath from senet.pc finds the library. Bad arguments give the
    // library's message.
    let out = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .args([
            "seresnet18",
            "/nonexistent.ckpt",
            "/nonexistent.tsv",
            "x.jpg",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent.tsv"), "{stderr}");
}

/// Every C example of docs/c-abi.md compiles and links as C99 against the header and library
/// (an example without `main`, a function, gets an empty one).
#[test]
fn doc_example_compiles() {
    let doc = std::fs::read_to_string(root().join("docs/c-abi.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rest = doc.as_str();
    let mut examples = 0;
    while let Some(at) = rest.find("```c\n") {
        let body = &rest[at + 5..];
        let len = body.find("```").unwrap();
        let mut code = body[..len].to_string();
        if !code.contains("int main(") {
            code.push_str("int main(void) { return 0; }\n");
        }
        let src = dir.path().join(format!("doc_example{examples}.c"));
        std::fs::write(&src, code).unwrap();
        let exe = dir.path().join(format!("doc_example{examples}"));
        compile("cc", &[src], &exe, &["-std=c99", "-pedantic"]);
        examples += 1;
        rest = &body[len..];
    }
    assert_eq!(examples, 2, "C examples in docs/c-abi.md");
}

/// The regression corpus (tests/corpus/: checkpoints, safetensors files, images) through
/// `senet_model_load` and `senet_preprocess_memory`, plus FIFOs named `*.ckpt` / `*.jpg` and a
/// 1,000,000-class model, in a C process limited to 2 GiB of address space and 120 s: every
/// call returns a status (no abort, no signal, no hang), never OK for a hostile file, never
/// SENET_STATUS_INTERNAL; what does not fit in the limit is SENET_STATUS_OUT_OF_MEMORY.
#[test]
fn corpus_through_the_c_abi_under_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("corpus_load");
    compile(
        "cc",
        &[root().join("tests/c/corpus_load.c")],
        &exe,
        &["-std=c99"],
    );
    let corpus = root().join("tests/corpus");
    let mut items: Vec<(String, bool)> = Vec::new(); // (item, must succeed)
    for (folder, verb) in [("ckpt", "load"), ("safetensors", "load"), ("image", "mem")] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            // Valid images decode; no corpus checkpoint is a seresnet18 with 10 classes.
            let valid = verb == "mem" && name.starts_with("valid");
            items.push((format!("{verb}:{}", f.display()), valid));
        }
    }
    for fifo in ["pipe.ckpt", "pipe.jpg"] {
        let p = dir.path().join(fifo);
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    items.push((
        format!("load:{}", dir.path().join("pipe.ckpt").display()),
        false,
    ));
    items.push((
        format!("file:{}", dir.path().join("pipe.jpg").display()),
        false,
    ));
    items.push(("create:1000000".to_string(), false));
    let mut cmd = with_lib(&exe);
    cmd.arg("2048").args(items.iter().map(|(i, _)| i));
    let run = common::child::run_with_timeout(&mut cmd, std::time::Duration::from_secs(120));
    assert!(run.ok(), "corpus_load: {}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), items.len(), "{}", run.stdout);
    for ((item, valid), line) in items.iter().zip(lines) {
        let mut cols = line.splitn(3, '\t');
        assert_eq!(cols.next(), Some(item.as_str()));
        let status: i32 = cols.next().unwrap().parse().unwrap();
        let message = cols.next().unwrap_or("");
        assert_ne!(status, 11, "{item}: internal error: {message}");
        assert!(
            (0..=13).contains(&status),
            "{item}: unknown status {status}"
        );
        assert_eq!(status == 0, *valid, "{item}: status {status}: {message}");
        if item.contains("pipe.") {
            assert_eq!(status, 6, "{item}: {message}"); // SENET_STATUS_IO
            assert!(message.contains("FIFO"), "{message}");
        }
        if item == "create:1000000" {
            assert_eq!(status, 13, "{item}: {message}"); // SENET_STATUS_OUT_OF_MEMORY
            assert!(
                message.contains("out of memory") && message.contains("classifier"),
                "{message}"
            );
        }
    }
}
