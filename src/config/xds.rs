//! `dynamic_resources` and the resources xDS delivers: where listeners and
//! clusters come from (`lds_config`, `cds_config`: `ConfigSource`s, a file
//! or the control plane's ADS stream, `ads_config`), and a
//! `DiscoveryResponse` of them decoded with the same validator as the
//! bootstrap, each error under the resource's own path.

use super::bootstrap::{
    assignment, cluster, route_configuration, Assignment, Cluster, RouteConfiguration,
};
use super::listener::{listener, Listener};
use super::node::{ConfigError, Errors, Fields, Node};
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// `type.googleapis.com/` name of a `Listener` resource.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `type.googleapis.com/` name of a `Cluster` resource.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `type.googleapis.com/` name of a `ClusterLoadAssignment` resource.
pub const ASSIGNMENT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `type.googleapis.com/` name of a `RouteConfiguration` resource.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

#[rustfmt::skip]
static DYNAMIC_RESOURCES: Fields = Fields {
    known: &["lds_config", "cds_config", "ads_config"],
    unsupported: &["lds_resources_locator", "cds_resources_locator"],
};
#[rustfmt::skip]
static CONFIG_SOURCE: Fields = Fields {
    known: &[
        "path_config_source", "path", "ads", "api_config_source", "resource_api_version",
        "initial_fetch_timeout",
    ],
    unsupported: &["self", "authorities"],
};
#[rustfmt::skip]
static ADS: Fields = Fields {
    known: &[],
    unsupported: &[],
};
#[rustfmt::skip]
static API_CONFIG_SOURCE: Fields = Fields {
    known: &["api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"],
    unsupported: &[
        "cluster_names", "refresh_delay", "request_timeout", "rate_limit_settings",
        "config_validators",
    ],
};
#[rustfmt::skip]
static GRPC_SERVICE: Fields = Fields {
    known: &["envoy_grpc", "timeout"],
    unsupported: &["google_grpc", "initial_metadata", "retry_policy"],
};
#[rustfmt::skip]
static ENVOY_GRPC: Fields = Fields {
    known: &["cluster_name"],
    unsupported: &["authority", "retry_policy", "max_receive_message_length", "skip_envoy_headers"],
};
#[rustfmt::skip]
static PATH_CONFIG_SOURCE: Fields = Fields {
    known: &["path", "watched_directory"],
    unsupported: &[],
};
#[rustfmt::skip]
static WATCHED_DIRECTORY: Fields = Fields {
    known: &["path"],
    unsupported: &[],
};
/// The fields of a `DiscoveryResponse` file (xDS resources and SDS secrets).
#[rustfmt::skip]
pub(super) static DISCOVERY_RESPONSE: Fields = Fields {
    known: &["version_info", "resources", "type_url", "nonce"],
    unsupported: &["canary", "control_plane", "resource_errors"],
};

/// `dynamic_resources`.
#[derive(Debug, Clone, Default)]
pub struct DynamicResources {
    /// `lds_config`: where listeners come from.
    pub lds: Option<ConfigSource>,
    /// `cds_config`: where clusters come from.
    pub cds: Option<ConfigSource>,
    /// `ads_config`: the control plane every `ads` source names.
    pub ads: Option<AdsConfig>,
}

/// Envoy's `initial_fetch_timeout` default.
pub const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// A `ConfigSource`: where a subscription's resources come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file (`path_config_source`, or the older `path`).
    File(FileSource),
    /// `ads: {}`: the bootstrap's aggregated stream.
    Ads {
        /// `initial_fetch_timeout`: how long the start (or a warming
        /// listener) waits for the first update; zero waits for ever.
        initial_fetch_timeout: Duration,
    },
    /// `api_config_source` of `api_type: GRPC | DELTA_GRPC`: a gRPC stream
    /// of the subscription's own, as Envoy opens one per subscription.
    Api {
        /// Where and how.
        api: AdsConfig,
        /// As for `Ads`.
        initial_fetch_timeout: Duration,
    },
}

