//! Envoy's substitution format strings: `%OPERATOR(arg):max_len%` command
//! operators compiled once, rendered per request.

use super::Record;
use crate::http::date::civil_from_days;
use crate::http::grpc::StatusFormat;
use serde_json::Value;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Envoy's default access-log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// What one command operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    StartTime(Option<String>),
    Req(String, Option<String>),
    Resp(String, Option<String>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamDirectRemoteAddress,
    DownstreamDirectRemoteAddressWithoutPort,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    RouteName,
    RequestId,
    Hostname,
    GrpcStatus(StatusFormat),
    DownstreamTlsVersion,
    DownstreamTlsCipher,
    DownstreamPeerUriSan,
    DownstreamPeerSubject,
    RequestedServerName,
    UpstreamTransportFailureReason,
}

impl Operator {
    /// Whether the value is a number (kept as a number in JSON logs).
    fn numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
                | Operator::ResponseDuration
                | Operator::GrpcStatus(StatusFormat::Number)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Op(Operator, Option<usize>),
}

/// A compiled format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A compiled `log_format`: text lines or one JSON object per line.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// A text template (its own newline included, as Envoy's).
    Text(Template),
    /// `json_format`: keys to templates (or nested objects, or constants).
    Json(Vec<(String, JsonValue)>),
}

/// One value of a `json_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// A string with operators.
    Template(Template),
    /// A nested object.
    Object(Vec<(String, JsonValue)>),
    /// A number, bool or null, copied as is.
    Constant(Value),
}

fn parse_operator(name: &str, arg: Option<&str>) -> Result<Operator, String> {
    let header = |arg: Option<&str>| -> Result<(String, Option<String>), String> {
        let arg = arg.ok_or_else(|| format!("%{name}(...)% needs a header name"))?;
        Ok(match arg.split_once('?') {
            Some((a, b)) => (a.to_ascii_lowercase(), Some(b.to_ascii_lowercase())),
            None => (arg.to_ascii_lowercase(), None),
        })
    };
    let no_arg = |op: Operator| match arg {
        Some(_) => Err(format!("%{name}% takes no argument")),
        None => Ok(op),
    };
    match name {
        "START_TIME" => Ok(Operator::StartTime(arg.map(str::to_string))),
        "REQ" => header(arg).map(|(a, b)| Operator::Req(a, b)),
        "RESP" => header(arg).map(|(a, b)| Operator::Resp(a, b)),
        "PROTOCOL" => no_arg(Operator::Protocol),
        "RESPONSE_CODE" => no_arg(Operator::ResponseCode),
        "RESPONSE_FLAGS" => no_arg(Operator::ResponseFlags),
        "BYTES_RECEIVED" => no_arg(Operator::BytesReceived),
        "BYTES_SENT" => no_arg(Operator::BytesSent),
        "DURATION" => no_arg(Operator::Duration),
        "RESPONSE_DURATION" => no_arg(Operator::ResponseDuration),
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => no_arg(Operator::UpstreamHost),
        "UPSTREAM_CLUSTER" => no_arg(Operator::UpstreamCluster),
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Operator::DownstreamRemoteAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => no_arg(Operator::DownstreamDirectRemoteAddress),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamDirectRemoteAddressWithoutPort)
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Operator::DownstreamLocalAddress),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamLocalAddressWithoutPort)
        }
        "ROUTE_NAME" => no_arg(Operator::RouteName),
        "REQUEST_ID" => no_arg(Operator::RequestId),
        "HOSTNAME" => no_arg(Operator::Hostname),
        "GRPC_STATUS" => StatusFormat::parse(arg).map(Operator::GrpcStatus),
        "DOWNSTREAM_TLS_VERSION" => no_arg(Operator::DownstreamTlsVersion),
        "DOWNSTREAM_TLS_CIPHER" => no_arg(Operator::DownstreamTlsCipher),
        "DOWNSTREAM_PEER_URI_SAN" => no_arg(Operator::DownstreamPeerUriSan),
        "DOWNSTREAM_PEER_SUBJECT" => no_arg(Operator::DownstreamPeerSubject),
        "REQUESTED_SERVER_NAME" => no_arg(Operator::RequestedServerName),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => no_arg(Operator::UpstreamTransportFailureReason),
        _ => Err(format!("unknown command operator %{name}%")),
    }
}

