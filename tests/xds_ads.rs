//! xDS from a control plane (ADS, state of the world), against Envoy 1.40:
//! the same bootstrap and the same sequence of published resources, served
//! by a control plane on grpcio and xds-protos (tests/peers/
//! xds_control_plane.py), run through both proxies. What clients get, what
//! each proxy asked the control plane (versions, nonces, names, NACKs, the
//! node) and the subscription stats must agree.

mod common;

use common::oracle::envoy_or_skip;
use common::proxy::{answer, launch, Which};
use common::{free_port, Backend, PortPeer, TempDir};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ROUTES: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The control plane, its published state and its log of requests.
struct ControlPlane {
    peer: PortPeer,
    state: PathBuf,
    log: PathBuf,
    /// Whether the resources it publishes name `api_config_source`s (a
    /// stream of their own) where they say `ads`.
    own_streams: bool,
}

/// An `api_config_source` to the `xds` cluster, speaking `api_type`.
fn api_source(api_type: &str) -> Value {
    json!({"api_config_source": {"api_type": api_type, "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
        "resource_api_version": "V3"})
}

/// `state` with every ADS config source replaced by a stream of its own.
fn with_own_streams(state: &Value, api_type: &str) -> Value {
    let ads = json!({"ads": {}, "resource_api_version": "V3"}).to_string();
    let text = state
        .to_string()
        .replace(&ads, &api_source(api_type).to_string());
    serde_json::from_str(&text).expect("still JSON")
}

impl ControlPlane {
    /// Starts it in `dir` (on `port`, or a free one), publishing `state`.
    fn start(dir: &Path, state: &Value, port: Option<u16>) -> ControlPlane {
        Self::start_own(dir, state, port, None)
    }

    /// As `start`; with `own_streams`, the resources it publishes use
    /// `api_config_source`s of that `api_type` where they say `ads`.
    fn start_own(
        dir: &Path,
        state: &Value,
        port: Option<u16>,
        own_streams: Option<&str>,
    ) -> ControlPlane {
        let (state_path, log) = (dir.join("state.json"), dir.join("requests.log"));
        let cp = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
        let (s, l, p) = (cp(&state_path), cp(&log), port.unwrap_or(0).to_string());
        let plane = ControlPlane {
            peer: PortPeer::start(&["python3", "tests/peers/xds_control_plane.py", &s, &l, &p]),
            state: state_path,
            log,
            own_streams: own_streams.is_some(),
        };
        let state = match own_streams {
            Some(api_type) => with_own_streams(state, api_type),
            None => state.clone(),
        };
        plane.write(&state);
        plane
    }

    fn port(&self) -> u16 {
        self.peer.1
    }

    /// Publishes `state` (by rename, so never half-read).
    fn publish(&self, state: &Value) {
        let state = match self.own_streams {
            true => with_own_streams(state, "GRPC"),
            false => state.clone(),
        };
        self.write(&state);
    }

    fn write(&self, state: &Value) {
        let staged = self.state.with_extension("staged");
        std::fs::write(&staged, state.to_string()).expect("write state");
        std::fs::rename(&staged, &self.state).expect("rename state");
    }

    /// Every request so far, as logged (not the responses).
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r.get("sent").is_none())
            .collect()
    }

    /// Waits until a request satisfies `done`.
    fn wait_request(&self, what: &str, done: impl Fn(&Value) -> bool) {
        self.wait_request_after(0, what, done);
    }

    /// Waits until a request after the first `skip` satisfies `done`.
    fn wait_request_after(&self, skip: usize, what: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.requests().iter().skip(skip).any(&done) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {what} request in {:#?}", self.requests());
    }
}

fn resource(type_url: &str, mut body: Value) -> Value {
    body["@type"] = json!(type_url);
    body
}

