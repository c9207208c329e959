//! Envoy v3 bootstrap loading: YAML or JSON, `--config-yaml` merged over the
//! file, decoded with every error carrying its YAML path.

mod access_log;
mod bootstrap;
mod bootstrap_extensions;
mod circuit_breakers;
mod cluster_manager;
mod connection_filters;
mod filters;
mod health_check;
mod http2;
mod lb;
mod listener;
mod node;
mod outlier;
mod overload;
mod rate_limit;
mod retry;
mod route_action;
mod route_match;
mod sds;
mod stats_config;
mod subset;
mod tcp_proxy;
mod tls;
mod udp_proxy;
mod xds;

pub use bootstrap::*;
pub use circuit_breakers::{CircuitBreakers, Priority, RetryBudget, Thresholds};
pub use connection_filters::{ConnectionFilter, TokenBucket};
pub use filters::{
    AbortWith, AuthzService, BufferConfig, CorsPolicy, CsrfPolicy, DelayBy, ExtAuthzConfig,
    ExtAuthzPerRoute, FaultConfig, FilterKind, Fraction, GrpcService, HeaderMutationConfig,
    HeaderOp, HealthCheckFilter, HttpAuthzService, HttpFilter, JwksSource, JwtAuthnConfig,
    JwtPerRoute, JwtProvider, JwtRequirement, JwtRule, LocalDescriptor, LocalRateLimitConfig,
    PerFilterConfigs, Permission, Principal, RateLimitFilterConfig, RbacAction, RbacConfig,
    RbacPolicy, RbacRules, RemoteJwks, RouteFilterConfig, RuntimePercent, VhRateLimits,
};
pub use health_check::{GrpcCheck, HealthCheck, HttpCheck, Probe, TcpCheck};
pub use http2::{Codec, Http2Options, Keepalive};
pub use lb::*;
pub use listener::*;
pub use node::{parse_duration, ConfigError};
pub use outlier::{FailurePercentage, OutlierDetection, SuccessRate};
pub use overload::{Overload, OverloadAction, FIXED_HEAP};
pub use rate_limit::{RateLimitAction, RateLimitPolicy};
pub use retry::*;
pub use route_action::*;
pub use route_match::*;
pub use sds::{
    parse_secret, secret_files, Secret, SecretError, SecretFile, SecretSource, SECRET_TYPE,
};
pub use stats_config::{StatsMatcher, StatsOptions, TagSpecifier, TagValue};
pub use subset::{LbMetadata, SubsetConfig, SubsetFallback, SubsetSelector};
pub use tcp_proxy::TcpProxy;
pub use tls::*;
pub use udp_proxy::UdpProxy;
pub use xds::{
    assignments as decode_assignment_update, clusters as decode_cluster_update,
    listeners as decode_listener_update, route_config as decode_route_update, AdsConfig,
    ConfigSource, DynamicResources, FileSource, Update, ASSIGNMENT_TYPE, CLUSTER_TYPE,
    INITIAL_FETCH_TIMEOUT, LISTENER_TYPE, ROUTE_TYPE,
};

use serde_json::Value;

/// Parses one YAML (or JSON, a YAML subset) document into a tree.
pub fn parse_document(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| ConfigError {
        path: String::new(),
        message: format!("{origin}: cannot parse as YAML or JSON: {e}"),
        suggestion: None,
    })?;
    Ok(if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    })
}

/// Merges `overlay` into `base` with protobuf `MergeFrom` semantics, as Envoy
/// does for `--config-yaml`: mappings merge recursively, lists append,
/// scalars are replaced.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) => b.extend(o),
        (b, o) => *b = o,
    }
}

/// Decodes a parsed tree into a [`Bootstrap`], or every error found.
pub fn decode(tree: &Value) -> Result<Bootstrap, Vec<ConfigError>> {
    match decode_partial(tree) {
        (Some(b), errors) if errors.is_empty() => Ok(b),
        (_, errors) => Err(errors),
    }
}

/// Decodes what can be decoded, and every error found: with errors, the
/// bootstrap holds the listeners and clusters that decoded cleanly (and
/// names the broken clusters), so later checks can still report theirs.
pub fn decode_partial(tree: &Value) -> (Option<Bootstrap>, Vec<ConfigError>) {
    let _memo = route_match::RegexMemo;
    let mut errs = node::Errors::default();
    let decoded = bootstrap::decode(node::Node::root(tree), &mut errs);
    (decoded, errs.0)
}

/// Reads the file and the inline YAML (either may be absent) and merges them.
pub fn load(path: Option<&str>, inline: Option<&str>) -> Result<Value, ConfigError> {
    let mut tree = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                path: String::new(),
                message: format!("cannot read {p}: {e}"),
                suggestion: None,
            })?;
            parse_document(&text, p)?
        }
        None => Value::Object(Default::default()),
    };
    if let Some(text) = inline {
        merge(&mut tree, parse_document(text, "--config-yaml")?);
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        let tree = parse_document(yaml, "test").expect("parses");
        match decode(&tree) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn merge_appends_lists_and_replaces_scalars() {
        let mut base = parse_document("a: {b: 1, c: [1]}", "t").expect("parses");
        merge(
            &mut base,
            parse_document("a: {b: 2, c: [2]}", "t").expect("parses"),
        );
        assert_eq!(base, serde_json::json!({"a": {"b": 2, "c": [1, 2]}}));
    }

    #[test]
    fn unsupported_and_unknown_fields_name_their_path() {
        let errs = errors(
            "static_resources:\n  clusters:\n  - name: c\n    original_dst_lb_config: {}\n    bogus: 1\n",
        );
        assert!(
            errs.contains(
                &"static_resources.clusters[0].original_dst_lb_config: not supported yet"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"static_resources.clusters[0].bogus: unknown field".to_string()),
            "{errs:?}"
        );
    }

    #[test]
    fn camel_case_json_is_accepted() {
        let errs = errors(
            r#"{"staticResources": {"clusters": [{"name": "c", "connectTimeout": "0.25s"}]}}"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }
}