impl Template {
    /// Compiles a format string; unknown operators are errors.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let name_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..name_len];
            if name.is_empty() {
                return Err(format!(
                    "a lone '%' before {rest:?} (write %% for a percent sign)"
                ));
            }
            rest = &rest[name_len..];
            let mut arg = None;
            if let Some(after) = rest.strip_prefix('(') {
                // START_TIME formats may hold parentheses; the argument ends at ")%" or "):".
                let end = after
                    .match_indices(')')
                    .map(|(i, _)| i)
                    .find(|&i| matches!(after.as_bytes().get(i + 1), Some(b'%') | Some(b':')))
                    .ok_or_else(|| format!("%{name}(...% is missing its ')'"))?;
                arg = Some(&after[..end]);
                rest = &after[end + 1..];
            }
            let mut max_len = None;
            if let Some(after) = rest.strip_prefix(':') {
                let digits = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                max_len = Some(
                    after[..digits]
                        .parse()
                        .map_err(|_| format!("%{name}%: expected a length after ':'"))?,
                );
                rest = &after[digits..];
            }
            rest = rest
                .strip_prefix('%')
                .ok_or_else(|| format!("%{name} is not closed with '%'"))?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Op(parse_operator(name, arg)?, max_len));
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Its text when it has no `%OPERATOR%` to substitute.
    pub fn literal(&self) -> Option<String> {
        self.parts.iter().try_fold(String::new(), |mut text, part| {
            let Part::Text(t) = part else { return None };
            text.push_str(t);
            Some(text)
        })
    }

    /// Appends the rendered template to `out` (missing values as `-`, as
    /// access logs write them).
    pub fn render(&self, r: &Record, out: &mut String) {
        self.render_with(r, out, "-");
    }

    /// Appends the rendered template to `out` with missing values left
    /// out, as Envoy renders header values.
    pub fn render_value(&self, r: &Record, out: &mut String) {
        self.render_with(r, out, "");
    }

    fn render_with(&self, r: &Record, out: &mut String, missing: &str) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Op(op, max) => {
                    let start = out.len();
                    if !value(op, r, out) {
                        out.push_str(missing);
                    }
                    truncate(out, start, *max);
                }
            }
        }
    }

    /// The JSON value of a template: a lone numeric operator stays a number,
    /// a lone missing value is null.
    fn json(&self, r: &Record) -> Value {
        if let [Part::Op(op, max)] = self.parts.as_slice() {
            let mut s = String::new();
            if !value(op, r, &mut s) {
                return Value::Null;
            }
            truncate(&mut s, 0, *max);
            if op.numeric() {
                if let Ok(n) = s.parse::<u64>() {
                    return Value::from(n);
                }
            }
            return Value::String(s);
        }
        let mut s = String::new();
        self.render(r, &mut s);
        Value::String(s)
    }
}

