//! ops: conv
