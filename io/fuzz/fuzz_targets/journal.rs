#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bale_io_fuzz::journal(data);
});
