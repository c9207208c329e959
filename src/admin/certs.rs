//! `/certs`: every TLS context's certificates and trusted CAs, as Envoy
//! lists them.

use crate::http::date::civil_from_days;
use crate::snapshot::ConfigSnapshot;
use crate::tls::CertInfo;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The certificates of every context: clusters' first, then listeners'
/// chains (Envoy creates cluster contexts first).
pub fn certs_json(snapshot: &ConfigSnapshot) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let context = |ca: &[CertInfo], chain: &[CertInfo]| {
        json!({
            "ca_cert": ca.iter().map(|c| cert(c, now)).collect::<Vec<_>>(),
            "cert_chain": chain.iter().map(|c| cert(c, now)).collect::<Vec<_>>(),
        })
    };
    let clusters = snapshot
        .clusters
        .iter()
        .filter_map(|c| c.tls.as_ref())
        .map(|t| context(&t.ca, &t.certificates));
    let listeners = snapshot
        .listeners
        .iter()
        .flat_map(|l| &l.chains)
        .filter_map(|c| c.tls.as_ref())
        .map(|t| context(&t.ca, &t.certificates));
    json!({ "certificates": clusters.chain(listeners).collect::<Vec<_>>() })
}

/// The soonest expiry among every context's certificates (CAs included),
/// in seconds since the epoch.
pub fn first_expiry(snapshot: &ConfigSnapshot) -> Option<i64> {
    let clusters = snapshot.clusters.iter().filter_map(|c| c.tls.as_ref());
    let cluster_certs = clusters.flat_map(|t| t.ca.iter().chain(&t.certificates));
    let listeners = snapshot.listeners.iter().flat_map(|l| &l.chains);
    let listener_certs = listeners
        .filter_map(|c| c.tls.as_ref())
        .flat_map(|t| t.ca.iter().chain(&t.certificates));
    cluster_certs.chain(listener_certs).map(|c| c.expires).min()
}

fn cert(c: &CertInfo, now: i64) -> Value {
    let sans: Vec<Value> = c
        .sans
        .iter()
        .filter_map(|s| {
            let (kind, value) = s.split_once(':')?;
            let key = match kind {
                "DNS" => "dns",
                "URI" => "uri",
                "IP" => "ip_address",
                _ => "email",
            };
            Some(json!({ key: value }))
        })
        .collect();
    json!({
        "path": c.path,
        "serial_number": c.serial,
        "subject_alt_names": sans,
        "days_until_expiration": ((c.expires - now).max(0) / 86_400).to_string(),
        "valid_from": rfc3339(c.valid_from),
        "expiration_time": rfc3339(c.expires),
    })
}

/// `2026-11-26T01:00:52Z`.
fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}
