//! The exported HCCL subset, for ranks that are separate processes (or threads) on one host.
//!
//! Transport: a star of TCP connections through rank 0 on 127.0.0.1.
//! * Root info (`HcclGetRootInfo`): the caller (rank 0's process) listens on an ephemeral port;
//!   the 4108-byte blob carries `senet-emu-hccl 127.0.0.1:<port>`.
//! * Rank table (`HcclCommInitClusterInfo`): rank 0 listens on `SENET_EMU_HCCL_PORT`, or on a
//!   port derived from the rank-table path (20000..=59999).
//! * Every other rank connects (retrying) and says hello (its rank and the rank count); rank 0
//!   accepts them all, then acknowledges. Both sides give up after `HCCL_CONNECT_TIMEOUT`
//!   seconds (default 120) with `HCCL_E_TIMEOUT`.
//!
//! Collectives are queued on the stream like any other work. When the stream runs one, every
//! rank sends a header naming the collective (kind, count, dtype, op, root) and its data to
//! rank 0, which checks that all ranks launched the same collective, reduces, and sends the
//! result back. A peer that disconnects makes the others fail promptly: the failing side shuts
//! its sockets down, so nobody blocks on a dead star; the stream reports the failure and
//! `HcclGetCommAsyncError` returns `HCCL_E_REMOTE` (peer gone) or `HCCL_E_TCP_TRANSFER`.
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::raw::c_char;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use senet_cann_sys::*;

use crate::api::{self, Fail, Res};
use crate::hccl_wire::*;
use crate::memory::Kind;
use crate::state::with_emu;
use crate::view;

/// Environment variable: rank 0's port for rank-table communicators.
pub const ENV_HCCL_PORT: &str = "SENET_EMU_HCCL_PORT";
/// Environment variable: seconds to wait for all ranks to connect (HCCL's own name).
pub const ENV_CONNECT_TIMEOUT: &str = "HCCL_CONNECT_TIMEOUT";
/// Environment variable: seconds a collective may wait for data (HCCL's own name).
pub const ENV_EXEC_TIMEOUT: &str = "HCCL_EXEC_TIMEOUT";

pub(crate) const MAGIC: u32 = 0x5E_4C_C1;
const ROOT_PREFIX: &str = "senet-emu-hccl ";

fn hccl(name: &str, body: impl FnOnce() -> Res<()>) -> HcclResult {
    api::call(
        name,
        HcclResult::HCCL_E_INTERNAL.0 as i32,
        |c| HcclResult(c as u32),
        || body().map(|()| HcclResult::HCCL_SUCCESS),
    )
}

fn fail(code: HcclResult, msg: impl Into<String>) -> Fail {
    Fail::new(code.0 as i32, msg)
}

