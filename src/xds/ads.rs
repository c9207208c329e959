//! The ADS protocol as Envoy's client speaks it, on the main thread: which
//! names of each type are wanted, the last accepted version and last seen
//! `nonce` per type, and the requests that follow.
//!
//! State of the world: a subscription change, an ACK (the new version and
//! the response's nonce) or a NACK (the last accepted version, the
//! response's nonce and `error_detail`) each resends the type's names.
//! Incremental (delta): a subscription change sends only the names
//! (un)subscribed, an ACK only the nonce, and the client keeps each
//! resource's version, sent back as `initial_resource_versions` when a new
//! stream starts. After a reconnect every wanted type is asked for again,
//! as Envoy does. The stream itself is `super::grpc`'s.

use super::grpc::{self, Client, Event, Outgoing, Request, Response};
use crate::config::{
    AdsConfig, ASSIGNMENT_TYPE, CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE,
};
use crate::stats::sets::ControlPlane;
use crate::stats::{Scope, Store};
use crate::upstream::Cluster;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The types in the order a (re)connected stream asks for them: clusters
/// and their endpoints before listeners and their routes, as Envoy's
/// initialisation orders them, then the secrets TLS contexts read.
pub const TYPES: [&str; 5] = [
    CLUSTER_TYPE,
    ASSIGNMENT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
];

/// Envoy's gRPC status for a NACK (`INTERNAL`).
const NACK_CODE: i32 = 13;

/// One type's state on the stream.
#[derive(Default)]
struct TypeState {
    /// Whether the type is wanted at all (LDS and CDS ask for every
    /// resource with no names).
    wanted: bool,
    names: Vec<String>,
    /// The last accepted `version_info`.
    version: String,
    /// The last response's nonce.
    nonce: String,
    /// The names the current stream has asked for.
    requested: Option<Vec<String>>,
    /// Delta: the accepted resources' versions, by name.
    held: BTreeMap<String, String>,
}

/// The ADS client's state and the transport it drives.
pub struct Ads {
    client: Client,
    /// Whether the stream speaks the incremental protocol.
    delta: bool,
    /// The open stream's generation (0: none).
    generation: u64,
    types: [TypeState; 5],
    /// Its `control_plane.*` stats.
    stats: Arc<Scope<ControlPlane>>,
}

impl Ads {
    /// Starts a transport to `cluster` with the bootstrap's `node`: the
    /// aggregated stream when `only` is None, else a stream of that type's
    /// own service. Its events come to `events` as stream `stream`; its
    /// stats are `<stats_prefix>control_plane.*`.
    pub fn start(
        config: &AdsConfig,
        cluster: Arc<Cluster>,
        node: &Value,
        only: Option<&str>,
        (stream, events): (u64, crossbeam_channel::Sender<Event>),
        (stats_prefix, store): (&str, &Store),
    ) -> Result<Ads, String> {
        let node = super::proto::node(node)?;
        let target = grpc::Target {
            cluster,
            method: grpc::method(only, config.delta),
            delta: config.delta,
            stream,
            events,
        };
        let client = grpc::spawn(target, node, config.node_on_first_message_only)?;
        Ok(Ads {
            client,
            delta: config.delta,
            generation: 0,
            types: Default::default(),
            stats: store.control_plane(stats_prefix),
        })
    }

    fn state(&mut self, type_url: &str) -> Option<&mut TypeState> {
        let i = TYPES.iter().position(|t| *t == type_url)?;
        Some(&mut self.types[i])
    }

    /// Wants `names` of `type_url` (none: every resource, for LDS and
    /// CDS); asks again when that changes what the stream has asked for.
    pub fn want(&mut self, type_url: &'static str, names: Vec<String>) {
        let Some(state) = self.state(type_url) else {
            return;
        };
        state.wanted = true;
        state.names = names;
        if state.requested.as_ref() != Some(&state.names) {
            self.request(type_url, None);
        }
    }

