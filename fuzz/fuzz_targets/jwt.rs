//! The JWT path: arbitrary bytes as a key set and as a token (parse,
//! time and claim reads, verification against keys of every type). Bad
//! tokens and key sets must come back as statuses, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::jwt::jwks::Jwks;
use ringway::jwt::Jwt;
use std::sync::LazyLock;

/// Public keys from RFC 7515 A.3 (P-256) and RFC 8037 A.2 (Ed25519),
/// and an HMAC secret.
static KEYS: LazyLock<Jwks> = LazyLock::new(|| {
    Jwks::parse(
        br#"{"keys":[
          {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
          {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
          {"kty":"oct","k":"c2VjcmV0"}]}"#,
    )
    .expect("the fixed key set parses")
});

fuzz_target!(|data: &[u8]| {
    let _ = Jwks::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(jwt) = Jwt::parse(text) {
        let _ = KEYS.verify(&jwt);
        let _ = jwt.check_time(u64::MAX, u64::MAX);
        let _ = jwt.claim("a.b.c");
        let _ = jwt.payload_base64url();
    }
});
