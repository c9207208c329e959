//! Decoding a cluster's `lb_policy` with its `*_lb_config`, and a route's
//! `hash_policy`.

use super::node::{Errors, Fields, Node, Obj};

/// A cluster's load-balancing policy with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    /// `ROUND_ROBIN`: smooth weighted round robin.
    RoundRobin,
    /// `LEAST_REQUEST` with `least_request_lb_config`.
    LeastRequest {
        /// `choice_count` (default 2).
        choice_count: u32,
        /// `active_request_bias` (default 1.0).
        active_request_bias: f64,
    },
    /// `RANDOM`.
    Random,
    /// `RING_HASH` with `ring_hash_lb_config`.
    RingHash {
        /// `minimum_ring_size` (default 1024).
        min_ring_size: u64,
        /// `maximum_ring_size` (default 8M).
        max_ring_size: u64,
    },
    /// `MAGLEV` with `maglev_lb_config.table_size` (default 65537, prime).
    Maglev {
        /// The lookup table's size.
        table_size: u64,
    },
}

impl LbPolicy {
    /// Whether the balancer picks by a request hash (hash policies apply).
    pub fn is_hashing(&self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

/// What one `hash_policy[]` entry hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// `header.header_name` (lower-cased).
    Header(String),
    /// `cookie`: its name, and when `ttl` is set, the cookie to generate
    /// when the request has none.
    Cookie {
        /// `name`.
        name: String,
        /// `ttl` in seconds and `path`, when the cookie is generated.
        generate: Option<(u64, String)>,
    },
    /// `connection_properties.source_ip`.
    SourceIp,
    /// `query_parameter.name`.
    QueryParameter(String),
}

/// One `hash_policy[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashPolicy {
    /// What is hashed.
    pub on: HashOn,
    /// `terminal`: stop at this policy when it produced a hash.
    pub terminal: bool,
}

#[rustfmt::skip]
static LEAST_REQUEST: Fields = Fields {
    known: &["choice_count", "active_request_bias"],
    unsupported: &["slow_start_config", "locality_lb_config", "selection_method"],
};
#[rustfmt::skip]
static RING_HASH: Fields = Fields {
    known: &["minimum_ring_size", "maximum_ring_size", "hash_function"],
    unsupported: &["use_hostname_for_hashing", "hash_balance_factor", "consistent_hashing_lb_config", "locality_weighted_lb_config"],
};
#[rustfmt::skip]
static MAGLEV: Fields = Fields {
    known: &["table_size"],
    unsupported: &["consistent_hashing_lb_config", "locality_weighted_lb_config"],
};
#[rustfmt::skip]
static HASH_POLICY: Fields = Fields {
    known: &["header", "cookie", "connection_properties", "query_parameter", "terminal"],
    unsupported: &["filter_state"],
};
#[rustfmt::skip]
static HASH_HEADER: Fields = Fields {
    known: &["header_name"],
    unsupported: &["regex_rewrite"],
};
#[rustfmt::skip]
static HASH_COOKIE: Fields = Fields {
    known: &["name", "ttl", "path"],
    unsupported: &["attributes"],
};
#[rustfmt::skip]
static CONNECTION_PROPERTIES: Fields = Fields {
    known: &["source_ip"],
    unsupported: &[],
};
#[rustfmt::skip]
static QUERY_PARAMETER: Fields = Fields {
    known: &["name"],
    unsupported: &[],
};

