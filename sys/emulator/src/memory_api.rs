//! The exported ACL memory API: device and host allocation, `aclrtGetMemInfo`, copies and
//! memsets, synchronous and on a stream (`libascendcl.so`'s memory part of `cann_subset.h`).
use std::ffi::c_void;

use senet_cann_sys::*;

use crate::api::{Fail, Res};
use crate::memory::Kind;
use crate::runtime_api::{acl, invalid, nonnull};
use crate::state::{self, with_emu};

/// Allocates device memory on the current device: 64-byte aligned start, `align_up(size, 32) +
/// 32` bytes charged to the device's `SENET_EMU_HBM_BYTES` budget, filled with 0xFF bytes.
#[no_mangle]
pub unsafe extern "C" fn aclrtMalloc(
    devPtr: *mut *mut c_void,
    size: usize,
    policy: aclrtMemMallocPolicy,
) -> aclError {
    acl("aclrtMalloc", || {
        nonnull(devPtr, "devPtr")?;
        let p = with_emu(|e| {
            let device = e.current()?.1.device;
            let hbm = e.config()?.hbm;
            if size == 0 {
                return Err(invalid("size is 0"));
            }
            if policy.0 > 5 {
                return Err(invalid(format!("unknown memory policy {}", policy.0)));
            }
            let reserved = crate::memory::reserved_size(size)
                .ok_or_else(|| invalid(format!("size {size} is too large")))?;
            let used = e.memory.device_bytes(device);
            if used + reserved as u64 > hbm {
                return Err(Fail::new(
                    ACL_ERROR_RT_MEMORY_ALLOCATION,
                    format!(
                        "out of device memory on device {device}: {size} bytes ({reserved} reserved) requested, {} of {hbm} free",
                        hbm - used
                    ),
                ));
            }
            e.memory
                .allocate(size, Kind::Device(device))
                .ok_or_else(|| {
                    Fail::new(
                        ACL_ERROR_RT_MEMORY_ALLOCATION,
                        format!("the host could not provide {reserved} bytes"),
                    )
                })
        })?;
        *devPtr = p as *mut c_void;
        Ok(())
    })
}

fn free_common(p: *mut c_void, host: bool) -> Res<()> {
    with_emu(|e| {
        e.require_init()?;
        if p.is_null() {
            return Err(invalid("pointer is null"));
        }
        let addr = p as usize;
        let (want, other) = if host {
            ("aclrtMallocHost", "aclrtMalloc (free it with aclrtFree)")
        } else {
            (
                "aclrtMalloc",
                "aclrtMallocHost (free it with aclrtFreeHost)",
            )
        };
        let Some(a) = e.memory.at(addr) else {
            return Err(invalid(match e.memory.containing(addr) {
                Some((start, _)) => format!(
                    "{p:p} is not the start of an allocation: it is {} bytes into the allocation at {start:#x}",
                    addr - start
                ),
                None => format!(
                    "{p:p} was not returned by {want} (or was already freed)"
                ),
            }));
        };
        if (a.kind == Kind::Host) != host {
            return Err(invalid(format!("{p:p} was allocated by {other}")));
        }
        let n = e.memory.pending_uses(addr);
        if n > 0 {
            return Err(invalid(format!(
                "{p:p} is still used by {n} queued stream task(s) that have not run; synchronise the stream before freeing"
            )));
        }
        e.memory.release(addr);
        e.order.forget(addr);
        Ok(())
    })
}

/// Frees device memory. Errors: null, a pointer that is not an allocation's start, pinned host
/// memory, or memory still used by queued, not yet run stream work.
#[no_mangle]
pub extern "C" fn aclrtFree(devPtr: *mut c_void) -> aclError {
    acl("aclrtFree", || free_common(devPtr, false))
}

/// Allocates pinned host memory (tracked apart from device memory; zero-filled).
#[no_mangle]
pub unsafe extern "C" fn aclrtMallocHost(hostPtr: *mut *mut c_void, size: usize) -> aclError {
    acl("aclrtMallocHost", || {
        nonnull(hostPtr, "hostPtr")?;
        let p = with_emu(|e| {
            e.require_init()?;
            if size == 0 {
                return Err(invalid("size is 0"));
            }
            e.memory
                .allocate(size, Kind::Host)
                .ok_or_else(|| Fail::new(ACL_ERROR_BAD_ALLOC, "the host is out of memory"))
        })?;
        *hostPtr = p as *mut c_void;
        Ok(())
    })
}

