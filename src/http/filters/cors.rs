//! `envoy.filters.http.cors`: answers CORS preflights (an `OPTIONS` with an
//! `origin` and `access-control-request-method`) itself, and marks the
//! responses to requests from allowed origins, by the policies of the
//! request's route and virtual host (the route's fields first, each unset
//! one taken from the virtual host, as Envoy merges them). As in Envoy,
//! only forwarding routes have policies.

use super::{Decision, ResponseStep};
use crate::config::CorsPolicy;
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::router::RequestView;
use crate::runtime::Share;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope, Store};
use std::sync::Arc;

/// The filter, compiled: its stats.
#[derive(Debug)]
pub struct Cors {
    stats: Arc<Scope<sets::Cors>>,
}

/// A policy, compiled.
#[derive(Debug)]
pub struct Policy {
    config: CorsPolicy,
    enabled: Option<Share>,
    shadow: Option<Share>,
}

impl Policy {
    /// Compiles `config`, its fractions read from the store's runtime.
    pub fn compile(config: &CorsPolicy, store: &Store) -> Policy {
        Policy {
            enabled: config.enabled.as_ref().map(|p| store.runtime.share(p)),
            shadow: config.shadow.as_ref().map(|p| store.runtime.share(p)),
            config: config.clone(),
        }
    }
}

/// The policies that apply, most specific first, merged field by field.
struct Merged<'p>(&'p [&'p Policy]);

impl<'p> Merged<'p> {
    fn first<T: ?Sized>(&self, field: impl Fn(&'p CorsPolicy) -> Option<&'p T>) -> Option<&'p T> {
        self.0.iter().find_map(|p| field(&p.config))
    }

    fn flag(&self, field: impl Fn(&CorsPolicy) -> Option<bool>) -> Option<bool> {
        self.0.iter().find_map(|p| field(&p.config))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origins = self
            .0
            .iter()
            .map(|p| &p.config.allow_origins)
            .find(|o| !o.is_empty());
        origins.is_some_and(|o| o.iter().any(|m| m.matches("*") || m.matches(origin)))
    }
}

impl Cors {
    /// Compiles the filter, its stats `http.<stat_prefix>.cors.*`.
    pub fn compile(store: &Store, stat_prefix: &str) -> Cors {
        Cors {
            stats: store.cors(stat_prefix),
        }
    }

    /// The request-headers phase, under `policies` (most specific first).
    pub fn on_request(
        &self,
        request: &RequestView,
        policies: &[&Policy],
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let Some(first) = policies.first() else {
            return;
        };
        let enabled = first
            .enabled
            .as_ref()
            .is_none_or(|s| s.admits(shard.random()));
        let shadow = first
            .shadow
            .as_ref()
            .is_some_and(|s| s.admits(shard.random()));
        if !enabled && !shadow {
            return;
        }
        let Some(origin) = request.header("origin").filter(|o| !o.is_empty()) else {
            return;
        };
        let merged = Merged(policies);
        let allowed = merged.origin_allowed(&origin);
        let stat = if allowed {
            sets::Cors::origin_valid
        } else {
            sets::Cors::origin_invalid
        };
        self.stats.inc(shard.id, stat);
        if !enabled {
            return;
        }
        let credentials = merged.flag(|p| p.allow_credentials).unwrap_or(false);
        let expose = merged.first(|p| p.expose_headers.as_deref());
        // What the filter sets on every answer to an allowed origin.
        let marks = |headers: &mut Vec<(String, Vec<u8>)>| {
            if !allowed {
                return;
            }
            headers.push(header("access-control-allow-origin", &origin));
            if credentials {
                headers.push(header("access-control-allow-credentials", "true"));
            }
            if let Some(expose) = expose {
                headers.push(header("access-control-expose-headers", expose));
            }
        };
        let requested_method = request
            .header("access-control-request-method")
            .filter(|m| !m.is_empty());
        let preflight = request.method == "OPTIONS" && requested_method.is_some();
        let forward = merged
            .flag(|p| p.forward_not_matching_preflights)
            .unwrap_or(true);
        // The marks replace whatever the upstream or the route set, on the
        // preflight's answer too (Envoy's filter marks its own answer).
        let mut set = Vec::new();
        marks(&mut set);
        let steps = set.into_iter().map(|(n, v)| ResponseStep::Set(n, v));
        decision.filtered.response.extend(steps);
        if !preflight || (!allowed && forward) {
            return;
        }
        let mut reply = LocalReply::new(200, "");
        let headers = &mut reply.headers;
        if allowed {
            headers.push(header("access-control-allow-origin", &origin));
        }
        if credentials {
            headers.push(header("access-control-allow-credentials", "true"));
        }
        // `*` echoes what the preflight asks for (nothing, when it asks
        // for nothing: Envoy then sends the header empty).
        let echo = |configured: Option<&str>, asked: &str| {
            configured.map(|c| match c {
                "*" => request.header(asked).unwrap_or_default().into_owned(),
                listed => listed.to_string(),
            })
        };
        let methods = echo(
            merged.first(|p| p.allow_methods.as_deref()),
            "access-control-request-method",
        );
        if let Some(methods) = methods {
            headers.push(header("access-control-allow-methods", &methods));
        }
        let allow_headers = echo(
            merged.first(|p| p.allow_headers.as_deref()),
            "access-control-request-headers",
        );
        if let Some(allow_headers) = allow_headers {
            headers.push(header("access-control-allow-headers", &allow_headers));
        }
        if let Some(age) = merged.first(|p| p.max_age.as_deref()) {
            headers.push(header("access-control-max-age", age));
        }
        let private_network = merged.flag(|p| p.allow_private_network).unwrap_or(false);
        let asks_private = request
            .header("access-control-request-private-network")
            .is_some_and(|v| v == "true");
        if private_network && asks_private {
            headers.push(header("access-control-allow-private-network", "true"));
        }
        decision.reply = Some((reply, ResponseFlags::default()));
    }
}

fn header(name: &str, value: &str) -> (String, Vec<u8>) {
    (name.to_string(), value.as_bytes().to_vec())
}
