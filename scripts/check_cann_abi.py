#!/usr/bin/env python3
"""Checks senet's CANN declarations (sys/include/cann_subset.h) against the vendor's.

* Runtime (acl*, aclrt*) and HCCL (Hccl*) prototypes, the enums (aclrtMemcpyKind, aclDataType,
  HcclResult, ...) and the error codes (ACL_ERROR_*) are compared with the headers shipped in the
  torch-npu wheel from PyPI (pinned below, sha256-checked, cached under ~/.cache/senet/cann-abi):
  return type, number, order, types and names of the parameters, every enum value, and for
  HcclResult and aclrtMemcpyKind that every vendor code has its name in our header.
* The aclnn object API (aclCreate*/aclDestroy*) is compared with the function-pointer typedefs
  torch-npu's op-plugin declares for it (parameter types; its names are snake_case).
* Every aclnn operator declaration is compared with the `_signature` of that operator in
  shared/reference/aclnn-contract.json (taken from the hicann op_api headers).

Declarations with no vendor counterpart in those sources are listed as unchecked. Exit status 1
on any mismatch. The vendor headers are read from the cached wheel and never copied into the
repository (their licence forbids it).

Parsing uses libclang's Python bindings (`libclang` from PyPI, pinned); if they are missing the
script creates a virtual environment in the cache, installs them there and re-runs itself.
Standard headers come from a tiny built-in shim (fixed-width integer types, size_t, bool), so
the result does not depend on the machine's C library.

Usage:
  check_cann_abi.py [--header PATH] [--contract PATH]   check (PATH defaults: the repository's)
  check_cann_abi.py --self-test                          the checker must fail on altered copies
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "sys" / "include" / "cann_subset.h"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "senet" / "cann-abi"

# torch-npu 2.10.0.post7 for CPython 3.11 on x86_64 (its acl/hccl headers are platform-neutral).
TORCH_NPU_VERSION = "2.10.0.post7"
TORCH_NPU_WHEEL = "torch_npu-2.10.0.post7-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_NPU_SHA256 = "e30908176906d894199ab8eb6bb61b26c69768837125c69d028a1deb8b1f22f1"
TORCH_NPU_PLATFORM = ("manylinux_2_28_x86_64", "3.11")
LIBCLANG = "libclang==18.1.1"

# Where the vendor declarations live inside the wheel.
INCLUDE = "torch_npu/include/"
ACL_INC = INCLUDE + "third_party/acl/inc"
OP_API_COMMON = INCLUDE + "third_party/op-plugin/op_plugin/utils/op_api_common_base.h"

# Our enums whose every vendor value must be named (codes a caller prints by name).
COMPLETE_ENUMS = {"HcclResult", "aclrtMemcpyKind"}

SHIM = {
    "stdint.h": """