impl ConfigSource {
    /// The file, when it is one.
    pub fn file(&self) -> Option<&FileSource> {
        match self {
            ConfigSource::File(f) => Some(f),
            _ => None,
        }
    }

    /// How long the first update is waited for, when a control plane
    /// sends it (None: a file, read at once).
    pub fn initial_fetch_timeout(&self) -> Option<Duration> {
        match self {
            ConfigSource::File(_) => None,
            ConfigSource::Ads {
                initial_fetch_timeout,
            }
            | ConfigSource::Api {
                initial_fetch_timeout,
                ..
            } => Some(*initial_fetch_timeout),
        }
    }

    /// The stream of its own an `api_config_source` asks for.
    pub fn own_stream(&self) -> Option<&AdsConfig> {
        match self {
            ConfigSource::Api { api, .. } => Some(api),
            _ => None,
        }
    }
}

/// `ads_config`: an `ApiConfigSource` of `api_type: GRPC` (state of the
/// world) or `DELTA_GRPC` (incremental) to one cluster of
/// `static_resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdsConfig {
    /// `grpc_services[0].envoy_grpc.cluster_name`.
    pub cluster: String,
    /// `api_type: DELTA_GRPC`.
    pub delta: bool,
    /// `set_node_on_first_message_only`: the node goes only in a stream's
    /// first request.
    pub node_on_first_message_only: bool,
}

/// A `ConfigSource` that is a file (`path_config_source`, or the older
/// `path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// The `DiscoveryResponse` file.
    pub path: PathBuf,
    /// `watched_directory.path`: a move into it triggers a reload.
    pub watched_directory: Option<PathBuf>,
}

/// Decodes `dynamic_resources`.
pub(super) fn dynamic_resources(node: &Node, errs: &mut Errors) -> Option<DynamicResources> {
    let obj = node.object(errs, &DYNAMIC_RESOURCES)?;
    Some(DynamicResources {
        lds: obj.get("lds_config").and_then(|s| config_source(&s, errs)),
        cds: obj.get("cds_config").and_then(|s| config_source(&s, errs)),
        ads: obj.get("ads_config").and_then(|s| ads_config(&s, errs)),
    })
}

/// Decodes `ads_config`, or a config source's `api_config_source`.
fn ads_config(node: &Node, errs: &mut Errors) -> Option<AdsConfig> {
    let obj = node.object(errs, &API_CONFIG_SOURCE)?;
    let api_type = obj.require(errs, "api_type").and_then(|t| {
        t.enumeration(
            errs,
            &[
                "DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE",
                "REST",
                "GRPC",
                "DELTA_GRPC",
                "AGGREGATED_GRPC",
                "AGGREGATED_DELTA_GRPC",
            ],
        )
        .map(|name| (t.path().to_string(), name))
    });
    if let Some((path, name)) = &api_type {
        if !matches!(*name, "GRPC" | "DELTA_GRPC") {
            errs.add(
                path,
                format!(
                    "api_type {name} is not supported for ads_config (expected GRPC or DELTA_GRPC)"
                ),
            );
        }
    }
    api_version(&obj, "transport_api_version", errs);
    let services = obj.require(errs, "grpc_services")?.list(errs);
    let cluster = match services.as_slice() {
        [service] => service
            .object(errs, &GRPC_SERVICE)
            .and_then(|s| {
                if let Some(t) = s.get("timeout") {
                    t.duration(errs);
                }
                s.require(errs, "envoy_grpc")
            })
            .and_then(|g| g.object(errs, &ENVOY_GRPC))
            .and_then(|g| g.non_empty_str(errs, "cluster_name")),
        _ => {
            errs.add(node.path(), "expected exactly one of grpc_services");
            None
        }
    };
    let first_only = obj.get("set_node_on_first_message_only");
    Some(AdsConfig {
        cluster: cluster?,
        delta: api_type.is_some_and(|(_, name)| name == "DELTA_GRPC"),
        node_on_first_message_only: first_only.and_then(|b| b.bool(errs)).unwrap_or(false),
    })
}

