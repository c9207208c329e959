//! Outlier detection against Envoy 1.40 on the same configs: a host that
//! answers 503 is ejected after `consecutive_5xx`, shows in `/clusters`
//! and the stats, and comes back after `base_ejection_time`; and
//! `max_ejection_percent` as Envoy computes it.

mod common;
use common::oracle::{with_admin, Pair};
use common::*;
use std::time::{Duration, Instant};

/// Both proxies over cluster `c` (a healthy host and one that always
/// answers 503) with `outlier` as its `outlier_detection` block.
fn pair(test: &str, outlier: &str) -> Option<Pair> {
    pair_with(test, outlier, "")
}

/// As [`pair`], with `bootstrap` appended to the configuration.
fn pair_with(test: &str, outlier: &str, bootstrap: &str) -> Option<Pair> {
    let (good, bad) = (
        Backend::start("good"),
        Backend::start_forced("bad", "/status/503"),
    );
    let cluster = static_cluster(
        "c",
        &[(&good, 1), (&bad, 1)],
        &format!("    outlier_detection: {outlier}\n"),
    );
    let config = with_admin(&http_config(&catch_all("c", ""), &cluster));
    Pair::start(test, &format!("{config}{bootstrap}"), vec![good, bad])
}

/// The statuses of `n` requests in a row, sorted. Both proxies eject on
/// their main thread, a moment after the shard saw the last error: the
/// requests are paced so that the moment has passed.
fn statuses(port: u16, n: usize) -> Vec<u16> {
    let mut s: Vec<u16> = (0..n)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(30));
            get(port, "a", "/").status
        })
        .collect();
    s.sort_unstable();
    s
}

const STATS: &[&str] = &[
    "cluster.c.membership_healthy",
    "cluster.c.lb_healthy_panic",
    "cluster.c.outlier_detection.ejections_active",
    "cluster.c.outlier_detection.ejections_total",
    "cluster.c.outlier_detection.ejections_overflow",
    "cluster.c.outlier_detection.ejections_enforced_total",
    "cluster.c.outlier_detection.ejections_consecutive_5xx",
    "cluster.c.outlier_detection.ejections_detected_consecutive_5xx",
    "cluster.c.outlier_detection.ejections_enforced_consecutive_5xx",
    "cluster.c.outlier_detection.ejections_detected_consecutive_gateway_failure",
    "cluster.c.outlier_detection.ejections_enforced_consecutive_gateway_failure",
    "cluster.c.outlier_detection.ejections_detected_success_rate",
    "cluster.c.outlier_detection.ejections_detected_degradation",
];

/// Every host's `/clusters` health flags, sorted (hosts' ports differ
/// between the two proxies' runs of the same backends, their order not).
fn health_flags(body: &str) -> String {
    let mut flags: Vec<&str> = body
        .lines()
        .filter(|l| l.contains("::health_flags::"))
        .filter_map(|l| l.rsplit("::").next())
        .collect();
    flags.sort_unstable();
    flags.join(",")
}

#[test]
fn consecutive_5xx_ejects_and_time_brings_back_as_in_envoy() {
    let Some(pair) = pair(
        "consecutive_5xx_ejects_as_in_envoy",
        "{ consecutive_5xx: 3, interval: 0.5s, base_ejection_time: 1s, max_ejection_percent: 50 }",
    ) else {
        return;
    };
    // Round robin alternates: the third 503 ejects the bad host, and
    // every later request goes to the good one.
    assert_eq!(
        statuses(pair.ringway.port, 10),
        [vec![200; 7], vec![503; 3]].concat()
    );
    assert_eq!(
        statuses(pair.envoy.port, 10),
        [vec![200; 7], vec![503; 3]].concat()
    );
    pair.assert_same_stats(STATS);
    pair.assert_same_admin("/clusters", health_flags);
    let (_, clusters) = admin_request(pair.ringway_admin, "GET", "/clusters");
    assert_eq!(health_flags(&clusters), "/failed_outlier_check,healthy");
    // After base_ejection_time (reviewed every interval) it is back.
    for admin in [pair.ringway_admin, pair.envoy.admin] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, body) = admin_request(admin, "GET", "/stats");
            if body.contains("cluster.c.outlier_detection.ejections_active: 0") {
                break;
            }
            assert!(Instant::now() < deadline, "the host was never brought back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(statuses(pair.ringway.port, 4).contains(&503));
    assert!(statuses(pair.envoy.port, 4).contains(&503));
}

#[test]
fn max_ejection_percent_overflows_as_in_envoy() {
    // The default 10%: ejecting one of two hosts would be 50%.
    let Some(pair) = pair(
        "max_ejection_percent_overflows_as_in_envoy",
        "{ consecutive_5xx: 2 }",
    ) else {
        return;
    };
    assert_eq!(
        statuses(pair.ringway.port, 8),
        [vec![200; 4], vec![503; 4]].concat()
    );
    assert_eq!(
        statuses(pair.envoy.port, 8),
        [vec![200; 4], vec![503; 4]].concat()
    );
    pair.assert_same_stats(STATS);
}

