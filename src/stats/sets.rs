//! The stat sets, named as Envoy names them. Adding a stat is adding its
//! name to one of these lists and incrementing it where it happens.

use crate::stat_set;

stat_set!(
    /// `server.*` (uptime, memory and state are computed when read).
    Server, None,
    counters [],
    gauges [live, concurrency, total_connections, version]
);

stat_set!(
    /// `cluster_manager.*`.
    ClusterManager, None,
    counters [
        cluster_added, cluster_modified, cluster_removed, cluster_updated,
        cluster_updated_via_merge, update_merge_cancelled, update_out_of_merge_window,
    ],
    gauges [active_clusters, warming_clusters]
);

stat_set!(
    /// `listener_manager.*`.
    ListenerManager, None,
    counters [
        listener_added, listener_modified, listener_removed, listener_stopped,
        listener_create_success, listener_create_failure, listener_in_place_updated,
    ],
    gauges [
        total_listeners_warming, total_listeners_active, total_listeners_draining,
        total_filter_chains_draining, workers_started, workers_pinned,
    ]
);

stat_set!(
    /// `control_plane.*`: the ADS stream (`identifier` is a text readout
    /// Ringway does not have).
    ControlPlane, None,
    counters [rate_limit_enforced],
    gauges [connected_state, pending_requests]
);

stat_set!(
    /// `listener_manager.lds.*`: the listener subscription's updates
    /// (`version_text` is a text readout beside them).
    Lds, None,
    counters [init_fetch_timeout, update_attempt, update_failure, update_rejected, update_success],
    gauges [update_time, version]
);

stat_set!(
    /// `http.<stat_prefix>.rds.<name>.*`: one route configuration
    /// subscription's updates.
    Rds, None,
    counters [
        config_reload, init_fetch_timeout, update_attempt, update_empty, update_failure,
        update_rejected, update_success,
    ],
    gauges [config_reload_time_ms, update_time, version]
);

stat_set!(
    /// `cluster_manager.cds.*`: the cluster subscription's updates.
    Cds, None,
    counters [
        config_reload, init_fetch_timeout, update_attempt, update_failure, update_rejected,
        update_success,
    ],
    gauges [config_reload_time_ms, update_time, version]
);

stat_set!(
    /// `listener.<address>.*`.
    Listener, None,
    counters [
        downstream_cx_total, downstream_cx_destroy, no_filter_chain_match,
        downstream_pre_cx_timeout, downstream_global_cx_overflow,
    ],
    gauges [downstream_cx_active]
);

stat_set!(
    /// `listener.<address>.http.<stat_prefix>.*`: the responses one
    /// connection manager sent on one listener.
    ListenerHttp, None,
    counters [
        downstream_rq_1xx, downstream_rq_2xx, downstream_rq_3xx, downstream_rq_4xx,
        downstream_rq_5xx, downstream_rq_completed,
    ],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.*`: one HTTP connection manager.
    Http, None,
    counters [
        downstream_cx_total, downstream_cx_http1_total, downstream_cx_http2_total,
        downstream_cx_destroy,
        downstream_cx_destroy_local, downstream_cx_destroy_remote,
        downstream_cx_rx_bytes_total, downstream_cx_tx_bytes_total,
        downstream_cx_protocol_error, downstream_cx_drain_close,
        downstream_cx_max_requests_reached,
        downstream_rq_total, downstream_rq_http1_total, downstream_rq_http2_total,
        downstream_rq_completed,
        downstream_rq_1xx, downstream_rq_2xx, downstream_rq_3xx, downstream_rq_4xx,
        downstream_rq_5xx, downstream_rq_timeout, downstream_rq_idle_timeout, downstream_rq_header_timeout,
        downstream_cx_idle_timeout, downstream_rq_too_large, downstream_rq_max_duration_reached,
        downstream_cx_upgrades_total,
        downstream_rq_rx_reset, downstream_rq_tx_reset, no_route, no_cluster,
        rq_direct_response, rq_redirect, downstream_rq_overload_close,
    ],
    gauges [
        downstream_cx_active, downstream_cx_http1_active, downstream_cx_http2_active,
        downstream_rq_active,
        downstream_cx_upgrades_active,
    ]
);

stat_set!(
    /// `http2.*`: the downstream HTTP/2 codec (created with the first
    /// HTTP/2 connection, as Envoy's are).
    Http2, None,
    counters [rx_reset, tx_reset, goaway_sent, keepalive_timeout, rx_messaging_error],
    gauges [streams_active]
);

stat_set!(
    /// `cluster.<name>.*`.
    Cluster, Some("upstream_rq_"),
    counters [
        upstream_cx_total, upstream_cx_http1_total, upstream_cx_http2_total,
        upstream_cx_connect_fail,
        upstream_cx_connect_timeout, upstream_cx_destroy, upstream_cx_destroy_local,
        upstream_cx_max_requests, upstream_cx_idle_timeout,
        upstream_cx_destroy_remote, upstream_cx_none_healthy, upstream_cx_protocol_error,
        upstream_cx_rx_bytes_total, upstream_cx_tx_bytes_total,
        upstream_rq_total, upstream_rq_completed, upstream_rq_timeout,
        upstream_rq_1xx, upstream_rq_2xx, upstream_rq_3xx, upstream_rq_4xx, upstream_rq_5xx,
        upstream_rq_rx_reset, upstream_rq_tx_reset, membership_change,
        upstream_rq_retry, upstream_rq_retry_success, upstream_rq_retry_limit_exceeded,
        upstream_rq_retry_backoff_exponential, upstream_rq_per_try_timeout,
        upstream_rq_retry_overflow, upstream_rq_max_duration_reached,
        upstream_rq_pending_total, upstream_rq_pending_overflow, upstream_rq_pending_failure_eject,
        upstream_rq_active_overflow, upstream_cx_overflow, upstream_cx_pool_overflow,
        lb_healthy_panic, lb_subsets_selected, lb_subsets_fallback,
        lb_recalculate_zone_structures, lb_local_cluster_not_ok, lb_zone_cluster_too_small,
        lb_zone_routing_all_directly, lb_zone_routing_sampled, lb_zone_routing_cross_zone,
        lb_zone_no_capacity_left,
        update_attempt, update_success, update_failure, update_empty, update_no_rebuild,
        assignment_stale, assignment_timeout_received, assignment_use_cached,
    ],
    gauges [
        upstream_cx_active, upstream_rq_active, upstream_rq_pending_active,
        membership_total, membership_healthy, membership_degraded, membership_excluded,
        version, lb_subsets_active,
    ]
);

stat_set!(
    /// `cluster.<name>.health_check.*` (a cluster with active health
    /// checking; written by the health-check thread alone).
    HealthCheck, None,
    counters [attempt, failure, network_failure, passive_failure, success, verify_cluster],
    gauges [degraded, healthy]
);

stat_set!(
    /// `http.<stat_prefix>.health_check.*`: the health-check filter.
    HealthCheckFilter, None,
    counters [
        request_total, ok, failed, degraded, cached_response,
        failed_cluster_not_found, failed_cluster_empty, failed_cluster_unhealthy,
    ],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.fault.*`: the fault filter.
    Fault, None,
    counters [aborts_injected, delays_injected, faults_overflow, response_rl_injected],
    gauges [active_faults]
);