/// Frees pinned host memory from `aclrtMallocHost`.
#[no_mangle]
pub extern "C" fn aclrtFreeHost(hostPtr: *mut c_void) -> aclError {
    acl("aclrtFreeHost", || free_common(hostPtr, true))
}

/// Free and total HBM of the current device: total is `SENET_EMU_HBM_BYTES`, free is total
/// minus the bytes reserved by live allocations.
#[no_mangle]
pub unsafe extern "C" fn aclrtGetMemInfo(
    attr: aclrtMemAttr,
    free: *mut usize,
    total: *mut usize,
) -> aclError {
    acl("aclrtGetMemInfo", || {
        nonnull(free, "free")?;
        nonnull(total, "total")?;
        let (f, t) = with_emu(|e| {
            let device = e.current()?.1.device;
            if attr.0 > 5 {
                return Err(invalid(format!("unknown aclrtMemAttr {}", attr.0)));
            }
            let hbm = e.config()?.hbm;
            Ok((hbm.saturating_sub(e.memory.device_bytes(device)), hbm))
        })?;
        *free = f as usize;
        *total = t as usize;
        Ok(())
    })
}

/// Validates a copy and returns the allocations it touches.
fn check_copy(
    e: &state::Emu,
    dst: usize,
    dest_max: usize,
    src: usize,
    count: usize,
    kind: aclrtMemcpyKind,
    is_async: bool,
) -> Res<Vec<usize>> {
    e.current()?;
    if dst == 0 {
        return Err(invalid("dst is null"));
    }
    if src == 0 {
        return Err(invalid("src is null"));
    }
    if count > dest_max {
        return Err(invalid(format!(
            "count {count} is larger than destMax {dest_max}"
        )));
    }
    let (dst_dev, src_dev) = match kind {
        aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_HOST => (false, false),
        aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE => (true, false),
        aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST => (false, true),
        aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_DEVICE => (true, true),
        other => {
            return Err(invalid(format!(
                "aclrtMemcpyKind {} is not supported by the emulator (it copies HOST_TO_HOST, HOST_TO_DEVICE, DEVICE_TO_HOST and DEVICE_TO_DEVICE)",
                other.0
            )))
        }
    };
    let mut uses = Vec::new();
    for (addr, dev, name) in [(dst, dst_dev, "dst"), (src, src_dev, "src")] {
        if dev {
            let start = e
                .memory
                .check_range(addr, count, |k| matches!(k, Kind::Device(_)))
                .map_err(|m| invalid(format!("{name} (device side): {m}")))?;
            uses.push(start);
        } else if e.memory.is_device(addr) {
            return Err(invalid(format!(
                "{name} {addr:#x} is device memory, but the copy kind says it is host memory"
            )));
        } else if let Some((start, a)) = e.memory.containing(addr) {
            // Pinned host memory: the range must fit too.
            if a.kind == Kind::Host {
                e.memory
                    .check_range(addr, count, |k| k == Kind::Host)
                    .map_err(|m| invalid(format!("{name} (pinned host): {m}")))?;
                uses.push(start);
            }
        }
    }
    if is_async && dst_dev && src_dev && (!dst.is_multiple_of(64) || !src.is_multiple_of(64)) {
        return Err(invalid(format!(
            "device-to-device aclrtMemcpyAsync needs 64-byte aligned addresses, got dst {dst:#x} and src {src:#x}"
        )));
    }
    Ok(uses)
}

/// Synchronous copy: validates, then copies at once. Work queued on streams is NOT waited for
/// ("本接口会立刻进行内存复制，函数内部不会进行隐式的device同步或流同步", contract Part D,
/// [`crate::contract::rules::MEMCPY_NO_SYNC`]): a copy of memory that queued work will write
/// sees the old contents, deterministically, because queued work runs only when synchronised.
#[no_mangle]
pub extern "C" fn aclrtMemcpy(
    dst: *mut c_void,
    destMax: usize,
    src: *const c_void,
    count: usize,
    kind: aclrtMemcpyKind,
) -> aclError {
    acl("aclrtMemcpy", || {
        with_emu(|e| {
            check_copy(e, dst as usize, destMax, src as usize, count, kind, false)?;
            crate::capture::check_unsafe(e, "aclrtMemcpy", &[])
        })?;
        // SAFETY: both ranges were checked (device side inside a live allocation; the host side
        // is the caller's promise, as with the real runtime).
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, count) };
        Ok(())
    })
}

