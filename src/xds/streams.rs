//! The control-plane streams besides ADS: a subscription whose source is an
//! `api_config_source` (`GRPC` or `DELTA_GRPC`) gets a stream of its own to
//! its type's service, as Envoy opens one per subscription (Istio's SDS is
//! one per secret). It is opened when the subscription starts and closed
//! when it is dropped; the protocol on it is the same as on ADS.

use super::ads::Ads;
use super::stats::Counted;
use super::{ConfigSource, Kind, Xds};
use crate::config::{self, AdsConfig};
use crate::stats::Store;

/// Which subscription a stream of its own serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Subject {
    /// Listeners, clusters, a route configuration or an EDS service.
    Kind(Kind),
    /// A secret, by name.
    Secret(String),
}

/// A stream of its own and the subscription it serves.
pub(super) struct OwnStream {
    pub subject: Subject,
    pub ads: Ads,
}

impl Xds {
    /// What stream `stream` serves: None for ADS (stream 0), else its
    /// subscription; None as a whole for a stream that is gone.
    pub(super) fn subject(&self, stream: u64) -> Option<Option<Subject>> {
        if stream == 0 {
            return self.ads.is_some().then_some(None);
        }
        self.own.get(&stream).map(|s| Some(s.subject.clone()))
    }

    /// Stream `stream`'s protocol state.
    pub(super) fn stream_mut(&mut self, stream: u64) -> Option<&mut Ads> {
        match stream {
            0 => self.ads.as_mut(),
            id => self.own.get_mut(&id).map(|s| &mut s.ads),
        }
    }

    /// Sets `control_plane.connected_state`: 1 while any control-plane
    /// stream is open. Streams of their own reconnect each on its own
    /// back-off; one that is still retrying must not hide the others.
    pub(super) fn show_connected(&self, store: &Store) {
        let all = self.ads.iter().chain(self.own.values().map(|s| &s.ads));
        let connected = all.clone().any(|a| a.is_connected());
        for ads in all {
            ads.show_connected(connected, store);
        }
    }

    /// Whether any subscription has a stream of its own.
    pub(super) fn has_own_streams(&self) -> bool {
        !self.own_wanted().is_empty()
    }

    /// As Envoy, every subscription asked of a stream counts each lost
    /// stream or failed attempt as a failed update: ADS's (`only` None) or
    /// the one a stream of its own serves.
    pub(super) fn lost_stream(&self, only: Option<&Subject>, store: &Store) {
        match only {
            None => {
                let ads = |s: &ConfigSource| matches!(s, ConfigSource::Ads { .. });
                for (kind, source) in self.sources() {
                    if ads(source) && self.asked(kind) {
                        self.stats(kind).count(store, Counted::Attempt);
                        self.stats(kind).count(store, Counted::Failure);
                    }
                }
                self.secrets_lost_stream(None, store);
            }
            Some(Subject::Kind(kind)) => {
                self.stats(*kind).count(store, Counted::Attempt);
                self.stats(*kind).count(store, Counted::Failure);
            }
            Some(Subject::Secret(name)) => self.secrets_lost_stream(Some(name), store),
        }
    }

    /// Every subscription that wants a stream of its own: what it serves,
    /// where, its type and the names it asks for.
    fn own_wanted(&self) -> Vec<(Subject, AdsConfig, &'static str, Vec<String>)> {
        let mut wanted = Vec::new();
        let listeners = self.lds.iter().filter(|_| self.ads_listeners);
        let whole = listeners
            .map(|s| (s.kind, &s.source, config::LISTENER_TYPE))
            .chain(
                self.cds
                    .iter()
                    .map(|s| (s.kind, &s.source, config::CLUSTER_TYPE)),
            );
        for (kind, source, type_url) in whole {
            if let Some(api) = source.own_stream() {
                wanted.push((Subject::Kind(kind), api.clone(), type_url, Vec::new()));
            }
        }
        let routes = self.rds.values().filter(|_| self.ads_listeners);
        for r in routes {
            if let Some(api) = r.sub.source.own_stream() {
                let names = vec![r.name.clone()];
                wanted.push((
                    Subject::Kind(r.sub.kind),
                    api.clone(),
                    config::ROUTE_TYPE,
                    names,
                ));
            }
        }
        for e in self.eds.values() {
            if let Some(api) = e.sub.source.own_stream() {
                let names = vec![e.source.service_name.clone()];
                let subject = Subject::Kind(e.sub.kind);
                wanted.push((subject, api.clone(), config::ASSIGNMENT_TYPE, names));
            }
        }
        for (name, sub) in &self.sds {
            if let Some(api) = &sub.api {
                let subject = Subject::Secret(name.clone());
                wanted.push((
                    subject,
                    api.clone(),
                    config::SECRET_TYPE,
                    vec![name.clone()],
                ));
            }
        }
        wanted
    }

    /// Where a stream serving `subject` counts (its subscription's prefix).
    fn stats_prefix(&self, subject: &Subject) -> String {
        match subject {
            Subject::Kind(kind) => self.stats(*kind).prefix(),
            Subject::Secret(name) => format!("sds.{name}."),
        }
    }

    /// Opens the streams subscriptions now want, closes the others, and
    /// asks each for its subscription's names.
    pub(super) fn sync_own_streams(&mut self, store: &Store) {
        let wanted = self.own_wanted();
        self.own
            .retain(|_, s| wanted.iter().any(|(subject, ..)| *subject == s.subject));
        for (subject, api, type_url, names) in wanted {
            let open = self.own.iter().find(|(_, s)| s.subject == subject);
            let id = match open.map(|(id, _)| *id) {
                Some(id) => id,
                None => {
                    let Some(cluster) = self.static_clusters.get(&api.cluster).cloned() else {
                        log::error!("Unknown gRPC client cluster '{}'", api.cluster);
                        continue;
                    };
                    let id = self.next_stream;
                    self.next_stream += 1;
                    let stream = (id, self.events.0.clone());
                    let prefix = self.stats_prefix(&subject);
                    let stats = (prefix.as_str(), store);
                    match Ads::start(&api, cluster, &self.node, Some(type_url), stream, stats) {
                        Ok(ads) => {
                            self.own.insert(id, OwnStream { subject, ads });
                        }
                        Err(e) => {
                            log::error!("xds: {e}");
                            continue;
                        }
                    }
                    id
                }
            };
            if let Some(s) = self.own.get_mut(&id) {
                s.ads.want(type_url, names);
            }
        }
    }
}