fn timeout_var(var: &str, default: u64) -> Duration {
    let secs = std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// A communicator: this process's rank and its sockets.
pub struct Comm {
    /// Handle value.
    pub id: usize,
    /// This rank.
    pub rank: u32,
    /// Number of ranks.
    pub size: u32,
    /// Rank 0: one socket per other rank (index = rank); others: `[socket to rank 0]`.
    pub(crate) links: Mutex<Vec<Option<TcpStream>>>,
    /// First asynchronous error of a collective.
    async_error: Mutex<Option<HcclResult>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static COMMS: Mutex<Option<HashMap<usize, Arc<Comm>>>> = Mutex::new(None);
static LISTENERS: Mutex<Option<HashMap<u16, TcpListener>>> = Mutex::new(None);

fn comm(handle: HcclComm) -> Res<Arc<Comm>> {
    if handle.is_null() {
        return Err(fail(HcclResult::HCCL_E_PTR, "comm is null"));
    }
    lock(&COMMS)
        .get_or_insert_with(HashMap::new)
        .get(&(handle as usize))
        .cloned()
        .ok_or_else(|| {
            fail(
                HcclResult::HCCL_E_PARA,
                format!("{handle:p} is not a live communicator"),
            )
        })
}

fn register(c: Comm) -> usize {
    let id = c.id;
    lock(&COMMS)
        .get_or_insert_with(HashMap::new)
        .insert(id, Arc::new(c));
    id
}

pub(crate) fn write_u32s(s: &mut TcpStream, v: &[u32]) -> std::io::Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    s.write_all(&bytes)
}

pub(crate) fn read_u32s(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u32>> {
    let mut b = vec![0u8; 4 * n];
    s.read_exact(&mut b)?;
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Requires a current context (HCCL needs `aclrtSetDevice` first); returns its device.
fn current_device() -> Res<i32> {
    with_emu(|e| e.current().map(|(_, c)| c.device))
        .map_err(|f| fail(HcclResult::HCCL_E_RUNTIME, f.msg))
}

/// Rank 0's side of communicator setup: accept `size - 1` ranks on `listener`.
fn accept_all(listener: &TcpListener, size: u32) -> Res<Vec<Option<TcpStream>>> {
    let deadline = Instant::now() + timeout_var(ENV_CONNECT_TIMEOUT, 120);
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string()))?;
    let mut links: Vec<Option<TcpStream>> = (0..size).map(|_| None).collect();
    let mut joined = 1;
    while joined < size {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)
                    .and_then(|()| s.set_nodelay(true))
                    .and_then(|()| s.set_read_timeout(Some(Duration::from_secs(10))))
                    .map_err(|e| fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string()))?;
                let hello = read_u32s(&mut s, 3).map_err(|e| {
                    fail(
                        HcclResult::HCCL_E_TCP_CONNECT,
                        format!("reading a rank's hello: {e}"),
                    )
                })?;
                let (magic, r, n) = (hello[0], hello[1], hello[2]);
                if magic != MAGIC {
                    continue;
                }
                if n != size {
                    return Err(fail(
                        HcclResult::HCCL_E_PARA,
                        format!("rank {r} says there are {n} ranks, rank 0 says {size}"),
                    ));
                }
                if r == 0 || r >= size || links[r as usize].is_some() {
                    return Err(fail(
                        HcclResult::HCCL_E_PARA,
                        format!("rank {r} joined twice or is out of range 1..{size}"),
                    ));
                }
                s.set_read_timeout(Some(timeout_var(ENV_EXEC_TIMEOUT, 1800)))
                    .map_err(|e| fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string()))?;
                links[r as usize] = Some(s);
                joined += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(fail(
                        HcclResult::HCCL_E_TIMEOUT,
                        format!(
                            "only {joined} of {size} ranks joined within {ENV_CONNECT_TIMEOUT} ({}s)",
                            timeout_var(ENV_CONNECT_TIMEOUT, 120).as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string())),
        }
    }
    for s in links.iter_mut().flatten() {
        write_u32s(s, &[MAGIC, 1])
            .map_err(|e| fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string()))?;
    }
    Ok(links)
}

