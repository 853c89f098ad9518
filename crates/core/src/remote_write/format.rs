//! The two remote-write protocols and how a request's headers name one.

use super::error::RemoteWriteError;

/// Header carrying the remote-write protocol version.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";

const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
const PROTO_V1: &str = "prometheus.WriteRequest";
const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// The remote-write protocol of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Remote write 1.0: `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

impl Format {
    /// Canonical Content-Type for forwarding a body of this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::V1 => "application/x-protobuf",
            Format::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// Value of [`VERSION_HEADER`] for this format.
    pub const fn version(self) -> &'static str {
        match self {
            Format::V1 => "0.1.0",
            Format::V2 => "2.0.0",
        }
    }

    /// Fully qualified protobuf message name.
    pub const fn proto_message(self) -> &'static str {
        match self {
            Format::V1 => PROTO_V1,
            Format::V2 => PROTO_V2,
        }
    }
}

/// Decides the format from the request headers.
///
/// Like Prometheus' own receiver, an absent or empty Content-Type means 1.0 and an absent
/// Content-Encoding means snappy. The version header is optional but, when present, must agree
/// with the Content-Type (0.x / 1.x for 1.0, 2.x for 2.0), so a 2.0 body cannot be labelled 1.0
/// and pass through uninjected.
pub fn detect_format(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    version: Option<&str>,
) -> Result<Format, RemoteWriteError> {
    if let Some(enc) = content_encoding {
        let e = enc.trim();
        if !e.is_empty() && !e.eq_ignore_ascii_case("snappy") {
            return Err(RemoteWriteError::UnsupportedFormat(format!(
                "Content-Encoding {enc:?}"
            )));
        }
    }
    let format = match content_type.map(str::trim) {
        None | Some("") => Format::V1,
        Some(ct) => parse_content_type(ct)?,
    };
    if let Some(v) = version.map(str::trim).filter(|v| !v.is_empty()) {
        let major = v.split('.').next().unwrap_or("");
        let ok = match format {
            Format::V1 => major == "0" || major == "1",
            Format::V2 => major == "2",
        };
        if !ok {
            return Err(RemoteWriteError::UnsupportedFormat(format!(
                "{VERSION_HEADER} {v:?} does not match {}",
                format.proto_message()
            )));
        }
    }
    Ok(format)
}

fn parse_content_type(ct: &str) -> Result<Format, RemoteWriteError> {
    let unsupported = || RemoteWriteError::UnsupportedFormat(format!("Content-Type {ct:?}"));
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE_PROTOBUF) {
        return Err(unsupported());
    }
    let mut proto = None;
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let Some((key, value)) = param.split_once('=') else {
            return Err(unsupported());
        };
        // Other parameters (e.g. charset) do not change the payload; proto does.
        if key.trim().eq_ignore_ascii_case("proto") {
            if proto.is_some() {
                return Err(unsupported());
            }
            proto = Some(value.trim().trim_matches('"'));
        }
    }
    match proto {
        None | Some(PROTO_V1) => Ok(Format::V1),
        Some(PROTO_V2) => Ok(Format::V2),
        Some(_) => Err(unsupported()),
    }
}
