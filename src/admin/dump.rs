//! `/clusters`, `/listeners` and `/config_dump` in Envoy's formats.

use crate::config;
use crate::net::Address;
use crate::snapshot::ConfigSnapshot;
use crate::stats::{Kind, Visit};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The circuit-breaker thresholds `/clusters` shows, by field name.
fn thresholds(t: &config::Thresholds) -> [(&'static str, u64); 4] {
    [
        ("max_connections", t.max_connections),
        ("max_pending_requests", t.max_pending_requests),
        ("max_requests", t.max_requests),
        ("max_retries", t.max_retries),
    ]
}

/// Both priorities' thresholds: (text name, JSON `priority`, thresholds).
fn priorities(
    c: &config::CircuitBreakers,
) -> [(&'static str, Option<&'static str>, &config::Thresholds); 2] {
    [
        ("default_priority", None, &c.default),
        ("high_priority", Some("HIGH"), &c.high),
    ]
}

/// Host stats sorted by name, as `/clusters` lists them.
fn host_stats(stats: &dyn Visit) -> Vec<(String, Kind, u64)> {
    let mut out = Vec::new();
    stats.visit(&mut |name, kind, value| out.push((name.to_string(), kind, value)));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `GET /clusters`.
pub fn clusters_text(snapshot: &ConfigSnapshot) -> String {
    let mut out = String::new();
    for c in &snapshot.clusters {
        let name = c.name();
        let _ = writeln!(out, "{name}::observability_name::{}", c.stat_name());
        for (priority, _, t) in priorities(&c.config.circuit_breakers) {
            for (field, value) in thresholds(t) {
                let _ = writeln!(out, "{name}::{priority}::{field}::{value}");
            }
        }
        let _ = writeln!(out, "{name}::added_via_api::false");
        for e in &c.endpoints {
            let host = format!("{name}::{}", e.addr);
            for (stat, _, value) in host_stats(e.stats.as_ref()) {
                let _ = writeln!(out, "{host}::{stat}::{value}");
            }
            let hostname = c.endpoint_hostname(e).unwrap_or("");
            let _ = writeln!(out, "{host}::hostname::{hostname}");
            let flags = c.host_flags(e).text();
            let _ = writeln!(out, "{host}::health_flags::{flags}");
            let _ = writeln!(out, "{host}::weight::{}", e.weight);
            let l = &e.locality;
            for (field, value) in [
                ("region", &l.region),
                ("zone", &l.zone),
                ("sub_zone", &l.sub_zone),
            ] {
                let _ = writeln!(out, "{host}::{field}::{value}");
            }
            let _ = writeln!(out, "{host}::canary::false");
            let _ = writeln!(out, "{host}::priority::{}", e.priority);
            let _ = writeln!(out, "{host}::success_rate::-1");
            let _ = writeln!(out, "{host}::local_origin_success_rate::-1");
        }
    }
    out
}

/// An address as Envoy's admin JSON writes it.
fn address_json(addr: &Address) -> Value {
    match addr {
        Address::Ip(a) => {
            json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
        }
        Address::Pipe(path) => json!({"pipe": {"path": &**path}}),
    }
}

/// `/config_dump?include_eds`'s `EndpointsConfigDump`: each serving
/// cluster's endpoints as a `ClusterLoadAssignment`, grouped by locality
/// as Envoy renders its host sets (localities ordered by region, zone and
/// sub-zone; every host healthy: there is no active health checking yet);
/// clusters CDS delivered are dynamic.
pub fn endpoints_dump(snapshot: &ConfigSnapshot, bootstrap: &Value) -> Value {
    let statics = bootstrap.pointer("/static_resources/clusters");
    let statics = statics.and_then(Value::as_array).into_iter().flatten();
    let statics: HashSet<&str> = statics.filter_map(|c| c["name"].as_str()).collect();
    let (mut static_configs, mut dynamic_configs) = (Vec::new(), Vec::new());
    for cluster in &snapshot.clusters {
        // (priority, locality, locality weight) and its hosts.
        type Group<'a> = ((u32, &'a config::Locality, u32), Vec<Value>);
        let mut localities: Vec<Group> = Vec::new();
        for e in &cluster.endpoints {
            let mut endpoint = json!({"address": address_json(&e.addr), "health_check_config": {}});
            if e.explicit_hostname {
                endpoint["hostname"] = json!(e.hostname);
            }
            let mut host = json!({"endpoint": endpoint, "health_status": "HEALTHY", "load_balancing_weight": e.weight});
            if !e.lb_metadata.is_empty() {
                let values: serde_json::Map<String, Value> = e
                    .lb_metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(Value::Null)))
                    .collect();
                host["metadata"] = json!({"filter_metadata": {"envoy.lb": values}});
            }
            // Envoy keeps locality weights only for locality-weighted
            // balancing.
            let weight = match cluster.config.locality_weighted {
                true => e.locality_weight,
                false => 0,
            };
            let place = (e.priority, &e.locality, weight);
            match localities
                .iter_mut()
                .find(|(p, _)| p.0 == place.0 && p.1 == place.1)
            {
                Some((_, hosts)) => hosts.push(host),
                None => localities.push((place, vec![host])),
            }
        }
        localities.sort_by_key(|((p, l, _), _)| (*p, &l.region, &l.zone, &l.sub_zone));
        let endpoints: Vec<Value> = localities
            .into_iter()
            .map(|((priority, l, weight), hosts)| {
                let mut locality = json!({});
                for (field, v) in [
                    ("region", &l.region),
                    ("zone", &l.zone),
                    ("sub_zone", &l.sub_zone),
                ] {
                    if !v.is_empty() {
                        locality[field] = json!(v);
                    }
                }
                let mut group = json!({"locality": locality, "lb_endpoints": hosts, "load_balancing_weight": weight});
                if priority > 0 {
                    group["priority"] = json!(priority);
                }
                group
            })
            .collect();
        let assignment = json!({
            "@type": ASSIGNMENT,
            "cluster_name": cluster.name(),
            "endpoints": endpoints,
            "policy": {"overprovisioning_factor": cluster.policy.overprovisioning_factor},
        });
        let entry = json!({"endpoint_config": assignment});
        match statics.contains(cluster.name()) {
            true => static_configs.push(entry),
            false => dynamic_configs.push(entry),
        }
    }
    let mut dump = json!({"@type": format!("{ADMIN}EndpointsConfigDump")});
    if !static_configs.is_empty() {
        dump["static_endpoint_configs"] = json!(static_configs);
    }
    if !dynamic_configs.is_empty() {
        dump["dynamic_endpoint_configs"] = json!(dynamic_configs);
    }
    dump
}

