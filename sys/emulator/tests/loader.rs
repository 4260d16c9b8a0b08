//! senet's loader (`senet-cann-sys`) opens the emulator's cdylib through `SENET_CANN_LIB` and
//! every symbol it calls resolves; a small job runs through the loaded function pointers.
use std::ffi::c_void;
use std::ptr::null_mut;

use senet_cann_sys::*;

#[test]
fn the_loader_opens_the_cdylib() {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libsenet_cann_emu.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    std::env::set_var(EXPLICIT_PATH_VAR, &lib);
    let c = cann().unwrap_or_else(|e| panic!("{e}"));
    let (h, _) = hccl().unwrap_or_else(|e| panic!("{e}"));
    unsafe {
        let acl = &c.acl;
        assert_eq!((acl.aclInit.as_ref().unwrap())(std::ptr::null()), 0);
        assert_eq!((acl.aclrtSetDevice.as_ref().unwrap())(0), 0);
        let mut p = null_mut();
        let rc = (acl.aclrtMalloc.as_ref().unwrap())(
            &mut p,
            16,
            aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST,
        );
        assert_eq!(rc, 0);
        let v = [1f32, 2.0, 3.0, 4.0];
        let rc = (acl.aclrtMemcpy.as_ref().unwrap())(
            p,
            16,
            v.as_ptr() as *const c_void,
            16,
            aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE,
        );
        assert_eq!(rc, 0);
        let dims = [4i64];
        let t = (c.nnopbase.aclCreateTensor.as_ref().unwrap())(
            dims.as_ptr(),
            1,
            aclDataType::ACL_FLOAT,
            [1i64].as_ptr(),
            0,
            aclFormat::ACL_FORMAT_ND,
            dims.as_ptr(),
            1,
            p,
        );
        assert!(!t.is_null());
        let mut alpha = 2f32;
        let s = (c.nnopbase.aclCreateScalar.as_ref().unwrap())(
            &mut alpha as *mut f32 as *mut c_void,
            aclDataType::ACL_FLOAT,
        );
        let (mut ws, mut ex) = (0u64, null_mut());
        let op = &c.opapi;
        assert_eq!(
            (op.aclnnInplaceMulsGetWorkspaceSize.as_ref().unwrap())(t, s, &mut ws, &mut ex),
            0
        );
        assert_eq!(
            (op.aclnnInplaceMuls.as_ref().unwrap())(null_mut(), ws, ex, null_mut()),
            0
        );
        // aclrtMemcpy does not wait for queued work (contract Part D): synchronise first.
        assert_eq!(
            (acl.aclrtSynchronizeStream.as_ref().unwrap())(null_mut()),
            0
        );
        let mut out = [0f32; 4];
        let rc = (acl.aclrtMemcpy.as_ref().unwrap())(
            out.as_mut_ptr() as *mut c_void,
            16,
            p,
            16,
            aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST,
        );
        assert_eq!(rc, 0);
        assert_eq!(out, [2.0, 4.0, 6.0, 8.0]);
        // Every operator the header declares resolved.
        assert!(op.aclnnConvolutionBackwardGetWorkspaceSize.is_ok());
        assert!(op.aclnnMaxPool2dWithMaskBackward.is_ok());
        assert!(op.aclnnInplaceZero.is_ok());
        assert!(op.aclnnFusedSgdGetWorkspaceSize.is_ok() && op.aclnnFusedSgd.is_ok());
        assert!(h.HcclGetCommAsyncError.is_ok() && h.HcclCommInitClusterInfo.is_ok());
    }
}

/// Every function `cann_subset.h` declares is exported by the cdylib.
#[test]
fn every_declared_function_is_exported() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../include/cann_subset.h"
    ))
    .unwrap();
    let mut names = Vec::new();
    for line in header.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("SENET_ACLNN_LAUNCH(") {
            names.push(rest.trim_end_matches(");").to_string());
            continue;
        }
        if line.starts_with('#') || line.starts_with("typedef") || line.starts_with('*') {
            continue;
        }
        if let Some(open) = line.find('(') {
            let head = &line[..open];
            if let Some(name) = head.split([' ', '*']).next_back() {
                if name.starts_with("acl") || name.starts_with("Hccl") {
                    names.push(name.to_string());
                }
            }
        }
    }
    assert!(names.len() > 100, "parsed only {} names", names.len());
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().join("libsenet_cann_emu.so");
    let lib = unsafe { libloading::Library::new(&path) }.unwrap();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| unsafe { lib.get::<*const ()>(n.as_bytes()) }.is_err())
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}
