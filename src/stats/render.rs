//! `/stats` output: Envoy's text and JSON formats and Prometheus exposition
//! with Envoy's tag extraction.

use super::histogram::{Merged, Recorded};

/// A histogram's values, when any were recorded.
fn recorded(h: &Merged) -> Option<&Recorded> {
    h.recorded.as_ref().filter(|r| !r.cumulative.is_empty())
}
use super::bins::Bins;
use super::Kind;
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
fn quantile_ms(h: &Bins, q: f64) -> Option<f64> {
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

/// A stat name as a Prometheus metric and labels, by the tag producer.
struct Tagged {
    metric: String,
    labels: Vec<(String, String)>,
}

fn tag(tags: &super::TagProducer, name: &str) -> Tagged {
    let (extracted, found) = tags.produce(name);
    Tagged {
        metric: format!("envoy_{}", sanitize(&extracted)),
        labels: found.into_iter().map(|(n, v)| (sanitize(&n), v)).collect(),
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

/// `{name="value",…}`, `{}` without labels, as Envoy writes it.
fn label_text(labels: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// Prometheus text exposition (`/stats/prometheus`).
pub fn prometheus(
    values: &[(String, Kind, u64)],
    histograms: &[Merged],
    sel: &Selection,
    tags: &super::TagProducer,
) -> String {
    // Series of one metric must be contiguous, under one TYPE line.
    let mut families: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
    for (name, kind, value) in values {
        if !sel.keeps(name, *value != 0) {
            continue;
        }
        let t = tag(tags, name);
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
        let t = tag(tags, &h.name);
        let lines = &mut families
            .entry(t.metric.clone())
            .or_insert(("histogram", Vec::new()))
            .1;
        let mut below = [0u64; BUCKETS_MS.len()];
        let (mut total, mut sum_ms) = (0, 0.0);
        if let Some(Recorded { cumulative, .. }) = recorded(h) {
            for (highest, count) in cumulative.iter() {
                let ms = highest as f64 / 1000.0;
                for (i, bound) in BUCKETS_MS.iter().enumerate() {
                    if ms <= *bound {
                        below[i] += count;
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
    fn metrics_and_labels_from_the_tag_producer() {
        let tags = super::super::TagProducer::new(true, &[]).expect("defaults");
        let t = tag(&tags, "cluster.backend.upstream_rq_200");
        assert_eq!(t.metric, "envoy_cluster_upstream_rq");
        assert_eq!(
            label_text(&t.labels, None),
            r#"{envoy_response_code="200",envoy_cluster_name="backend"}"#
        );
        let t = tag(&tags, "server.live");
        assert_eq!(
            (t.metric.as_str(), label_text(&t.labels, None).as_str()),
            ("envoy_server_live", "{}")
        );
    }
}
