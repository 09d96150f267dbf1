//! The credential store: one access key / secret key pair. s3s verifies signatures with it;
//! unknown access keys get S3's `InvalidAccessKeyId` (s3s's SimpleAuth answers NotSignedUp).

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

pub struct SingleKeyAuth {
    access_key: String,
    secret_key: SecretKey,
}

impl SingleKeyAuth {
    pub fn new(access_key: String, secret_key: String) -> Self {
        Self {
            access_key,
            secret_key: SecretKey::from(secret_key),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for SingleKeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}
