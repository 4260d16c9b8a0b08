//! ops: norm
