//! Device memory: a caching allocator over `aclrtMalloc` and the [`Block`] RAII handle
//! (`shared/reference/cann.md` §1.3).
//!
//! * Every block is one `aclrtMalloc` (policy `ACL_MEM_MALLOC_HUGE_FIRST`), so it starts 64-byte
//!   aligned (cann.md §1.3; aclnn wants 32). Its size follows the documented rule
//!   `align_up(len, 32) + 32`, rounded up to a size class ([`size_class`]) so that blocks are
//!   reusable across requests of nearly the same size.
//! * A dropped [`Block`] goes back to a free list keyed by its size class and is handed out
//!   again for the next request of that class. This is what makes per-op workspaces and
//!   temporaries cheap. Reuse is safe without waiting for the device because senet issues all
//!   device work of a backend on one stream, in order: a block freed after an op was enqueued
//!   and handed to a later op is only touched by that later op after the earlier one finished.
//!   Host-synchronous copies ([`super::device::Ctx::upload_bytes`], downloads) synchronise the
//!   stream first, so they never race queued work on a recycled block either.
//! * Memory goes back to CANN (`aclrtFree`) only after the stream is synchronised: when an
//!   allocation fails (the cache is emptied and the allocation retried once) and when the
//!   backend's device state is dropped (every block of every buffer then has been returned).
//! * While a stream-capture graph lives (`graph.rs`), its blocks form a private pool, as
//!   torch_npu's graph pools do (`NPUGraph::capture_begin`'s `beginAllocateToPool`): the
//!   captured tasks keep the addresses they were recorded with and run at every replay, so
//!   (CANN, 单流捕获 restriction 7) their memory must stay theirs until `aclmdlRIDestroy`.
//!   Every block released while capturing (a workspace, a temporary, an fp16 copy replaced),
//!   and every block handed out while capturing, belongs to the graph: released, it goes to
//!   the graph's free lists, which only the capture draws from, never to the shared ones.
//!   Blocks allocated before the capture and used by it (weights, activations) stay with
//!   their owners, who must destroy the graph before dropping them (`TrainNet` does).
use std::collections::{BTreeMap, HashSet};
use std::ffi::c_void;
use std::sync::Arc;

use senet_cann_sys::{aclrtMemMallocPolicy, Cann};

use super::device::DeviceShared;
use super::error::{check_acl, sym};
use crate::Result;

const ACL: &str = "libascendcl.so";

/// Bytes CANN's allocator reserves for a request of `len` bytes: `align_up(len, 32) + 32`
/// (cann.md §1.3).
pub fn documented_size(len: usize) -> usize {
    len.div_ceil(32) * 32 + 32
}

/// The size class of a request of `len` bytes: [`documented_size`], then rounded up to a
/// multiple of 512 bytes below 1 MiB and to an eighth of the enclosing power of two above
/// (at most 12.5% slack), so that the free lists stay short and requests of nearly equal size
/// share blocks.
pub fn size_class(len: usize) -> usize {
    let s = documented_size(len);
    if s < 1 << 20 {
        s.div_ceil(512) * 512
    } else {
        let step = (1usize << (usize::BITS - 1 - s.leading_zeros())) / 8;
        s.div_ceil(step) * step
    }
}

/// The free lists and statistics of one device's cache. Guarded by the device's allocator
/// mutex; `aclrtMalloc` / `aclrtFree` are called with the device context current.
#[derive(Default)]
pub struct Cache {
    /// Free blocks by size class: (address, class).
    free: BTreeMap<usize, Vec<usize>>,
    /// Bytes held by free blocks.
    pub cached_bytes: usize,
    /// Bytes held by blocks handed out.
    pub used_bytes: usize,
    /// Blocks handed out.
    pub used_blocks: usize,
    /// The private pool of the live capture graph, if any.
    graph: Option<GraphPool>,
}

/// The blocks of a capture graph (see the module doc).
#[derive(Default)]
struct GraphPool {
    /// The capture is under way (blocks released now join the pool; allocations draw from it).
    capturing: bool,
    /// Addresses of every block that belongs to the graph.
    owned: HashSet<usize>,
    /// Its free blocks by size class.
    free: BTreeMap<usize, Vec<usize>>,
    /// Bytes held by its free blocks.
    free_bytes: usize,
}