typedef signed char int8_t; typedef unsigned char uint8_t;
typedef short int16_t; typedef unsigned short uint16_t;
typedef int int32_t; typedef unsigned int uint32_t;
typedef long int64_t; typedef unsigned long uint64_t;
typedef long intptr_t; typedef unsigned long uintptr_t;
""",
    "stddef.h": "typedef unsigned long size_t;\n#ifndef NULL\n#define NULL ((void*)0)\n#endif\n",
    "stdbool.h": "#ifndef __cplusplus\n#define bool _Bool\n#define true 1\n#define false 0\n#endif\n",
}


def fail(msg):
    print(f"check_cann_abi: {msg}", file=sys.stderr)
    sys.exit(2)


def ensure_clang():
    """Imports clang.cindex, bootstrapping a cached virtual environment if needed."""
    try:
        import clang.cindex  # noqa: F401

        return
    except ImportError:
        pass
    venv = CACHE / "venv"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        fail(f"{LIBCLANG} is not importable in {venv}")
    if not py.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", LIBCLANG],
        check=True,
    )
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel():
    """The pinned torch-npu wheel, downloaded once with pip and checked against its sha256."""
    path = CACHE / TORCH_NPU_WHEEL
    if path.exists() and sha256(path) == TORCH_NPU_SHA256:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    platform, python = TORCH_NPU_PLATFORM
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--platform", platform,
         "--python-version", python, "-d", str(CACHE), f"torch-npu=={TORCH_NPU_VERSION}"],
        check=True,
    )
    if not path.exists():
        fail(f"pip did not produce {path}")
    got = sha256(path)
    if got != TORCH_NPU_SHA256:
        path.unlink()
        fail(f"{TORCH_NPU_WHEEL}: sha256 {got}, expected {TORCH_NPU_SHA256}")
    return path


def headers(whl):
    """Extracts the acl/hccl headers (and op-plugin's aclnn typedefs) once; returns the root."""
    out = CACHE / f"headers-{TORCH_NPU_VERSION}"
    done = out / ".complete"
    if done.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            wanted = name.startswith(INCLUDE + "third_party/acl/") or name.startswith(
                INCLUDE + "third_party/hccl/") or name == OP_API_COMMON
            if wanted and name.endswith(".h"):
                z.extract(name, out)
    done.write_text("")
    return out


class Proto:
    """A function prototype: return type and (type, name) per parameter."""

    def __init__(self, ret, params, where):
        self.ret, self.params, self.where = ret, params, where

    def text(self):
        return f"{self.ret} ({', '.join(f'{t} {n}' for t, n in self.params)})"


def norm_type(t):
    """Canonical spelling without top-level qualifiers, `enum`/`struct` keywords and `_Bool`;
    a struct keeps the name it is written with (struct tags are not part of the ABI; the
    layouts are compared separately)."""
    import clang.cindex as ci

    c = t.get_canonical()
    inner = c
    while inner.kind == ci.TypeKind.POINTER:
        inner = inner.get_pointee()
    s = t.spelling if inner.kind == ci.TypeKind.RECORD else c.spelling
    if c.kind != ci.TypeKind.POINTER and s.startswith("const "):
        s = s[len("const "):]
    s = s.replace("_Bool", "bool")
    s = re.sub(r"\b(enum|struct) ", "", s)
    return re.sub(r"\s+", " ", s).replace(" *", "*").strip()


def parse(path, includes, source=None, lang="c"):
    """Functions (and function-pointer typedefs `_name`), enums and integer constants of a file."""
    import clang.cindex as ci

    shim = CACHE / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    for name, text in SHIM.items():
        (shim / name).write_text(text)
    args = ["-x", lang, "-nostdinc", "-I", str(shim)] + [f"-I{i}" for i in includes]
    args += ["-DACL_FUNC_VISIBILITY=", "-DHCCL_API_VISIBILITY="]
    unsaved = [(str(path), source)] if source is not None else None
    opts = ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD
    tu = ci.Index.create().parse(str(path), args=args, unsaved_files=unsaved, options=opts)
    fatal = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    funcs, enums, consts, sizes = {}, {}, {}, {}
    for c in tu.cursor.walk_preorder():
        if c.kind == ci.CursorKind.MACRO_DEFINITION and re.match(r"(ACL|ACLNN|HCCL)_", c.spelling):
            toks = [t.spelling for t in c.get_tokens()]
            if len(toks) == 2 and re.fullmatch(r"-?\d+[uUlL]*", toks[1]):
                consts.setdefault(c.spelling, int(toks[1].rstrip("uUlL")))
            continue
        where = f"{c.location.file}:{c.location.line}" if c.location.file else "?"
        if c.kind == ci.CursorKind.FUNCTION_DECL:
            params = [(norm_type(a.type), a.spelling) for a in c.get_arguments()]
            funcs.setdefault(c.spelling, Proto(norm_type(c.result_type), params, where))
        elif c.kind == ci.CursorKind.TYPEDEF_DECL and (
                c.underlying_typedef_type.get_canonical().kind == ci.TypeKind.RECORD):
            size = c.underlying_typedef_type.get_canonical().get_size()
            if size > 0:
                sizes.setdefault(c.spelling, size)
        elif c.kind == ci.CursorKind.TYPEDEF_DECL and c.spelling.startswith("_acl"):
            ptr = c.underlying_typedef_type.get_canonical()
            if ptr.kind == ci.TypeKind.POINTER and ptr.get_pointee().kind == ci.TypeKind.FUNCTIONPROTO:
                fn = ptr.get_pointee()
                names = [a.spelling for a in c.get_children() if a.kind == ci.CursorKind.PARM_DECL]
                params = [(norm_type(t), n) for t, n in zip(fn.argument_types(), names)]
                funcs.setdefault(c.spelling[1:], Proto(norm_type(fn.get_result()), params, where))
        elif c.kind == ci.CursorKind.ENUM_DECL and c.spelling:
            enums.setdefault(c.spelling, {e.spelling: e.enum_value for e in c.get_children()})
        elif c.kind == ci.CursorKind.VAR_DECL and re.match(r"(ACL|ACLNN|HCCL)_", c.spelling):
            toks = [t.spelling for t in c.get_tokens()]
            if "=" in toks:
                value = "".join(toks[toks.index("=") + 1:]).rstrip(";")
                try:
                    consts[c.spelling] = int(value.rstrip("uUlL"), 0)
                except ValueError:
                    pass
    return funcs, enums, consts, sizes, fatal


def ours(header):
    funcs, enums, consts, sizes, fatal = parse(header, [])
    if fatal:
        fail(f"{header} does not parse: {fatal[0]}")
    funcs = {k: v for k, v in funcs.items() if Path(v.where.split(":")[0]) == Path(header)}
    return funcs, enums, consts, sizes


def vendor(root):
    """Declarations of the wheel's acl and hccl headers and op-plugin's aclnn typedefs."""
    inc = [root / INCLUDE, root / ACL_INC, root / INCLUDE / "third_party/hccl/inc"]
    main = "#include <acl/acl.h>\n#include <hccl/hccl.h>\n#include <hccl/hccl_types.h>\n"
    funcs, enums, consts, sizes, _ = parse(root / "vendor_main.c", inc, main)
    # op-plugin's typedefs sit in a C++ header among torch includes: parse just those statements.
    text = (root / OP_API_COMMON).read_text(errors="replace")
    typedefs = re.findall(r"typedef struct acl\w+ acl\w+;|typedef [^;]*\(\*_acl\w+\)\([^;]*\);", text)
    snippet = "#include <stdbool.h>\n#include <acl/acl_base.h>\n" + "\n".join(typedefs) + "\n"
    f2, _, _, _, _ = parse(root / "vendor_nnopbase.c", inc, snippet)
    return funcs, enums, consts, sizes, f2


def contract_protos(contract, header, names):
    """The prototypes of `_signature` for each declared aclnn function, parsed with our types."""
    import json

    data = json.loads(Path(contract).read_text())
    sigs = {}
    nodes = [v for k, v in data.items() if not k.startswith("_")]
    nodes += list(data.get("_fused_optimizers", {}).values())
    nodes += list(data.get("_foreach", {}).values())
    for node in nodes:
        for decl in node.get("_signature", "").split("; "):
            m = re.match(r"\s*(aclnn\w+)\s*\(", decl)
            if m and m.group(1) in names:
                sigs[m.group(1)] = decl.strip().rstrip(";")
    # The second phase has one form for every operator (two_phase_api.md); the contract spells
    # it out for aclnnConvolution, the template for the launches it does not list.
    template = sigs.get("aclnnConvolution")
    for name in names:
        if name not in sigs and not name.endswith("GetWorkspaceSize") and template:
            sigs[name] = template.replace("aclnnConvolution(", name + "(", 1)
    lines = [f'#include "{header}"']
    for name, decl in sigs.items():
        lines.append("aclnnStatus " + decl.replace(name + "(", "__contract__" + name + "(", 1) + ";")
    funcs, _, _, _, fatal = parse(
        Path(header).parent / "contract_main.c", [], "\n".join(lines) + "\n")
    if fatal:
        fail(f"the contract signatures do not parse: {fatal[0]}")
    out = {k[len("__contract__"):]: v for k, v in funcs.items() if k.startswith("__contract__")}
    for name, proto in out.items():
        proto.where = f"aclnn-contract.json _signature of {name}"
    return out


def compare_proto(name, mine, theirs, loose_names=False):
    """Differences between two prototypes (empty if equal)."""
    key = (lambda n: n.replace("_", "").lower()) if loose_names else (lambda n: n)
    out = []
    if mine.ret != theirs.ret:
        out.append(f"returns {mine.ret}, vendor {theirs.ret}")
    if len(mine.params) != len(theirs.params):
        out.append(f"{len(mine.params)} parameters, vendor {len(theirs.params)}")
    for i, ((mt, mn), (vt, vn)) in enumerate(zip(mine.params, theirs.params)):
        if mt != vt or key(mn) != key(vn):
            out.append(f"parameter {i + 1}: `{mt} {mn}`, vendor `{vt} {vn}`")
    return [f"{name}: {d}\n    ours:   {mine.text()}\n    vendor: {theirs.text()} ({theirs.where})"
            for d in out]


def check(header, contract):
    ensure_clang()
    root = headers(wheel())
    my_funcs, my_enums, my_consts, my_sizes = ours(header)
    v_funcs, v_enums, v_consts, v_sizes, v_nnop = vendor(root)
    aclnn = {n for n in my_funcs if n.startswith("aclnn") and n not in ("aclnnInit", "aclnnFinalize")}
    c_funcs = contract_protos(contract, header, aclnn)
    errors, unchecked, checked = [], [], 0
    for name, proto in sorted(my_funcs.items()):
        if name in aclnn:
            theirs, loose = c_funcs.get(name), False
        elif name in v_funcs:
            theirs, loose = v_funcs[name], False
        else:
            theirs, loose = v_nnop.get(name), True
        if theirs is None:
            unchecked.append(name)
            continue
        checked += 1
        errors += compare_proto(name, proto, theirs, loose)
    for enum, values in sorted(my_enums.items()):
        theirs = v_enums.get(enum)
        if theirs is None:
            unchecked.append(f"enum {enum}")
            continue
        checked += 1
        for k, v in values.items():
            if k not in theirs:
                errors.append(f"enum {enum}: {k} = {v} is not a vendor value")
            elif theirs[k] != v:
                errors.append(f"enum {enum}: {k} = {v}, vendor {theirs[k]}")
        if enum in COMPLETE_ENUMS:
            for k, v in theirs.items():
                if k not in values and not k.endswith("_RESERVED"):
                    errors.append(f"enum {enum}: vendor value {k} = {v} has no name in our header")
    for k, v in sorted(my_sizes.items()):
        if k in v_sizes:
            checked += 1
            if v_sizes[k] != v:
                errors.append(f"struct {k}: {v} bytes, vendor {v_sizes[k]}")
    for k, v in sorted(my_consts.items()):
        if k in v_consts:
            checked += 1
            if v_consts[k] != v:
                errors.append(f"{k} = {v}, vendor {v_consts[k]}")
        else:
            unchecked.append(k)
    print(f"check_cann_abi: {header} against torch-npu {TORCH_NPU_VERSION} and {contract}: "
          f"{checked} declarations checked, {len(errors)} mismatches")
    if unchecked:
        print("  no vendor declaration to compare in these sources: " + ", ".join(unchecked))
    for e in errors:
        print("  MISMATCH " + e)
    return not errors


def self_test(contract):
    """The checker must reject altered copies of the header: a runtime prototype, an HCCL enum
    value and an aclnn prototype, each changed in one place."""
    text = HEADER.read_text()
    cases = [
        ("aclrtMemcpy", "size_t count,\n                     aclrtMemcpyKind kind);",
         "uint32_t count,\n                     aclrtMemcpyKind kind);"),
        ("HCCL_E_OOM", "HCCL_E_OOM = 24", "HCCL_E_OOM = 25"),
        ("aclnnMmGetWorkspaceSize", "aclnnMmGetWorkspaceSize(const aclTensor *self, const aclTensor *mat2,",
         "aclnnMmGetWorkspaceSize(const aclTensor *mat2, const aclTensor *self,"),
    ]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for what, old, new in cases:
            if text.count(old) != 1:
                fail(f"self-test: the text to alter for {what} is not in {HEADER} exactly once")
            altered = Path(tmp) / "cann_subset.h"
            altered.write_text(text.replace(old, new))
            r = subprocess.run([sys.executable, __file__, "--header", str(altered),
                                "--contract", str(contract)], capture_output=True, text=True)
            caught = r.returncode == 1 and any(
                line.startswith("  MISMATCH") and what in line for line in r.stdout.splitlines())
            print(f"check_cann_abi self-test: {what} altered -> "
                  f"{'caught' if caught else 'NOT CAUGHT'}")
            if not caught:
                print(r.stdout, r.stderr)
                ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", default=str(HEADER), help="the header to check")
    ap.add_argument("--contract", help="aclnn-contract.json (default: the emulator's copy)")
    ap.add_argument("--self-test", action="store_true", help="check the checker")
    a = ap.parse_args()
    contract = Path(a.contract or ROOT / "sys" / "emulator" / "contract" / "aclnn-contract.json")
    ensure_clang()
    if a.self_test:
        sys.exit(0 if self_test(contract) else 1)
    sys.exit(0 if check(Path(a.header).resolve(), contract) else 1)


if __name__ == "__main__":
    main()
