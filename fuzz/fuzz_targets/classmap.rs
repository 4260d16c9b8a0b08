//! Fuzz target: `senet::fuzzing::Target::from_name("classmap")` on arbitrary bytes. Any panic, abort,
//! hang or out-of-memory kill is a finding; errors are the expected outcome of bad input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    senet::fuzzing::Target::from_name("classmap").expect("known target").run(data);
});