fn address(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn listener(port: u16) -> Value {
    named_listener("ingress", port, "routes")
}

/// A listener named `name` on `port` whose routes are the route
/// configuration `routes`, from the control plane.
fn named_listener(name: &str, port: u16, routes: &str) -> Value {
    resource(
        LISTENER,
        json!({"name": name, "address": address(port), "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "rds": {"route_config_name": routes, "config_source": {"ads": {}, "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}),
    )
}

fn routes(direct: &str) -> Value {
    named_routes("routes", direct)
}

/// The route configuration `name`: `/direct` answers `direct`, `/late`
/// goes to the EDS cluster `late` (which comes later), the rest to the EDS
/// cluster `backend`.
fn named_routes(name: &str, direct: &str) -> Value {
    resource(
        ROUTES,
        json!({"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/direct"}, "direct_response": {"status": 200, "body": {"inline_string": direct}}},
            {"match": {"prefix": "/late"}, "route": {"cluster": "late"}},
            {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]}),
    )
}

fn eds_cluster() -> Value {
    named_eds_cluster("backend")
}

/// The EDS cluster `name`, its endpoints over ADS.
fn named_eds_cluster(name: &str) -> Value {
    resource(
        CLUSTER,
        json!({"name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}),
    )
}

fn endpoints(port: u16) -> Value {
    named_endpoints("backend", port)
}

/// The assignment of EDS cluster `cluster`: one endpoint on `port`.
fn named_endpoints(cluster: &str, port: u16) -> Value {
    resource(
        ENDPOINTS,
        json!({"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(port)}}]}]}),
    )
}

/// The state: each type's version and resources.
fn state(types: &[(&str, &str, Vec<Value>)]) -> Value {
    let mut state = serde_json::Map::new();
    for (type_url, version, resources) in types {
        state.insert(
            type_url.to_string(),
            json!({"version": version, "resources": resources}),
        );
    }
    Value::Object(state)
}

fn bootstrap(admin: u16, control_plane: u16, api_type: &str) -> String {
    bootstrap_with(admin, control_plane, api_type, "", "")
}

/// The bootstrap: LDS and CDS over ADS of `api_type` (`source` added to
/// both config sources), with `listeners` as static ones.
fn bootstrap_with(
    admin: u16,
    control_plane: u16,
    api_type: &str,
    source: &str,
    listeners: &str,
) -> String {
    format!(
        r#"node: {{id: "proxy-1", cluster: "mesh", metadata: {{team: payments}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3{source}}}
  lds_config: {{ads: {{}}, resource_api_version: V3{source}}}
static_resources:
{listeners}  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {control_plane}}}}}}}}}]}}]
"#
    )
}

