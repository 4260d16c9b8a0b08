//! The `senet` command line.
fn main() {}