/// Pops a block of class `class` from free lists `free`.
fn pop(free: &mut BTreeMap<usize, Vec<usize>>, class: usize) -> Option<usize> {
    let list = free.get_mut(&class)?;
    let addr = list.pop()?;
    if list.is_empty() {
        free.remove(&class);
    }
    Some(addr)
}

impl Cache {
    /// A free block of class `class`, if one is cached.
    /// While capturing, the graph's own free blocks come first, and a shared one taken joins
    /// the graph.
    pub fn take(&mut self, class: usize) -> Option<*mut c_void> {
        if let Some(g) = self.graph.as_mut().filter(|g| g.capturing) {
            if let Some(addr) = pop(&mut g.free, class) {
                g.free_bytes -= class;
                self.used_bytes += class;
                self.used_blocks += 1;
                return Some(addr as *mut c_void);
            }
        }
        let addr = pop(&mut self.free, class)?;
        self.cached_bytes -= class;
        self.note_new(addr as *mut c_void, class);
        Some(addr as *mut c_void)
    }

    /// Records a block of class `class` as handed out (a fresh one, or one just taken from
    /// the shared free lists); while capturing it joins the graph.
    pub fn note_new(&mut self, ptr: *mut c_void, class: usize) {
        self.used_bytes += class;
        self.used_blocks += 1;
        if let Some(g) = self.graph.as_mut().filter(|g| g.capturing) {
            g.owned.insert(ptr as usize);
        }
    }

    /// Returns a block to its free list: the graph's while capturing or when the block
    /// belongs to the live graph, else the shared one.
    pub fn put(&mut self, ptr: *mut c_void, class: usize) {
        self.used_bytes -= class;
        self.used_blocks -= 1;
        if let Some(g) = self.graph.as_mut() {
            if g.capturing || g.owned.contains(&(ptr as usize)) {
                g.owned.insert(ptr as usize);
                g.free.entry(class).or_default().push(ptr as usize);
                g.free_bytes += class;
                return;
            }
        }
        self.free.entry(class).or_default().push(ptr as usize);
        self.cached_bytes += class;
    }

    /// Opens the private pool of a capture about to begin. Errors: a graph already lives (one
    /// per device).
    pub fn begin_graph(&mut self) -> Result<()> {
        if self.graph.is_some() {
            return Err(crate::Error::Invalid(
                "a capture graph already lives on this device: destroy it before capturing another"
                    .into(),
            ));
        }
        self.graph = Some(GraphPool {
            capturing: true,
            ..GraphPool::default()
        });
        Ok(())
    }

    /// The capture ended: the pool stays the graph's, but is no longer drawn from.
    pub fn seal_graph(&mut self) {
        if let Some(g) = self.graph.as_mut() {
            g.capturing = false;
        }
    }

    /// The graph was destroyed (or its capture failed) and no queued work uses its blocks:
    /// its free blocks join the shared free lists, and those still handed out go there when
    /// released.
    pub fn end_graph(&mut self) {
        if let Some(g) = self.graph.take() {
            for (class, list) in g.free {
                self.cached_bytes += class * list.len();
                self.free.entry(class).or_default().extend(list);
            }
        }
    }

    /// Bytes held by the free blocks of the live graph's pool.
    #[cfg(test)]
    pub fn graph_free_bytes(&self) -> usize {
        self.graph.as_ref().map_or(0, |g| g.free_bytes)
    }

    /// Removes every cached block, returning their addresses (for `aclrtFree`).
    pub fn drain(&mut self) -> Vec<*mut c_void> {
        self.cached_bytes = 0;
        std::mem::take(&mut self.free)
            .into_values()
            .flatten()
            .map(|a| a as *mut c_void)
            .collect()
    }
}

/// `aclrtMalloc` of `bytes` (no caching). Errors: [`crate::Error::Device`] naming aclrtMalloc.
pub fn raw_malloc(cann: &Cann, bytes: usize) -> Result<*mut c_void> {
    let f = sym(&cann.acl.aclrtMalloc, "aclrtMalloc", ACL)?;
    let mut p: *mut c_void = std::ptr::null_mut();
    // SAFETY: writes one pointer; bytes > 0.
    let code = unsafe {
        f(
            &mut p,
            bytes,
            aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST,
        )
    };
    check_acl(cann, "aclrtMalloc", code)?;
    Ok(p)
}