/// Checks a `resource_api_version` or `transport_api_version`: V3 only.
fn api_version(obj: &super::node::Obj, field: &str, errs: &mut Errors) {
    if let Some(v) = obj.get(field) {
        if v.enumeration(errs, &["AUTO", "V2", "V3"]) == Some("V2") {
            errs.add(v.path(), "the V2 API is not supported (use V3)");
        }
    }
}

/// Decodes a `ConfigSource`: a file or `ads`.
pub(super) fn config_source(node: &Node, errs: &mut Errors) -> Option<ConfigSource> {
    let obj = node.object(errs, &CONFIG_SOURCE)?;
    api_version(&obj, "resource_api_version", errs);
    let timeout = obj
        .get("initial_fetch_timeout")
        .and_then(|t| t.duration(errs));
    let initial_fetch_timeout = timeout.unwrap_or(INITIAL_FETCH_TIMEOUT);
    let kinds = ["ads", "api_config_source", "path_config_source", "path"];
    if kinds.iter().filter(|k| obj.get(k).is_some()).count() > 1 {
        errs.add(
            node.path(),
            "expected only one of ads, api_config_source and path_config_source",
        );
        return None;
    }
    if let Some(ads) = obj.get("ads") {
        ads.object(errs, &ADS)?;
        return Some(ConfigSource::Ads {
            initial_fetch_timeout,
        });
    }
    if let Some(api) = obj.get("api_config_source") {
        return Some(ConfigSource::Api {
            api: ads_config(&api, errs)?,
            initial_fetch_timeout,
        });
    }
    // A file is read at once: nothing ever waits for it.
    file_source(node, &obj, errs).map(ConfigSource::File)
}

/// The file of a `ConfigSource` that is not `ads`.
fn file_source(node: &Node, obj: &super::node::Obj, errs: &mut Errors) -> Option<FileSource> {
    match (obj.get("path_config_source"), obj.get("path")) {
        (Some(p), None) => {
            let p = p.object(errs, &PATH_CONFIG_SOURCE)?;
            let watched_directory = p
                .get("watched_directory")
                .and_then(|d| d.object(errs, &WATCHED_DIRECTORY))
                .and_then(|d| d.require(errs, "path"))
                .and_then(|n| n.str(errs).map(PathBuf::from));
            let path = p.require(errs, "path")?.str(errs)?;
            Some(FileSource {
                path: path.into(),
                watched_directory,
            })
        }
        (None, Some(node)) => Some(FileSource {
            path: node.str(errs)?.into(),
            watched_directory: None,
        }),
        (Some(_), Some(_)) => {
            errs.add(
                node.path(),
                "expected only one of path_config_source or path",
            );
            None
        }
        (None, None) => {
            errs.add(
                node.path(),
                "expected path_config_source, ads or api_config_source",
            );
            None
        }
    }
}

/// One update of a resource type: its `version_info` ("" when absent) and
/// its resources in order.
#[derive(Debug, Clone)]
pub struct Update<T> {
    /// `version_info`.
    pub version: String,
    /// The resources, decoded.
    pub resources: Vec<T>,
}

/// Decodes a `DiscoveryResponse` of listeners.
pub fn listeners(tree: &Value) -> Result<Update<Listener>, Vec<ConfigError>> {
    resources(tree, LISTENER_TYPE, |node, errs, index| {
        listener(node, errs, index)
    })
}

/// Decodes a `DiscoveryResponse` of clusters.
pub fn clusters(tree: &Value) -> Result<Update<Cluster>, Vec<ConfigError>> {
    resources(tree, CLUSTER_TYPE, |node, errs, _| cluster(node, errs))
}

/// Decodes a `DiscoveryResponse` that must hold exactly the route
/// configuration `name`, as Envoy's RDS subscription takes one.
pub fn route_config(
    tree: &Value,
    name: &str,
) -> Result<Update<RouteConfiguration>, Vec<ConfigError>> {
    let update = resources(tree, ROUTE_TYPE, |node, errs, _| {
        route_configuration(node, errs)
    })?;
    only(update, name, "RDS configuration", false)
}