/// Waits until `port` answers `path` with `expected`.
fn wait_answer(port: u16, path: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = answer(port, path);
        if last == expected {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{path} on {port}: {last:?}, not {expected:?}");
}

/// The subscriptions whose stats both proxies must agree on.
const SUBSCRIPTIONS: &[&str] = &[
    "listener_manager.lds.",
    "cluster_manager.cds.",
    "http.ingress.rds.routes.",
    "cluster.backend.",
    "cluster.late.",
];

/// Their stats compared (`update_failure` and `update_attempt` only as
/// attempts less failures: each failed reconnect counts one of each, and
/// how many there were depends on how long the control plane was away).
const COMPARED: &[&str] = &[
    "update_success",
    "update_rejected",
    "update_empty",
    "init_fetch_timeout",
    "version_text",
];

/// Other stats compared.
const OTHERS: &[&str] = &[
    "control_plane.connected_state",
    "control_plane.rate_limit_enforced",
    "listener_manager.total_listeners_active",
    "listener_manager.total_listeners_warming",
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "cluster_manager.active_clusters",
    "cluster_manager.warming_clusters",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
    "http.second.rds.routes-2.update_success",
    "http.second.rds.routes-2.update_empty",
    "http.second.rds.routes-2.version_text",
    "http.second.rds.routes-2.init_fetch_timeout",
];

/// Each dynamic listener's states in `/config_dump`, with their versions.
fn listener_states(admin: u16) -> Vec<String> {
    let (_, body) = common::admin_request(admin, "GET", "/config_dump");
    let dump: Value = serde_json::from_str(&body).expect("config_dump is JSON");
    let configs = dump["configs"].as_array().cloned().unwrap_or_default();
    let mut states = Vec::new();
    for config in configs {
        for l in config["dynamic_listeners"].as_array().into_iter().flatten() {
            let mut line = l["name"].as_str().unwrap_or_default().to_string();
            for state in ["active_state", "warming_state", "draining_state"] {
                if let Some(v) = l.get(state) {
                    line.push_str(&format!(" {state}={}", v["version_info"]));
                }
            }
            states.push(line);
        }
    }
    states.sort();
    states
}

/// The dynamic clusters in `/config_dump`, active and warming, with their
/// versions.
fn cluster_states(admin: u16) -> Vec<String> {
    let (_, body) = common::admin_request(admin, "GET", "/config_dump");
    let dump: Value = serde_json::from_str(&body).expect("config_dump is JSON");
    let configs = dump["configs"].as_array().cloned().unwrap_or_default();
    let mut states = Vec::new();
    for config in configs {
        for state in ["dynamic_active_clusters", "dynamic_warming_clusters"] {
            for c in config[state].as_array().into_iter().flatten() {
                let name = c["cluster"]["name"].as_str().unwrap_or_default();
                states.push(format!("{name} {state}={}", c["version_info"]));
            }
        }
    }
    states.sort();
    states
}

fn stats(admin: u16) -> BTreeMap<String, String> {
    let (_, body) = common::admin_request(admin, "GET", "/stats");
    let all: BTreeMap<&str, &str> = body.lines().filter_map(|l| l.split_once(": ")).collect();
    let mut out = BTreeMap::new();
    for name in OTHERS {
        out.insert(name.to_string(), all.get(name).unwrap_or(&"-").to_string());
    }
    for prefix in SUBSCRIPTIONS {
        for stat in COMPARED {
            let name = format!("{prefix}{stat}");
            let value = all.get(name.as_str()).unwrap_or(&"-").to_string();
            out.insert(name, value);
        }
        let count = |s: &str| -> i64 {
            all.get(format!("{prefix}{s}").as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let answered = count("update_attempt") - count("update_failure");
        out.insert(
            format!("{prefix}update_attempt-failure"),
            answered.to_string(),
        );
    }
    out
}

/// What a proxy asked for, type by type in order: the version it had,
/// whether it echoed a nonce, the names, whether it NACKed and whether the
/// node came along (Envoy interleaves types in its own order; within a
/// type the order is the protocol).
fn asked(requests: &[Value]) -> BTreeMap<String, Vec<String>> {
    asked_by(requests, false)
}

/// As [`asked`]; `by_stream` tells a type's streams of their own apart by
/// the names they ask for (their requests interleave in no fixed order).
fn asked_by(requests: &[Value], by_stream: bool) -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in requests {
        let type_url = r["type"].as_str().unwrap_or_default();
        let mut short = type_url.rsplit('.').next().unwrap_or_default().to_string();
        if by_stream {
            short.push_str(&r["names"].to_string());
        }
        let nonce = if r["nonce"] == "" { "-" } else { "nonce" };
        let nack = if r["error"].is_null() { "" } else { " NACK" };
        let node = if r["node"].is_null() { "" } else { " node" };
        let what = if r["delta"] == true {
            format!("+{} -{} {}", r["subscribe"], r["unsubscribe"], r["initial"])
        } else {
            format!(
                "{} {}",
                r["version"].as_str().unwrap_or_default(),
                r["names"]
            )
        };
        by_type
            .entry(short)
            .or_default()
            .push(format!("{what} {nonce}{nack}{node}"));
    }
    by_type
}

/// What one proxy showed through the scenario: per step, the answers and
/// the stats; then what it asked the control plane.
struct Seen {
    steps: Vec<String>,
    asked: BTreeMap<String, Vec<String>>,
    nack: String,
    first_node: Value,
}

/// Whether a logged request is an ACK of `version` of `type_url`: in
/// state of the world it carries the version; in delta only the nonce, so
/// any ACK of the type after `skip` requests is taken.
fn is_ack(r: &Value, type_url: &str, version: &str) -> bool {
    r["type"] == type_url
        && r["nonce"] != ""
        && r["error"].is_null()
        && (r["delta"] == true || r["version"] == version)
}

/// Whether a logged request asks for resource `name` of `type_url` (state
/// of the world: among its names; delta: among those it subscribes to).
fn asks_for(r: &Value, type_url: &str, name: &str) -> bool {
    let asks = |field: &str| {
        let names = r[field].as_array();
        names.is_some_and(|n| n.contains(&json!(name)))
    };
    r["type"] == type_url && (asks("names") || asks("subscribe"))
}

/// With `own_streams`, every subscription has a stream of its own
/// (`api_config_source`) instead of ADS.
fn scenario(
    which: &Which,
    first: &Backend,
    second: &Backend,
    api_type: &str,
    own_streams: bool,
) -> Seen {
    let dir = TempDir::new();
    let (admin, port) = (free_port(), free_port());
    let v1 = state(&[
        (CLUSTER, "c1", vec![eds_cluster()]),
        (ENDPOINTS, "e1", vec![endpoints(first.port())]),
        (LISTENER, "l1", vec![listener(port)]),
        (ROUTES, "r1", vec![routes("r1")]),
    ]);
    let own = own_streams.then_some("GRPC");
    let plane = ControlPlane::start_own(&dir.0, &v1, None, own);
    let boot = dir.0.join("boot.yaml");
    let mut text = bootstrap(admin, plane.port(), api_type);
    if own_streams {
        let own = format!("{{api_config_source: {{api_type: {api_type}, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]}}, resource_api_version: V3}}");
        text = text.replace("{ads: {}, resource_api_version: V3}", &own);
    }
    std::fs::write(&boot, text).expect("write bootstrap");
    let proxy = launch(which, &boot, admin, &dir.0);
    let mut steps = Vec::new();
    let second_port = free_port();
    let mut observe = |step: &str| {
        let answers = [
            answer(port, "/direct"),
            answer(port, "/"),
            answer(port, "/late"),
            answer(second_port, "/direct"),
        ];
        let mut states = listener_states(admin);
        states.extend(cluster_states(admin));
        steps.push(format!("{step}: {answers:?} {states:?} {:?}", stats(admin)));
    };
    wait_answer(port, "/direct", "200 r1");
    plane.wait_request("RDS ACK", |r| is_ack(r, ROUTES, "r1"));
    observe("initial");

    // Routes change: taken, ACKed.
    let mut v2 = v1.clone();
    v2[ROUTES] = json!({"version": "r2", "resources": [routes("r2")]});
    let acked = plane.requests().len();
    plane.publish(&v2);
    wait_answer(port, "/direct", "200 r2");
    plane.wait_request_after(acked, "RDS ACK", |r| is_ack(r, ROUTES, "r2"));
    observe("routes changed");

    // A listener no proxy can take (a port past 65535): NACKed, the last
    // good one keeps serving.
    let mut v3 = v2.clone();
    let mut bad = listener(port);
    bad["address"]["socket_address"]["port_value"] = json!(70000);
    v3[LISTENER] = json!({"version": "l2", "resources": [bad]});
    plane.publish(&v3);
    plane.wait_request("LDS NACK", |r| {
        r["type"] == LISTENER && !r["error"].is_null()
    });
    std::thread::sleep(Duration::from_millis(200));
    observe("listener refused");

    // A listener whose routes the control plane does not have yet warms:
    // it does not serve until they come.
    let mut v3 = v3.clone();
    v3[LISTENER] = json!({"version": "l3", "resources": [
        listener(port), named_listener("second", second_port, "routes-2")]});
    plane.publish(&v3);
    plane.wait_request("RDS for routes-2", |r| asks_for(r, ROUTES, "routes-2"));
    std::thread::sleep(Duration::from_millis(300));
    observe("listener warming");
    v3[ROUTES] =
        json!({"version": "r3", "resources": [routes("r2"), named_routes("routes-2", "second")]});
    let acked = plane.requests().len();
    plane.publish(&v3);
    wait_answer(second_port, "/direct", "200 second");
    plane.wait_request_after(acked, "RDS ACK", |r| is_ack(r, ROUTES, "r3"));
    observe("listener warmed");

    // Endpoints move to the second backend.
    let mut v4 = v3.clone();
    v4[ENDPOINTS] = json!({"version": "e2", "resources": [endpoints(second.port())]});
    let acked = plane.requests().len();
    plane.publish(&v4);
    wait_answer(port, "/", &format!("200 {} /", second.name));
    plane.wait_request_after(acked, "EDS ACK", |r| is_ack(r, ENDPOINTS, "e2"));
    observe("endpoints moved");

    // The endpoints withdrawn (in delta, removed): the cluster keeps the
    // ones it has and counts an empty update.
    let mut v5 = v4.clone();
    v5[ENDPOINTS] = json!({"version": "e3", "resources": []});
    let acked = plane.requests().len();
    plane.publish(&v5);
    plane.wait_request_after(acked, "EDS answer", |r| r["type"] == ENDPOINTS);
    std::thread::sleep(Duration::from_millis(300));
    observe("endpoints withdrawn");

    // A route configuration withdrawn (in delta, removed): the listener
    // using it keeps serving its last routes.
    let mut v5 = v5.clone();
    v5[ROUTES] = json!({"version": "r4", "resources": [routes("r2")]});
    let acked = plane.requests().len();
    plane.publish(&v5);
    plane.wait_request_after(acked, "RDS answer", |r| r["type"] == ROUTES);
    std::thread::sleep(Duration::from_millis(300));
    observe("routes withdrawn");

    // A cluster whose endpoints the control plane does not have yet warms:
    // routes to it find no cluster until they come.
    let mut v6 = v5.clone();
    v6[CLUSTER] = json!({"version": "c2", "resources": [eds_cluster(), named_eds_cluster("late")]});
    plane.publish(&v6);
    plane.wait_request("EDS for late", |r| asks_for(r, ENDPOINTS, "late"));
    std::thread::sleep(Duration::from_millis(300));
    observe("cluster warming");
    v6[ENDPOINTS] = json!({"version": "e4", "resources": [
        endpoints(second.port()), named_endpoints("late", first.port())]});
    let acked = plane.requests().len();
    plane.publish(&v6);
    wait_answer(port, "/late", &format!("200 {} /late", first.name));
    plane.wait_request_after(acked, "EDS ACK", |r| is_ack(r, ENDPOINTS, "e4"));
    observe("cluster warmed");

    // The control plane goes away: the proxy keeps serving what it has and
    // shows it is disconnected; back on the same port, the proxy asks
    // again with the versions it holds.
    let control_port = plane.port();
    let log_before = plane.requests().len();
    drop(plane);
    let gone = common::admin_until(admin, "/stats", |b| {
        b.contains("control_plane.connected_state: 0")
    });
    assert!(gone.contains("control_plane.connected_state: 0"));
    observe("control plane gone");
    let plane = ControlPlane::start_own(&dir.0, &v6, Some(control_port), own);
    // Every type answered again (each stream of its own reconnects on
    // its own back-off).
    let subscriptions = [
        (CLUSTER, None),
        (ENDPOINTS, Some("backend")),
        (ENDPOINTS, Some("late")),
        (LISTENER, None),
        (ROUTES, Some("routes")),
        (ROUTES, Some("routes-2")),
    ];
    for (type_url, name) in subscriptions {
        // (In delta the control plane sends nothing the proxy has.)
        plane.wait_request_after(log_before, "an answer after reconnecting", |r| {
            let asks = |field: &str| {
                let names = r[field].as_array();
                name.is_none_or(|n| names.is_some_and(|l| l.contains(&json!(n))))
            };
            r["type"] == type_url && (r["delta"] == true || (r["nonce"] != "" && asks("names")))
        });
    }
    // Envoy sets the gauge per stream as each (re)connects: wait until it
    // says connected rather than read it between two streams' attempts.
    let back = common::admin_until(admin, "/stats", |b| {
        b.contains("control_plane.connected_state: 1")
    });
    assert!(back.contains("control_plane.connected_state: 1"));
    std::thread::sleep(Duration::from_millis(300));
    observe("control plane back");
    let requests = plane.requests();
    let nack = requests
        .iter()
        .find(|r| !r["error"].is_null())
        .map(|r| r["error"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    drop(proxy);
    let first_node = requests[0]["node"].clone();
    Seen {
        steps,
        asked: asked_by(&requests, own_streams),
        nack,
        first_node,
    }
}

#[test]
fn ads_matches_envoy() {
    same_as_envoy("GRPC");
}

#[test]
fn delta_ads_matches_envoy() {
    same_as_envoy("DELTA_GRPC");
}

/// The scenario over ADS of `api_type` through Envoy and Ringway.
fn same_as_envoy(api_type: &str) {
    same_as_envoy_over(api_type, false);
}

/// Every subscription on a stream of its own (`api_config_source`), as
/// Envoy opens one per subscription.
#[test]
fn own_streams_match_envoy() {
    same_as_envoy_over("GRPC", true);
}

/// The scenario through Envoy and Ringway.
fn same_as_envoy_over(api_type: &str, own_streams: bool) {
    let Some(bin) = envoy_or_skip("xds ads") else {
        return;
    };
    let (a, b) = (Backend::start("backend-a"), Backend::start("backend-b"));
    let envoy = scenario(&Which::Envoy(bin), &a, &b, api_type, own_streams);
    let ringway = scenario(&Which::Ringway, &a, &b, api_type, own_streams);
    for (e, r) in envoy.steps.iter().zip(&ringway.steps) {
        assert_eq!(e, r, "\nenvoy:   {e}\nringway: {r}");
    }
    assert_eq!(envoy.asked, ringway.asked);
    assert_eq!(envoy.first_node, ringway.first_node);
    eprintln!("{}\n{:#?}", ringway.steps.join("\n"), ringway.asked);
    // Ringway's NACK names the resource and the field.
    assert!(ringway.nack.contains("port_value"), "{}", ringway.nack);
    assert!(!envoy.nack.is_empty());
}

/// What a proxy shows once the first updates it waited for never came:
/// answers on a static listener and on a dynamic one whose routes never
/// came, and the subscription stats.
fn timeouts_scenario(which: &Which) -> String {
    let dir = TempDir::new();
    let (admin, static_port, late_port) = (free_port(), free_port(), free_port());
    let mut late = named_listener("late", late_port, "late-routes");
    let rds = &mut late["filter_chains"][0]["filters"][0]["typed_config"]["rds"];
    rds["config_source"]["initial_fetch_timeout"] = json!("1s");
    // Listeners only: the clusters and the routes never come.
    let plane = ControlPlane::start(
        &dir.0,
        &state(&[(LISTENER, "l1", vec![late.clone()])]),
        None,
    );
    let listeners = format!(
        r#"  listeners:
  - name: static
    address: {{socket_address: {{address: 127.0.0.1, port_value: {static_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: static
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: static}}}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
    );
    let boot = dir.0.join("boot.yaml");
    let timeout = ", initial_fetch_timeout: 1s";
    let text = bootstrap_with(admin, plane.port(), "GRPC", timeout, &listeners);
    std::fs::write(&boot, text).expect("write bootstrap");
    let started = Instant::now();
    let proxy = launch(which, &boot, admin, &dir.0);
    wait_answer(static_port, "/", "200 static");
    wait_answer(late_port, "/", "404 ");
    let waited = started.elapsed();
    // Clusters (1 s), then listeners' routes (1 s): not before, and not
    // the 15 s default.
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let wanted = [
        "cluster_manager.cds.init_fetch_timeout",
        "listener_manager.lds.init_fetch_timeout",
        "listener_manager.lds.update_success",
        "http.late.rds.late-routes.init_fetch_timeout",
        "http.late.rds.late-routes.update_success",
        "listener_manager.total_listeners_warming",
        "listener_manager.total_listeners_active",
        "cluster_manager.active_clusters",
        "cluster_manager.warming_clusters",
        "cluster_manager.cluster_added",
        "cluster_manager.cluster_removed",
        "cluster.slow.init_fetch_timeout",
        "cluster.slow.update_success",
    ];
    let seen = |step: &str| {
        let (_, body) = common::admin_request(admin, "GET", "/stats");
        let mut seen: Vec<&str> = body
            .lines()
            .filter(|l| wanted.iter().any(|w| l.starts_with(&format!("{w}: "))))
            .collect();
        seen.sort();
        format!("{step}:\n{}", seen.join("\n"))
    };
    let mut steps = vec![seen("started")];

    // Run-time clusters whose endpoints never come: `slow` warms until its
    // initial fetch times out, then serves with no endpoints; `never`
    // (no timeout) warms until it is removed.
    let eds_with_timeout = |name: &str, timeout: &str| {
        let mut c = named_eds_cluster(name);
        c["eds_cluster_config"]["eds_config"]["initial_fetch_timeout"] = json!(timeout);
        c
    };
    let to_slow = resource(
        ROUTES,
        json!({"name": "late-routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "slow"}}]}]}),
    );
    let mut v2 = state(&[
        (
            CLUSTER,
            "c1",
            vec![
                eds_with_timeout("slow", "1s"),
                eds_with_timeout("never", "0s"),
            ],
        ),
        (ROUTES, "r1", vec![to_slow]),
    ]);
    v2[LISTENER] = json!({"version": "l1", "resources": [late]});
    plane.publish(&v2);
    wait_answer(late_port, "/", "503 no healthy upstream");
    steps.push(seen("initial fetch timed out"));
    v2[CLUSTER] = json!({"version": "c2", "resources": [eds_with_timeout("slow", "1s")]});
    plane.publish(&v2);
    let removed = common::admin_until(admin, "/stats", |b| {
        b.contains("cluster_manager.cds.version_text: \"c2\"")
    });
    assert!(removed.contains("\"c2\""), "{removed}");
    steps.push(seen("warming cluster removed"));
    drop(proxy);
    steps.join("\n")
}

#[test]
fn initial_fetch_timeouts_match_envoy() {
    let Some(bin) = envoy_or_skip("xds initial fetch timeouts") else {
        return;
    };
    let envoy = timeouts_scenario(&Which::Envoy(bin));
    let ringway = timeouts_scenario(&Which::Ringway);
    assert_eq!(envoy, ringway);
    assert!(
        ringway.contains("cluster_manager.cds.init_fetch_timeout: 1"),
        "{ringway}"
    );
    assert!(
        ringway.contains("late-routes.init_fetch_timeout: 1"),
        "{ringway}"
    );
    let removed = ringway.split("warming cluster removed:").nth(1);
    let removed = removed.unwrap_or_default();
    for counted in [
        "cluster.slow.init_fetch_timeout: 1",
        "cluster_manager.warming_clusters: 0",
        "cluster_manager.cluster_removed: 1",
    ] {
        assert!(removed.contains(counted), "{ringway}");
    }
    eprintln!("{ringway}");
}

const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The secret `server`: the test certificate `cert` and its key, inline.
fn server_secret(certs: &common::tls::Certs, cert: &str) -> Value {
    let read = |name: &str| std::fs::read_to_string(certs.path(name)).expect("read certificate");
    resource(
        SECRET,
        json!({"name": "server", "tls_certificate": {
            "certificate_chain": {"inline_string": read(&format!("{cert}.crt"))},
            "private_key": {"inline_string": read(&format!("{cert}.key"))}}}),
    )
}

/// The certificate subject a TLS client is served on `port` (None: no
/// handshake).
fn subject(port: u16) -> Option<String> {
    common::tls::s_client(port, Some("a.example.com"), &[], "").subject
}

fn wait_subject(port: u16, cn: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while subject(port).as_deref() != Some(cn) {
        assert!(Instant::now() < deadline, "port {port} never served {cn}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one proxy showed serving TLS with a certificate from a control
/// plane (`sds_config` is `source`: ADS or an `api_config_source`): per
/// step the certificate served and the secret's stats, then what it asked
/// the control plane.
fn sds_scenario(
    which: &Which,
    certs: &common::tls::Certs,
    source: &str,
) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let dir = TempDir::new();
    let (admin, port) = (free_port(), free_port());
    let plane = ControlPlane::start(
        &dir.0,
        &state(&[(SECRET, "s1", vec![server_secret(certs, "a")])]),
        None,
    );
    let listeners = format!(
        r#"  listeners:
  - name: tls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: server
              sds_config: {source}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: secure}}}}}}]}}]
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
    );
    // Only secrets come from the control plane here.
    let text = bootstrap_with(admin, plane.port(), "GRPC", "", &listeners);
    let text = text.replace("  cds_config: {ads: {}, resource_api_version: V3}\n", "");
    let text = text.replace("  lds_config: {ads: {}, resource_api_version: V3}\n", "");
    let boot = dir.0.join("boot.yaml");
    std::fs::write(&boot, text).expect("write bootstrap");
    let proxy = launch(which, &boot, admin, &dir.0);
    let mut steps = Vec::new();
    let mut observe = |step: &str| {
        let (_, body) = common::admin_request(admin, "GET", "/stats");
        let mut stats: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("sds.server.") && !l.contains("update_time"))
            // Envoy's file-watch counter and the update histogram Ringway
            // does not keep.
            .filter(|l| !l.contains("key_rotation_failed") && !l.contains("update_duration"))
            .collect();
        stats.sort();
        steps.push(format!("{step}: {:?} {stats:?}", subject(port)));
    };
    wait_subject(port, "a");
    observe("first secret");

    // Rotated: new handshakes get the new certificate.
    plane.publish(&state(&[(SECRET, "s2", vec![server_secret(certs, "b")])]));
    wait_subject(port, "b");
    observe("rotated");

    // /config_dump lists the secret as Envoy does, its key redacted.
    let (_, body) =
        common::admin_request(admin, "GET", "/config_dump?resource=dynamic_active_secrets");
    let mut dump: Value = serde_json::from_str(&body).expect("config_dump is JSON");
    for c in dump["configs"].as_array_mut().into_iter().flatten() {
        c.as_object_mut().map(|c| c.remove("last_updated"));
    }
    let secrets_dump = format!("secrets dump: {dump}");
    assert!(
        body.contains("[redacted]") && !body.contains("PRIVATE KEY"),
        "{body}"
    );

    // Not a certificate: NACKed, the last good one stays.
    let mut bad = server_secret(certs, "a");
    bad["tls_certificate"]["certificate_chain"]["inline_string"] = json!("not a certificate");
    plane.publish(&state(&[(SECRET, "s3", vec![bad])]));
    plane.wait_request("SDS NACK", |r| r["type"] == SECRET && !r["error"].is_null());
    observe("refused");
    drop(proxy);
    steps.push(secrets_dump);
    (steps, asked(&plane.requests()))
}

#[test]
fn sds_over_ads_matches_envoy() {
    let Some(bin) = envoy_or_skip("sds over ads") else {
        return;
    };
    let certs = common::tls::Certs::generate();
    let source = "{ads: {}, resource_api_version: V3}";
    let envoy = sds_scenario(&Which::Envoy(bin), &certs, source);
    let ringway = sds_scenario(&Which::Ringway, &certs, source);
    assert_eq!(envoy, ringway);
    assert!(ringway.0[2].contains("Some(\"b\")"), "{:?}", ringway.0);
}

/// The same over a stream of the secret's own (`api_config_source`, as
/// Istio's SDS is): the control plane's SecretDiscoveryService.
#[test]
fn sds_over_its_own_stream_matches_envoy() {
    let Some(bin) = envoy_or_skip("sds over api_config_source") else {
        return;
    };
    let certs = common::tls::Certs::generate();
    let source = "{api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}, resource_api_version: V3}";
    let envoy = sds_scenario(&Which::Envoy(bin), &certs, source);
    let ringway = sds_scenario(&Which::Ringway, &certs, source);
    assert_eq!(envoy, ringway);
    assert!(ringway.0[2].contains("Some(\"b\")"), "{:?}", ringway.0);
}
