//! ops: loss
