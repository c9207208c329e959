//! `/stats` output: Envoy's text and JSON formats and Prometheus exposition
//! with Envoy's tag extraction.

use super::histogram::{Merged, Recorded};

/// A histogram's values, when any were recorded.
fn recorded(h: &Merged) -> Option<&Recorded> {
    h.recorded.as_ref().filter(|r| !r.cumulative.is_empty())
}
use super::{sets, Kind, StatSet};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The percentiles Envoy reports.
const QUANTILES: [f64; 10] = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];
/// Envoy's default histogram bucket bounds, in milliseconds.
const BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Which stats a request asked for.
pub struct Selection {
    /// `?filter=` as a compiled regex (a name matches when it finds a match).
    pub filter: Option<regex::Regex>,
    /// `?usedonly`: leave out stats never written.
    pub used_only: bool,
}

impl Selection {
    fn keeps(&self, name: &str, used: bool) -> bool {
        (!self.used_only || used) && self.filter.as_ref().is_none_or(|r| r.is_match(name))
    }
}

/// A millisecond value of a histogram percentile, or None when empty.
fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_percentile(q) as f64 / 1000.0)
}

fn ms_text(v: Option<f64>) -> String {
    v.map_or_else(|| "nan".to_string(), |v| format!("{v}"))
}

/// Envoy's plain-text `/stats`: text readouts, then counters and gauges,
/// then histograms.
pub fn text(
    values: &[(String, Kind, u64)],
    texts: &[(String, String)],
    histograms: &[Merged],
    sel: &Selection,
) -> String {
    let mut out = String::new();
    for (name, value) in texts {
        if sel.keeps(name, !value.is_empty()) {
            let _ = writeln!(out, "{name}: {value:?}");
        }
    }
    for (name, _, value) in values {
        if sel.keeps(name, *value != 0) {
            let _ = writeln!(out, "{name}: {value}");
        }
    }
    for h in histograms {
        if !sel.keeps(&h.name, recorded(h).is_some()) {
            continue;
        }
        let Some(r) = recorded(h) else {
            let _ = writeln!(out, "{}: No recorded values", h.name);
            continue;
        };
        let parts: Vec<String> = QUANTILES
            .iter()
            .map(|q| {
                format!(
                    "P{q}({},{})",
                    ms_text(quantile_ms(&r.interval, *q)),
                    ms_text(quantile_ms(&r.cumulative, *q))
                )
            })
            .collect();
        let _ = writeln!(out, "{}: {}", h.name, parts.join(" "));
    }
    out
}

/// Envoy's `/stats?format=json`.
pub fn json(
    values: &[(String, Kind, u64)],
    texts: &[(String, String)],
    histograms: &[Merged],
    sel: &Selection,
) -> Value {
    let readouts = texts
        .iter()
        .filter(|(name, value)| sel.keeps(name, !value.is_empty()))
        .map(|(name, value)| json!({"name": name, "value": value}));
    let numbers = values
        .iter()
        .filter(|(name, _, value)| sel.keeps(name, *value != 0))
        .map(|(name, _, value)| json!({"name": name, "value": value}));
    let mut stats: Vec<Value> = readouts.chain(numbers).collect();
    let computed: Vec<Value> = histograms
        .iter()
        .filter(|h| sel.keeps(&h.name, recorded(h).is_some()))
        .map(|h| {
            let values: Vec<Value> = QUANTILES
                .iter()
                .map(|q| match recorded(h) {
                    Some(r) => json!({
                        "interval": quantile_ms(&r.interval, *q),
                        "cumulative": quantile_ms(&r.cumulative, *q),
                    }),
                    None => json!({"interval": null, "cumulative": null}),
                })
                .collect();
            json!({"name": h.name, "values": values})
        })
        .collect();
    if !computed.is_empty() {
        stats.push(json!({"histograms": {
            "supported_quantiles": QUANTILES,
            "computed_quantiles": computed,
        }}));
    }
    json!({ "stats": stats })
}

