//! The contract's per-operator, per-product tables, parsed from the embedded copy of
//! `aclnn-contract.json` (`sys/emulator/contract/`, kept equal to
//! `shared/reference/aclnn-contract.json` by `tests/contract.rs`).
//!
//! Every form the JSON uses is parsed explicitly; an unknown form is a parse error (so a new
//! kind of fact in a contract update fails the emulator's tests instead of being ignored).
use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::product::Product;

/// The embedded contract text.
pub const CONTRACT_JSON: &str = include_str!("../../contract/aclnn-contract.json");

/// Which arguments a table row applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPattern {
    /// Listed names; a name ending in `*` matches by prefix (`running*`).
    Names(Vec<String>),
    /// `all`: every argument.
    All,
    /// `others`: every argument no `Names` row of the same table lists.
    Others,
}

impl ArgPattern {
    fn parse(key: &str) -> ArgPattern {
        match key {
            "all" => ArgPattern::All,
            "others" => ArgPattern::Others,
            _ => ArgPattern::Names(
                key.split('/')
                    // `other(aclScalar)` names the argument `other`.
                    .map(|n| n.split('(').next().unwrap_or(n).trim().to_string())
                    .collect(),
            ),
        }
    }

    fn names(&self, arg: &str) -> bool {
        match self {
            ArgPattern::Names(v) => v.iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => arg.starts_with(prefix),
                None => n == arg,
            }),
            _ => false,
        }
    }
}

/// One row of a per-argument table.
#[derive(Debug, Clone)]
pub struct Row<T> {
    /// The arguments it applies to.
    pub args: ArgPattern,
    /// The rule.
    pub value: T,
}

/// The row of `rows` that applies to `arg`: one naming it, else `all`, else `others`.
pub fn row_for<'a, T>(rows: &'a [Row<T>], arg: &str) -> Option<&'a T> {
    rows.iter()
        .find(|r| r.args.names(arg))
        .or_else(|| rows.iter().find(|r| r.args == ArgPattern::All))
        .or_else(|| rows.iter().find(|r| r.args == ArgPattern::Others))
        .map(|r| &r.value)
}

/// One accepted format, optionally only for some ranks (`ND(6-8D)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatRule {
    /// `ND`, `NCHW`, ...
    pub format: String,
    /// Ranks the format is accepted for, when restricted.
    pub ranks: Option<(usize, usize)>,
}

/// Whether a non-contiguous view is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contiguity {
    /// `true`: accepted; `false` (or not documented / not stated): the view must be contiguous.
    Accepted(bool),
    /// Accepted except for these dtypes (`yes except BOOL/COMPLEX*/FLOAT4 inputs`).
    ExceptDtypes(Vec<String>),
}

/// What the cube does for one (dtype, cubeMathType) cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CubeCell {
    /// Computed in the (promoted) input dtype (`ok`, and `ok?` where the doc is silent).
    Ok,
    /// Rejected with ACLNN_ERR_PARAM_INVALID.
    Error,
    /// Converted to FLOAT16 for the cube.
    Fp16,
    /// FLOAT computed as HFLOAT32.
    Hf32,
}

/// One product's row of one operator.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Whether the operator is supported on the product.
    pub supported: bool,
    /// Where that is said.
    pub support_src: String,
    /// Accepted dtypes per argument (names as in `aclDataType` without `ACL_`; FLOAT32 is FLOAT).
    pub dtypes: Vec<Row<Vec<String>>>,
    /// Accepted formats per argument.
    pub formats: Vec<Row<Vec<FormatRule>>>,
    /// Accepted ranks per argument (`None`: not stated).
    pub ranks: Vec<Row<Option<(usize, usize)>>>,
    /// Non-contiguous views per argument.
    pub non_contiguous: Vec<Row<Contiguity>>,
    /// cubeMathType behaviour per dtype: `cube_math[dtype][mode]`.
    pub cube_math: BTreeMap<String, BTreeMap<i8, CubeCell>>,
    /// The notes of the row: `(src, fact)`.
    pub notes: Vec<(String, String)>,
}

/// One operator of the contract.
#[derive(Debug, Clone, Default)]
pub struct OpContract {
    /// The vendor doc it was read from.
    pub doc: String,
    /// The C declaration(s) of the operator (`_signature`).
    pub signature: String,
    /// Per product line.
    pub entries: BTreeMap<Product, Entry>,
    /// The `src` of every operator-level fact.
    pub fact_srcs: Vec<String>,
}

