//! The allocation registry: every live "device" allocation (host memory standing in for HBM)
//! and every pinned host allocation, with the queued stream work that still uses each.
use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::collections::{BTreeMap, HashMap};

/// Alignment of every allocation's start (cann.md §1.3: 64 bytes).
pub const ALLOC_ALIGN: usize = 64;

/// Byte value fresh device memory is filled with (all-ones: NaN as FLOAT and FLOAT16), so a
/// read of memory nobody wrote shows up in results.
pub const POISON: u8 = 0xFF;

/// Largest allocation that is poisoned: bigger ones (a caching allocator's arena) keep the
/// host allocator's untouched pages, so reserving most of a 32 GiB budget commits no RAM.
pub const POISON_LIMIT: usize = 256 << 20;

/// Environment variable: `0` turns poisoning off (fresh device memory is then zero).
pub const ENV_POISON: &str = "SENET_EMU_POISON";

fn poison_enabled() -> bool {
    std::env::var(ENV_POISON).map_or(true, |v| v.trim() != "0")
}

/// What an allocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `aclrtMalloc` on the given device.
    Device(i32),
    /// `aclrtMallocHost` (pinned host memory).
    Host,
}

/// One live allocation.
#[derive(Debug)]
pub struct Alloc {
    /// The size the caller asked for; accesses must stay below `start + size`.
    pub size: usize,
    /// Bytes reserved and charged to the device budget: `align_up(size, 32) + 32`.
    pub reserved: usize,
    /// Device or pinned host.
    pub kind: Kind,
    layout: Layout,
}

/// The registry of live allocations.
#[derive(Default)]
pub struct Memory {
    allocs: BTreeMap<usize, Alloc>,
    /// Queued, not yet run stream tasks that use the allocation starting at the key.
    pending: HashMap<usize, usize>,
}

/// `align_up(size, 32) + 32`: the bytes a device allocation of `size` reserves.
pub fn reserved_size(size: usize) -> Option<usize> {
    size.checked_add(31).map(|s| s / 32 * 32)?.checked_add(32)
}

impl Memory {
    /// Allocates `size` bytes of `kind`, 64-byte aligned. Device memory up to [`POISON_LIMIT`]
    /// is filled with [`POISON`] (unless `SENET_EMU_POISON=0`); the rest is zeroed. Returns
    /// the start, or `None` if the host is out of memory.
    pub fn allocate(&mut self, size: usize, kind: Kind) -> Option<usize> {
        let reserved = reserved_size(size)?;
        let layout = Layout::from_size_align(reserved, ALLOC_ALIGN).ok()?;
        let poison =
            matches!(kind, Kind::Device(_)) && reserved <= POISON_LIMIT && poison_enabled();
        // SAFETY: `layout` has a non-zero size (reserved >= 32).
        let p = unsafe {
            if poison {
                alloc(layout)
            } else {
                alloc_zeroed(layout)
            }
        };
        if p.is_null() {
            return None;
        }
        if poison {
            // SAFETY: `p` points at `reserved` freshly allocated bytes.
            unsafe { std::ptr::write_bytes(p, POISON, reserved) };
        }
        let start = p as usize;
        self.allocs.insert(
            start,
            Alloc {
                size,
                reserved,
                kind,
                layout,
            },
        );
        Some(start)
    }

    /// The allocation starting exactly at `start`.
    pub fn at(&self, start: usize) -> Option<&Alloc> {
        self.allocs.get(&start)
    }

    /// The allocation containing address `addr` (between its start and `start + size`), as
    /// `(start, allocation)`.
    pub fn containing(&self, addr: usize) -> Option<(usize, &Alloc)> {
        let (&start, a) = self.allocs.range(..=addr).next_back()?;
        (addr < start + a.size.max(1)).then_some((start, a))
    }

    /// Checks that `[addr, addr + len)` lies inside one live allocation of a kind accepted by
    /// `want`; returns the allocation's start. `Err` carries a description of the problem.
    pub fn check_range(
        &self,
        addr: usize,
        len: usize,
        want: impl Fn(Kind) -> bool,
    ) -> Result<usize, String> {
        let Some((start, a)) = self.containing(addr) else {
            return Err(format!(
                "{addr:#x} is not inside any live device allocation (a host pointer, freed memory, or never allocated)"
            ));
        };
        if !want(a.kind) {
            return Err(format!(
                "{addr:#x} lies in a {} allocation, which is the wrong kind here",
                match a.kind {
                    Kind::Device(d) => format!("device {d}"),
                    Kind::Host => "pinned host".to_string(),
                }
            ));
        }
        let end = addr.checked_add(len).ok_or("address range overflows")?;
        if end > start + a.size {
            return Err(format!(
                "{len} bytes at {addr:#x} run {} bytes past the end of the {}-byte allocation at {start:#x}",
                end - (start + a.size),
                a.size
            ));
        }
        Ok(start)
    }

    /// Whether `addr` lies inside a live device allocation.
    pub fn is_device(&self, addr: usize) -> bool {
        matches!(self.containing(addr), Some((_, a)) if matches!(a.kind, Kind::Device(_)))
    }

    /// Releases the allocation starting at `start`. A device block up to [`POISON_LIMIT`] is
    /// poisoned before it goes back to the host allocator, so memory recycled into any later
    /// allocation (poisoned again there, or handed out unpoisoned above the limit) never shows
    /// the freed block's old values.
    pub fn release(&mut self, start: usize) -> Option<Alloc> {
        let a = self.allocs.remove(&start)?;
        if matches!(a.kind, Kind::Device(_)) && a.reserved <= POISON_LIMIT && poison_enabled() {
            // SAFETY: the block is live until the dealloc below and `reserved` bytes long.
            unsafe { std::ptr::write_bytes(start as *mut u8, POISON, a.reserved) };
        }
        // SAFETY: `start` was returned by `alloc` with exactly this layout and is freed once.
        unsafe { dealloc(start as *mut u8, a.layout) };
        self.pending.remove(&start);
        Some(a)
    }

    /// Releases every allocation (aclFinalize).
    pub fn release_all(&mut self) {
        let starts: Vec<usize> = self.allocs.keys().copied().collect();
        for s in starts {
            self.release(s);
        }
    }

    /// Queued tasks still using the allocation at `start`.
    pub fn pending_uses(&self, start: usize) -> usize {
        self.pending.get(&start).copied().unwrap_or(0)
    }

    /// Records that a queued task uses the allocations in `starts`.
    pub fn add_uses(&mut self, starts: &[usize]) {
        for s in starts {
            *self.pending.entry(*s).or_insert(0) += 1;
        }
    }

    /// Records that a task using `starts` has run (or was dropped).
    pub fn drop_uses(&mut self, starts: &[usize]) {
        for s in starts {
            if let Some(n) = self.pending.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    self.pending.remove(s);
                }
            }
        }
    }

    /// Bytes reserved on `device`.
    pub fn device_bytes(&self, device: i32) -> u64 {
        self.allocs
            .values()
            .filter(|a| a.kind == Kind::Device(device))
            .map(|a| a.reserved as u64)
            .sum()
    }

    /// Number of live device allocations.
    pub fn live_device_allocations(&self) -> usize {
        self.allocs
            .values()
            .filter(|a| matches!(a.kind, Kind::Device(_)))
            .count()
    }

    /// Bytes reserved by live device allocations.
    pub fn live_device_bytes(&self) -> u64 {
        self.allocs
            .values()
            .filter(|a| matches!(a.kind, Kind::Device(_)))
            .map(|a| a.reserved as u64)
            .sum()
    }
}
