//! The emulated HCCL's wire protocol between the ranks' processes: a header naming the collective
//! (kind, count, dtype, op, root) and its data, sent to rank 0 over TCP, reduced there in f64,
//! and the result sent back (a star through rank 0).
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use senet_cann_sys::*;

use crate::hccl_api::{lock, read_u32s, Comm};
use crate::view;

/// Maps an HCCL dtype to the aclDataType of the same layout.
pub(crate) fn acl_dtype(dt: HcclDataType) -> Option<aclDataType> {
    Some(match dt {
        HcclDataType::HCCL_DATA_TYPE_INT8 => aclDataType::ACL_INT8,
        HcclDataType::HCCL_DATA_TYPE_INT16 => aclDataType::ACL_INT16,
        HcclDataType::HCCL_DATA_TYPE_INT32 => aclDataType::ACL_INT32,
        HcclDataType::HCCL_DATA_TYPE_FP16 => aclDataType::ACL_FLOAT16,
        HcclDataType::HCCL_DATA_TYPE_FP32 => aclDataType::ACL_FLOAT,
        HcclDataType::HCCL_DATA_TYPE_INT64 => aclDataType::ACL_INT64,
        HcclDataType::HCCL_DATA_TYPE_UINT64 => aclDataType::ACL_UINT64,
        HcclDataType::HCCL_DATA_TYPE_UINT8 => aclDataType::ACL_UINT8,
        HcclDataType::HCCL_DATA_TYPE_UINT16 => aclDataType::ACL_UINT16,
        HcclDataType::HCCL_DATA_TYPE_UINT32 => aclDataType::ACL_UINT32,
        HcclDataType::HCCL_DATA_TYPE_FP64 => aclDataType::ACL_DOUBLE,
        HcclDataType::HCCL_DATA_TYPE_BFP16 => aclDataType::ACL_BF16,
        _ => return None,
    })
}

/// A collective as every rank must launch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: u32,
    pub(crate) count: u64,
    pub(crate) dtype: u32,
    pub(crate) op: u32,
    pub(crate) root: u32,
}

impl Header {
    fn words(&self) -> [u32; 6] {
        [
            self.kind,
            self.count as u32,
            (self.count >> 32) as u32,
            self.dtype,
            self.op,
            self.root,
        ]
    }

    fn from_words(w: &[u32]) -> Header {
        Header {
            kind: w[0],
            count: u64::from(w[1]) | (u64::from(w[2]) << 32),
            dtype: w[3],
            op: w[4],
            root: w[5],
        }
    }

    fn describe(&self) -> String {
        match self.kind {
            KIND_ALLREDUCE => format!(
                "HcclAllReduce(count {}, dtype {}, op {})",
                self.count, self.dtype, self.op
            ),
            KIND_BROADCAST => format!(
                "HcclBroadcast(count {}, dtype {}, root {})",
                self.count, self.dtype, self.root
            ),
            _ => "HcclBarrier".to_string(),
        }
    }
}

pub(crate) const KIND_ALLREDUCE: u32 = 1;
pub(crate) const KIND_BROADCAST: u32 = 2;
pub(crate) const KIND_BARRIER: u32 = 3;

/// Why a collective failed: the code for `HcclGetCommAsyncError` and a message.
pub(crate) type Broken = (HcclResult, String);

pub(crate) fn io_err(peer: u32, what: &str, e: std::io::Error) -> Broken {
    let code = match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => HcclResult::HCCL_E_REMOTE,
        _ => HcclResult::HCCL_E_TCP_TRANSFER,
    };
    (code, format!("{what} rank {peer}: {e}"))
}

pub(crate) fn send(s: &mut TcpStream, peer: u32, h: &Header, data: &[u8]) -> Result<(), Broken> {
    let mut msg = Vec::with_capacity(24 + data.len());
    for w in h.words() {
        msg.extend_from_slice(&w.to_le_bytes());
    }
    msg.extend_from_slice(data);
    s.write_all(&msg).map_err(|e| io_err(peer, "sending to", e))
}

pub(crate) fn recv(
    s: &mut TcpStream,
    peer: u32,
    want: &Header,
    bytes: usize,
) -> Result<Vec<u8>, Broken> {
    let w = read_u32s(s, 6).map_err(|e| io_err(peer, "receiving from", e))?;
    let h = Header::from_words(&w);
    if h != *want {
        return Err((
            HcclResult::HCCL_E_PARA,
            format!(
                "rank {peer} launched {} while this rank launched {}",
                h.describe(),
                want.describe()
            ),
        ));
    }
    let mut b = vec![0u8; bytes];
    s.read_exact(&mut b)
        .map_err(|e| io_err(peer, "receiving from", e))?;
    Ok(b)
}

