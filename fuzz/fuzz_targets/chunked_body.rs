#![no_main]
//! See `whizard_fuzz::chunked_body` for the input format and the invariants.
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: whizard_fuzz::init(), |data: &[u8]| {
    whizard_fuzz::chunked_body(data);
});
