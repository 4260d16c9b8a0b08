//! The emulator's contract tables cannot drift from `aclnn-contract.json`: the embedded copy is
//! the shared reference file, it parses completely, every operator the header declares has a
//! table, every hand-coded rule cites a fact the contract still contains, and every cube-math
//! contradiction (Part F) is resolved to the stricter reading.
use std::collections::BTreeSet;
use std::path::PathBuf;

use senet_cann_emu::contract::rules;
use senet_cann_emu::contract::table::{contract, CubeCell, CONTRACT_JSON};
use senet_cann_emu::contract::Product;
use serde_json::Value;

/// `$SENET_SHARED/reference/aclnn-contract.json`, or the `shared/` folder beside the repository.
fn shared_contract() -> PathBuf {
    let shared = std::env::var("SENET_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    shared.join("reference/aclnn-contract.json")
}

#[test]
fn the_embedded_copy_is_the_shared_reference() {
    let path = shared_contract();
    match std::fs::read_to_string(&path) {
        Ok(shared) => assert!(
            shared == CONTRACT_JSON,
            "sys/emulator/contract/aclnn-contract.json differs from {}: copy it over and rerun",
            path.display()
        ),
        // Without the shared folder (a bare checkout) the committed copy is the reference.
        Err(e) => eprintln!("{}: {e}; checked the committed copy only", path.display()),
    }
}

/// The operators `cann_subset.h` declares (phase 1 names without `GetWorkspaceSize`).
fn declared_ops() -> BTreeSet<String> {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../include/cann_subset.h"
    ))
    .unwrap();
    header
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter_map(|w| w.strip_suffix("GetWorkspaceSize"))
        .filter(|w| w.starts_with("aclnn"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_declared_operator_has_a_complete_table() {
    let c = contract().unwrap_or_else(|e| panic!("the contract does not parse: {e}"));
    let ops = declared_ops();
    assert!(ops.len() >= 29, "{ops:?}");
    for op in &ops {
        let oc = c
            .ops
            .get(op)
            .unwrap_or_else(|| panic!("{op} has no contract table"));
        assert!(
            oc.signature.contains(&format!("{op}GetWorkspaceSize(")),
            "{op}"
        );
        for p in Product::ALL {
            let e = &oc.entries[&p];
            assert!(!e.support_src.is_empty(), "{op} {p:?}");
            // FusedSgd's dtypes are one list for all products; the foreach rows carry product
            // support only, their argument rules are checked by `ops/foreach.rs` from the docs.
            if e.supported && op != "aclnnFusedSgd" && !op.starts_with("aclnnForeach") {
                assert!(!e.dtypes.is_empty(), "{op} {p:?}: no dtype table");
            }
        }
    }
}

/// Every `src` the contract states anything under, per operator (and `runtime`).
fn sources() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let v: Value = serde_json::from_str(CONTRACT_JSON).unwrap();
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut collect = |key: &str, node: &Value| {
        let set = out.entry(key.to_string()).or_default();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match n {
                Value::Object(m) => {
                    for (k, v) in m {
                        if k == "src" || k == "support_src" {
                            if let Some(s) = v.as_str() {
                                set.insert(s.to_string());
                            }
                        }
                        stack.push(v);
                    }
                }
                Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
    };
    for (k, node) in v.as_object().unwrap() {
        match k.as_str() {
            "_runtime" => collect("runtime", node),
            _ if !k.starts_with('_') => collect(k, node),
            _ => {}
        }
    }
    out
}

#[test]
fn every_rule_cites_a_fact_of_the_contract() {
    let srcs = sources();
    for r in rules::ALL {
        let set = srcs
            .get(r.op)
            .unwrap_or_else(|| panic!("rule for {} names no contract section", r.op));
        assert!(
            set.contains(r.src),
            "rule {:?} of {} cites {:?}, which the contract no longer states",
            r.text,
            r.op,
            r.src
        );
    }
    assert!(srcs["runtime"].contains(rules::INPLACE_SRC));
}

#[test]
fn cube_math_contradictions_take_the_stricter_reading() {
    let v: Value = serde_json::from_str(CONTRACT_JSON).unwrap();
    let c = contract().unwrap();
    let mut n = 0;
    for (op, node) in v.as_object().unwrap() {
        for p in Product::ALL {
            let Some(conflicts) = node.get(p.key()).and_then(|e| e.get("cube_math_conflicts"))
            else {
                continue;
            };
            for (dt, modes) in conflicts.as_object().unwrap() {
                for mode in modes.as_object().unwrap().keys() {
                    let m: i8 = mode[mode.find('(').unwrap() + 1..mode.len() - 1]
                        .parse()
                        .unwrap();
                    let cell = c.ops[op].entries[&p].cube_math[dt.as_str()][&m];
                    assert_eq!(cell, CubeCell::Error, "{op} {p:?} {dt} {mode}");
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 10, "{n} contradictions");
}
