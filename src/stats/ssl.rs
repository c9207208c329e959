//! `listener.<address>.ssl.*` and `cluster.<name>.ssl.*`: the fixed
//! handshake counters, and the per-version, per-cipher and per-curve
//! counters Envoy creates on first use.

use super::{Kind, Scope, StatSet, Visit};
use crate::stat_set;

stat_set!(
    /// The fixed `ssl.*` counters.
    Ssl, None,
    counters [
        connection_error, handshake, session_reused, no_certificate, fail_verify_no_cert,
        fail_verify_error, fail_verify_san, fail_verify_cert_hash,
    ],
    gauges []
);

/// One `ssl.versions.*`, `ssl.ciphers.*` or `ssl.curves.*` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

const LABELS: &[(&str, Kind)] = &[
    ("versions.TLSv1.2", Kind::Counter),
    ("versions.TLSv1.3", Kind::Counter),
    ("ciphers.TLS_AES_128_GCM_SHA256", Kind::Counter),
    ("ciphers.TLS_AES_256_GCM_SHA384", Kind::Counter),
    ("ciphers.TLS_CHACHA20_POLY1305_SHA256", Kind::Counter),
    ("ciphers.ECDHE-ECDSA-AES128-GCM-SHA256", Kind::Counter),
    ("ciphers.ECDHE-RSA-AES128-GCM-SHA256", Kind::Counter),
    ("ciphers.ECDHE-ECDSA-AES256-GCM-SHA384", Kind::Counter),
    ("ciphers.ECDHE-RSA-AES256-GCM-SHA384", Kind::Counter),
    ("ciphers.ECDHE-ECDSA-CHACHA20-POLY1305", Kind::Counter),
    ("ciphers.ECDHE-RSA-CHACHA20-POLY1305", Kind::Counter),
    ("curves.X25519", Kind::Counter),
    ("curves.P-256", Kind::Counter),
    ("curves.P-384", Kind::Counter),
    ("curves.X25519MLKEM768", Kind::Counter),
];

impl StatSet for Label {
    const NAMES: &'static [(&'static str, Kind)] = LABELS;
    fn index(self) -> usize {
        self.0
    }
}

/// One TLS context's stats.
pub struct SslStats {
    fixed: Scope<Ssl>,
    labels: Scope<Label>,
}

impl std::fmt::Debug for SslStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SslStats({:?})", self.fixed)
    }
}

impl SslStats {
    pub(super) fn new(prefix: String, writers: usize) -> Self {
        SslStats {
            fixed: Scope::new(prefix.clone(), writers),
            labels: Scope::new(prefix, writers),
        }
    }

    /// Adds one to a fixed counter.
    pub fn inc(&self, writer: usize, stat: Ssl) {
        self.fixed.inc(writer, stat);
    }

    /// Counts a finished handshake's `kind.name` (`versions.TLSv1.3`, …);
    /// names Ringway never negotiates are not counted.
    pub fn inc_label(&self, writer: usize, kind: &str, name: &str) {
        let found = LABELS.iter().position(|(full, _)| {
            full.strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(name)
        });
        if let Some(i) = found {
            self.labels.inc(writer, Label(i));
        }
    }

    /// The summed value of a fixed counter.
    pub fn value(&self, stat: Ssl) -> u64 {
        self.fixed.value(stat)
    }
}

impl Visit for SslStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        self.fixed.visit(f);
        // Envoy creates these on first use: a zero one does not exist yet.
        self.labels.visit(&mut |name, kind, value| {
            if value != 0 {
                f(name, kind, value);
            }
        });
    }
}
