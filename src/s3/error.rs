//! The S3 layer's errors in one place: engine and routing causes to S3 code, status and
//! message ([`Failure`]), the request-body failures s3s reports only as text ([`body`]), and
//! the common S3 errors (NoSuchBucket, NoSuchKey, InternalError).

use std::borrow::Cow;

use s3s::{s3_error, S3Error, S3ErrorCode};

use crate::router::RouteError;

/// Why a request failed below the S3 layer, as the client is told: each cause has exactly
/// one S3 code, status and message here. The engine's own text (paths, offsets, limits of the
/// on-disk format) is logged where the cause is built, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The data disk is full (engine `NoSpace`): 507 XBaleStorageFull.
    StorageFull,
    /// An `Expect` was not met at commit time: 412 PreconditionFailed.
    Precondition,
    /// A body longer or shorter than declared: 400 IncompleteBody.
    SizeMismatch { expected: u64, got: u64 },
    /// A named object does not exist: 404 NoSuchKey.
    NotFound,
    /// The shard is shutting down: 503 ServiceUnavailable.
    ShuttingDown,
    /// The shard lost a copy and cannot protect a write (engine `Unprotected`, ADR 19): 503
    /// ServiceUnavailable, saying so.
    Unprotected,
    /// An argument beyond the engine's limits that the S3 layer did not refuse first: 400
    /// InvalidArgument.
    Invalid,
    /// I/O error, corrupt data, a core that is gone: 500 InternalError.
    Internal,
}

const INTERNAL_MESSAGE: &str = "We encountered an internal error. Please try again.";
const PRECONDITION_MESSAGE: &str = "At least one of the pre-conditions you specified did not hold";

impl Failure {
    /// The cause of an engine error; logs what the client is not told.
    pub fn of_engine(e: bale_io::Error) -> Failure {
        use bale_io::Error as E;
        match e {
            E::NoSpace { context } => {
                tracing::warn!(%context, "write refused: no space left");
                Failure::StorageFull
            }
            E::PreconditionFailed => Failure::Precondition,
            E::SizeMismatch { expected, got } => Failure::SizeMismatch { expected, got },
            E::NotFound => Failure::NotFound,
            E::Closed => Failure::ShuttingDown,
            E::Unprotected(why) => {
                tracing::warn!(%why, "write refused: a copy of the shard is lost");
                Failure::Unprotected
            }
            E::Invalid(msg) => {
                tracing::warn!(error = %msg, "engine refused an argument");
                Failure::Invalid
            }
            e @ E::Corrupt { .. } => {
                tracing::error!(error = %e, "corrupt data detected on read");
                Failure::Internal
            }
            e => {
                tracing::error!(error = %e, "engine error");
                Failure::Internal
            }
        }
    }

    pub fn code(&self) -> S3ErrorCode {
        match self {
            Failure::StorageFull => S3ErrorCode::Custom("XBaleStorageFull".into()),
            Failure::Precondition => S3ErrorCode::PreconditionFailed,
            Failure::SizeMismatch { .. } => S3ErrorCode::IncompleteBody,
            Failure::NotFound => S3ErrorCode::NoSuchKey,
            Failure::ShuttingDown | Failure::Unprotected => S3ErrorCode::ServiceUnavailable,
            Failure::Invalid => S3ErrorCode::InvalidArgument,
            Failure::Internal => S3ErrorCode::InternalError,
        }
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Failure::StorageFull => S::INSUFFICIENT_STORAGE,
            Failure::Precondition => S::PRECONDITION_FAILED,
            Failure::SizeMismatch { .. } | Failure::Invalid => S::BAD_REQUEST,
            Failure::NotFound => S::NOT_FOUND,
            Failure::ShuttingDown | Failure::Unprotected => S::SERVICE_UNAVAILABLE,
            Failure::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Failure::StorageFull => "No space left on the data disk".into(),
            Failure::Precondition => PRECONDITION_MESSAGE.into(),
            Failure::SizeMismatch { expected, got } => format!(
                "You did not provide the number of bytes specified: expected {expected}, got {got}"
            )
            .into(),
            Failure::NotFound => "The specified key does not exist.".into(),
            Failure::ShuttingDown => "Server is shutting down".into(),
            Failure::Unprotected => "A data disk holding this object's shard is lost or being \
                                     rebuilt: writes are refused until it is replaced (reads work)"
                .into(),
            Failure::Invalid => "A value in the request is beyond this server's limits".into(),
            Failure::Internal => INTERNAL_MESSAGE.into(),
        }
    }
}

impl From<Failure> for S3Error {
    fn from(f: Failure) -> S3Error {
        S3Error::with_message(f.code(), f.message()).with_status(f.status())
    }
}

/// An engine error as the client sees it (see [`Failure`]).
pub fn engine(e: bale_io::Error) -> S3Error {
    Failure::of_engine(e).into()
}