/// Another rank's side of communicator setup: connect to rank 0 at `addr`.
fn connect_root(addr: SocketAddr, rank: u32, size: u32) -> Res<TcpStream> {
    let limit = timeout_var(ENV_CONNECT_TIMEOUT, 120);
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(mut s) => {
                let setup = (|| -> std::io::Result<()> {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(limit))?;
                    write_u32s(&mut s, &[MAGIC, rank, size])?;
                    let ack = read_u32s(&mut s, 2)?;
                    if ack != [MAGIC, 1] {
                        return Err(std::io::Error::other("bad acknowledgement"));
                    }
                    s.set_read_timeout(Some(timeout_var(ENV_EXEC_TIMEOUT, 1800)))
                })();
                return match setup {
                    Ok(()) => Ok(s),
                    Err(e) => Err(fail(
                        HcclResult::HCCL_E_TCP_CONNECT,
                        format!("joining rank 0 at {addr}: {e}"),
                    )),
                };
            }
            Err(e) => {
                if Instant::now() > deadline {
                    return Err(fail(
                        HcclResult::HCCL_E_TIMEOUT,
                        format!(
                            "could not reach rank 0 at {addr} within {ENV_CONNECT_TIMEOUT} ({}s): {e}",
                            limit.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn new_comm(rank: u32, size: u32, links: Vec<Option<TcpStream>>) -> usize {
    register(Comm {
        id: crate::state::next_id(),
        rank,
        size,
        links: Mutex::new(links),
        async_error: Mutex::new(None),
    })
}

/// Builds a communicator: rank 0 listens (with `listener`, or by binding `addr`), the others
/// connect to `addr`.
fn setup(rank: u32, size: u32, addr: SocketAddr, listener: Option<TcpListener>) -> Res<usize> {
    if size == 0 || rank >= size {
        return Err(fail(
            HcclResult::HCCL_E_PARA,
            format!("rank {rank} is not below the rank count {size}"),
        ));
    }
    if size == 1 {
        return Ok(new_comm(0, 1, Vec::new()));
    }
    if rank == 0 {
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(addr).map_err(|e| {
                fail(
                    HcclResult::HCCL_E_TCP_CONNECT,
                    format!("rank 0 cannot listen on {addr}: {e}"),
                )
            })?,
        };
        let links = accept_all(&listener, size)?;
        Ok(new_comm(0, size, links))
    } else {
        let s = connect_root(addr, rank, size)?;
        Ok(new_comm(rank, size, vec![Some(s)]))
    }
}

/// Makes root info: listens on an ephemeral port of 127.0.0.1 and writes its address into the
/// blob. Call it in rank 0's process, then share the blob with every rank.
#[no_mangle]
pub unsafe extern "C" fn HcclGetRootInfo(rootInfo: *mut HcclRootInfo) -> HcclResult {
    hccl("HcclGetRootInfo", || {
        if rootInfo.is_null() {
            return Err(fail(HcclResult::HCCL_E_PTR, "rootInfo is null"));
        }
        current_device()?;
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string()))?;
        let addr = l
            .local_addr()
            .map_err(|e| fail(HcclResult::HCCL_E_TCP_CONNECT, e.to_string()))?;
        lock(&LISTENERS)
            .get_or_insert_with(HashMap::new)
            .insert(addr.port(), l);
        let text = format!("{ROOT_PREFIX}{addr}");
        let out = &mut (*rootInfo).internal;
        out.fill(0);
        for (o, b) in out.iter_mut().zip(text.bytes()) {
            *o = b as c_char;
        }
        Ok(())
    })
}

/// Joins the communicator described by root info: rank 0 accepts the others, the others
/// connect to it. Blocks until all `nRanks` have joined (or `HCCL_CONNECT_TIMEOUT`).
#[no_mangle]
pub unsafe extern "C" fn HcclCommInitRootInfo(
    nRanks: u32,
    rootInfo: *const HcclRootInfo,
    rank: u32,
    comm: *mut HcclComm,
) -> HcclResult {
    hccl("HcclCommInitRootInfo", || {
        if rootInfo.is_null() || comm.is_null() {
            return Err(fail(HcclResult::HCCL_E_PTR, "rootInfo or comm is null"));
        }
        current_device()?;
        let raw = &(*rootInfo).internal;
        let bytes: Vec<u8> = raw
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let addr: SocketAddr = text
            .strip_prefix(ROOT_PREFIX)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                fail(
                    HcclResult::HCCL_E_PARA,
                    "rootInfo was not made by this emulator's HcclGetRootInfo",
                )
            })?;
        let listener = if rank == 0 {
            lock(&LISTENERS)
                .get_or_insert_with(HashMap::new)
                .remove(&addr.port())
        } else {
            None
        };
        let id = setup(rank, nRanks, addr, listener)?;
        *comm = id as HcclComm;
        Ok(())
    })
}

/// Reads `server_list[].device[]` (`rank_id`, `device_id`) of a rank table.
fn parse_rank_table(path: &str) -> Res<Vec<(u32, i32)>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            HcclResult::HCCL_E_OPEN_FILE_FAILURE,
            format!("rank table {path:?}: {e}"),
        )
    })?;
    let bad = |m: String| fail(HcclResult::HCCL_E_PARA, format!("rank table {path:?}: {m}"));
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let num = |v: &serde_json::Value| -> Option<i64> {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    let mut out = Vec::new();
    let servers = json["server_list"]
        .as_array()
        .ok_or_else(|| bad("no server_list array".into()))?;
    for server in servers {
        let devices = server["device"]
            .as_array()
            .ok_or_else(|| bad("a server has no device array".into()))?;
        for d in devices {
            let rank = num(&d["rank_id"]).ok_or_else(|| bad(format!("bad rank_id in {d}")))?;
            let dev = num(&d["device_id"]).ok_or_else(|| bad(format!("bad device_id in {d}")))?;
            out.push((rank as u32, dev as i32));
        }
    }
    let mut ranks: Vec<u32> = out.iter().map(|r| r.0).collect();
    ranks.sort_unstable();
    if ranks != (0..ranks.len() as u32).collect::<Vec<_>>() {
        return Err(bad(format!(
            "rank_id values {ranks:?} are not 0..{} each once",
            ranks.len()
        )));
    }
    Ok(out)
}

