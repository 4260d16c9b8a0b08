//! Checking one aclnn call against the contract's tables for the emulated product: support,
//! dtypes, formats, ranks, contiguity, cubeMathType, and outputs that alias inputs.
//!
//! A refused call fails with `ACLNN_ERR_PARAM_INVALID` (the code the vendor docs give for every
//! parameter rule, e.g. `aclnnConvolution.md:278`) and a message naming the rule, the contract
//! section and the vendor source.
use senet_cann_sys::*;

use super::product::{CannVersion, Product};
use super::rules;
use super::table::{self, row_for, Contiguity, CubeCell, Entry, FormatRule, OpContract};
use crate::api::{Fail, Res};
use crate::objects::TensorDesc;
use crate::view;

/// How an operator uses a tensor argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read only.
    In,
    /// Written only.
    Out,
    /// Read and written in place (`selfRef`, running statistics, `*Ref` lists).
    InOut,
}

/// One tensor argument of a call: its name in the vendor signature, the tensor (None when the
/// caller passed null for an optional argument) and its role.
#[derive(Clone, Copy)]
pub struct Arg<'a> {
    /// The parameter name of the vendor declaration (`input`, `gradOutput`, `selfRef`, ...).
    pub name: &'static str,
    /// The tensor.
    pub t: Option<&'a TensorDesc>,
    /// How the op uses it.
    pub role: Role,
}

impl<'a> Arg<'a> {
    /// An input.
    pub fn input(name: &'static str, t: &'a TensorDesc) -> Self {
        Arg {
            name,
            t: Some(t),
            role: Role::In,
        }
    }

    /// An output.
    pub fn output(name: &'static str, t: &'a TensorDesc) -> Self {
        Arg {
            name,
            t: Some(t),
            role: Role::Out,
        }
    }

    /// An in-place argument.
    pub fn inout(name: &'static str, t: &'a TensorDesc) -> Self {
        Arg {
            name,
            t: Some(t),
            role: Role::InOut,
        }
    }

    /// An optional argument.
    pub fn opt(name: &'static str, t: Option<&'a TensorDesc>, role: Role) -> Self {
        Arg { name, t, role }
    }
}

/// The emulated product and CANN release, and the SoC name (for messages).
#[derive(Debug, Clone)]
pub struct Target {
    /// Product line.
    pub product: Product,
    /// CANN release.
    pub version: CannVersion,
    /// `SENET_EMU_SOC`.
    pub soc: String,
}

/// The configured target (requires `aclInit`).
pub fn target() -> Res<Target> {
    crate::state::with_emu(|e| {
        let c = e
            .config()
            .map_err(|f| Fail::new(ACLNN_ERR_RUNTIME_ERROR, f.msg))?;
        Ok(Target {
            product: c.product,
            version: c.version,
            soc: c.soc.to_string_lossy().into_owned(),
        })
    })
}

/// What the checks decided.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the call runs.
    pub target: Target,
    /// What the cube does with the call's cubeMathType (cube operators only).
    pub cube: Option<CubeCell>,
}

/// A refusal naming the rule and its source.
pub fn refuse(op: &str, t: &Target, rule: &str, what: impl std::fmt::Display, src: &str) -> Fail {
    Fail::new(
        ACLNN_ERR_PARAM_INVALID,
        format!(
            "{what} [contract rule: {rule}; aclnn-contract.md {op}, {} on {} (CANN {}); source: {src}]",
            t.product.label(),
            t.soc,
            t.version.label()
        ),
    )
}

/// The contract of `op`.
pub fn op_contract(op: &str) -> Res<&'static OpContract> {
    let c = table::contract().map_err(|m| Fail::new(ACLNN_ERR_INNER, m))?;
    c.ops.get(op).ok_or_else(|| {
        Fail::new(
            ACLNN_ERR_INNER,
            format!("{op} is not in the emulator's contract tables"),
        )
    })
}

