//! Decoding `access_log` entries of the HTTP connection manager.

use super::bootstrap::type_url;
use super::node::{Errors, Fields, Node, Obj};
use crate::access_log::format::DEFAULT_FORMAT;
use crate::access_log::{AccessLogConfig, Destination, Format, Template};

const STDOUT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
const FILE_TYPE: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

#[rustfmt::skip]
static ACCESS_LOG: Fields = Fields {
    known: &["name", "typed_config"],
    unsupported: &["filter"],
};
#[rustfmt::skip]
static STREAM_LOG: Fields = Fields {
    known: &["@type", "log_format"],
    unsupported: &[],
};
#[rustfmt::skip]
static FILE_LOG: Fields = Fields {
    known: &["@type", "path", "format", "json_format", "log_format"],
    unsupported: &["typed_json_format"],
};
#[rustfmt::skip]
static LOG_FORMAT: Fields = Fields {
    known: &["text_format", "text_format_source", "json_format"],
    unsupported: &["omit_empty_values", "content_type", "formatters", "json_format_options"],
};
#[rustfmt::skip]
static DATA_SOURCE: Fields = Fields {
    known: &["inline_string"],
    unsupported: &["filename", "inline_bytes", "environment_variable", "watched_directory"],
};

fn text(node: &Node, errs: &mut Errors) -> Option<Format> {
    let s = node.str(errs)?;
    match Template::parse(s) {
        Ok(t) => Some(Format::Text(t)),
        Err(e) => {
            errs.add(node.path(), e);
            None
        }
    }
}

fn json(node: &Node, errs: &mut Errors) -> Option<Format> {
    let serde_json::Value::Object(map) = node.value() else {
        errs.add(node.path(), "expected an object of keys to format strings");
        return None;
    };
    match Format::json(map) {
        Ok(f) => Some(f),
        Err(e) => {
            errs.add(node.path(), e);
            None
        }
    }
}

/// `log_format` (a `SubstitutionFormatString`).
fn log_format(node: &Node, errs: &mut Errors) -> Option<Format> {
    let obj = node.object(errs, &LOG_FORMAT)?;
    let mut found = Vec::new();
    if let Some(t) = obj.get("text_format") {
        found.push(text(&t, errs));
    }
    if let Some(src) = obj.get("text_format_source") {
        let src_obj = src.object(errs, &DATA_SOURCE)?;
        found.push(text(&src_obj.require(errs, "inline_string")?, errs));
    }
    if let Some(j) = obj.get("json_format") {
        found.push(json(&j, errs));
    }
    if found.len() != 1 {
        errs.add(
            node.path(),
            "expected exactly one of text_format, text_format_source, json_format",
        );
        return None;
    }
    found.pop().flatten()
}

fn default_format() -> Option<Format> {
    Template::parse(DEFAULT_FORMAT).ok().map(Format::Text)
}

/// A file log in Envoy's default format (the admin's `access_log_path`).
pub fn file_log(path: String) -> Option<AccessLogConfig> {
    Some(AccessLogConfig {
        destination: Destination::File(path),
        format: default_format()?,
    })
}

/// Decodes the `access_log` list of `obj` (empty when absent).
pub fn access_logs(obj: &Obj, errs: &mut Errors) -> Vec<AccessLogConfig> {
    obj.get("access_log")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| access_log(entry, errs))
        .collect()
}

/// Decodes one `access_log[]` entry.
pub fn access_log(node: Node, errs: &mut Errors) -> Option<AccessLogConfig> {
    let obj = node.object(errs, &ACCESS_LOG)?;
    let tc = obj.require(errs, "typed_config")?;
    let type_url = type_url(&tc, errs)?;
    let (destination, format) = match type_url {
        STDOUT_TYPE | STDERR_TYPE => {
            let o = tc.object(errs, &STREAM_LOG)?;
            let format = match o.get("log_format") {
                Some(f) => log_format(&f, errs)?,
                None => default_format()?,
            };
            let destination = if type_url == STDOUT_TYPE {
                Destination::Stdout
            } else {
                Destination::Stderr
            };
            (destination, format)
        }
        FILE_TYPE => {
            let o = tc.object(errs, &FILE_LOG)?;
            let path = o.require(errs, "path")?.str(errs)?.to_string();
            let mut formats = Vec::new();
            if let Some(f) = o.get("format") {
                formats.push(text(&f, errs));
            }
            if let Some(j) = o.get("json_format") {
                formats.push(json(&j, errs));
            }
            if let Some(f) = o.get("log_format") {
                formats.push(log_format(&f, errs));
            }
            let format = match formats.len() {
                0 => default_format()?,
                1 => formats.pop().flatten()?,
                _ => {
                    errs.add(
                        tc.path(),
                        "expected at most one of format, json_format, log_format",
                    );
                    return None;
                }
            };
            (Destination::File(path), format)
        }
        other => {
            errs.add(
                &format!("{}.@type", tc.path()),
                format!("access logger {other:?} is not supported yet (stdout, stderr, file are)"),
            );
            return None;
        }
    };
    Some(AccessLogConfig {
        destination,
        format,
    })
}
