//! HTTP/1.1 upgrades (`upgrade_configs`: WebSocket and the like): whether a
//! request may upgrade, and the byte tunnel both ways once the upstream
//! switched protocols.

use super::body::{quiet_for, relay, Sink, Source};
use crate::config::Upgrade;
use crate::net::Stream;
use monoio::io::AsyncWriteRentExt;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Whether an `upgrade: kind` request may go through, Envoy's way: a
/// route's entry for the kind decides (enabled or not); without one, the
/// connection manager's entry must exist and be enabled.
pub fn allowed(kind: &[u8], route: &[Upgrade], manager: &[Upgrade]) -> bool {
    let find = |list: &[Upgrade]| {
        list.iter()
            .find(|u| u.kind.as_bytes().eq_ignore_ascii_case(kind))
            .map(|u| u.enabled)
    };
    find(route).or_else(|| find(manager)).unwrap_or(false)
}

/// Which side ended a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed (or its socket failed).
    Downstream,
    /// The upstream closed (or its socket failed).
    Upstream,
    /// Nothing moved either way for the idle timeout.
    Idle,
}

/// What a tunnel moved, and why it ended.
#[derive(Debug, Clone, Copy)]
pub struct Tunneled {
    /// Bytes from the client to the upstream.
    pub to_upstream: u64,
    /// Bytes from the upstream to the client.
    pub to_downstream: u64,
    /// Who ended it.
    pub end: End,
}

/// Relays bytes both ways between the client (read from `down_read`,
/// written to `down_write`) and the upstream socket until either side
/// ends or nothing moves for `idle`. `to_up` and `to_down` are bytes
/// already read from each side, sent first.
pub(crate) async fn tunnel<R: Source, W: Sink>(
    down_read: &mut R,
    down_write: &mut W,
    up: &mut Stream,
    to_up: Vec<u8>,
    to_down: Vec<u8>,
    idle: Option<Duration>,
) -> Tunneled {
    let sent_up = Cell::new(0u64);
    let sent_down = Cell::new(0u64);
    let ended = |end| Tunneled {
        to_upstream: sent_up.get(),
        to_downstream: sent_down.get(),
        end,
    };
    if !to_up.is_empty() {
        let n = to_up.len() as u64;
        if up.write_all(to_up).await.0.is_err() {
            return ended(End::Upstream);
        }
        sent_up.set(n);
    }
    if !to_down.is_empty() {
        let n = to_down.len() as u64;
        if down_write.write(to_down).await.0.is_err() {
            return ended(End::Downstream);
        }
        sent_down.set(n);
    }
    // The upstream is read through a second handle while the first is
    // written, so the two directions never wait on each other.
    let Some(mut up_reader) = up.reader() else {
        return ended(End::Upstream);
    };
    let last = Cell::new(Instant::now());
    let upward = relay(down_read, up, &sent_up, &last);
    let downward = relay(&mut up_reader, down_write, &sent_down, &last);
    monoio::select! {
        end = upward => ended(if end.by_source() { End::Downstream } else { End::Upstream }),
        end = downward => ended(if end.by_source() { End::Upstream } else { End::Downstream }),
        _ = quiet_for(&last, idle) => ended(End::Idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(kind: &str, enabled: bool) -> Upgrade {
        Upgrade {
            kind: kind.into(),
            enabled,
        }
    }

    #[test]
    fn routes_override_the_connection_manager() {
        let manager = [up("websocket", true)];
        assert!(allowed(b"WebSocket", &[], &manager));
        assert!(!allowed(b"websocket", &[up("websocket", false)], &manager));
        assert!(allowed(b"custom", &[up("custom", true)], &manager));
        assert!(!allowed(b"custom", &[], &manager));
        assert!(!allowed(b"websocket", &[], &[up("websocket", false)]));
    }
}