/// Checks a call of `op` (its contract name, `aclnnConvolution`): support on the target, every
/// present tensor's dtype, format, rank and contiguity, the dtypes of `scalars` (aclScalar and
/// aclDataType arguments, by parameter name), `cube` (cubeMathType and the dtype it applies
/// to), and that no output overlaps an input.
pub fn check(
    op: &'static str,
    args: &[Arg],
    scalars: &[(&'static str, aclDataType)],
    cube: Option<(i8, aclDataType)>,
) -> Res<Plan> {
    let t = target()?;
    let oc = op_contract(op)?;
    let e = oc.entries.get(&t.product).ok_or_else(|| {
        Fail::new(
            ACLNN_ERR_INNER,
            format!("{op} has no row for {:?}", t.product),
        )
    })?;
    let (supported, src) = rules::support(op, e, &t);
    if !supported {
        return Err(refuse(
            op,
            &t,
            "operator support",
            format!("{op} is not supported on this product"),
            src,
        ));
    }
    for a in args {
        if let Some(x) = a.t {
            tensor(op, oc, e, &t, a.name, x)?;
        }
    }
    for (name, dt) in scalars {
        dtype(op, oc, e, &t, name, *dt)?;
    }
    let cube = match cube {
        Some((mode, dt)) => Some(cube_cell(op, oc, e, &t, mode, dt)?),
        None => None,
    };
    aliasing(op, &t, args)?;
    Ok(Plan { target: t, cube })
}

fn row_src(oc: &OpContract) -> String {
    format!("Part B table row, {}", oc.doc)
}

/// The source of the row's note that mentions `topic` (the cubeMathType note, ...), else the
/// table row.
fn note_src(oc: &OpContract, e: &Entry, topic: &str) -> String {
    e.notes
        .iter()
        .find(|(_, fact)| fact.contains(topic))
        .map(|(src, fact)| format!("{src} ({fact})"))
        .unwrap_or_else(|| row_src(oc))
}

fn dtype(op: &str, oc: &OpContract, e: &Entry, t: &Target, name: &str, dt: aclDataType) -> Res<()> {
    let Some(list) = row_for(&e.dtypes, name) else {
        return Ok(());
    };
    let n = contract_dtype(dt);
    if list.iter().any(|d| d == n) {
        return Ok(());
    }
    Err(refuse(
        op,
        t,
        "dtype",
        format!("{name} is {n}; this product accepts {}", list.join(", ")),
        &row_src(oc),
    ))
}

/// The contract's name of `dt` (`BFLOAT16` for `ACL_BF16`).
pub fn contract_dtype(dt: aclDataType) -> &'static str {
    match dt {
        aclDataType::ACL_BF16 => "BFLOAT16",
        other => view::dtype_name(other),
    }
}

/// The contract's name of a format, and the rank it implies (`NCHW`: 4).
pub fn format_name(f: aclFormat) -> (&'static str, Option<usize>) {
    match f {
        aclFormat::ACL_FORMAT_ND => ("ND", None),
        aclFormat::ACL_FORMAT_NCHW => ("NCHW", Some(4)),
        aclFormat::ACL_FORMAT_NHWC => ("NHWC", Some(4)),
        aclFormat::ACL_FORMAT_NC => ("NC", Some(2)),
        aclFormat::ACL_FORMAT_NCL => ("NCL", Some(3)),
        _ => ("UNKNOWN", None),
    }
}

/// Whether `list` accepts format `f` on a tensor of `rank`. A plain `ND` entry accepts every
/// public format ("ND：表示支持任意格式", `hicann/runtime:docs/api_docs/aclFormat.md`); other
/// entries must name the tensor's format, whose implied rank must be the tensor's.
pub fn format_ok(list: &[FormatRule], f: aclFormat, rank: usize) -> bool {
    let (name, implied) = format_name(f);
    if implied.is_some_and(|r| r != rank) {
        return false;
    }
    list.iter().any(|r| match r.ranks {
        None if r.format == "ND" => true,
        None => r.format == name,
        Some((lo, hi)) => r.format == name && (lo..=hi).contains(&rank),
    })
}

fn tensor(op: &str, oc: &OpContract, e: &Entry, t: &Target, name: &str, x: &TensorDesc) -> Res<()> {
    dtype(op, oc, e, t, name, x.dtype)?;
    let rank = x.dims.len();
    if let Some(list) = row_for(&e.formats, name) {
        if !format_ok(list, x.format, rank) {
            let want: Vec<String> = list
                .iter()
                .map(|r| match r.ranks {
                    Some((a, b)) => format!("{}({a}-{b}D)", r.format),
                    None => r.format.clone(),
                })
                .collect();
            return Err(refuse(
                op,
                t,
                "format",
                format!(
                    "{name} is a {rank}-D tensor created with format {}; this product accepts {} (ND means any format; a named format must match the rank)",
                    format_name(x.format).0,
                    want.join(", ")
                ),
                &row_src(oc),
            ));
        }
    }
    if let Some(Some((lo, hi))) = row_for(&e.ranks, name) {
        if !(*lo..=*hi).contains(&rank) {
            return Err(refuse(
                op,
                t,
                "rank",
                format!("{name} has {rank} dims; this product accepts {lo} to {hi}"),
                &row_src(oc),
            ));
        }
    }
    if let Some(c) = row_for(&e.non_contiguous, name) {
        let must = match c {
            Contiguity::Accepted(ok) => !ok,
            Contiguity::ExceptDtypes(list) => {
                let n = contract_dtype(x.dtype);
                list.iter().any(|d| match d.strip_suffix('*') {
                    Some(p) => n.starts_with(p),
                    None => d == n,
                })
            }
        };
        if must && !x.is_contiguous() {
            return Err(refuse(
                op,
                t,
                "contiguity",
                format!(
                    "{name} is a non-contiguous view (dims {:?}, strides {:?}); this argument must be contiguous",
                    x.dims, x.strides
                ),
                &row_src(oc),
            ));
        }
    }
    Ok(())
}

fn cube_cell(
    op: &str,
    oc: &OpContract,
    e: &Entry,
    t: &Target,
    mode: i8,
    dt: aclDataType,
) -> Res<CubeCell> {
    if e.cube_math.is_empty() {
        return Ok(CubeCell::Ok);
    }
    let n = contract_dtype(dt);
    let Some(row) = e.cube_math.get(n) else {
        return Err(refuse(
            op,
            t,
            "cubeMathType",
            format!("no cubeMathType row for {n} inputs"),
            &row_src(oc),
        ));
    };
    let modes: Vec<String> = row.keys().map(i8::to_string).collect();
    match row.get(&mode) {
        None => Err(refuse(
            op,
            t,
            "cubeMathType",
            format!(
                "cubeMathType {mode} is not one this operator takes ({})",
                modes.join(", ")
            ),
            &row_src(oc),
        )),
        Some(CubeCell::Error) => Err(refuse(
            op,
            t,
            "cubeMathType",
            format!(
                "cubeMathType {mode} ({}) with {n} inputs is not supported on this product",
                cube_mode_name(mode)
            ),
            &note_src(oc, e, "cubeMathType"),
        )),
        Some(c) => Ok(*c),
    }
}

/// `KEEP_DTYPE`, `ALLOW_FP32_DOWN_PRECISION`, ...
pub fn cube_mode_name(mode: i8) -> &'static str {
    match mode {
        0 => "KEEP_DTYPE",
        1 => "ALLOW_FP32_DOWN_PRECISION",
        2 => "USE_FP16",
        3 => "USE_HF32",
        4 => "USE_FP32_ADD",
        _ => "unknown",
    }
}

/// Outputs of a non-inplace operator must not overlap its inputs: in-place semantics are
/// promised only by the `aclnnInplaceXxx` variants (contract Part D, opbase `docs/README.md:99-101`).
fn aliasing(op: &str, t: &Target, args: &[Arg]) -> Res<()> {
    for o in args.iter().filter(|a| a.role == Role::Out) {
        let Some(ot) = o.t else { continue };
        for i in args.iter().filter(|a| a.role == Role::In) {
            let Some(it) = i.t else { continue };
            if crate::alias::overlap(ot, it) {
                return Err(refuse(
                    op,
                    t,
                    "no output aliasing an input",
                    format!(
                        "output {} overlaps input {} in device memory; {op} is not an in-place operator (use the aclnnInplace variant or a separate output)",
                        o.name, i.name
                    ),
                    rules::INPLACE_SRC,
                ));
            }
        }
    }
    Ok(())
}