fn uint(obj: &Obj, errs: &mut Errors, name: &str, max: u64) -> Option<Option<u64>> {
    match obj.get(name) {
        Some(n) => Some(Some(super::bootstrap::wrapped_uint(&n, errs, max)?)),
        None => Some(None),
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// Decodes `lb_policy` and the matching `*_lb_config` of a cluster.
pub fn lb_policy(obj: &Obj, errs: &mut Errors) -> Option<LbPolicy> {
    let name = match obj.get("lb_policy") {
        Some(lb) => lb.enumeration(
            errs,
            &[
                "ROUND_ROBIN",
                "LEAST_REQUEST",
                "RING_HASH",
                "RANDOM",
                "MAGLEV",
                "CLUSTER_PROVIDED",
                "LOAD_BALANCING_POLICY_CONFIG",
            ],
        )?,
        None => "ROUND_ROBIN",
    };
    let config_for = |errs: &mut Errors, field: &str, fields: &Fields| -> Option<Option<Obj>> {
        match obj.get(field) {
            Some(c) if !name_matches(name, field) => {
                errs.add(c.path(), format!("does not apply to lb_policy {name}"));
                None
            }
            Some(c) => Some(Some(c.object(errs, fields)?)),
            None => Some(None),
        }
    };
    let least = config_for(errs, "least_request_lb_config", &LEAST_REQUEST)?;
    let ring = config_for(errs, "ring_hash_lb_config", &RING_HASH)?;
    let maglev = config_for(errs, "maglev_lb_config", &MAGLEV)?;
    Some(match name {
        "ROUND_ROBIN" => LbPolicy::RoundRobin,
        "RANDOM" => LbPolicy::Random,
        "LEAST_REQUEST" => {
            let (mut choice_count, mut active_request_bias) = (2, 1.0);
            if let Some(c) = least {
                if let Some(n) = uint(&c, errs, "choice_count", 1000)? {
                    if n < 2 {
                        errs.add(&format!("{}.choice_count", c.path()), "expected at least 2");
                    }
                    choice_count = n as u32;
                }
                if let Some(b) = c.get("active_request_bias") {
                    let value = b.value().get("default_value").unwrap_or(b.value());
                    match value.as_f64() {
                        Some(v) if v >= 0.0 => active_request_bias = v,
                        _ => errs.add(b.path(), "expected a non-negative number (default_value)"),
                    }
                }
            }
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            }
        }
        "RING_HASH" => {
            let (mut min_ring_size, mut max_ring_size) = (1024, 8 * 1024 * 1024);
            if let Some(c) = ring {
                if let Some(h) = c.get("hash_function") {
                    if h.enumeration(errs, &["XX_HASH", "MURMUR_HASH_2"]) == Some("MURMUR_HASH_2") {
                        errs.add(h.path(), "MURMUR_HASH_2 is not supported yet");
                    }
                }
                let limit = 8 * 1024 * 1024;
                min_ring_size =
                    uint(&c, errs, "minimum_ring_size", limit)?.unwrap_or(min_ring_size);
                max_ring_size =
                    uint(&c, errs, "maximum_ring_size", limit)?.unwrap_or(max_ring_size);
                if min_ring_size > max_ring_size || min_ring_size == 0 {
                    errs.add(
                        c.path(),
                        "expected 0 < minimum_ring_size <= maximum_ring_size",
                    );
                }
            }
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            }
        }
        "MAGLEV" => {
            let mut table_size = 65537;
            if let Some(c) = maglev {
                if let Some(n) = uint(&c, errs, "table_size", 5_000_011)? {
                    if !is_prime(n) {
                        errs.add(
                            &format!("{}.table_size", c.path()),
                            "expected a prime number",
                        );
                    }
                    table_size = n;
                }
            }
            LbPolicy::Maglev { table_size }
        }
        other => {
            if let Some(lb) = obj.get("lb_policy") {
                errs.add(lb.path(), format!("lb_policy {other} is not supported yet"));
            }
            return None;
        }
    })
}

fn name_matches(policy: &str, field: &str) -> bool {
    matches!(
        (policy, field),
        ("LEAST_REQUEST", "least_request_lb_config")
            | ("RING_HASH", "ring_hash_lb_config")
            | ("MAGLEV", "maglev_lb_config")
    )
}

fn hash_policy(node: Node, errs: &mut Errors) -> Option<HashPolicy> {
    let obj = node.object(errs, &HASH_POLICY)?;
    let mut ons = Vec::new();
    if let Some(h) = obj.get("header") {
        let ho = h.object(errs, &HASH_HEADER)?;
        let name = ho.require(errs, "header_name")?.str(errs)?;
        ons.push(HashOn::Header(name.to_ascii_lowercase()));
    }
    if let Some(c) = obj.get("cookie") {
        let co = c.object(errs, &HASH_COOKIE)?;
        let name = co.require(errs, "name")?.str(errs)?.to_string();
        let generate = match co.get("ttl") {
            Some(t) => {
                let ttl = t.duration(errs)?;
                let path = co
                    .get("path")
                    .and_then(|p| p.str(errs).map(str::to_string))
                    .unwrap_or_default();
                Some((ttl.as_secs(), path))
            }
            None => None,
        };
        ons.push(HashOn::Cookie { name, generate });
    }
    if let Some(c) = obj.get("connection_properties") {
        let co = c.object(errs, &CONNECTION_PROPERTIES)?;
        if co.get("source_ip").and_then(|s| s.bool(errs)) == Some(true) {
            ons.push(HashOn::SourceIp);
        }
    }
    if let Some(q) = obj.get("query_parameter") {
        let qo = q.object(errs, &QUERY_PARAMETER)?;
        ons.push(HashOn::QueryParameter(
            qo.require(errs, "name")?.str(errs)?.to_string(),
        ));
    }
    if ons.len() != 1 {
        errs.add(
            obj.path(),
            "expected exactly one of header, cookie, connection_properties, query_parameter",
        );
        return None;
    }
    Some(HashPolicy {
        on: ons.pop()?,
        terminal: obj
            .get("terminal")
            .and_then(|t| t.bool(errs))
            .unwrap_or(false),
    })
}

/// Decodes a route action's `hash_policy` list.
pub fn hash_policies(obj: &Obj, errs: &mut Errors) -> Vec<HashPolicy> {
    obj.get("hash_policy")
        .map(|l| l.list(errs))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| hash_policy(p, errs))
        .collect()
}

