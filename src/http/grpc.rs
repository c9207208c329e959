//! gRPC over the connection manager, as Envoy treats it: which requests
//! are gRPC, how a local reply becomes a gRPC status, and `grpc-timeout`.

use std::time::Duration;

/// Whether a `content-type` value makes a request gRPC: exactly
/// `application/grpc` or `application/grpc+<codec>` (so not
/// `application/grpc-web`), as Envoy decides it.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.starts_with(GRPC) && (value.len() == GRPC.len() || value[GRPC.len()] == b'+')
}

/// `DEADLINE_EXCEEDED`.
pub const DEADLINE_EXCEEDED: u8 = 4;

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

/// The largest `grpc-timeout` value (eight digits).
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` value (`<up to 8 digits><H|M|S|m|u|n>`), as
/// Envoy does: sub-millisecond units round up to whole milliseconds;
/// anything else is no timeout.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    let n: u64 = std::str::from_utf8(digits).ok()?.trim().parse().ok()?;
    if n > MAX_TIMEOUT_VALUE {
        return None;
    }
    let ms = |d: Duration| Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64);
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => ms(Duration::from_micros(n)),
        b'n' => ms(Duration::from_nanos(n)),
        _ => return None,
    })
}

/// Writes a timeout as a `grpc-timeout` value, as Envoy does: whole
/// milliseconds, or a coarser unit once that needs more than eight digits.
pub fn format_timeout(timeout: Duration) -> String {
    let mut value = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    for (unit, to_next) in [('m', 1000), ('S', 60), ('M', 60)] {
        if value <= MAX_TIMEOUT_VALUE {
            return format!("{value}{unit}");
        }
        value /= to_next;
    }
    format!("{}H", value.min(MAX_TIMEOUT_VALUE))
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

/// One gRPC message on the wire: uncompressed, its length, its bytes.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The one uncompressed message `body` carries, if it carries exactly
/// that.
pub fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (&[0, a, b, c, d], message) = body.split_first_chunk::<5>()? else {
        return None;
    };
    (u32::from_be_bytes([a, b, c, d]) as usize == message.len()).then_some(message)
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
    fn one_message_is_framed_and_unframed() {
        let framed = frame(b"abc");
        assert_eq!(framed, b"\0\0\0\0\x03abc");
        assert_eq!(unframe(&framed), Some(&b"abc"[..]));
        assert_eq!(unframe(&frame(b"")), Some(&b""[..]));
        // Compressed, short, long, or two messages: not one plain message.
        assert_eq!(unframe(b"\x01\0\0\0\x03abc"), None);
        assert_eq!(unframe(b"\0\0\0"), None);
        assert_eq!(unframe(b"\0\0\0\0\x04abc"), None);
        assert_eq!(unframe(&[frame(b"a"), frame(b"b")].concat()), None);
    }

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

    #[test]
    fn grpc_timeouts_as_envoy_reads_and_writes_them() {
        let ms = Duration::from_millis;
        assert_eq!(parse_timeout(b"2S"), Some(ms(2000)));
        assert_eq!(parse_timeout(b"1500u"), Some(ms(2)));
        assert_eq!(parse_timeout(b"2500000n"), Some(ms(3)));
        assert_eq!(parse_timeout(b"3H"), Some(ms(10_800_000)));
        assert_eq!(parse_timeout(b"99999999m"), Some(ms(99_999_999)));
        assert_eq!(parse_timeout(b"100000000m"), None);
        assert_eq!(parse_timeout(b"abc"), None);
        assert_eq!(parse_timeout(b""), None);
        assert_eq!(format_timeout(ms(4900)), "4900m");
        assert_eq!(format_timeout(ms(10_800_000)), "10800000m");
        assert_eq!(format_timeout(ms(200_000_000)), "200000S");
        assert_eq!(format_timeout(Duration::from_secs(200_000_000)), "3333333M");
    }
}
