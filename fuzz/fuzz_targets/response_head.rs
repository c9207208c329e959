//! The upstream response-head parser on arbitrary bytes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ringway::config::HeaderOp;
use ringway::http::filters::ResponseStep;
use ringway::http::head::{parse_response, Shaping};

thread_local! {
    static FIXTURE: common::Fixture = common::Fixture::new();
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|f| {
        let steps = [
            ResponseStep::Add("x-envoy-immediate-health-check-fail".into(), b"true".to_vec()),
            ResponseStep::Set("access-control-allow-origin".into(), b"https://a.example".to_vec()),
            ResponseStep::Mutate(vec![vec![HeaderOp::Remove("x-backend".into())].into()]),
        ];
        let shaping = Shaping {
            is_head: data.first().is_some_and(|b| b & 1 == 1),
            service_time_ms: Some(3),
            close: data.first().is_some_and(|b| b & 2 == 2),
            mutations: None,
            set_cookie: Some(b"c=1"),
            attempt_count: Some(2),
            filter_steps: &steps,
            upgrade: data.first().is_some_and(|b| b & 4 == 4),
            websocket: data.first().is_some_and(|b| b & 8 == 8),
            date: "Wed, 25 Nov 2026 00:00:00 GMT",
        };
        let mut out = Vec::new();
        let _ = parse_response(data, &f.http, shaping, &mut out);
    });
});
