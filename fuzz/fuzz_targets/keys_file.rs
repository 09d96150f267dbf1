#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bale_fuzz::keys_file(data);
});