pub(crate) fn reduce(acc: &mut [f64], other: &[f64], op: HcclReduceOp) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a = match op {
            HcclReduceOp::HCCL_REDUCE_SUM => *a + b,
            HcclReduceOp::HCCL_REDUCE_PROD => *a * b,
            HcclReduceOp::HCCL_REDUCE_MAX => a.max(*b),
            _ => a.min(*b),
        };
    }
}

pub(crate) fn decode(bytes: &[u8], dt: aclDataType) -> Vec<f64> {
    let es = view::elem_size(dt).unwrap_or(1);
    // SAFETY: each chunk holds one element of `dt`.
    bytes
        .chunks_exact(es)
        .map(|c| unsafe { view::load(c.as_ptr() as usize, dt) })
        .collect()
}

pub(crate) fn encode(values: &[f64], dt: aclDataType) -> Vec<u8> {
    let es = view::elem_size(dt).unwrap_or(1);
    let mut out = vec![0u8; values.len() * es];
    for (c, v) in out.chunks_exact_mut(es).zip(values) {
        // SAFETY: each chunk has room for one element of `dt`.
        unsafe { view::store(c.as_mut_ptr() as usize, dt, *v) };
    }
    out
}

/// One collective on this rank. `send_buf`/`recv_buf` are device addresses (`recv_buf` also
/// the in/out buffer of Broadcast); `bytes` is `count * element size`.
pub(crate) fn exchange(
    c: &Comm,
    h: Header,
    send_buf: usize,
    recv_buf: usize,
    bytes: usize,
) -> Result<(), Broken> {
    let dt = acl_dtype(HcclDataType(h.dtype)).unwrap_or(aclDataType::ACL_FLOAT);
    // SAFETY: the ranges were checked at enqueue and stay allocated until this task has run.
    let local = if bytes == 0 {
        Vec::new()
    } else {
        unsafe { std::slice::from_raw_parts(send_buf as *const u8, bytes) }.to_vec()
    };
    let put = |data: &[u8]| {
        if !data.is_empty() {
            // SAFETY: as above; `data` is `bytes` long.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), recv_buf as *mut u8, data.len()) }
        }
    };
    if c.size == 1 {
        if h.kind != KIND_BARRIER {
            put(&local);
        }
        return Ok(());
    }
    let mut links = lock(&c.links);
    let result = (|| -> Result<(), Broken> {
        if c.rank == 0 {
            // Gather.
            let mut gathered: Vec<Vec<u8>> = vec![Vec::new(); c.size as usize];
            for r in 1..c.size {
                let s = links[r as usize].as_mut().expect("rank 0 holds every link");
                let want = match h.kind {
                    KIND_ALLREDUCE => bytes,
                    KIND_BROADCAST if h.root == r => bytes,
                    _ => 0,
                };
                gathered[r as usize] = recv(s, r, &h, want)?;
            }
            let result = match h.kind {
                KIND_ALLREDUCE => {
                    let mut acc = decode(&local, dt);
                    for g in &gathered[1..] {
                        reduce(&mut acc, &decode(g, dt), HcclReduceOp(h.op));
                    }
                    encode(&acc, dt)
                }
                KIND_BROADCAST if h.root == 0 => local,
                KIND_BROADCAST => std::mem::take(&mut gathered[h.root as usize]),
                _ => Vec::new(),
            };
            for r in 1..c.size {
                let s = links[r as usize].as_mut().expect("rank 0 holds every link");
                send(s, r, &h, &result)?;
            }
            if h.kind != KIND_BARRIER {
                put(&result);
            }
        } else {
            let s = links[0].as_mut().expect("a rank holds its link to rank 0");
            let payload: &[u8] = match h.kind {
                KIND_ALLREDUCE => &local,
                KIND_BROADCAST if h.root == c.rank => &local,
                _ => &[],
            };
            send(s, 0, &h, payload)?;
            let want = if h.kind == KIND_BARRIER { 0 } else { bytes };
            let result = recv(s, 0, &h, want)?;
            if h.kind != KIND_BARRIER {
                put(&result);
            }
        }
        Ok(())
    })();
    if result.is_err() {
        // Tear the star down so no other rank waits on this one.
        for s in links.iter().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    result
}