fn truncate(out: &mut String, start: usize, max: Option<usize>) {
    if let Some(max) = max {
        let mut end = (start + max).min(out.len());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// Writes one operator's value; false when it has none.
fn value(op: &Operator, r: &Record, out: &mut String) -> bool {
    match op {
        Operator::StartTime(fmt) => {
            strftime(r, fmt.as_deref(), out);
            true
        }
        Operator::Req(name, alt) => header_value(r.request_header(name, alt.as_deref()), out),
        Operator::Resp(name, alt) => {
            header_value(r.response_header(name, alt.as_deref()).as_deref(), out)
        }
        Operator::Protocol => {
            out.push_str(r.protocol);
            true
        }
        Operator::ResponseCode => {
            let _ = write!(out, "{}", r.status);
            true
        }
        Operator::ResponseFlags => {
            let _ = write!(out, "{}", r.flags);
            true
        }
        Operator::BytesReceived => {
            let _ = write!(out, "{}", r.bytes_received);
            true
        }
        Operator::BytesSent => {
            let _ = write!(out, "{}", r.bytes_sent);
            true
        }
        Operator::Duration => {
            let _ = write!(out, "{}", millis(r.duration));
            true
        }
        Operator::ResponseDuration => r
            .response_duration
            .map(|d| write!(out, "{}", millis(d)))
            .is_some(),
        Operator::UpstreamHost => r
            .upstream_host
            .as_ref()
            .map(|a| write!(out, "{a}"))
            .is_some(),
        Operator::UpstreamCluster => r.upstream_cluster.map(|c| out.push_str(c)).is_some(),
        Operator::DownstreamTlsVersion => r.tls.map(|t| out.push_str(t.version)).is_some(),
        Operator::DownstreamTlsCipher => r.tls.map(|t| out.push_str(t.cipher)).is_some(),
        Operator::DownstreamPeerUriSan => r
            .tls
            .filter(|t| !t.peer_uri_sans.is_empty())
            .map(|t| out.push_str(&t.peer_uri_sans.join(",")))
            .is_some(),
        Operator::DownstreamPeerSubject => r
            .tls
            .and_then(|t| t.peer_subject.as_deref())
            .map(|s| out.push_str(s))
            .is_some(),
        Operator::RequestedServerName => r
            .tls
            .and_then(|t| t.server_name.as_deref())
            .map(|s| out.push_str(s))
            .is_some(),
        // Envoy writes it with spaces as underscores.
        Operator::UpstreamTransportFailureReason => r
            .upstream_transport_failure
            .as_deref()
            .map(|s| out.push_str(&s.replace(' ', "_")))
            .is_some(),
        Operator::DownstreamRemoteAddress => {
            r.remote.as_ref().map(|a| write!(out, "{a}")).is_some()
        }
        Operator::DownstreamRemoteAddressWithoutPort => r
            .remote
            .as_ref()
            .map(|a| write!(out, "{}", a.without_port()))
            .is_some(),
        Operator::DownstreamDirectRemoteAddress => r
            .direct_remote
            .as_ref()
            .map(|a| write!(out, "{a}"))
            .is_some(),
        Operator::DownstreamDirectRemoteAddressWithoutPort => r
            .direct_remote
            .as_ref()
            .map(|a| write!(out, "{}", a.without_port()))
            .is_some(),
        Operator::DownstreamLocalAddress => r.local.as_ref().map(|a| write!(out, "{a}")).is_some(),
        Operator::DownstreamLocalAddressWithoutPort => r
            .local
            .as_ref()
            .map(|a| write!(out, "{}", a.without_port()))
            .is_some(),
        Operator::RouteName => r
            .route_name
            .filter(|n| !n.is_empty())
            .map(|n| out.push_str(n))
            .is_some(),
        Operator::RequestId => header_value(r.request_header("x-request-id", None), out),
        Operator::Hostname => {
            out.push_str(super::hostname());
            true
        }
        Operator::GrpcStatus(format) => r.grpc_status.map(|c| format.write(c, out)).is_some(),
    }
}

fn header_value(v: Option<&[u8]>, out: &mut String) -> bool {
    match v {
        Some(v) => {
            out.push_str(&String::from_utf8_lossy(v));
            true
        }
        None => false,
    }
}

/// `%START_TIME%` with an strftime-style format (Envoy's default without).
fn strftime(r: &Record, fmt: Option<&str>, out: &mut String) {
    let since = r.start.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = since.subsec_nanos();
    let fraction = |out: &mut String, digits: usize| {
        let digits = digits.clamp(1, 9);
        let scaled = nanos / 10u32.pow(9 - digits as u32);
        let _ = write!(out, "{scaled:0digits$}");
    };
    let Some(fmt) = fmt.filter(|f| !f.is_empty()) else {
        let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.");
        fraction(out, 3);
        out.push('Z');
        return;
    };
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // %E<n>S (seconds with n decimals) and %<n>f (n fraction digits).
        let mut digits = None;
        let extended = chars.peek() == Some(&'E');
        if extended {
            chars.next();
        }
        if let Some(n) = chars.peek().and_then(|c| c.to_digit(10)) {
            digits = Some(n as usize);
            chars.next();
        }
        match chars.next() {
            Some('Y') => {
                let _ = write!(out, "{y:04}");
            }
            Some('m') => {
                let _ = write!(out, "{mo:02}");
            }
            Some('d') => {
                let _ = write!(out, "{d:02}");
            }
            Some('H') => {
                let _ = write!(out, "{h:02}");
            }
            Some('M') => {
                let _ = write!(out, "{mi:02}");
            }
            Some('S') => {
                let _ = write!(out, "{s:02}");
                if extended {
                    if let Some(n) = digits.filter(|n| *n > 0) {
                        out.push('.');
                        fraction(out, n);
                    }
                }
            }
            Some('f') => fraction(out, digits.unwrap_or(9)),
            Some('s') => {
                let _ = write!(out, "{secs}");
            }
            Some('z') => out.push_str("+0000"),
            Some('Z') => out.push_str("UTC"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
}

impl Format {
    /// Compiles `json_format` (a YAML/JSON object).
    pub fn json(map: &serde_json::Map<String, Value>) -> Result<Format, String> {
        Ok(Format::Json(json_object(map)?))
    }

    /// Renders one access-log line (with its newline) into `out`.
    pub fn render(&self, r: &Record, out: &mut String) {
        match self {
            Format::Text(t) => t.render(r, out),
            Format::Json(fields) => {
                let value = render_object(fields, r);
                out.push_str(&value.to_string());
                out.push('\n');
            }
        }
    }
}

fn json_object(map: &serde_json::Map<String, Value>) -> Result<Vec<(String, JsonValue)>, String> {
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => JsonValue::Template(
                    Template::parse(s).map_err(|e| format!("json_format.{k}: {e}"))?,
                ),
                Value::Object(o) => JsonValue::Object(json_object(o)?),
                Value::Array(_) => return Err(format!("json_format.{k}: lists are not supported")),
                other => JsonValue::Constant(other.clone()),
            };
            Ok((k.clone(), value))
        })
        .collect()
}

fn render_object(fields: &[(String, JsonValue)], r: &Record) -> Value {
    let map = fields
        .iter()
        .map(|(k, v)| {
            let value = match v {
                JsonValue::Template(t) => t.json(r),
                JsonValue::Object(o) => render_object(o, r),
                JsonValue::Constant(c) => c.clone(),
            };
            (k.clone(), value)
        })
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_operators() {
        let t = Template::parse(DEFAULT_FORMAT).expect("default format");
        assert!(t.parts.len() > 20);
        let t = Template::parse("%REQ(X-A?X-B):5% 100%% %START_TIME(%s.%3f)%").expect("ok");
        assert_eq!(
            t.parts[0],
            Part::Op(Operator::Req("x-a".into(), Some("x-b".into())), Some(5))
        );
        assert_eq!(t.parts[1], Part::Text(" 100% ".into()));
        assert_eq!(
            t.parts[2],
            Part::Op(Operator::StartTime(Some("%s.%3f".into())), None)
        );
        assert!(Template::parse("%NOPE%")
            .unwrap_err()
            .contains("unknown command operator"));
        assert!(Template::parse("%REQ(X").is_err());
        assert!(Template::parse("%PROTOCOL(x)%").is_err());
    }
}