/// Queues a copy on `stream`; the bytes move when the stream runs.
#[no_mangle]
pub extern "C" fn aclrtMemcpyAsync(
    dst: *mut c_void,
    destMax: usize,
    src: *const c_void,
    count: usize,
    kind: aclrtMemcpyKind,
    stream: aclrtStream,
) -> aclError {
    acl("aclrtMemcpyAsync", || {
        let (d, s) = (dst as usize, src as usize);
        with_emu(|e| {
            let uses = check_copy(e, d, destMax, s, count, kind, true)?;
            let st = e.stream(stream)?;
            let pinned =
                |a: usize| matches!(e.memory.containing(a), Some((_, x)) if x.kind == Kind::Host);
            let host_sides: &[usize] = match kind {
                aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE => &[s],
                aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST => &[d],
                aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_HOST => &[s, d],
                _ => &[],
            };
            if host_sides.iter().any(|&a| !pinned(a)) {
                let synced = [st.id];
                let synced: &[usize] = if e.captures.capturing(st.id) {
                    &synced
                } else {
                    &[]
                };
                crate::capture::check_unsafe(
                    e,
                    "aclrtMemcpyAsync with unpinned host memory",
                    synced,
                )?;
            }
            let run = std::sync::Arc::new(move || {
                // SAFETY: validated at enqueue; allocations in `uses` cannot be freed until
                // this task has run.
                unsafe { std::ptr::copy(s as *const u8, d as *mut u8, count) };
                Ok(())
            });
            e.enqueue(&st, "aclrtMemcpyAsync", uses, run)
                .map_err(invalid)?;
            Ok(())
        })
    })
}

fn check_memset(e: &state::Emu, dev: usize, max: usize, count: usize) -> Res<usize> {
    e.current()?;
    if dev == 0 {
        return Err(invalid("devPtr is null"));
    }
    if count > max {
        return Err(invalid(format!(
            "count {count} is larger than maxCount {max}"
        )));
    }
    e.memory
        .check_range(dev, count, |k| matches!(k, Kind::Device(_)))
        .map_err(|m| invalid(format!("devPtr: {m}")))
}

/// Synchronous memset of device memory (each byte = `value & 0xFF`), done at once: like
/// `aclrtMemcpy` it does not wait for work queued on streams.
#[no_mangle]
pub extern "C" fn aclrtMemset(
    devPtr: *mut c_void,
    maxCount: usize,
    value: i32,
    count: usize,
) -> aclError {
    acl("aclrtMemset", || {
        with_emu(|e| {
            check_memset(e, devPtr as usize, maxCount, count)?;
            crate::capture::check_unsafe(e, "aclrtMemset", &[])
        })?;
        // SAFETY: the range lies inside a live device allocation.
        unsafe { std::ptr::write_bytes(devPtr as *mut u8, value as u8, count) };
        Ok(())
    })
}

/// Queues a memset of device memory on `stream`.
#[no_mangle]
pub extern "C" fn aclrtMemsetAsync(
    devPtr: *mut c_void,
    maxCount: usize,
    value: i32,
    count: usize,
    stream: aclrtStream,
) -> aclError {
    acl("aclrtMemsetAsync", || {
        let d = devPtr as usize;
        with_emu(|e| {
            let start = check_memset(e, d, maxCount, count)?;
            let st = e.stream(stream)?;
            let run = std::sync::Arc::new(move || {
                // SAFETY: validated at enqueue; the allocation stays live until this runs.
                unsafe { std::ptr::write_bytes(d as *mut u8, value as u8, count) };
                Ok(())
            });
            e.enqueue(&st, "aclrtMemsetAsync", vec![start], run)
                .map_err(invalid)?;
            Ok(())
        })
    })
}