/// Decodes a `DiscoveryResponse` for the EDS service `name`: none (an
/// empty update, which changes nothing) or exactly its assignment, as
/// Envoy's EDS subscription takes them.
pub fn assignments(tree: &Value, name: &str) -> Result<Update<Assignment>, Vec<ConfigError>> {
    let update = resources(tree, ASSIGNMENT_TYPE, |node, errs, _| {
        assignment(node, errs)
    })?;
    only(update, name, "EDS cluster", true)
}

/// Keeps an update of the one resource `name` (or of none, with
/// `empty_ok`); anything else is refused in Envoy's words about `what`.
fn only<T: Named>(
    update: Update<T>,
    name: &str,
    what: &str,
    empty_ok: bool,
) -> Result<Update<T>, Vec<ConfigError>> {
    let message = match update.resources.as_slice() {
        [] if empty_ok => return Ok(update),
        [one] if one.name() == name => return Ok(update),
        [other] => format!("Unexpected {what} (expecting {name}): {}", other.name()),
        all => {
            let api = what.split(' ').next().unwrap_or_default();
            format!("Unexpected {api} resource length: {}", all.len())
        }
    };
    Err(vec![ConfigError {
        path: String::new(),
        message,
        suggestion: None,
    }])
}

/// Something with a name that must be unique in its update.
trait Named {
    /// The field that holds it.
    const FIELD: &'static str = "name";
    fn name(&self) -> &str;
}

impl Named for Listener {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for RouteConfiguration {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Assignment {
    const FIELD: &'static str = "cluster_name";
    fn name(&self) -> &str {
        &self.cluster_name
    }
}

impl Named for Cluster {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Decodes every resource of `type_url` in a `DiscoveryResponse`; any
/// error rejects the whole update.
fn resources<T: Named>(
    tree: &Value,
    type_url: &str,
    decode: impl Fn(Node, &mut Errors, usize) -> Option<T>,
) -> Result<Update<T>, Vec<ConfigError>> {
    let _memo = super::route_match::RegexMemo;
    let mut errs = Errors::default();
    let root = Node::root(tree);
    let Some(obj) = root.object(&mut errs, &DISCOVERY_RESPONSE) else {
        return Err(errs.0);
    };
    let version = obj
        .get("version_info")
        .and_then(|v| v.str(&mut errs))
        .unwrap_or("")
        .to_string();
    if let Some(t) = obj.get("type_url") {
        if t.str(&mut errs).is_some_and(|t| t != type_url) {
            errs.add(t.path(), format!("expected {type_url}"));
        }
    }
    let mut decoded = Vec::new();
    let mut names = HashSet::new();
    let items = obj
        .get("resources")
        .map(|l| l.list(&mut errs))
        .unwrap_or_default();
    for (index, item) in items.into_iter().enumerate() {
        let path = item.path().to_string();
        let Value::Object(map) = item.value() else {
            errs.add(&path, "expected a mapping");
            continue;
        };
        match map.get("@type").and_then(Value::as_str) {
            Some(t) if t == type_url => {}
            Some(other) => {
                errs.add(
                    &format!("{path}.@type"),
                    format!("expected {type_url}, found {other}"),
                );
                continue;
            }
            None => {
                errs.add(
                    &format!("{path}.@type"),
                    format!("required field is missing: expected {type_url}"),
                );
                continue;
            }
        }
        let mut fields = map.clone();
        fields.remove("@type");
        let fields = Value::Object(fields);
        let Some(resource) = decode(Node::at(&fields, path.clone()), &mut errs, index) else {
            continue;
        };
        let field = T::FIELD;
        if resource.name().is_empty() || map.get(field).is_none() {
            errs.add(&format!("{path}.{field}"), "expected the resource's name");
        } else if !names.insert(resource.name().to_string()) {
            errs.add(
                &format!("{path}.{field}"),
                format!("duplicate name {:?} in one update", resource.name()),
            );
        }
        decoded.push(resource);
    }
    if errs.0.is_empty() {
        Ok(Update {
            version,
            resources: decoded,
        })
    } else {
        Err(errs.0)
    }
}
