//! Fuzz target: the reader must never panic or overflow on any bytes, in either mode, and
//! whatever it reads in data mode must print and read back to an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sx_kernel::printer::repr;
use sx_kernel::reader::{read_all, read_one, Mode, DEFAULT_MAX_DEPTH};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = read_all(text, Mode::Code, DEFAULT_MAX_DEPTH);
    if let Ok(value) = read_one(text) {
        let printed = repr(&value);
        let back = read_one(&printed).expect("repr output reads back");
        assert_eq!(repr(&back), printed);
    }
});