/// `GET /clusters?format=json`.
pub fn clusters_json(snapshot: &ConfigSnapshot) -> Value {
    let statuses: Vec<Value> = snapshot
        .clusters
        .iter()
        .map(|c| {
            let hosts: Vec<Value> = c
                .endpoints
                .iter()
                .map(|e| {
                    let stats: Vec<Value> = host_stats(e.stats.as_ref())
                        .into_iter()
                        .map(|(name, kind, value)| match kind {
                            Kind::Counter => json!({"name": name, "value": value.to_string()}),
                            Kind::Gauge => {
                                json!({"type": "GAUGE", "name": name, "value": value.to_string()})
                            }
                        })
                        .collect();
                    json!({
                        "address": address_json(&e.addr),
                        "stats": stats,
                        "health_status": c.host_flags(e).json(),
                        "weight": e.weight,
                        "hostname": c.endpoint_hostname(e).unwrap_or(""),
                        "locality": locality_json(&e.locality),
                    })
                })
                .collect();
            json!({
                "name": c.name(),
                "observability_name": c.stat_name(),
                "added_via_api": false,
                "circuit_breakers": {"thresholds": breakers_json(&c.config.circuit_breakers)},
                "host_statuses": hosts,
            })
        })
        .collect();
    json!({ "cluster_statuses": statuses })
}

/// Both priorities' thresholds as `/clusters?format=json` lists them.
fn breakers_json(c: &config::CircuitBreakers) -> Vec<Value> {
    priorities(c)
        .into_iter()
        .map(|(_, priority, t)| {
            let mut entry = Map::new();
            if let Some(p) = priority {
                entry.insert("priority".into(), json!(p));
            }
            for (field, value) in thresholds(t) {
                entry.insert(field.into(), json!(value));
            }
            Value::Object(entry)
        })
        .collect()
}

