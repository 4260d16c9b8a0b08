//! ops: elementwise