#[test]
fn panic_threshold_routes_to_every_host_as_in_envoy() {
    // One of two hosts ejected leaves 50% healthy, under an 80% threshold
    // (and 1.4 × 50% = 70% cannot carry all the load): both proxies
    // balance over every host again.
    let Some(pair) = pair(
        "panic_threshold_routes_to_every_host_as_in_envoy",
        "{ consecutive_5xx: 3, max_ejection_percent: 50 }\n    common_lb_config: { healthy_panic_threshold: { value: 80 } }",
    ) else {
        return;
    };
    // Past the ejection (the third 503) the ejected host still gets
    // traffic. Envoy's round robin may pick one host twice as it rebuilds,
    // so the exact split is not compared.
    for (port, admin) in [
        (pair.ringway.port, pair.ringway_admin),
        (pair.envoy.port, pair.envoy.admin),
    ] {
        let failed = statuses(port, 12).iter().filter(|&&s| s == 503).count();
        assert!(failed >= 5, "{failed} of 12 reached the ejected host");
        let (_, stats) = admin_request(admin, "GET", "/stats");
        assert!(stats.contains("cluster.c.outlier_detection.ejections_active: 1"));
        assert!(!stats.contains("cluster.c.lb_healthy_panic: 0"), "{stats}");
    }
}

#[test]
fn outlier_fields_validate_as_in_envoy() {
    let Some(bin) = common::oracle::envoy_or_skip("outlier_fields_validate_as_in_envoy") else {
        return;
    };
    let backend = Backend::start("b");
    for (outlier, valid) in [
        (
            "{ consecutive_5xx: 3, enforcing_consecutive_5xx: 50 }",
            true,
        ),
        ("{ max_ejection_percent: 101 }", false),
        ("{ enforcing_success_rate: 200 }", false),
        ("{ base_ejection_time: 60s, max_ejection_time: 10s }", false),
        (
            "{ split_external_local_origin_errors: true, consecutive_local_origin_failure: 2 }",
            true,
        ),
        (
            "{ always_eject_one_host: true, max_ejection_time_jitter: 1s }",
            true,
        ),
    ] {
        let cluster = static_cluster(
            "c",
            &[(&backend, 1)],
            &format!("    outlier_detection: {outlier}\n"),
        );
        let config = http_config(&catch_all("c", ""), &cluster).replace("{port}", "0");
        let (envoy_ok, envoy_says) = common::oracle::envoy_validate(&bin, &config);
        let (ringway_ok, ringway_says) = common::oracle::ringway_validate(&config);
        assert_eq!(envoy_ok, valid, "{outlier}: {envoy_says}");
        assert_eq!(ringway_ok, valid, "{outlier}: {ringway_says}");
    }
}

/// scripts/chaos_outlier.py on Ringway: three backends under load, one
/// killed (listener closed, connections reset), then revived. Every failed
/// request is one the retry policy could not absorb (its limits counted
/// them), the dead host is ejected within one interval, and traffic
/// returns to it once its ejection ends (base_ejection_time 2 s, reviewed
/// every 1 s).
#[test]
fn a_killed_host_is_ejected_and_traffic_returns_after_it_recovers() {
    let out = std::process::Command::new("python3")
        .args([
            "scripts/chaos_outlier.py",
            "--proxy",
            "ringway",
            "--binary",
            binary(),
        ])
        .output()
        .expect("run scripts/chaos_outlier.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let count = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(count("requests") > 1000, "{r}");
    assert_eq!(
        count("failures"),
        count("retry_overflow") + count("retry_limit_exceeded"),
        "{r}"
    );
    assert!(count("eject_ms") <= 1000, "{r}");
    // Revived 1.5 s after the kill: back between base_ejection_time and
    // one interval more after the ejection, so 0.5–1.5 s after revival
    // (with slack for a loaded machine).
    assert!((400..=2500).contains(&count("recover_ms")), "{r}");
}

/// The outlier event log, line for line against Envoy's (timestamps
/// aside): the ejection after three 503s, then the unejection after
/// `base_ejection_time`.
#[test]
fn the_event_log_matches_envoys() {
    let Some(pair) = pair_with(
        "the_event_log_matches_envoys",
        "{ consecutive_5xx: 3, interval: 0.5s, base_ejection_time: 1s, max_ejection_percent: 50 }",
        "cluster_manager:\n  outlier_detection: { event_log_path: \"{log}\" }\n",
    ) else {
        return;
    };
    statuses(pair.ringway.port, 10);
    statuses(pair.envoy.port, 10);
    // Both lines (the ejection, then the unejection a second or so later).
    let lines = |path: &std::path::Path| {
        let text = log_lines(path, 2);
        let masked: Vec<String> = text
            .lines()
            .map(|l| {
                let at = l.find("\"timestamp\":\"").map(|i| i + 13);
                let end = at.and_then(|a| l[a..].find('"').map(|e| a + e));
                match (at, end) {
                    (Some(a), Some(e)) => format!("{}<time>{}", &l[..a], &l[e..]),
                    _ => l.to_string(),
                }
            })
            .collect();
        masked
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(&pair.logs.1).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ringway, envoy) = (lines(&pair.logs.0), lines(&pair.logs.1));
    assert_eq!(envoy.len(), 2, "{envoy:?}");
    assert_eq!(ringway, envoy);
    assert!(envoy[0].contains("\"action\":\"EJECT\""), "{}", envoy[0]);
}
