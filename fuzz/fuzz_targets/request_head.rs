//! The request-head path: parse, validate, route, and build the upstream
//! head, on arbitrary bytes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ringway::http::head::{parse_request, ParsedRequest, Peer};

thread_local! {
    static FIXTURE: common::Fixture = common::Fixture::new();
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|f| {
        let peer = Peer {
            remote: std::net::SocketAddr::from(([10, 1, 2, 3], 40000)).into(),
            local: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 80)).into()),
            tls: None,
            direct_remote: None,
            filter_state: Default::default(),
        };
        if let ParsedRequest::Request(req, _) = parse_request(data, &f.http, &peer, &f.shard, None)
        {
            assert!(req.head_len <= data.len());
        }
    });
});