/// The parsed contract.
#[derive(Debug, Clone, Default)]
pub struct Contract {
    /// Operators by name (`aclnnConvolution`, ...; `aclnnFusedSgd` from `_fused_optimizers`).
    pub ops: BTreeMap<String, OpContract>,
    /// The `src` of every runtime fact (Part D, `_runtime`).
    pub runtime_srcs: Vec<String>,
}

/// The embedded contract, parsed once.
pub fn contract() -> Result<&'static Contract, String> {
    static PARSED: OnceLock<Result<Contract, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse(CONTRACT_JSON))
        .as_ref()
        .map_err(Clone::clone)
}

/// Parses the text of `aclnn-contract.json`.
pub fn parse(text: &str) -> Result<Contract, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("aclnn-contract.json: {e}"))?;
    let top = v
        .as_object()
        .ok_or("aclnn-contract.json is not an object")?;
    let mut ops = BTreeMap::new();
    for (name, op) in top {
        if name.starts_with('_') {
            continue;
        }
        ops.insert(
            name.clone(),
            parse_op(op).map_err(|e| format!("{name}: {e}"))?,
        );
    }
    let sgd = top
        .get("_fused_optimizers")
        .and_then(|f| f.get("aclnnFusedSgd"))
        .ok_or("_fused_optimizers.aclnnFusedSgd is missing")?;
    ops.insert(
        "aclnnFusedSgd".into(),
        parse_fused(sgd).map_err(|e| format!("aclnnFusedSgd: {e}"))?,
    );
    let foreach = top
        .get("_foreach")
        .and_then(Value::as_object)
        .ok_or("_foreach is missing")?;
    for (name, op) in foreach {
        ops.insert(
            name.clone(),
            parse_foreach(name, op).map_err(|e| format!("{name}: {e}"))?,
        );
    }
    Ok(Contract {
        ops,
        runtime_srcs: srcs(top.get("_runtime")),
    })
}

fn string(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{key} is missing or not a string"))
}

