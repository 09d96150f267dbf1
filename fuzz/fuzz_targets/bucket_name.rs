#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bale_fuzz::bucket_name(data);
});