#[rustfmt::skip]
static COMMON_LB_CONFIG: Fields = Fields {
    known: &["healthy_panic_threshold", "locality_weighted_lb_config", "zone_aware_lb_config"],
    unsupported: &[
        "update_merge_window",
        "ignore_new_hosts_until_first_hc", "close_connections_on_host_set_change",
        "consistent_hashing_lb_config", "override_host_status",
    ],
};
#[rustfmt::skip]
static PERCENT: Fields = Fields { known: &["value"], unsupported: &[] };

/// Envoy's default `healthy_panic_threshold`, in percent.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;

#[rustfmt::skip]
static LOCALITY_WEIGHTED: Fields = Fields { known: &[], unsupported: &[] };
#[rustfmt::skip]
static ZONE_AWARE: Fields = Fields {
    known: &["routing_enabled", "min_cluster_size", "fail_traffic_on_panic"],
    unsupported: &[],
};

/// `common_lb_config.zone_aware_lb_config`: Envoy's zone-aware routing
/// toward the hosts in this proxy's own locality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneAware {
    /// `routing_enabled`: the percentage of picks that consider zones
    /// (default 100).
    pub routing_enabled: u32,
    /// `min_cluster_size`: fewer healthy hosts at priority 0 and zones are
    /// not considered (default 6).
    pub min_cluster_size: u64,
    /// `fail_traffic_on_panic`: a pick in panic finds no host.
    pub fail_traffic_on_panic: bool,
}

/// A cluster's `common_lb_config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommonLb {
    /// `healthy_panic_threshold`, percent (0 disables panic routing).
    pub healthy_panic_threshold: f64,
    /// `locality_weighted_lb_config` is set.
    pub locality_weighted: bool,
    /// `zone_aware_lb_config` (Envoy's default when `common_lb_config`
    /// has neither it nor `locality_weighted_lb_config`).
    pub zone_aware: ZoneAware,
}

/// Decodes `common_lb_config` of a cluster balancing by `policy`.
pub fn common_lb_config(obj: &Obj, errs: &mut Errors, policy: Option<&LbPolicy>) -> CommonLb {
    let common = obj
        .get("common_lb_config")
        .and_then(|c| c.object(errs, &COMMON_LB_CONFIG));
    let locality_weighted = common
        .as_ref()
        .and_then(|c| c.get("locality_weighted_lb_config"))
        .and_then(|l| {
            l.object(errs, &LOCALITY_WEIGHTED)?;
            if policy.is_some_and(LbPolicy::is_hashing) {
                errs.add(
                    l.path(),
                    "locality weights with RING_HASH or MAGLEV are not supported by Ringway (use ROUND_ROBIN, LEAST_REQUEST or RANDOM)",
                );
            }
            Some(())
        })
        .is_some();
    let zone_aware = common
        .as_ref()
        .and_then(|c| c.get("zone_aware_lb_config"))
        .and_then(|z| {
            if locality_weighted {
                errs.add(
                    z.path(),
                    "only one of zone_aware_lb_config and locality_weighted_lb_config may be set",
                );
            }
            zone_aware(&z, errs)
        });
    let threshold = common
        .and_then(|c| c.get("healthy_panic_threshold"))
        .and_then(|t| {
            let value = t.object(errs, &PERCENT)?.get("value");
            match value.map_or(Some(0.0), |v| v.value().as_f64()) {
                Some(v) if (0.0..=100.0).contains(&v) => Some(v),
                _ => {
                    errs.add(t.path(), "value must be inside range [0, 100]");
                    None
                }
            }
        });
    CommonLb {
        healthy_panic_threshold: threshold.unwrap_or(DEFAULT_PANIC_THRESHOLD),
        locality_weighted,
        zone_aware: zone_aware.unwrap_or_default(),
    }
}

impl Default for ZoneAware {
    fn default() -> Self {
        ZoneAware {
            routing_enabled: 100,
            min_cluster_size: 6,
            fail_traffic_on_panic: false,
        }
    }
}

/// Decodes `zone_aware_lb_config`.
fn zone_aware(node: &Node, errs: &mut Errors) -> Option<ZoneAware> {
    let obj = node.object(errs, &ZONE_AWARE)?;
    let mut zone = ZoneAware::default();
    if let Some(r) = obj.get("routing_enabled") {
        let value = r.object(errs, &PERCENT)?.get("value");
        match value.map_or(Some(0.0), |v| v.value().as_f64()) {
            Some(v) if (0.0..=100.0).contains(&v) => zone.routing_enabled = v.round() as u32,
            _ => errs.add(r.path(), "value must be inside range [0, 100]"),
        }
    }
    if let Some(m) = obj.get("min_cluster_size") {
        zone.min_cluster_size = m.uint(errs, u64::MAX)?;
    }
    if let Some(f) = obj.get("fail_traffic_on_panic") {
        zone.fail_traffic_on_panic = f.bool(errs)?;
    }
    Some(zone)
}
