//! ops: pool
