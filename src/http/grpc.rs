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
}
