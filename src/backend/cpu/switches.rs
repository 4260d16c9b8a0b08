//! The `SENET_CPU_*` environment variables: each selects an older or alternative path of one
//! CPU kernel family, for same-run A/B timings (`cargo bench`, `senet bench`) and for tests
//! that compare two paths. The paths themselves read their variable where they are chosen
//! (`sgemm.rs`, `conv/grouped.rs`, `mod.rs`); this module only checks, once per
//! [`super::CpuBackend::new`], that every such variable set in the environment is one senet
//! knows and holds one of its values, so that a typo ends the run with a clear error instead of
//! silently timing the default path.

use crate::{Error, Result};

/// What a switch accepts.
enum Values {
    /// Exactly one of these words.
    One(&'static [&'static str]),
    /// A comma-separated list of these words (empty allowed).
    List(&'static [&'static str]),
    /// A whole number in this inclusive range.
    Int(usize, usize),
}

/// Every `SENET_CPU_*` variable and its values (the default path's word first where there is
/// one). Documented at the code each one selects.
const SWITCHES: &[(&str, Values)] = &[
    // sgemm.rs: `crate` = the `gemm` crate for every product (the portable path).
    ("SENET_CPU_GEMM", Values::One(&["avx512", "crate"])),
    // sgemm.rs: the AVX-512 GEMM's largest k block (rows; default 512).
    ("SENET_CPU_SGEMM_KC", Values::Int(16, 512)),
    // conv/grouped.rs: `gemm` = grouped convs on the GEMM paths.
    ("SENET_CPU_GROUPED", Values::One(&["direct", "gemm"])),
    // mod.rs (batch1_path_off): batch-1 paths turned off.
    ("SENET_CPU_B1", Values::List(&["old", "nowino", "nolocal"])),
    // mod.rs: data gradients of 3x3 stride-1 convs by direct sums.
    ("SENET_CPU_DGRAD", Values::One(&["winograd", "direct"])),
    // mod.rs: training's forward 3x3 stride-1 convs by direct sums instead of F(2x2, 3x3).
    ("SENET_CPU_TRAIN_FWD", Values::One(&["winograd2", "direct"])),
    // mod.rs: conv filter gradients on the `gemm` crate, or on senet's GEMM with side-by-side
    // images' columns gathered per image and copied into place (the gather before wgrad2).
    (
        "SENET_CPU_WGRAD",
        Values::One(&["sgemm", "gemm-crate", "sgemm-copy"]),
    ),
    // mod.rs: the training step's ops around the convs on their previous kernels.
    ("SENET_CPU_TRAIN", Values::One(&["new", "legacy"])),
    // mod.rs: `pool` = Backend::run_ops on a thread of the pool (one hand-over per forward).
    ("SENET_CPU_FORWARD", Values::One(&["ops", "pool"])),
];

/// Checks the process environment's `SENET_CPU_*` variables ([`check`]).
/// Errors: as [`check`]; a variable whose name or value is not UTF-8 and starts with
/// `SENET_CPU_` is named as far as it reads.
pub(super) fn check_env() -> Result<()> {
    let vars = std::env::vars_os().filter_map(|(k, v)| {
        let k = k.to_string_lossy().into_owned();
        k.starts_with("SENET_CPU_").then(|| {
            (
                k,
                v.into_string()
                    .unwrap_or_else(|v| v.to_string_lossy().into()),
            )
        })
    });
    check(vars)
}

/// Checks `(name, value)` pairs: every name starting with `SENET_CPU_` must be one of
/// [`SWITCHES`] and its value one that switch accepts; other names are ignored.
/// Errors: [`Error::Invalid`] naming the variable, its value and what it accepts (or, for an
/// unknown name, the known ones).
fn check(vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
    for (name, value) in vars {
        if !name.starts_with("SENET_CPU_") {
            continue;
        }
        let Some((_, values)) = SWITCHES.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = SWITCHES.iter().map(|(n, _)| *n).collect();
            return Err(Error::Invalid(format!(
                "environment variable {name}={value}: not a senet CPU switch (known: {})",
                known.join(", ")
            )));
        };
        if let Some(expected) = refusal(values, &value) {
            return Err(Error::Invalid(format!(
                "environment variable {name}={value}: expected {expected}"
            )));
        }
    }
    Ok(())
}

/// `None` when `values` accepts `value`, else what it accepts, in words.
fn refusal(values: &Values, value: &str) -> Option<String> {
    match values {
        Values::One(words) => (!words.contains(&value)).then(|| words.join(" or ")),
        Values::List(words) => value
            .split(',')
            .map(str::trim)
            .any(|w| !w.is_empty() && !words.contains(&w))
            .then(|| format!("a comma-separated list of {}", words.join(", "))),
        Values::Int(lo, hi) => match value.trim().parse::<usize>() {
            Ok(n) if (*lo..=*hi).contains(&n) => None,
            _ => Some(format!("a whole number from {lo} to {hi}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn one(name: &str, value: &str) -> crate::Result<()> {
        check([(name.to_string(), value.to_string())])
    }

    fn message(name: &str, value: &str) -> String {
        one(name, value).unwrap_err().to_string()
    }

    #[test]
    fn known_values_pass() {
        for (n, v) in [
            ("SENET_CPU_GEMM", "crate"),
            ("SENET_CPU_SGEMM_KC", "256"),
            ("SENET_CPU_SGEMM_KC", "16"),
            ("SENET_CPU_GROUPED", "gemm"),
            ("SENET_CPU_B1", "old"),
            ("SENET_CPU_B1", "nowino, nolocal"),
            ("SENET_CPU_FORWARD", "pool"),
            ("SENET_CPU_FORWARD", "ops"),
            ("SENET_CPU_B1", ""),
            ("SENET_CPU_DGRAD", "direct"),
            ("SENET_CPU_DGRAD", "winograd"),
            ("SENET_CPU_WGRAD", "gemm-crate"),
            ("SENET_CPU_WGRAD", "sgemm-copy"),
            ("SENET_CPU_TRAIN", "legacy"),
            ("SENET_CPU_TRAIN", "new"),
            ("SENET_SHARED", "/anything"),
        ] {
            assert!(one(n, v).is_ok(), "{n}={v}");
        }
    }

    #[test]
    fn a_misspelt_value_is_refused_with_what_is_accepted() {
        let m = message("SENET_CPU_DGRAD", "dirct");
        assert!(
            m.contains("SENET_CPU_DGRAD=dirct: expected winograd or direct"),
            "{m}"
        );
        let m = message("SENET_CPU_B1", "old,nowin");
        assert!(
            m.contains("SENET_CPU_B1=old,nowin: expected a comma-separated list"),
            "{m}"
        );
        let m = message("SENET_CPU_SGEMM_KC", "1024");
        assert!(m.contains("expected a whole number from 16 to 512"), "{m}");
        assert!(one("SENET_CPU_SGEMM_KC", "15").is_err());
        assert!(one("SENET_CPU_SGEMM_KC", "x").is_err());
    }

    #[test]
    fn an_unknown_switch_is_refused_with_the_known_ones() {
        let m = message("SENET_CPU_DGARD", "direct");
        assert!(
            m.contains("SENET_CPU_DGARD=direct: not a senet CPU switch"),
            "{m}"
        );
        assert!(m.contains("SENET_CPU_DGRAD"), "{m}");
    }
}