/// Maps a failed request body to its S3 error. s3s's stream error types are private, so its
/// failures are recognised by their messages (pinned s3s version: 0.14.1).
pub fn body(e: s3s::StdError) -> S3Error {
    let e = match e.downcast::<S3Error>() {
        Ok(s3e) => return *s3e,
        Err(e) => e,
    };
    // An S3Error of ours (e.g. from the aws-chunked guard) may be wrapped by s3s's streams.
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(x) = src {
        if let Some(s3e) = x.downcast_ref::<S3Error>() {
            return S3Error::with_message(
                s3e.code().clone(),
                s3e.message().unwrap_or_default().to_string(),
            );
        }
        src = x.source();
    }
    let text = e.to_string();
    tracing::debug!(error = %text, "request body failed");
    match BodyCause::of_text(&text) {
        BodyCause::ChunkSignature => s3_error!(SignatureDoesNotMatch, "The request signature we calculated does not match the signature you provided (aws-chunked chunk signature)."),
        BodyCause::PayloadSha256 => payload_sha256_mismatch(),
        BodyCause::TooLarge => s3_error!(
            EntityTooLarge,
            "An aws-chunked chunk exceeds the limit of 16 MiB"
        ),
        BodyCause::Other => s3_error!(
            IncompleteBody,
            "The request body ended before its declared length or was malformed"
        ),
    }
}

/// A body that is not what its signed `x-amz-content-sha256` says (400).
pub fn payload_sha256_mismatch() -> S3Error {
    S3Error::with_message(
        s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )
    .with_status(http::StatusCode::BAD_REQUEST)
}

/// What a failed body stream meant. s3s's stream error types (`AwsChunkedStreamError`,
/// `UploadStreamError`) are private, so they are told apart by their Display text: every such
/// match is here, each pinned to s3s 0.14.1 by a unit test below (bump s3s, rerun them).
#[derive(Debug, PartialEq, Eq)]
enum BodyCause {
    /// `AwsChunkedStreamError::SignatureMismatch`: a chunk signature is wrong.
    ChunkSignature,
    /// `UploadStreamError::Sha256Mismatch`: the body is not what x-amz-content-sha256 says.
    PayloadSha256,
    /// A chunk over bale's limit (`crate::chunked`), when it arrives wrapped as text.
    TooLarge,
    /// Anything else: the body ended early or was malformed.
    Other,
}

impl BodyCause {
    fn of_text(text: &str) -> BodyCause {
        if text.contains("SignatureMismatch") {
            BodyCause::ChunkSignature
        } else if text.contains("Sha256Mismatch") {
            BodyCause::PayloadSha256
        } else if text.contains("EntityTooLarge") || text.contains("exceeds the limit") {
            BodyCause::TooLarge
        } else {
            BodyCause::Other
        }
    }
}

pub fn route(e: RouteError) -> S3Error {
    tracing::error!(error = %e, "routing failure");
    Failure::Internal.into()
}

pub fn internal(context: &str) -> S3Error {
    tracing::error!(context, "internal error");
    internal_error()
}

/// 500 InternalError with S3's generic message; the cause is logged by the caller, never sent.
pub fn internal_error() -> S3Error {
    Failure::Internal.into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_causes_map_once_and_keep_engine_text_out() {
        use bale_io::Error as E;
        let secret = "/data/shard-3/journal offset 4096";
        let cases: Vec<(E, &str, u16)> = vec![
            (
                E::NoSpace {
                    context: secret.into(),
                },
                "XBaleStorageFull",
                507,
            ),
            (E::PreconditionFailed, "PreconditionFailed", 412),
            (
                E::SizeMismatch {
                    expected: 5,
                    got: 3,
                },
                "IncompleteBody",
                400,
            ),
            (E::NotFound, "NoSuchKey", 404),
            (E::Closed, "ServiceUnavailable", 503),
            (E::Invalid(secret.into()), "InvalidArgument", 400),
            (
                E::Corrupt {
                    context: secret.into(),
                },
                "InternalError",
                500,
            ),
            (
                E::Io {
                    context: secret.into(),
                    source: std::io::Error::other("EIO"),
                },
                "InternalError",
                500,
            ),
        ];
        for (e, code, status) in cases {
            let s3e = engine(e);
            assert_eq!(s3e.code().as_str(), code);
            assert_eq!(
                s3e.status_code().map(|s| s.as_u16()),
                Some(status),
                "{code}"
            );
            assert!(!s3e.message().unwrap_or("").contains(secret), "{code}");
        }
    }

    // The Display texts of s3s 0.14.1's body stream errors, copied from its source
    // (src/http/aws_chunked_stream.rs, src/sig_v4/upload_stream.rs, src/http/body.rs).
    #[test]
    fn s3s_0_14_1_body_error_texts() {
        let cases = [
            (
                "AwsChunkedStreamError: SignatureMismatch",
                BodyCause::ChunkSignature,
            ),
            (
                "UploadStreamError: Sha256Mismatch",
                BodyCause::PayloadSha256,
            ),
            ("AwsChunkedStreamError: FormatError", BodyCause::Other),
            ("AwsChunkedStreamError: Incomplete", BodyCause::Other),
            ("UploadStreamError: Incomplete", BodyCause::Other),
            ("UploadStreamError: LengthMismatch", BodyCause::Other),
            (
                "aws-chunked chunk of 20000000 bytes exceeds the limit of 16777216 bytes",
                BodyCause::TooLarge,
            ),
        ];
        for (text, cause) in cases {
            assert_eq!(BodyCause::of_text(text), cause, "{text}");
        }
        // The error reaches `body` as a boxed std error; its Display text is what is matched.
        #[derive(Debug, thiserror::Error)]
        #[error("AwsChunkedStreamError: SignatureMismatch")]
        struct Sig;
        let e = body(Box::new(Sig));
        assert_eq!(e.code(), &S3ErrorCode::SignatureDoesNotMatch);
        #[derive(Debug, thiserror::Error)]
        #[error("UploadStreamError: Sha256Mismatch")]
        struct Sha;
        let e = body(Box::new(Sha));
        assert_eq!(e.code().as_str(), "XAmzContentSHA256Mismatch");
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
    }
}