stat_set!(
    /// `http.<stat_prefix>.cors.*`: the CORS filter.
    Cors, None,
    counters [origin_invalid, origin_valid],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.csrf.*`: the CSRF filter.
    Csrf, None,
    counters [missing_source_origin, request_invalid, request_valid],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.rbac.<rules_stat_prefix>.*`: the RBAC filter's
    /// enforced rules.
    Rbac, None,
    counters [allowed, denied],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>.*`: the RBAC
    /// filter's shadow rules.
    RbacShadow, None,
    counters [shadow_allowed, shadow_denied],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.jwt_authn.<filter stat_prefix>.*`: the JWT
    /// authentication filter.
    JwtAuthn, None,
    counters [
        allowed, cors_preflight_bypassed, denied, jwks_fetch_failed, jwks_fetch_success,
        jwt_cache_hit, jwt_cache_miss,
    ],
    gauges []
);

stat_set!(
    /// `http.<stat_prefix>.ext_authz.[<filter stat_prefix>.]*`: the
    /// external authorization filter.
    ExtAuthz, None,
    counters [
        denied, disabled, error, failure_mode_allowed, filter_state_name_collision,
        ignored_dynamic_metadata, invalid, ok, omitted_response_headers,
        request_header_limits_reached, response_header_limits_reached, shadow_denied,
        shadow_error,
    ],
    gauges []
);

/// One counter named in full by its scope's prefix: a stat whose name is
/// only known when it is first counted (Envoy's dynamic stat names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Single;

impl crate::stats::StatSet for Single {
    const NAMES: &'static [(&'static str, crate::stats::Kind)] =
        &[("", crate::stats::Kind::Counter)];
    fn index(self) -> usize {
        0
    }
}

stat_set!(
    /// `<stat_prefix>.http_local_rate_limit.*`: the HTTP local rate limit
    /// filter (a root-level prefix, as in Envoy).
    HttpLocalRateLimit, None,
    counters [enabled, enforced, ok, rate_limited, shadow_mode],
    gauges []
);

stat_set!(
    /// `cluster.<name>.outlier_detection.*` (a cluster with outlier
    /// detection).
    Outlier, None,
    counters [
        ejections_enforced_total, ejections_overflow, ejections_total,
        ejections_consecutive_5xx, ejections_success_rate,
        ejections_detected_consecutive_5xx, ejections_enforced_consecutive_5xx,
        ejections_detected_consecutive_gateway_failure,
        ejections_enforced_consecutive_gateway_failure,
        ejections_detected_consecutive_local_origin_failure,
        ejections_enforced_consecutive_local_origin_failure,
        ejections_detected_success_rate, ejections_enforced_success_rate,
        ejections_detected_local_origin_success_rate,
        ejections_enforced_local_origin_success_rate,
        ejections_detected_failure_percentage, ejections_enforced_failure_percentage,
        ejections_detected_local_origin_failure_percentage,
        ejections_enforced_local_origin_failure_percentage,
        // Envoy's detect_degraded_hosts is refused: it stays 0.
        ejections_detected_degradation,
    ],
    gauges [ejections_active]
);