/// `aclrtFree` of blocks, ignoring errors (they can only be reported by CANN's log).
pub fn raw_free_all(cann: &Cann, blocks: &[*mut c_void]) {
    if let Ok(f) = cann.acl.aclrtFree.as_ref() {
        for &p in blocks {
            // SAFETY: p came from aclrtMalloc and is no longer referenced by queued work (the
            // stream was synchronised by the caller).
            unsafe { f(p) };
        }
    }
}

/// One block of device memory from the cache: address, size class, and the device state it
/// belongs to (kept alive by the block, so a buffer may outlive its backend). Dropping it
/// returns it to the device's cache (never straight to CANN).
pub struct Block {
    ptr: *mut c_void,
    class: usize,
    dev: Arc<DeviceShared>,
}

// SAFETY: a device address is plain data; the cache is behind a mutex.
unsafe impl Send for Block {}
// SAFETY: as above; &Block only reads the address.
unsafe impl Sync for Block {}

impl Block {
    /// Wraps a block handed out by the cache.
    pub(super) fn new(ptr: *mut c_void, class: usize, dev: Arc<DeviceShared>) -> Block {
        Block { ptr, class, dev }
    }

    /// The device address (64-byte aligned).
    pub fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Bytes the block holds (its size class; at least what was asked for).
    pub fn bytes(&self) -> usize {
        self.class
    }

    /// The device state the block belongs to.
    pub(super) fn device(&self) -> &Arc<DeviceShared> {
        &self.dev
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.dev.release(self.ptr, self.class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_documented_rule_then_a_class() {
        assert_eq!(documented_size(1), 64);
        assert_eq!(documented_size(32), 64);
        assert_eq!(documented_size(33), 96);
        assert_eq!(size_class(1), 512);
        assert_eq!(size_class(480), 512);
        assert_eq!(size_class(481), 1024);
        for len in [1usize, 100, 4096, 1 << 20, 3 << 20, 12_345_678] {
            let c = size_class(len);
            assert!(c >= documented_size(len), "{len}");
            assert!(c.is_multiple_of(512), "{len}");
            assert!(
                c as f64 <= documented_size(len) as f64 * 1.125 + 512.0,
                "{len}"
            );
        }
    }

    #[test]
    fn freed_blocks_are_reused_by_class() {
        let mut c = Cache::default();
        c.note_new(0x1000 as *mut c_void, 512);
        c.put(0x1000 as *mut c_void, 512);
        assert_eq!(c.cached_bytes, 512);
        assert!(c.take(1024).is_none());
        assert_eq!(c.take(512), Some(0x1000 as *mut c_void));
        assert_eq!((c.used_blocks, c.cached_bytes), (1, 0));
        c.put(0x1000 as *mut c_void, 512);
        assert_eq!(c.drain(), vec![0x1000 as *mut c_void]);
        assert_eq!(c.used_blocks, 0);
    }

    #[test]
    fn a_graph_keeps_its_blocks_until_it_ends() {
        let mut c = Cache::default();
        let (before, during, spare) = (0x1000 as *mut c_void, 0x2000 as *mut c_void, 0x3000);
        c.note_new(before, 512);
        c.note_new(spare as *mut c_void, 512);
        c.put(spare as *mut c_void, 512);
        c.begin_graph().unwrap();
        assert!(c.begin_graph().is_err(), "one graph per device");
        // A block released while capturing (allocated before) joins the graph's pool, and the
        // capture draws from that pool first.
        c.put(before, 512);
        assert_eq!((c.cached_bytes, c.graph_free_bytes()), (512, 512));
        assert_eq!(c.take(512), Some(before));
        // Then from the shared lists: that block joins the graph too.
        assert_eq!(c.take(512), Some(spare as *mut c_void));
        c.note_new(during, 1024);
        c.seal_graph();
        // After the capture, released graph blocks stay out of the shared lists.
        c.put(spare as *mut c_void, 512);
        c.put(during, 1024);
        assert_eq!(c.take(512), None);
        assert_eq!(c.take(1024), None);
        assert_eq!(c.graph_free_bytes(), 1536);
        c.end_graph();
        assert_eq!((c.cached_bytes, c.graph_free_bytes()), (1536, 0));
        assert_eq!(c.take(1024), Some(during));
        // A block the graph owned but still handed out at its end goes to the shared lists.
        c.put(before, 512);
        assert_eq!(c.cached_bytes, 1024);
    }
}
