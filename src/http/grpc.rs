//! gRPC over the connection manager, as Envoy treats it: which requests
//! are gRPC, and how a local reply becomes a gRPC status.

/// Whether a `content-type` value makes a request gRPC: exactly
/// `application/grpc` or `application/grpc+<codec>` (so not
/// `application/grpc-web`), as Envoy decides it.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.starts_with(GRPC) && (value.len() == GRPC.len() || value[GRPC.len()] == b'+')
}

/// The gRPC status Envoy gives an HTTP status in a local reply.
pub fn status_for_http(status: u16) -> u8 {
    match status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// `grpc-message` encoding (gRPC over HTTP/2, "Responses"): bytes outside
/// printable ASCII, and `%` itself, become `%XX`.
pub fn encode_message(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// The names Envoy gives the known gRPC statuses: camel case, snake case.
const NAMES: [(&str, &str); 17] = [
    ("OK", "OK"),
    ("Canceled", "CANCELLED"),
    ("Unknown", "UNKNOWN"),
    ("InvalidArgument", "INVALID_ARGUMENT"),
    ("DeadlineExceeded", "DEADLINE_EXCEEDED"),
    ("NotFound", "NOT_FOUND"),
    ("AlreadyExists", "ALREADY_EXISTS"),
    ("PermissionDenied", "PERMISSION_DENIED"),
    ("ResourceExhausted", "RESOURCE_EXHAUSTED"),
    ("FailedPrecondition", "FAILED_PRECONDITION"),
    ("Aborted", "ABORTED"),
    ("OutOfRange", "OUT_OF_RANGE"),
    ("Unimplemented", "UNIMPLEMENTED"),
    ("Internal", "INTERNAL"),
    ("Unavailable", "UNAVAILABLE"),
    ("DataLoss", "DATA_LOSS"),
    ("Unauthenticated", "UNAUTHENTICATED"),
];

/// How `%GRPC_STATUS(…)%` writes a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// `CAMEL_STRING` (the default): `DeadlineExceeded`.
    Camel,
    /// `SNAKE_STRING`: `DEADLINE_EXCEEDED`.
    Snake,
    /// `NUMBER`: `4`.
    Number,
}

impl StatusFormat {
    /// Parses the operator's argument.
    pub fn parse(arg: Option<&str>) -> Result<Self, String> {
        match arg {
            None | Some("CAMEL_STRING") => Ok(StatusFormat::Camel),
            Some("SNAKE_STRING") => Ok(StatusFormat::Snake),
            Some("NUMBER") => Ok(StatusFormat::Number),
            Some(other) => Err(format!(
                "GRPC_STATUS format {other:?} is not CAMEL_STRING, SNAKE_STRING or NUMBER"
            )),
        }
    }

    /// Writes `code` (-1 for a malformed one; unknown codes as numbers).
    pub fn write(self, code: i64, out: &mut String) {
        let name = usize::try_from(code).ok().and_then(|i| NAMES.get(i));
        match (self, name) {
            (StatusFormat::Camel, Some((camel, _))) => out.push_str(camel),
            (StatusFormat::Snake, Some((_, snake))) => out.push_str(snake),
            _ => out.push_str(&code.to_string()),
        }
    }
}

/// A `grpc-status` value as Envoy reads it: a decimal number (surrounding
/// spaces allowed), any other text -1.
pub fn parse_status(value: &[u8]) -> i64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(-1, i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_as_envoy_reads_them() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/json"));
    }

    #[test]
    fn statuses_and_messages_map_as_envoy_maps_them() {
        assert_eq!(status_for_http(404), 12);
        assert_eq!(status_for_http(504), 14);
        assert_eq!(status_for_http(301), 2);
        assert_eq!(encode_message(b"a b%\n\xc3"), b"a b%25%0A%C3".to_vec());
    }

    #[test]
    fn statuses_print_as_envoy_prints_them() {
        let show = |format, code| {
            let mut out = String::new();
            StatusFormat::write(format, code, &mut out);
            out
        };
        assert_eq!(show(StatusFormat::Camel, 1), "Canceled");
        assert_eq!(show(StatusFormat::Snake, 1), "CANCELLED");
        assert_eq!(show(StatusFormat::Camel, 0), "OK");
        assert_eq!(show(StatusFormat::Number, 4), "4");
        assert_eq!(show(StatusFormat::Camel, 99), "99");
        assert_eq!(show(StatusFormat::Camel, -1), "-1");
        assert_eq!(parse_status(b"007"), 7);
        assert_eq!(parse_status(b" 4 "), 4);
        assert_eq!(parse_status(b"-1"), -1);
        assert_eq!(parse_status(b"abc"), -1);
    }
}
