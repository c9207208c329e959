//! Route hash policies (`hash_policy[]`): the request hash that ring-hash
//! and Maglev clusters pick endpoints by.

use super::RequestView;
use crate::config::{HashOn, HashPolicy};
use crate::net::Address;
use crate::upstream::hashing;
use std::borrow::Cow;

/// Evaluates a route's hash policies in order (Envoy's combination and
/// `terminal` rule). A cookie policy with a `ttl` whose cookie is missing
/// makes one up and returns the `set-cookie` value to send.
pub fn request_hash(
    policies: &[HashPolicy],
    view: &RequestView,
    client: &Address,
    random: impl Fn() -> u64,
) -> (Option<u64>, Option<Vec<u8>>) {
    let mut hash = None;
    let mut set_cookie = None;
    for policy in policies {
        let value: Option<Cow<[u8]>> = match &policy.on {
            HashOn::Header(name) => view
                .header(name)
                .map(|v| Cow::Owned(v.into_owned().into_bytes())),
            // As Envoy: a pipe client has no address to hash.
            HashOn::SourceIp => client
                .ip()
                .map(|a| Cow::Owned(a.ip().to_string().into_bytes())),
            HashOn::QueryParameter(name) => view
                .query_parameter(name)
                .map(|v| Cow::Owned(v.into_bytes())),
            HashOn::Cookie { name, generate } => match cookie(view, name) {
                Some(v) => Some(Cow::Owned(v.into_bytes())),
                None => generate.as_ref().map(|(ttl, path)| {
                    let value = format!("{:016x}", random());
                    let mut line = format!("{name}=\"{value}\"; Max-Age={ttl}");
                    if !path.is_empty() {
                        line.push_str(&format!("; Path={path}"));
                    }
                    line.push_str("; HttpOnly");
                    set_cookie = Some(line.into_bytes());
                    Cow::Owned(value.into_bytes())
                }),
            },
        };
        if let Some(v) = value {
            hash = Some(hashing::combine(hash, hashing::hash_value(&v)));
        }
        if policy.terminal && hash.is_some() {
            break;
        }
    }
    (hash, set_cookie)
}

/// The value of cookie `name` in the request's `cookie` headers.
fn cookie(view: &RequestView, name: &str) -> Option<String> {
    let all = view.header("cookie")?;
    all.split([';', ','])
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}
