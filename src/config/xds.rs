//! `dynamic_resources` and the resources xDS delivers: where listeners and
//! clusters come from (`lds_config`, `cds_config`: `ConfigSource`s), and a
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
    known: &["lds_config", "cds_config"],
    unsupported: &["ads_config", "lds_resources_locator", "cds_resources_locator"],
};
#[rustfmt::skip]
static CONFIG_SOURCE: Fields = Fields {
    known: &["path_config_source", "path", "resource_api_version", "initial_fetch_timeout"],
    unsupported: &["api_config_source", "ads", "self", "authorities"],
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
    pub lds: Option<FileSource>,
    /// `cds_config`: where clusters come from.
    pub cds: Option<FileSource>,
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
        lds: obj.get("lds_config").and_then(|s| file_source(&s, errs)),
        cds: obj.get("cds_config").and_then(|s| file_source(&s, errs)),
    })
}

/// Decodes a `ConfigSource` that names a file.
pub(super) fn file_source(node: &Node, errs: &mut Errors) -> Option<FileSource> {
    let obj = node.object(errs, &CONFIG_SOURCE)?;
    if let Some(v) = obj.get("resource_api_version") {
        if v.enumeration(errs, &["AUTO", "V2", "V3"]) == Some("V2") {
            errs.add(v.path(), "the V2 API is not supported (use V3)");
        }
    }
    if let Some(t) = obj.get("initial_fetch_timeout") {
        // A file is read at once: nothing ever waits for it.
        t.duration(errs);
    }
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
                "expected path_config_source (a control plane's api_config_source and ads are not supported yet)",
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
