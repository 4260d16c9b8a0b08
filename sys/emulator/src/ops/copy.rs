//! ops: copy