/// Joins the communicator of a rank-table file: every rank of the table must join; this
/// process's current device must be the table's `device_id` for `rank`. Rank 0 listens on
/// `SENET_EMU_HCCL_PORT` or a port derived from the path.
#[no_mangle]
pub unsafe extern "C" fn HcclCommInitClusterInfo(
    clusterInfo: *const c_char,
    rank: u32,
    comm: *mut HcclComm,
) -> HcclResult {
    hccl("HcclCommInitClusterInfo", || {
        if clusterInfo.is_null() || comm.is_null() {
            return Err(fail(HcclResult::HCCL_E_PTR, "clusterInfo or comm is null"));
        }
        let path = CStr::from_ptr(clusterInfo).to_string_lossy().into_owned();
        let table = parse_rank_table(&path)?;
        let size = table.len() as u32;
        let device = table
            .iter()
            .find(|r| r.0 == rank)
            .map(|r| r.1)
            .ok_or_else(|| {
                fail(
                    HcclResult::HCCL_E_PARA,
                    format!("rank {rank} is not in the rank table ({size} ranks)"),
                )
            })?;
        let current = current_device()?;
        if current != device {
            return Err(fail(
                HcclResult::HCCL_E_PARA,
                format!(
                    "the rank table puts rank {rank} on device {device}, but this thread's device is {current}"
                ),
            ));
        }
        let port = match std::env::var(ENV_HCCL_PORT) {
            Ok(p) => p.trim().parse::<u16>().map_err(|_| {
                fail(
                    HcclResult::HCCL_E_PARA,
                    format!("{ENV_HCCL_PORT}={p:?} is not a port"),
                )
            })?,
            Err(_) => {
                let canon = std::fs::canonicalize(&path)
                    .map(|p| p.display().to_string())
                    .unwrap_or(path.clone());
                // FNV-1a of the path, folded into 20000..=59999.
                let h = canon.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
                });
                20000 + (h % 40000) as u16
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let id = setup(rank, size, addr, None)?;
        *comm = id as HcclComm;
        Ok(())
    })
}

/// Validates and queues a collective on `stream`.
fn enqueue(
    name: &str,
    comm_h: HcclComm,
    stream: aclrtStream,
    h: Header,
    send_buf: *const c_void,
    recv_buf: *mut c_void,
) -> Res<()> {
    let c = comm(comm_h)?;
    let dt = acl_dtype(HcclDataType(h.dtype)).ok_or_else(|| {
        fail(
            HcclResult::HCCL_E_NOT_SUPPORT,
            format!("unknown HcclDataType {}", h.dtype),
        )
    })?;
    let bytes = (h.count as usize)
        .checked_mul(view::elem_size(dt).unwrap_or(1))
        .ok_or_else(|| fail(HcclResult::HCCL_E_PARA, "count is too large"))?;
    with_emu(|e| {
        let s = e
            .stream(stream)
            .map_err(|f| fail(HcclResult::HCCL_E_RUNTIME, f.msg))?;
        let mut uses = Vec::new();
        if h.kind != KIND_BARRIER && bytes > 0 {
            for (p, what) in [
                (send_buf as usize, "sendBuf"),
                (recv_buf as usize, "recvBuf"),
            ] {
                if p == 0 {
                    return Err(fail(HcclResult::HCCL_E_PTR, format!("{what} is null")));
                }
                let start = e
                    .memory
                    .check_range(p, bytes, |k| matches!(k, Kind::Device(_)))
                    .map_err(|m| fail(HcclResult::HCCL_E_PARA, format!("{what}: {m}")))?;
                uses.push(start);
            }
        }
        uses.sort_unstable();
        uses.dedup();
        let (sb, rb) = (send_buf as usize, recv_buf as usize);
        let c2 = c.clone();
        let run = Arc::new(move || {
            let bytes = if h.kind == KIND_BARRIER { 0 } else { bytes };
            exchange(&c2, h, sb, rb, bytes).map_err(|(code, msg)| {
                lock(&c2.async_error).get_or_insert(code);
                format!("{msg} ({})", error_text(code))
            })
        });
        e.enqueue(&s, name, uses, run)
            .map_err(|m| fail(HcclResult::HCCL_E_RUNTIME, m))?;
        Ok(())
    })
}

/// Queues an all-reduce (SUM, PROD, MAX, MIN) of `count` elements; `recvBuf` may equal
/// `sendBuf`. Both must lie in device memory.
#[no_mangle]
pub extern "C" fn HcclAllReduce(
    sendBuf: *mut c_void,
    recvBuf: *mut c_void,
    count: u64,
    dataType: HcclDataType,
    op: HcclReduceOp,
    comm: HcclComm,
    stream: aclrtStream,
) -> HcclResult {
    hccl("HcclAllReduce", || {
        if op.0 > 3 {
            return Err(fail(
                HcclResult::HCCL_E_PARA,
                format!("unknown HcclReduceOp {}", op.0),
            ));
        }
        let h = Header {
            kind: KIND_ALLREDUCE,
            count,
            dtype: dataType.0,
            op: op.0,
            root: 0,
        };
        enqueue("HcclAllReduce", comm, stream, h, sendBuf, recvBuf)
    })
}

