//! A `GrpcService` that calls through one of the config's clusters
//! (`envoy_grpc`), as the filters that ask services name it.

use super::super::node::{Errors, Fields, Node};
use std::time::Duration;

#[rustfmt::skip]
static GRPC_SERVICE: Fields = Fields {
    known: &["envoy_grpc", "timeout"],
    unsupported: &["google_grpc", "initial_metadata", "retry_policy"],
};
#[rustfmt::skip]
static ENVOY_GRPC: Fields = Fields {
    known: &["cluster_name", "authority"],
    unsupported: &["retry_policy", "max_receive_message_length", "skip_envoy_headers"],
};

/// An `envoy_grpc` service.
#[derive(Debug, Clone)]
pub struct GrpcService {
    /// `envoy_grpc.cluster_name`.
    pub cluster: String,
    /// `envoy_grpc.authority` (the cluster's name by default): the calls'
    /// `:authority`.
    pub authority: String,
    /// `timeout`, when set.
    pub timeout: Option<Duration>,
}

/// Decodes a `GrpcService`; only `envoy_grpc` is supported.
pub(super) fn decode(node: &Node, errs: &mut Errors) -> Option<GrpcService> {
    let grpc = node.object(errs, &GRPC_SERVICE)?;
    let Some(envoy_grpc) = grpc.get("envoy_grpc") else {
        errs.add(grpc.path(), "a gRPC service needs envoy_grpc");
        return None;
    };
    let envoy_grpc = envoy_grpc.object(errs, &ENVOY_GRPC)?;
    let cluster = envoy_grpc.non_empty_str(errs, "cluster_name")?;
    let authority = match envoy_grpc.get("authority") {
        Some(a) => Some(a.str(errs)?.to_string()).filter(|a| !a.is_empty()),
        None => None,
    };
    let timeout = match grpc.get("timeout") {
        Some(t) => Some(t.duration(errs)?),
        None => None,
    };
    Some(GrpcService {
        authority: authority.unwrap_or_else(|| cluster.clone()),
        cluster,
        timeout,
    })
}
