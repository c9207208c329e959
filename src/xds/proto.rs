//! The bridge between the protobuf a control plane sends and the JSON the
//! configuration validator reads: each resource (a `google.protobuf.Any`) is
//! decoded against Envoy's descriptor set into proto3 JSON with the proto
//! field names, so that a resource from a control plane, a file or the
//! bootstrap is checked by the same code and its errors carry the same
//! YAML-style paths. The bootstrap's `node` goes the other way.

use envoy_types::pb::envoy::config::core::v3::Node as NodeMessage;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;
use std::sync::OnceLock;

/// Envoy's v3 API as a `FileDescriptorSet` (see build.rs).
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// The decoded descriptor set, built on first use (only a control plane
/// source needs it).
fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).map_err(|e| format!("Envoy's descriptor set: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The message a `type.googleapis.com/<name>` URL names.
fn message_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Decodes one resource of type `type_url` into its JSON form, `@type`
/// included, as a `DiscoveryResponse` file would hold it.
pub fn resource_json(type_url: &str, bytes: &[u8]) -> Result<Value, String> {
    let pool = pool()?;
    let name = message_name(type_url);
    let descriptor = pool
        .get_message_by_name(name)
        .ok_or_else(|| format!("unknown resource type {type_url}"))?;
    let message = DynamicMessage::decode(descriptor, bytes)
        .map_err(|e| format!("cannot decode a {name}: {e}"))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut json = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("{name}: {e} (not a type Ringway reads)"))?;
    if let Value::Object(map) = &mut json {
        map.insert("@type".into(), Value::String(type_url.into()));
    }
    Ok(json)
}

/// The `Node` message for the bootstrap's `node` in its JSON form (as
/// `/server_info` shows it).
pub fn node(json: &Value) -> Result<NodeMessage, String> {
    let pool = pool()?;
    let descriptor = pool
        .get_message_by_name("envoy.config.core.v3.Node")
        .ok_or("Envoy's descriptor set has no Node")?;
    let message = DynamicMessage::deserialize(descriptor, json)
        .map_err(|e| format!("node cannot be sent: {e}"))?;
    NodeMessage::decode(message.encode_to_vec().as_slice())
        .map_err(|e| format!("node cannot be sent: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listener_round_trips_with_its_typed_config() {
        let listener = json!({
            "name": "l",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 80}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "x",
                "common_http_protocol_options": {"idle_timeout": "1.500s"},
                "rds": {"route_config_name": "r", "config_source": {"ads": {}}}}}]}]
        });
        let pool = pool().expect("descriptors decode");
        let descriptor = pool
            .get_message_by_name("envoy.config.listener.v3.Listener")
            .expect("Listener is described");
        let bytes = DynamicMessage::deserialize(descriptor, &listener)
            .expect("valid listener")
            .encode_to_vec();
        let url = "type.googleapis.com/envoy.config.listener.v3.Listener";
        let mut expected = listener.clone();
        expected["@type"] = json!(url);
        assert_eq!(resource_json(url, &bytes).expect("decodes"), expected);
    }

    /// Round-trips `resource` of message `name` through protobuf.
    fn round_trip(name: &str, resource: Value) {
        let pool = pool().expect("descriptors decode");
        let descriptor = pool.get_message_by_name(name).expect("described");
        let bytes = DynamicMessage::deserialize(descriptor, &resource)
            .expect("valid resource")
            .encode_to_vec();
        let url = format!("type.googleapis.com/{name}");
        let mut expected = resource;
        expected["@type"] = json!(url);
        assert_eq!(resource_json(&url, &bytes).expect("decodes"), expected);
    }

    #[test]
    fn tls_tcp_proxy_and_listener_filters_are_described() {
        let tls =
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
        round_trip(
            "envoy.config.listener.v3.Listener",
            json!({"name": "t", "listener_filters": [{"name": "tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
                "filter_chains": [{
                    "transport_socket": {"name": "tls", "typed_config": {"@type": tls,
                        "require_client_certificate": true}},
                    "filters": [{"name": "tcp", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "t", "cluster": "c",
                        "access_log": [{"name": "f", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": "/dev/null"}}]}}]}]}),
        );
        round_trip(
            "envoy.config.cluster.v3.Cluster",
            json!({"name": "c", "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}},
                "transport_socket": {"name": "tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": "x"}}}),
        );
    }

    #[test]
    fn a_filter_ringway_does_not_read_is_named_in_the_error() {
        use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
        // Spelt so that build.rs does not take it for a type Ringway reads.
        let lua = format!(
            "type.googleapis.com/envoy.extensions.filters.http.{}.v3.Lua",
            "lua"
        );
        let listener = Listener {
            name: "l".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "lua".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(
                        envoy_types::pb::google::protobuf::Any {
                            type_url: lua.clone(),
                            value: vec![0x0a, 0x01, b'x'],
                        },
                    )),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let url = "type.googleapis.com/envoy.config.listener.v3.Listener";
        let error = resource_json(url, &listener.encode_to_vec()).expect_err("not described");
        let name = lua.trim_start_matches("type.googleapis.com/");
        assert!(error.contains(name), "{error}");
    }

    #[test]
    fn garbage_and_unknown_types_are_errors() {
        let url = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        assert!(resource_json(url, &[0xff, 0xff, 0xff]).is_err());
        assert!(resource_json("type.googleapis.com/no.Such", &[]).is_err());
    }

    #[test]
    fn node_carries_metadata_and_locality() {
        let n = node(&json!({"id": "a", "cluster": "c", "metadata": {"k": "v"},
            "locality": {"zone": "z"}, "user_agent_name": "ringway"}))
        .expect("a valid node");
        assert_eq!((n.id.as_str(), n.cluster.as_str()), ("a", "c"));
        assert_eq!(n.locality.map(|l| l.zone), Some("z".to_string()));
        assert!(n.metadata.is_some_and(|m| m.fields.contains_key("k")));
    }
}
