//! Mapping engine and routing failures to S3 errors.

use s3s::{S3Error, S3ErrorCode};

use crate::router::RouteError;

pub fn engine(e: bale_io::Error) -> S3Error {
    use bale_io::Error as E;
    match e {
        E::NoSpace { context } => {
            tracing::warn!(%context, "write refused: no space left");
            S3Error::with_message(
                S3ErrorCode::Custom("XBaleStorageFull".into()),
                "No space left on the data disk",
            )
            .with_status(http::StatusCode::INSUFFICIENT_STORAGE)
        }
        E::PreconditionFailed => S3Error::with_message(
            S3ErrorCode::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        ),
        E::SizeMismatch { expected, got } => S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!(
                "You did not provide the number of bytes specified: expected {expected}, got {got}"
            ),
        ),
        E::NotFound => {
            S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
        }
        E::Closed => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, "Server is shutting down")
                .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
        }
        E::Invalid(msg) => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
        e @ E::Corrupt { .. } => {
            tracing::error!(error = %e, "corrupt data detected on read");
            S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            )
        }
        e => {
            tracing::error!(error = %e, "engine error");
            S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            )
        }
    }
}

pub fn route(e: RouteError) -> S3Error {
    tracing::error!(error = %e, "routing failure");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "We encountered an internal error. Please try again.",
    )
}

pub fn internal(context: &str) -> S3Error {
    tracing::error!(context, "internal error");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "We encountered an internal error. Please try again.",
    )
}

pub fn no_such_bucket(bucket: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchBucket,
        format!("The specified bucket does not exist: {bucket}"),
    )
}

pub fn no_such_key() -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
}

pub trait WithStatus {
    fn with_status(self, status: http::StatusCode) -> Self;
}

impl WithStatus for S3Error {
    fn with_status(mut self, status: http::StatusCode) -> Self {
        self.set_status_code(status);
        self
    }
}