/// Queues a broadcast of `count` elements of `buf` from rank `root`.
#[no_mangle]
pub extern "C" fn HcclBroadcast(
    buf: *mut c_void,
    count: u64,
    dataType: HcclDataType,
    root: u32,
    comm: HcclComm,
    stream: aclrtStream,
) -> HcclResult {
    hccl("HcclBroadcast", || {
        let size = self::comm(comm)?.size;
        if root >= size {
            return Err(fail(
                HcclResult::HCCL_E_PARA,
                format!("root {root} is not below the rank count {size}"),
            ));
        }
        let h = Header {
            kind: KIND_BROADCAST,
            count,
            dtype: dataType.0,
            op: 0,
            root,
        };
        enqueue("HcclBroadcast", comm, stream, h, buf, buf)
    })
}

/// Queues a barrier: the stream passes it when every rank's stream has reached it.
#[no_mangle]
pub extern "C" fn HcclBarrier(comm: HcclComm, stream: aclrtStream) -> HcclResult {
    hccl("HcclBarrier", || {
        let h = Header {
            kind: KIND_BARRIER,
            count: 0,
            dtype: HcclDataType::HCCL_DATA_TYPE_INT8.0,
            op: 0,
            root: 0,
        };
        enqueue(
            "HcclBarrier",
            comm,
            stream,
            h,
            std::ptr::null(),
            std::ptr::null_mut(),
        )
    })
}

/// Number of ranks of `comm`.
#[no_mangle]
pub unsafe extern "C" fn HcclGetRankSize(comm: HcclComm, rankSize: *mut u32) -> HcclResult {
    hccl("HcclGetRankSize", || {
        let c = self::comm(comm)?;
        if rankSize.is_null() {
            return Err(fail(HcclResult::HCCL_E_PTR, "rankSize is null"));
        }
        *rankSize = c.size;
        Ok(())
    })
}

/// This process's rank in `comm`.
#[no_mangle]
pub unsafe extern "C" fn HcclGetRankId(comm: HcclComm, rank: *mut u32) -> HcclResult {
    hccl("HcclGetRankId", || {
        let c = self::comm(comm)?;
        if rank.is_null() {
            return Err(fail(HcclResult::HCCL_E_PTR, "rank is null"));
        }
        *rank = c.rank;
        Ok(())
    })
}

/// Destroys a communicator and closes its sockets (queued collectives that still hold it
/// will fail when run).
#[no_mangle]
pub extern "C" fn HcclCommDestroy(comm: HcclComm) -> HcclResult {
    hccl("HcclCommDestroy", || {
        let c = self::comm(comm)?;
        lock(&COMMS).get_or_insert_with(HashMap::new).remove(&c.id);
        for s in lock(&c.links).iter().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
        Ok(())
    })
}

/// The description of `code`.
fn error_cstr(code: HcclResult) -> &'static CStr {
    match code.0 {
        0 => c"success",
        1 => c"parameter error",
        2 => c"empty pointer",
        3 => c"memory error",
        4 => c"internal error",
        5 => c"not supported",
        6 => c"not found",
        7 => c"resource unavailable",
        8 => c"system call error",
        9 => c"timeout",
        10 => c"cannot open file",
        11 => c"TCP connect error",
        12 => c"RoCE connect error",
        13 => c"TCP transfer error",
        14 => c"RoCE transfer error",
        15 => c"runtime error",
        16 => c"driver error",
        17 => c"profiling error",
        18 => c"CCE error",
        19 => c"network error",
        20 => c"try again",
        21 => c"error on a remote rank",
        22 => c"suspending",
        23 => c"operation retry failed",
        24 => c"out of memory",
        _ => c"unknown error",
    }
}

fn error_text(code: HcclResult) -> &'static str {
    error_cstr(code).to_str().unwrap_or("unknown error")
}

/// A static description of an `HcclResult`.
#[no_mangle]
pub extern "C" fn HcclGetErrorString(code: HcclResult) -> *const c_char {
    crate::control::count("HcclGetErrorString");
    error_cstr(code).as_ptr()
}

/// The first error a queued collective of `comm` hit (`HCCL_SUCCESS` if none).
#[no_mangle]
pub unsafe extern "C" fn HcclGetCommAsyncError(
    comm: HcclComm,
    asyncError: *mut HcclResult,
) -> HcclResult {
    hccl("HcclGetCommAsyncError", || {
        let c = self::comm(comm)?;
        if asyncError.is_null() {
            return Err(fail(HcclResult::HCCL_E_PTR, "asyncError is null"));
        }
        *asyncError = lock(&c.async_error).unwrap_or(HcclResult::HCCL_SUCCESS);
        Ok(())
    })
}
