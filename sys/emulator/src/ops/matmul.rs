//! ops: matmul
