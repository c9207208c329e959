//! `envoy.filters.http.csrf`: a request that changes state (`POST`, `PUT`,
//! `DELETE`, `PATCH`) must come from its own origin — its `origin` (else
//! `referer`) naming the host it is sent to, or one of the policy's
//! `additional_origins` — or it is refused 403 `Invalid origin`. A route's
//! or virtual host's own policy replaces the filter's.

use super::Decision;
use crate::config::CsrfPolicy;
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::RequestView;
use crate::runtime::Share;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope, Store};
use std::sync::Arc;

/// The filter, compiled: its policy and stats.
#[derive(Debug)]
pub struct Csrf {
    policy: Policy,
    stats: Arc<Scope<sets::Csrf>>,
}

/// A policy, compiled.
#[derive(Debug)]
pub struct Policy {
    config: CsrfPolicy,
    enabled: Share,
    shadow: Option<Share>,
}

impl Policy {
    /// Compiles `config`, its fractions read from the store's runtime.
    pub fn compile(config: &CsrfPolicy, store: &Store) -> Policy {
        Policy {
            enabled: store.runtime.share(&config.enabled),
            shadow: config.shadow.as_ref().map(|p| store.runtime.share(p)),
            config: config.clone(),
        }
    }
}

impl Csrf {
    /// Compiles the filter, its stats `http.<stat_prefix>.csrf.*`.
    pub fn compile(config: &CsrfPolicy, store: &Store, stat_prefix: &str) -> Csrf {
        Csrf {
            policy: Policy::compile(config, store),
            stats: store.csrf(stat_prefix),
        }
    }

    /// The request-headers phase, under the route's own policy if it has
    /// one.
    pub fn on_request(
        &self,
        request: &RequestView,
        own: Option<&Policy>,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let policy = own.unwrap_or(&self.policy);
        let enabled = policy.enabled.admits(shard.random());
        let shadow = policy
            .shadow
            .as_ref()
            .is_some_and(|s| s.admits(shard.random()));
        if !enabled && !shadow {
            return;
        }
        if !matches!(request.method, "POST" | "PUT" | "DELETE" | "PATCH") {
            return;
        }
        // The `origin` when there is one (even `null`), else the `referer`.
        let source = ["origin", "referer"]
            .into_iter()
            .filter_map(|name| request.header(name))
            .find(|value| !value.is_empty())
            .map(|value| host_and_port(&value).to_string())
            .unwrap_or_default();
        let w = shard.id;
        let target = host_and_port(&format!("http://{}", request.authority)).to_string();
        let valid = source == target
            || policy
                .config
                .additional_origins
                .iter()
                .any(|m| m.matches(&source));
        if source.is_empty() {
            self.stats.inc(w, sets::Csrf::missing_source_origin);
        } else if !valid {
            self.stats.inc(w, sets::Csrf::request_invalid);
        } else {
            self.stats.inc(w, sets::Csrf::request_valid);
            return;
        }
        if enabled {
            let reply = LocalReply::new(403, "Invalid origin");
            decision.reply = Some((reply, ResponseFlags::default()));
        }
    }
}

/// The authority of an absolute URL (`scheme://[user@]host[:port]/…`);
/// nothing when the value is not one (`null`), as Envoy reads an origin.
fn host_and_port(value: &str) -> &str {
    let Some((scheme, rest)) = value.split_once("://") else {
        return "";
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if !scheme_ok {
        return "";
    }
    host
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn an_origin_is_read_as_envoy_reads_it() {
        assert_eq!(host_and_port("https://a.example"), "a.example");
        assert_eq!(host_and_port("http://a.example:8080/x?y"), "a.example:8080");
        assert_eq!(host_and_port("http://user@a.example/"), "a.example");
        assert_eq!(host_and_port("null"), "");
        assert_eq!(host_and_port("a.example"), "");
    }
}