fn srcs(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("src").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn notes(list: Option<&Value>) -> Vec<(String, String)> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    let src = f.get("src")?.as_str()?;
                    let fact = f.get("fact")?.as_str()?;
                    Some((src.to_string(), fact.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_op(op: &Value) -> Result<OpContract, String> {
    let mut entries = BTreeMap::new();
    for p in Product::ALL {
        let e = op
            .get(p.key())
            .ok_or_else(|| format!("no row for {}", p.key()))?;
        entries.insert(p, parse_entry(e).map_err(|m| format!("{}: {m}", p.key()))?);
    }
    Ok(OpContract {
        doc: string(op, "_doc")?,
        signature: string(op, "_signature")?,
        entries,
        fact_srcs: srcs(op.get("_facts")),
    })
}

fn parse_fused(op: &Value) -> Result<OpContract, String> {
    let support = op
        .get("support")
        .and_then(Value::as_object)
        .ok_or("support is missing")?;
    let dtypes = rows(op.get("dtypes"), dtype_list)?;
    let mut entries = BTreeMap::new();
    for p in Product::ALL {
        let s = support
            .get(p.key())
            .and_then(Value::as_array)
            .ok_or_else(|| format!("support has no [bool, src] for {}", p.key()))?;
        let (Some(ok), Some(src)) = (
            s.first().and_then(Value::as_bool),
            s.get(1).and_then(Value::as_str),
        ) else {
            return Err(format!("support of {} is not [bool, src]", p.key()));
        };
        entries.insert(
            p,
            Entry {
                supported: ok,
                support_src: src.to_string(),
                dtypes: dtypes.clone(),
                ..Entry::default()
            },
        );
    }
    Ok(OpContract {
        doc: string(op, "_doc")?,
        signature: string(op, "_signature")?,
        entries,
        fact_srcs: srcs(op.get("facts")),
    })
}

/// One row of the `### aclnnForeach*` table (`_foreach`): only the product support (a bool per
/// product, read from the doc's 产品支持情况 block) and the signature; the per-argument rules of
/// these operators are checked by `ops/foreach.rs` from their docs.
fn parse_foreach(name: &str, op: &Value) -> Result<OpContract, String> {
    let support = op
        .get("support")
        .and_then(Value::as_object)
        .ok_or("support is missing")?;
    let doc = string(op, "_doc")?;
    let mut entries = BTreeMap::new();
    for p in Product::ALL {
        let ok = support
            .get(p.key())
            .and_then(Value::as_bool)
            .ok_or_else(|| format!("support has no bool for {}", p.key()))?;
        entries.insert(
            p,
            Entry {
                supported: ok,
                support_src: format!(
                    "aclnn-contract.md ### aclnnForeach* table, row {name} (from {doc}, 产品支持情况)"
                ),
                ..Entry::default()
            },
        );
    }
    Ok(OpContract {
        doc,
        signature: string(op, "_signature")?,
        entries,
        fact_srcs: Vec::new(),
    })
}

fn parse_entry(e: &Value) -> Result<Entry, String> {
    let supported = e
        .get("supported")
        .and_then(Value::as_bool)
        .ok_or("supported is missing")?;
    Ok(Entry {
        supported,
        support_src: string(e, "support_src")?,
        dtypes: rows(e.get("dtypes"), dtype_list)?,
        formats: rows(e.get("formats"), format_list)?,
        ranks: rows(e.get("rank"), rank)?,
        non_contiguous: rows(e.get("non_contiguous"), contiguity)?,
        cube_math: cube_math(e.get("cube_math"))?,
        notes: notes(e.get("notes")),
    })
}

fn rows<T>(
    table: Option<&Value>,
    parse: fn(&Value) -> Result<T, String>,
) -> Result<Vec<Row<T>>, String> {
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let obj = table
        .as_object()
        .ok_or("a per-argument table is not an object")?;
    obj.iter()
        .map(|(k, v)| {
            Ok(Row {
                args: ArgPattern::parse(k),
                value: parse(v).map_err(|m| format!("{k}: {m}"))?,
            })
        })
        .collect()
}

/// `FLOAT32` is the contract's other spelling of `FLOAT`; a `(note)` suffix is dropped.
pub fn dtype_name(s: &str) -> String {
    let s = s.split('(').next().unwrap_or(s).trim();
    if s == "FLOAT32" { "FLOAT" } else { s }.to_string()
}

fn strings(v: &Value) -> Result<Vec<&str>, String> {
    v.as_array()
        .ok_or("not a list")?
        .iter()
        .map(|s| {
            s.as_str()
                .ok_or_else(|| "a list entry is not a string".to_string())
        })
        .collect()
}

fn dtype_list(v: &Value) -> Result<Vec<String>, String> {
    Ok(strings(v)?.into_iter().map(dtype_name).collect())
}

fn format_list(v: &Value) -> Result<Vec<FormatRule>, String> {
    strings(v)?
        .into_iter()
        .map(|s| match s.split_once('(') {
            None => Ok(FormatRule {
                format: s.to_string(),
                ranks: None,
            }),
            Some((f, rest)) => {
                let range = rest
                    .strip_suffix("D)")
                    .and_then(parse_range)
                    .ok_or_else(|| format!("format {s:?} is not FORMAT(a-bD)"))?;
                Ok(FormatRule {
                    format: f.to_string(),
                    ranks: Some(range),
                })
            }
        })
        .collect()
}

fn parse_range(s: &str) -> Option<(usize, usize)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Ranks: `3-5`, `1 (note)`, `<=8`, `4 only`, `not stated`.
fn rank(v: &Value) -> Result<Option<(usize, usize)>, String> {
    let s = v.as_str().ok_or("a rank is not a string")?;
    if s == "not stated" {
        return Ok(None);
    }
    let head = s.split([' ', '(']).next().unwrap_or(s);
    if let Some(max) = head.strip_prefix("<=") {
        return max
            .parse()
            .map(|m| Some((0, m)))
            .map_err(|_| format!("rank {s:?}"));
    }
    if let Some(r) = parse_range(head) {
        return Ok(Some(r));
    }
    head.parse::<usize>()
        .map(|n| Some((n, n)))
        .map_err(|_| format!("rank {s:?} is not one of: a-b, n, <=n, not stated"))
}

fn contiguity(v: &Value) -> Result<Contiguity, String> {
    if let Some(b) = v.as_bool() {
        return Ok(Contiguity::Accepted(b));
    }
    let s = v
        .as_str()
        .ok_or("non_contiguous is neither bool nor string")?;
    if let Some(rest) = s.strip_prefix("yes except ") {
        let list = rest.split(' ').next().unwrap_or(rest);
        return Ok(Contiguity::ExceptDtypes(
            list.split('/').map(str::to_string).collect(),
        ));
    }
    // Undocumented ('-'): the stricter reading, a contiguous view only.
    if s.starts_with("not documented") || s.starts_with("not stated") {
        return Ok(Contiguity::Accepted(false));
    }
    Err(format!("non_contiguous {s:?} is not a known form"))
}

fn cube_math(v: Option<&Value>) -> Result<BTreeMap<String, BTreeMap<i8, CubeCell>>, String> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let obj = v.as_object().ok_or("cube_math is not an object")?;
    let mut out = BTreeMap::new();
    for (dt, modes) in obj {
        let modes = modes
            .as_object()
            .ok_or("a cube_math row is not an object")?;
        let mut row = BTreeMap::new();
        for (mode, cell) in modes {
            let m = mode
                .split_once('(')
                .and_then(|(_, n)| n.strip_suffix(')'))
                .and_then(|n| n.parse::<i8>().ok())
                .ok_or_else(|| format!("cube mode {mode:?} is not NAME(n)"))?;
            let c = match cell.as_str() {
                Some("ok" | "ok?") => CubeCell::Ok,
                Some("error") => CubeCell::Error,
                Some("fp16") => CubeCell::Fp16,
                Some("hf32") => CubeCell::Hf32,
                other => return Err(format!("cube cell {other:?} of {dt}/{mode}")),
            };
            row.insert(m, c);
        }
        out.insert(dtype_name(dt), row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_patterns() {
        let rows = vec![
            Row {
                args: ArgPattern::parse("weight/bias/running*/save*"),
                value: 1,
            },
            Row {
                args: ArgPattern::parse("beta/alpha(aclScalar)"),
                value: 2,
            },
            Row {
                args: ArgPattern::parse("others"),
                value: 3,
            },
        ];
        assert_eq!(row_for(&rows, "runningVar"), Some(&1));
        assert_eq!(row_for(&rows, "saveInvstd"), Some(&1));
        assert_eq!(row_for(&rows, "alpha"), Some(&2));
        assert_eq!(row_for(&rows, "input"), Some(&3));
        let all = vec![Row {
            args: ArgPattern::All,
            value: 4,
        }];
        assert_eq!(row_for(&all, "x"), Some(&4));
        assert_eq!(row_for::<i32>(&[], "x"), None);
    }

    #[test]
    fn value_forms() {
        let j = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(rank(&j("\"3-5\"")).unwrap(), Some((3, 5)));
        assert_eq!(rank(&j("\"1 (1-5 in table)\"")).unwrap(), Some((1, 1)));
        assert_eq!(rank(&j("\"2-8 (2:NC,3:NCL)\"")).unwrap(), Some((2, 8)));
        assert_eq!(rank(&j("\"<=8\"")).unwrap(), Some((0, 8)));
        assert_eq!(rank(&j("\"4 only\"")).unwrap(), Some((4, 4)));
        assert_eq!(rank(&j("\"not stated\"")).unwrap(), None);
        assert!(rank(&j("\"some\"")).is_err());
        assert_eq!(
            format_list(&j("[\"NC\", \"ND(6-8D)\"]")).unwrap(),
            vec![
                FormatRule {
                    format: "NC".into(),
                    ranks: None
                },
                FormatRule {
                    format: "ND".into(),
                    ranks: Some((6, 8))
                }
            ]
        );
        assert_eq!(
            contiguity(&j("\"yes except BOOL/COMPLEX*/FLOAT4 inputs\"")).unwrap(),
            Contiguity::ExceptDtypes(vec!["BOOL".into(), "COMPLEX*".into(), "FLOAT4".into()])
        );
        assert_eq!(
            contiguity(&j("\"not stated ('-')\"")).unwrap(),
            Contiguity::Accepted(false)
        );
        assert!(contiguity(&j("\"maybe\"")).is_err());
        assert_eq!(dtype_name("FLOAT32"), "FLOAT");
        assert_eq!(dtype_name("FLOAT8_E4M3FN(transposed)"), "FLOAT8_E4M3FN");
    }
}