/// A stat name split the way Envoy's default tag extractors split it.
struct Tagged {
    metric: String,
    labels: Vec<(&'static str, String)>,
}

/// Applies Envoy's tag extraction to the names Ringway produces.
fn tag(name: &str) -> Tagged {
    let mut labels = Vec::new();
    let (family, object, rest) = if let Some(rest) = name.strip_prefix("cluster.") {
        match rest.split_once('.') {
            Some((cluster, stat)) => ("cluster", Some(("envoy_cluster_name", cluster)), stat),
            None => ("cluster", None, rest),
        }
    } else if let Some(rest) = name.strip_prefix("http.") {
        match rest.split_once('.') {
            Some((prefix, stat)) => (
                "http",
                Some(("envoy_http_conn_manager_prefix", prefix)),
                stat,
            ),
            None => ("http", None, rest),
        }
    } else if let Some(rest) = name.strip_prefix("listener.") {
        // The address itself contains dots; the stat name is a known one.
        let split = sets::Listener::NAMES.iter().find_map(|(stat, _)| {
            let addr = rest.strip_suffix(stat)?.strip_suffix('.')?;
            Some((addr, *stat))
        });
        match split {
            Some((addr, stat)) => ("listener", Some(("envoy_listener_address", addr)), stat),
            None => ("listener", None, rest),
        }
    } else {
        ("", None, name)
    };
    let mut stat = rest.to_string();
    let code = rest
        .rsplit_once("upstream_rq_")
        .filter(|(_, c)| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
    if let Some((head, code)) = code {
        labels.push(("envoy_response_code", code.to_string()));
        stat = format!("{head}upstream_rq");
    } else if let Some(base) = rest.strip_suffix("xx") {
        if let Some((head, class)) = base.split_at_checked(base.len().saturating_sub(1)) {
            if head.ends_with('_') && class.bytes().all(|b| (b'1'..=b'5').contains(&b)) {
                labels.push(("envoy_response_code_class", class.to_string()));
                stat = format!("{head}xx");
            }
        }
    }
    if let Some((label, value)) = object {
        labels.push((label, value.to_string()));
    }
    let joined = if family.is_empty() {
        stat
    } else {
        format!("{family}.{stat}")
    };
    Tagged {
        metric: format!("envoy_{}", sanitize(&joined)),
        labels,
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &[(&str, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Prometheus text exposition (`/stats/prometheus`).
pub fn prometheus(
    values: &[(String, Kind, u64)],
    histograms: &[Merged],
    sel: &Selection,
) -> String {
    // Series of one metric must be contiguous, under one TYPE line.
    let mut families: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
    for (name, kind, value) in values {
        if !sel.keeps(name, *value != 0) {
            continue;
        }
        let t = tag(name);
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let series = format!("{}{} {value}", t.metric, label_text(&t.labels, None));
        families
            .entry(t.metric)
            .or_insert((kind, Vec::new()))
            .1
            .push(series);
    }
    for h in histograms {
        if !sel.keeps(&h.name, recorded(h).is_some()) {
            continue;
        }
        let t = tag(&h.name);
        let lines = &mut families
            .entry(t.metric.clone())
            .or_insert(("histogram", Vec::new()))
            .1;
        let mut below = [0u64; BUCKETS_MS.len()];
        let (mut total, mut sum_ms) = (0, 0.0);
        if let Some(Recorded { cumulative, .. }) = recorded(h) {
            for v in cumulative.iter_recorded() {
                let ms = cumulative.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
                for (i, bound) in BUCKETS_MS.iter().enumerate() {
                    if ms <= *bound {
                        below[i] += v.count_at_value();
                    }
                }
            }
            total = cumulative.len();
            sum_ms = cumulative.mean() * total as f64 / 1000.0;
        }
        for (bound, count) in BUCKETS_MS.iter().zip(below) {
            let le = format!("{bound}");
            let labels = label_text(&t.labels, Some(("le", &le)));
            lines.push(format!("{}_bucket{labels} {count}", t.metric));
        }
        let labels = label_text(&t.labels, Some(("le", "+Inf")));
        lines.push(format!("{}_bucket{labels} {total}", t.metric));
        let labels = label_text(&t.labels, None);
        lines.push(format!("{}_sum{labels} {sum_ms}", t.metric));
        lines.push(format!("{}_count{labels} {total}", t.metric));
    }
    let mut out = String::new();
    for (metric, (kind, lines)) in families {
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_tag_extraction() {
        let t = tag("cluster.backend.upstream_rq_200");
        assert_eq!(t.metric, "envoy_cluster_upstream_rq");
        assert_eq!(
            t.labels,
            vec![
                ("envoy_response_code", "200".to_string()),
                ("envoy_cluster_name", "backend".to_string())
            ]
        );
        let t = tag("http.ingress_http.downstream_rq_2xx");
        assert_eq!(t.metric, "envoy_http_downstream_rq_xx");
        assert_eq!(t.labels[0], ("envoy_response_code_class", "2".to_string()));
        let t = tag("listener.0.0.0.0_10000.downstream_cx_total");
        assert_eq!(t.metric, "envoy_listener_downstream_cx_total");
        assert_eq!(
            t.labels,
            vec![("envoy_listener_address", "0.0.0.0_10000".to_string())]
        );
        assert_eq!(tag("server.live").metric, "envoy_server_live");
        assert_eq!(
            tag("cluster.b.retry.upstream_rq_503").metric,
            "envoy_cluster_retry_upstream_rq"
        );
        assert_eq!(
            tag("cluster.b.upstream_rq_total").metric,
            "envoy_cluster_upstream_rq_total"
        );
    }
}
