//! Why a remote-write body is refused, with the HTTP status of each refusal.

const SUPPORTED: &str = "supported: Content-Type \"application/x-protobuf\" or \
\"application/x-protobuf;proto=prometheus.WriteRequest\" (remote write 1.0, \
X-Prometheus-Remote-Write-Version 0.1.0) and \
\"application/x-protobuf;proto=io.prometheus.write.v2.Request\" (remote write 2.0, version 2.0.0), \
each with Content-Encoding \"snappy\"";

/// Why a remote-write body was refused. [`RemoteWriteError::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteWriteError {
    /// Content-Type, Content-Encoding or version header not supported (415).
    #[error("unsupported remote write format: {0}; {SUPPORTED}")]
    UnsupportedFormat(String),
    /// The body decompresses to more than the allowed size (413).
    #[error("remote write body too large: {size} bytes decompressed, the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// Not a valid snappy block (400).
    #[error("invalid snappy body: {0}")]
    Snappy(String),
    /// Not valid protobuf for the detected message (400).
    #[error("malformed remote write protobuf: {0}")]
    Malformed(String),
    /// Valid protobuf, but a series or the symbol table breaks a remote-write rule (400).
    #[error("invalid remote write request: {0}")]
    Invalid(String),
    /// The labels to inject are unusable; a configuration problem, reported as 400 if it ever
    /// reaches a request.
    #[error("invalid labels to inject: {0}")]
    InvalidLabelSet(String),
}

impl RemoteWriteError {
    /// HTTP status for this error: 415, 413 or 400.
    pub fn status(&self) -> u16 {
        match self {
            RemoteWriteError::UnsupportedFormat(_) => 415,
            RemoteWriteError::TooLarge { .. } => 413,
            RemoteWriteError::Snappy(_)
            | RemoteWriteError::Malformed(_)
            | RemoteWriteError::Invalid(_)
            | RemoteWriteError::InvalidLabelSet(_) => 400,
        }
    }
}