stat_set!(
    /// `cluster.<name>.*` that only an EDS cluster has (its subscription's).
    Eds, None,
    counters [init_fetch_timeout, update_rejected],
    gauges [update_time]
);

stat_set!(
    /// Per-endpoint stats, as `/clusters` shows them.
    Host, None,
    counters [cx_total, cx_connect_fail, rq_total, rq_success, rq_error, rq_timeout],
    gauges [cx_active, rq_active, rq_pending_active]
);

stat_set!(
    /// `cluster.<name>.retry.*`: the responses that were retried.
    Retry, Some("upstream_rq_"),
    counters [upstream_rq_1xx, upstream_rq_2xx, upstream_rq_3xx, upstream_rq_4xx, upstream_rq_5xx],
    gauges []
);

stat_set!(
    /// `tls_inspector.*`: what the TLS inspector found in first bytes.
    TlsInspector, None,
    counters [
        tls_found, tls_not_found, sni_found, sni_not_found, alpn_found, alpn_not_found,
        client_hello_too_large, read_error,
    ],
    gauges []
);

stat_set!(
    /// `http_inspector.*`: what the HTTP inspector found in first bytes.
    HttpInspector, None,
    counters [http10_found, http11_found, http2_found, http_not_found, read_error],
    gauges []
);

stat_set!(
    /// `tcp.<stat_prefix>.*`: one TCP proxy.
    TcpProxy, None,
    counters [
        downstream_cx_total, downstream_cx_no_route, downstream_cx_rx_bytes_total,
        downstream_cx_tx_bytes_total, downstream_flow_control_paused_reading_total,
        downstream_flow_control_resumed_reading_total, idle_timeout, max_downstream_connection_duration,
        upstream_flush_total,
    ],
    gauges [downstream_cx_rx_bytes_buffered, downstream_cx_tx_bytes_buffered, upstream_flush_active]
);

/// `proxy_proto.[<stat_prefix>.]*`: what the PROXY protocol filter found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ProxyProto {
    NotFoundAllowed,
    NotFoundDisallowed,
    V1Found,
    V1Disallowed,
    V1Error,
    V2Found,
    V2Disallowed,
    V2Error,
}

impl crate::stats::StatSet for ProxyProto {
    const NAMES: &'static [(&'static str, crate::stats::Kind)] = &[
        ("not_found_allowed", crate::stats::Kind::Counter),
        ("not_found_disallowed", crate::stats::Kind::Counter),
        ("versions.v1.found", crate::stats::Kind::Counter),
        ("versions.v1.disallowed", crate::stats::Kind::Counter),
        ("versions.v1.error", crate::stats::Kind::Counter),
        ("versions.v2.found", crate::stats::Kind::Counter),
        ("versions.v2.disallowed", crate::stats::Kind::Counter),
        ("versions.v2.error", crate::stats::Kind::Counter),
    ];
    fn index(self) -> usize {
        self as usize
    }
}

stat_set!(
    /// Counters at the root of the stats tree.
    Root, None,
    counters [downstream_cx_proxy_proto_error],
    gauges []
);

stat_set!(
    /// `udp.<stat_prefix>.*`: one UDP proxy.
    Udp, None,
    counters [
        downstream_sess_total, downstream_sess_rx_bytes, downstream_sess_rx_datagrams,
        downstream_sess_tx_bytes, downstream_sess_tx_datagrams, downstream_sess_rx_errors,
        downstream_sess_tx_errors, downstream_sess_no_route, idle_timeout,
    ],
    gauges [downstream_sess_active]
);

stat_set!(
    /// `cluster.<name>.udp.*`: datagrams a UDP proxy moved to and from a
    /// cluster.
    ClusterUdp, None,
    counters [sess_rx_datagrams, sess_tx_datagrams, sess_rx_errors, sess_tx_errors],
    gauges []
);

stat_set!(
    /// `sds.<secret name>.*`: one secret's updates from its file
    /// (`version_text` is a text readout beside them).
    Sds, None,
    counters [
        init_fetch_timeout, update_attempt, update_failure, update_rejected, update_success,
    ],
    gauges [update_time, version]
);

stat_set!(
    /// `<owner>server_ssl_socket_factory.*` / `client_ssl_socket_factory.*`:
    /// one TLS context's secrets.
    SslSocketFactory, None,
    counters [
        downstream_context_secrets_not_ready, ssl_context_update_by_sds,
        upstream_context_secrets_not_ready,
    ],
    gauges []
);

stat_set!(
    /// `connection_limit.<stat_prefix>.*`.
    ConnectionLimit, None,
    counters [limited_connections],
    gauges [active_connections]
);

stat_set!(
    /// `local_rate_limit.<stat_prefix>.*` of the network `local_ratelimit` filter.
    LocalRateLimit, None,
    counters [rate_limited],
    gauges []
);
