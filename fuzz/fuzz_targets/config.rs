//! The config path: YAML or JSON text -> Envoy bootstrap decoding ->
//! compiled snapshot. Bad input must come back as errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::access_log::Sinks;
use ringway::config;
use ringway::snapshot::ConfigSnapshot;
use ringway::stats::Store;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tree) = config::parse_document(text, "fuzz.yaml") else {
        return;
    };
    if let Ok(boot) = config::decode(&tree) {
        // Without serving: nothing is resolved or opened.
        let _ = ConfigSnapshot::compile(&boot, false, &Store::new(1), &Sinks::new());
    }
});
