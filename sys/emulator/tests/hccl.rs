//! HCCL across processes (this test binary re-run as a child rank) and threads.
mod common;

use std::ffi::{c_void, CStr};
use std::os::raw::c_char;
use std::process::{Command, Stdio};
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

const ROOT_VAR: &str = "SENET_EMU_TEST_HCCL_ROOT";
const MODE_VAR: &str = "SENET_EMU_TEST_HCCL_MODE";

fn root_text(root: &HcclRootInfo) -> String {
    unsafe { CStr::from_ptr(root.internal.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn root_from(text: &str) -> HcclRootInfo {
    let mut r = HcclRootInfo::default();
    for (o, b) in r.internal.iter_mut().zip(text.bytes()) {
        *o = b as c_char;
    }
    r
}

fn ok(rc: HcclResult) {
    assert_eq!(rc, HcclResult::HCCL_SUCCESS, "{}", err());
}

fn spawn_child(root: &HcclRootInfo, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_rank", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROOT_VAR, root_text(root))
        .env(MODE_VAR, mode)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// The child rank: does nothing in a normal test run.
#[test]
fn child_rank() {
    let (Ok(text), Ok(mode)) = (std::env::var(ROOT_VAR), std::env::var(MODE_VAR)) else {
        return;
    };
    let _serial = init();
    let root = root_from(&text);
    let mut comm = null_mut();
    ok(unsafe { HcclCommInitRootInfo(2, &root, 1, &mut comm) });
    if mode == "die" {
        std::process::exit(0);
    }
    let p = upload(&[10.0, 20.0, 30.0]);
    ok(HcclAllReduce(
        p,
        p,
        3,
        HcclDataType::HCCL_DATA_TYPE_FP32,
        HcclReduceOp::HCCL_REDUCE_SUM,
        comm,
        null_mut(),
    ));
    let q = upload(&[5.0, 6.0]);
    ok(HcclBroadcast(
        q,
        2,
        HcclDataType::HCCL_DATA_TYPE_FP32,
        1,
        comm,
        null_mut(),
    ));
    ok(HcclBarrier(comm, null_mut()));
    assert_eq!(aclrtSynchronizeStream(null_mut()), 0, "{}", err());
    assert_eq!(download(p, 3), vec![11.0, 22.0, 33.0]);
    ok(HcclCommDestroy(comm));
}

#[test]
fn two_process_all_reduce() {
    let _serial = init();
    let mut root = HcclRootInfo::default();
    ok(unsafe { HcclGetRootInfo(&mut root) });
    let mut child = spawn_child(&root, "work");
    let mut comm = null_mut();
    ok(unsafe { HcclCommInitRootInfo(2, &root, 0, &mut comm) });
    let (mut size, mut rank) = (0, 9);
    ok(unsafe { HcclGetRankSize(comm, &mut size) });
    ok(unsafe { HcclGetRankId(comm, &mut rank) });
    assert_eq!((size, rank), (2, 0));
    let p = upload(&[1.0, 2.0, 3.0]);
    // (A synchronous copy would run the queue: upload before queueing.)
    let q = upload(&[0.0, 0.0]);
    ok(HcclAllReduce(
        p,
        p,
        3,
        HcclDataType::HCCL_DATA_TYPE_FP32,
        HcclReduceOp::HCCL_REDUCE_SUM,
        comm,
        null_mut(),
    ));
    // Queued, not run: the buffer is unchanged until the stream runs.
    let mut host = [0f32; 3];
    assert_eq!(
        aclrtMemcpyAsync(
            host.as_mut_ptr() as *mut c_void,
            12,
            p,
            12,
            aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST,
            null_mut()
        ),
        0
    );
    ok(HcclBroadcast(
        q,
        2,
        HcclDataType::HCCL_DATA_TYPE_FP32,
        1,
        comm,
        null_mut(),
    ));
    ok(HcclBarrier(comm, null_mut()));
    assert_eq!(host, [0.0; 3]);
    assert_eq!(aclrtSynchronizeStream(null_mut()), 0, "{}", err());
    assert_eq!(host, [11.0, 22.0, 33.0]);
    assert_eq!(download(q, 2), vec![5.0, 6.0]);
    let mut async_err = HcclResult::HCCL_E_INTERNAL;
    ok(unsafe { HcclGetCommAsyncError(comm, &mut async_err) });
    assert_eq!(async_err, HcclResult::HCCL_SUCCESS);
    ok(HcclCommDestroy(comm));
    assert!(child.wait().unwrap().success(), "the child rank failed");
}

#[test]
fn a_dead_peer_fails_the_collective_promptly() {
    let _serial = init();
    let mut root = HcclRootInfo::default();
    ok(unsafe { HcclGetRootInfo(&mut root) });
    let mut child = spawn_child(&root, "die");
    let mut comm = null_mut();
    ok(unsafe { HcclCommInitRootInfo(2, &root, 0, &mut comm) });
    assert!(child.wait().unwrap().success());
    let mut s = null_mut();
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0);
    let p = upload(&[1.0]);
    ok(HcclAllReduce(
        p,
        p,
        1,
        HcclDataType::HCCL_DATA_TYPE_FP32,
        HcclReduceOp::HCCL_REDUCE_MAX,
        comm,
        s,
    ));
    let t = Instant::now();
    assert_eq!(aclrtSynchronizeStream(s), ACL_ERROR_RT_INTERNAL_ERROR);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(err().contains("HcclAllReduce failed"), "{}", err());
    let mut async_err = HcclResult::HCCL_SUCCESS;
    ok(unsafe { HcclGetCommAsyncError(comm, &mut async_err) });
    assert!(
        async_err == HcclResult::HCCL_E_REMOTE || async_err == HcclResult::HCCL_E_TCP_TRANSFER,
        "{async_err:?}"
    );
    assert_eq!(aclrtDestroyStream(s), 0);
    ok(HcclCommDestroy(comm));
}

#[test]
fn rank_table_threads_and_single_rank() {
    let _serial = init();
    // A single-rank communicator works without sockets.
    let mut root = HcclRootInfo::default();
    ok(unsafe { HcclGetRootInfo(&mut root) });
    let mut comm = null_mut();
    ok(unsafe { HcclCommInitRootInfo(1, &root, 0, &mut comm) });
    let p = upload(&[4.0]);
    let q = upload(&[0.0]);
    ok(HcclAllReduce(
        p,
        q,
        1,
        HcclDataType::HCCL_DATA_TYPE_FP32,
        HcclReduceOp::HCCL_REDUCE_SUM,
        comm,
        null_mut(),
    ));
    assert_eq!(download(q, 1), vec![4.0]);
    ok(HcclCommDestroy(comm));
    assert_eq!(HcclCommDestroy(comm), HcclResult::HCCL_E_PARA);
    let msg = unsafe { CStr::from_ptr(HcclGetErrorString(HcclResult::HCCL_E_REMOTE)) };
    assert_eq!(msg.to_str().unwrap(), "error on a remote rank");

    // A two-rank table (devices 0 and 1), one thread per rank; INT32 MIN.
    let dir = std::env::temp_dir().join(format!("senet-emu-hccl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("rank_table.json");
    std::fs::write(
        &table,
        r#"{"status":"completed","version":"1.0","server_count":"1","server_list":[{"server_id":"node_0",
        "device":[{"device_id":"0","device_ip":"192.168.100.101","rank_id":"0"},
                  {"device_id":"1","device_ip":"192.168.100.102","rank_id":"1"}]}]}"#,
    )
    .unwrap();
    let path = c(table.to_str().unwrap());
    let threads: Vec<_> = (0..2u32)
        .map(|rank| {
            let path = path.clone();
            std::thread::spawn(move || {
                assert_eq!(aclrtSetDevice(rank as i32), 0);
                let mut comm = null_mut();
                ok(unsafe { HcclCommInitClusterInfo(path.as_ptr(), rank, &mut comm) });
                let v = [rank as i32 * 10 + 3, 7 - rank as i32];
                let mut p = null_mut();
                let policy = aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_ONLY;
                assert_eq!(unsafe { aclrtMalloc(&mut p, 8, policy) }, 0);
                let h2d = aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE;
                assert_eq!(aclrtMemcpy(p, 8, v.as_ptr() as *const c_void, 8, h2d), 0);
                ok(HcclAllReduce(
                    p,
                    p,
                    2,
                    HcclDataType::HCCL_DATA_TYPE_INT32,
                    HcclReduceOp::HCCL_REDUCE_MIN,
                    comm,
                    null_mut(),
                ));
                assert_eq!(aclrtSynchronizeStream(null_mut()), 0, "{}", err());
                let mut out = [0i32; 2];
                let d2h = aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST;
                assert_eq!(
                    aclrtMemcpy(out.as_mut_ptr() as *mut c_void, 8, p, 8, d2h),
                    0,
                    "{}",
                    err()
                );
                ok(HcclCommDestroy(comm));
                out
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), [3, 6]);
    }
    // The wrong device for the rank is refused.
    let mut comm = null_mut();
    assert_eq!(
        unsafe { HcclCommInitClusterInfo(path.as_ptr(), 1, &mut comm) },
        HcclResult::HCCL_E_PARA
    );
    assert!(err().contains("puts rank 1 on device 1"), "{}", err());
    let _ = std::fs::remove_dir_all(&dir);
}
