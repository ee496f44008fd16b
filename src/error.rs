//! One error type for the whole crate: every variant says what was wrong and what to do about it.

use std::fmt;

/// Everything that can go wrong, as a value. Messages are written for the person running the program.
#[derive(Debug)]
pub enum Error {
    /// No GPU adapter (or none matching the user's choice) was found.
    NoAdapter(String),
    /// The device could not be created or reported an error.
    Device(String),
    /// Two tensors (or a tensor and an op) disagree about shapes.
    Shape { op: &'static str, detail: String },
    /// A buffer would exceed what the adapter allows.
    BufferTooLarge {
        bytes: u64,
        limit: u64,
        what: String,
    },
    /// A file could not be read or written.
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A data file is malformed.
    Data {
        path: String,
        offset: u64,
        detail: String,
    },
    /// A configuration field is invalid.
    Config { field: String, detail: String },
    /// A long pass was stopped because its progress callback asked it to (e.g. on Ctrl-C).
    Stopped(String),
    /// Anything else the user can act on.
    Other(String),
}

/// Crate-wide result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error for `op`.
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no usable GPU adapter: {m}"),
            Error::Device(m) => write!(f, "GPU device error: {m}"),
            Error::Shape { op, detail } => write!(f, "shape error in {op}: {detail}"),
            Error::BufferTooLarge { bytes, limit, what } => write!(
                f,
                "{what} needs a buffer of {bytes} bytes but this adapter allows at most {limit}; \
                 use a smaller batch or model"
            ),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Data {
                path,
                offset,
                detail,
            } => {
                write!(
                    f,
                    "{path}: corrupt or truncated data at byte offset {offset}: {detail}"
                )
            }
            Error::Config { field, detail } => {
                write!(f, "invalid config field `{field}`: {detail}")
            }
            Error::Stopped(what) => write!(f, "{what} was stopped before it finished"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