    /// Whether `type_url` is wanted on the stream.
    pub fn wants(&self, type_url: &str) -> bool {
        TYPES
            .iter()
            .position(|t| *t == type_url)
            .is_some_and(|i| self.types[i].wanted)
    }

    /// Takes `generation` as the open stream and asks for every wanted
    /// type again.
    pub fn connected(&mut self, generation: u64) {
        self.generation = generation;
        for (i, type_url) in TYPES.iter().enumerate() {
            self.types[i].requested = None;
            // A new stream starts without a nonce (Envoy's
            // `GrpcMuxImpl` clears them), with the versions it has.
            self.types[i].nonce.clear();
            if self.types[i].wanted {
                self.request(type_url, None);
            }
        }
    }

    /// Notes that stream `generation` ended.
    pub fn disconnected(&mut self, generation: u64) {
        if generation == self.generation {
            self.generation = 0;
        }
    }

    /// Whether a stream is open.
    pub fn is_connected(&self) -> bool {
        self.generation != 0
    }

    /// Sets `control_plane.connected_state`.
    pub fn show_connected(&self, connected: bool, store: &Store) {
        self.stats.set(
            store.main_row(),
            ControlPlane::connected_state,
            u64::from(connected),
        );
    }

    /// Whether a response belongs to the open stream.
    pub fn current(&self, generation: u64) -> bool {
        generation == self.generation && generation != 0
    }

    /// ACKs a response: its version (and, in delta, its resources'
    /// versions) are now the type's.
    pub fn ack(&mut self, response: &Response) {
        if let Some(state) = self.state(&response.type_url) {
            state.version.clone_from(&response.version);
            state.nonce.clone_from(&response.nonce);
            for (name, version) in &response.named {
                state.held.insert(name.clone(), version.clone());
            }
            for name in &response.removed {
                state.held.remove(name);
            }
            self.request(&response.type_url, None);
        }
    }

    /// NACKs a response: the type keeps its version; `error` goes back.
    pub fn nack(&mut self, type_url: &str, nonce: &str, error: &str) {
        if let Some(state) = self.state(type_url) {
            state.nonce = nonce.to_string();
            self.request(type_url, Some(error));
        }
    }

    /// Sends the type's request as its state stands.
    fn request(&mut self, type_url: &str, error: Option<&str>) {
        let generation = self.generation;
        let delta = self.delta;
        let Some(state) = self.state(type_url) else {
            return;
        };
        if generation == 0 {
            return;
        }
        let error_detail = error.map(|message| Status {
            code: NACK_CODE,
            message: message.to_string(),
            details: Vec::new(),
        });
        let request = if delta {
            Request::Delta(delta_request(state, type_url, error_detail))
        } else {
            Request::StateOfTheWorld(DiscoveryRequest {
                version_info: state.version.clone(),
                resource_names: state.names.clone(),
                type_url: type_url.to_string(),
                response_nonce: state.nonce.clone(),
                error_detail,
                ..Default::default()
            })
        };
        state.requested = Some(state.names.clone());
        let _ = self.client.requests.send(Outgoing {
            generation,
            request,
        });
    }
}

/// The delta request for a type: the stream's first (its names and the
/// versions held), a subscription change, or an ACK or NACK of the last
/// response.
fn delta_request(
    state: &TypeState,
    type_url: &str,
    error_detail: Option<Status>,
) -> DeltaDiscoveryRequest {
    let mut request = DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        error_detail,
        ..Default::default()
    };
    match &state.requested {
        None => {
            request.resource_names_subscribe.clone_from(&state.names);
            request.initial_resource_versions = state.held.clone().into_iter().collect();
        }
        Some(before) if *before != state.names => {
            let new = state.names.iter().filter(|n| !before.contains(n));
            request.resource_names_subscribe = new.cloned().collect();
            let gone = before.iter().filter(|n| !state.names.contains(n));
            request.resource_names_unsubscribe = gone.cloned().collect();
        }
        Some(_) => request.response_nonce.clone_from(&state.nonce),
    }
    request
}
