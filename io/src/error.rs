//! Engine errors. Every variant that can come from the disk carries context (file, offset).

/// Engine result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors returned by the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error other than ENOSPC.
    #[error("io error: {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The disk is full (ENOSPC from write or fallocate). Reads keep working.
    #[error("no space left: {context}")]
    NoSpace { context: String },
    /// CRC mismatch, bad magic, bad format ... with location.
    #[error("corrupt data: {context}")]
    Corrupt { context: String },
    /// The `Expect` given was not met at commit time.
    #[error("precondition failed")]
    PreconditionFailed,
    /// A writer got more or fewer bytes than declared at `put`.
    #[error("size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch { expected: u64, got: u64 },
    /// A compose source (or other named object) does not exist.
    #[error("not found")]
    NotFound,
    /// The shard is shutting down (or its journal failed) and refuses writes.
    #[error("shard closed")]
    Closed,
    /// Bad argument (e.g. key too long for the format).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The shard has fewer live copies than its redundancy asks for (a copy is missing, stale
    /// or failed): writes are refused until the copy is rebuilt, because an acknowledged write
    /// must be protected (ADR 19). Reads keep working from the surviving copy.
    #[error("not protected: {0}")]
    Unprotected(String),
}

impl Error {
    /// Map an `std::io::Error` to `Io` or, for ENOSPC, `NoSpace`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        let context = context.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Error::NoSpace { context }
        } else {
            Error::Io { context, source }
        }
    }

    /// A copy of this error for each of several waiters (io::Error is not Clone: its kind and
    /// message are kept).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::NoSpace { context } => Error::NoSpace {
                context: context.clone(),
            },
            Error::Corrupt { context } => Error::Corrupt {
                context: context.clone(),
            },
            Error::PreconditionFailed => Error::PreconditionFailed,
            Error::SizeMismatch { expected, got } => Error::SizeMismatch {
                expected: *expected,
                got: *got,
            },
            Error::NotFound => Error::NotFound,
            Error::Closed => Error::Closed,
            Error::Invalid(s) => Error::Invalid(s.clone()),
            Error::Unprotected(s) => Error::Unprotected(s.clone()),
        }
    }

    /// Build a `Corrupt` error.
    pub fn corrupt(context: impl Into<String>) -> Error {
        Error::Corrupt {
            context: context.into(),
        }
    }
}