/// A locality as protobuf JSON writes it (empty fields left out).
pub(super) fn locality_json(l: &crate::config::Locality) -> Value {
    let mut map = Map::new();
    for (field, value) in [
        ("region", &l.region),
        ("zone", &l.zone),
        ("sub_zone", &l.sub_zone),
    ] {
        if !value.is_empty() {
            map.insert(field.into(), json!(value));
        }
    }
    Value::Object(map)
}

/// `GET /listeners`.
pub fn listeners_text(listeners: &[(String, Address)]) -> String {
    listeners
        .iter()
        .map(|(name, addr)| format!("{name}::{addr}\n"))
        .collect()
}

/// `GET /listeners?format=json`.
pub fn listeners_json(listeners: &[(String, Address)]) -> Value {
    let statuses: Vec<Value> = listeners
        .iter()
        .map(|(name, addr)| json!({"name": name, "local_address": address_json(addr)}))
        .collect();
    json!({ "listener_statuses": statuses })
}

/// RFC 3339 UTC time, as protobuf JSON writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = crate::http::date::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";

fn typed(mut v: Value, type_url: &str) -> Value {
    if let Value::Object(map) = &mut v {
        map.insert("@type".into(), json!(type_url));
    }
    v
}

/// The whole `GET /config_dump`: bootstrap, clusters, listeners, routes;
/// `dynamic` is what xDS delivered (`xds::Xds::dump`), if anything is
/// dynamic.
pub fn config_dump(bootstrap: &Value, loaded: SystemTime, dynamic: Option<&Value>) -> Value {
    let updated = rfc3339(loaded);
    let resources = |kind: &str| -> Vec<Value> {
        bootstrap
            .pointer(&format!("/static_resources/{kind}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let clusters: Vec<Value> = resources("clusters")
        .into_iter()
        .map(|c| {
            let c = typed(c, CLUSTER);
            json!({"cluster": c, "last_updated": updated})
        })
        .collect();
    let listeners_raw = resources("listeners");
    let lds = dynamic
        .and_then(|d| d.get("listeners"))
        .filter(|l| !l.is_null());
    let cds = dynamic
        .and_then(|d| d.get("clusters"))
        .filter(|c| !c.is_null());
    // Inline route configurations of every listener, dynamic ones too.
    let dynamic_listeners = lds
        .and_then(|l| l.get("resources"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| &e["resource"]);
    let routes: Vec<Value> = listeners_raw
        .iter()
        .chain(dynamic_listeners)
        .flat_map(|l| {
            let chains = l.get("filter_chains").and_then(Value::as_array);
            chains.into_iter().flatten().flat_map(|chain| {
                let filters = chain.get("filters").and_then(Value::as_array);
                filters
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.pointer("/typed_config/route_config").cloned())
            })
        })
        .map(|r| {
            let r = typed(
                r,
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            );
            json!({"route_config": r, "last_updated": updated})
        })
        .collect();
    let listeners: Vec<Value> = listeners_raw
        .into_iter()
        .map(|l| {
            let l = typed(l, LISTENER);
            json!({"listener": l, "last_updated": updated})
        })
        .collect();
    let mut cluster_dump = json!({"@type": format!("{ADMIN}ClustersConfigDump")});
    if !clusters.is_empty() {
        cluster_dump["static_clusters"] = json!(clusters);
    }
    if let Some(cds) = cds {
        cluster_dump["version_info"] = cds["version_info"].clone();
        let (active, warming) = cluster_entries(cds);
        cluster_dump["dynamic_active_clusters"] = json!(active);
        if !warming.is_empty() {
            cluster_dump["dynamic_warming_clusters"] = json!(warming);
        }
    }
    let mut listener_dump = json!({"@type": format!("{ADMIN}ListenersConfigDump")});
    if !listeners.is_empty() {
        listener_dump["static_listeners"] = json!(listeners);
    }
    if let Some(lds) = lds {
        listener_dump["version_info"] = lds["version_info"].clone();
        listener_dump["dynamic_listeners"] = json!(dynamic_entries(lds, Entries::Listeners));
    }
    let mut route_dump = json!({"@type": format!("{ADMIN}RoutesConfigDump")});
    if !routes.is_empty() {
        route_dump["static_route_configs"] = json!(routes);
    }
    let rds = dynamic.and_then(|d| d["routes"].as_array());
    let dynamic_routes: Vec<Value> = rds
        .into_iter()
        .flatten()
        .flat_map(|r| dynamic_entries(r, Entries::Routes))
        .collect();
    if !dynamic_routes.is_empty() {
        route_dump["dynamic_route_configs"] = json!(dynamic_routes);
    }
    let mut configs = vec![
        json!({"@type": format!("{ADMIN}BootstrapConfigDump"), "bootstrap": bootstrap, "last_updated": updated}),
        cluster_dump,
        listener_dump,
        route_dump,
    ];
    let secrets = dynamic.and_then(|d| d["secrets"].as_array());
    if let Some(secrets) = secrets.filter(|s| !s.is_empty()) {
        configs.push(json!({
            "@type": format!("{ADMIN}SecretsConfigDump"),
            "dynamic_active_secrets": secrets,
        }));
    }
    json!({"configs": configs})
}

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ASSIGNMENT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// Which dump field a subscription's entries are for.
#[derive(Clone, Copy, PartialEq)]
enum Entries {
    /// `dynamic_listeners`: active, warming and draining states.
    Listeners,
    /// `dynamic_active_clusters`.
    Clusters,
    /// `dynamic_route_configs`.
    Routes,
}

/// CDS's resources as `dynamic_active_clusters` and
/// `dynamic_warming_clusters`: a warming cluster's latest version is in
/// the second, the version serving meanwhile (if any) in the first.
fn cluster_entries(cds: &Value) -> (Vec<Value>, Vec<Value>) {
    let warming: Vec<&Value> = cds["warming"].as_array().into_iter().flatten().collect();
    let names: HashSet<&str> = warming.iter().filter_map(|w| w["name"].as_str()).collect();
    let warms = |e: &Value| {
        let name = e.pointer("/cluster/name").and_then(Value::as_str);
        name.is_some_and(|n| names.contains(n))
    };
    let (warm, mut active): (Vec<Value>, Vec<Value>) = dynamic_entries(cds, Entries::Clusters)
        .into_iter()
        .partition(|e| warms(e));
    for w in &warming {
        let e = &w["serving"];
        if !e.is_null() {
            active.push(json!({"version_info": e["version_info"], "cluster": e["resource"], "last_updated": e["last_updated"]}));
        }
    }
    (active, warm)
}

/// One subscription's resources as dump entries. Beyond Envoy, which
/// leaves it empty: each resource of the last refused update carries
/// `error_state` (Envoy's `UpdateFailureState`), on its active entry, or
/// on an entry of its own when it is not active.
fn dynamic_entries(dump: &Value, kind: Entries) -> Vec<Value> {
    let mut entries: Vec<Value> = dump["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let (r, version, at) = (&e["resource"], &e["version_info"], &e["last_updated"]);
            match kind {
                Entries::Listeners => json!({
                    "name": r["name"],
                    "active_state": {"version_info": version, "listener": r, "last_updated": at},
                }),
                Entries::Clusters => {
                    json!({"version_info": version, "cluster": r, "last_updated": at})
                }
                Entries::Routes => {
                    json!({"version_info": version, "route_config": r, "last_updated": at})
                }
            }
        })
        .collect();
    let listener_warming = match kind {
        Entries::Listeners => dump["warming"].as_array(),
        _ => None,
    };
    for w in listener_warming.into_iter().flatten() {
        let Some(x) = entries.iter_mut().find(|x| x["name"] == w["name"]) else {
            continue;
        };
        if let Some(warming) = x.as_object_mut().and_then(|x| x.remove("active_state")) {
            x["warming_state"] = warming;
        }
        let e = &w["serving"];
        if !e.is_null() {
            x["active_state"] = json!({
                "version_info": e["version_info"],
                "listener": e["resource"],
                "last_updated": e["last_updated"],
            });
        }
    }
    for d in dump["draining"].as_array().into_iter().flatten() {
        let e = &d["entry"];
        let state = json!({
            "version_info": e["version_info"],
            "listener": e["resource"],
            "last_updated": e["last_updated"],
        });
        match entries.iter_mut().find(|x| x["name"] == d["name"]) {
            Some(x) => x["draining_state"] = state,
            None => entries.push(json!({"name": d["name"], "draining_state": state})),
        }
    }
    let Some(rejected) = dump.get("last_rejected") else {
        return entries;
    };
    for failed in rejected["resources"].as_array().into_iter().flatten() {
        let error_state = json!({
            "failed_configuration": failed,
            "last_update_attempt": rejected["last_update_attempt"],
            "details": rejected["details"],
            "version_info": rejected["version_info"],
        });
        let name = &failed["name"];
        let pointer = match kind {
            Entries::Listeners => "/active_state/listener/name",
            Entries::Clusters => "/cluster/name",
            Entries::Routes => "/route_config/name",
        };
        match entries
            .iter_mut()
            .find(|e| e.pointer(pointer) == Some(name))
        {
            Some(e) => e["error_state"] = error_state,
            None if kind == Entries::Listeners => {
                entries.push(json!({"name": name, "error_state": error_state}))
            }
            None => entries.push(json!({"error_state": error_state})),
        }
    }
    entries
}

/// Applies `?resource=` (one repeated field of a dump, each element its own
/// config) and `?mask=` (comma-separated field paths kept in each config).
pub fn select(dump: Value, resource: Option<&str>, mask: Option<&str>) -> Result<Value, String> {
    let configs = match dump.get("configs").and_then(Value::as_array) {
        Some(c) => c.clone(),
        None => return Ok(dump),
    };
    let configs = match resource {
        None | Some("") => configs,
        Some(field) => {
            let mut out = Vec::new();
            for c in &configs {
                let Some(items) = c.get(field).and_then(Value::as_array) else {
                    continue;
                };
                let parent = c.get("@type").and_then(Value::as_str).unwrap_or_default();
                let item_type = format!("{parent}.{}", message_name(field));
                out.extend(items.iter().cloned().map(|i| typed(i, &item_type)));
            }
            if out.is_empty() && !configs.iter().any(|c| c.get(field).is_some()) {
                return Err(format!("no resource {field:?} in the config dump"));
            }
            out
        }
    };
    let configs = match mask {
        None | Some("") => configs,
        Some(paths) => {
            let paths: Vec<Vec<&str>> = paths.split(',').map(|p| p.split('.').collect()).collect();
            configs
                .into_iter()
                .map(|c| {
                    let mut masked = apply_mask(&c, &paths);
                    if let (Value::Object(m), Some(t)) = (&mut masked, c.get("@type")) {
                        m.insert("@type".into(), t.clone());
                    }
                    masked
                })
                .collect()
        }
    };
    Ok(json!({ "configs": configs }))
}

/// `static_clusters` → `StaticCluster` (the repeated field's message name).
fn message_name(field: &str) -> String {
    let singular = field.strip_suffix('s').unwrap_or(field);
    // `dynamic_active_clusters` and `dynamic_warming_secrets` hold a
    // `DynamicCluster` and a `DynamicSecret`.
    singular
        .split('_')
        .filter(|w| !matches!(*w, "active" | "warming"))
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Keeps only the masked paths of `v`.
fn apply_mask(v: &Value, paths: &[Vec<&str>]) -> Value {
    let mut out = Map::new();
    for path in paths {
        let Some((first, rest)) = path.split_first() else {
            continue;
        };
        let Some(child) = v.get(*first) else {
            continue;
        };
        let kept = if rest.is_empty() {
            child.clone()
        } else {
            let mut inner = apply_mask(child, &[rest.to_vec()]);
            if let (Value::Object(m), Some(Value::Object(prev))) = (&mut inner, out.get(*first)) {
                for (k, val) in prev {
                    m.entry(k.clone()).or_insert(val.clone());
                }
            }
            inner
        };
        out.insert(first.to_string(), kept);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_and_mask_select_like_envoy() {
        let boot = json!({"static_resources": {"clusters": [{"name": "a", "type": "STATIC"}]}});
        let dump = config_dump(&boot, UNIX_EPOCH, None);
        let v = select(dump.clone(), Some("static_clusters"), Some("cluster.name")).expect("ok");
        assert_eq!(
            v["configs"][0]["@type"],
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster"
        );
        assert_eq!(v["configs"][0]["cluster"], json!({"name": "a"}));
        assert!(select(dump, Some("nothing"), None).is_err());
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
