//! AWS Signature Version 4 for path-style S3 requests (header auth): the shared signer of
//! the `bale-sigv4` crate (`sigv4::signer`), which the gateway's upstream client uses too.

pub use sigv4::signer::*;
