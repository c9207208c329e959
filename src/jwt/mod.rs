//! JSON Web Tokens as Envoy's `jwt_authn` reads them: a token's parse
//! (`header.payload.signature`, base64url, JSON), its time and audience
//! checks, and signature verification against a JWKS ([`jwks`]). Every
//! failure is one of Envoy's [`Status`]es, whose words are its reply
//! bodies.

pub mod jwks;

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Why a token or key set was refused, in Envoy's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Status {
    Ok,
    JwtMissed,
    JwtNotYetValid,
    JwtExpired,
    JwtBadFormat,
    JwtHeaderParseErrorBadBase64,
    JwtHeaderParseErrorBadJson,
    JwtHeaderBadAlg,
    JwtHeaderNotImplementedAlg,
    JwtHeaderBadKid,
    JwtPayloadParseErrorBadBase64,
    JwtEd25519SignatureWrongLength,
    JwtPayloadParseErrorBadJson,
    JwtPayloadParseErrorIssNotString,
    JwtPayloadParseErrorSubNotString,
    JwtPayloadParseErrorIatNotInteger,
    JwtPayloadParseErrorIatOutOfRange,
    JwtPayloadParseErrorNbfNotInteger,
    JwtPayloadParseErrorNbfOutOfRange,
    JwtPayloadParseErrorExpNotInteger,
    JwtPayloadParseErrorExpOutOfRange,
    JwtPayloadParseErrorJtiNotString,
    JwtPayloadParseErrorAudNotString,
    JwtSignatureParseErrorBadBase64,
    JwtUnknownIssuer,
    JwtAudienceNotAllowed,
    JwtVerificationFail,
    JwksParseError,
    JwksNoKeys,
    JwksBadKeys,
    JwksNoValidKeys,
    JwksKidAlgMismatch,
    JwksFetchFail,
}

impl Status {
    /// Envoy's words for it (the body of a refusal).
    pub fn message(self) -> &'static str {
        use Status::*;
        match self {
            Ok => "OK",
            JwtMissed => "Jwt is missing",
            JwtNotYetValid => "Jwt not yet valid",
            JwtExpired => "Jwt is expired",
            JwtBadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
            JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
            JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            JwtHeaderBadKid => "Jwt header [kid] field is not a string",
            JwtPayloadParseErrorBadBase64 => "Jwt payload is an invalid Base64url encoded",
            JwtEd25519SignatureWrongLength => "Jwt ED25519 signature is wrong length",
            JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
            JwtPayloadParseErrorIssNotString => "Jwt payload [iss] field is not a string",
            JwtPayloadParseErrorSubNotString => "Jwt payload [sub] field is not a string",
            JwtPayloadParseErrorIatNotInteger => "Jwt payload [iat] field is not an integer",
            JwtPayloadParseErrorIatOutOfRange => {
                "Jwt payload [iat] field is not a positive 64 bit integer"
            }
            JwtPayloadParseErrorNbfNotInteger => "Jwt payload [nbf] field is not an integer",
            JwtPayloadParseErrorNbfOutOfRange => {
                "Jwt payload [nbf] field is not a positive 64 bit integer"
            }
            JwtPayloadParseErrorExpNotInteger => "Jwt payload [exp] field is not an integer",
            JwtPayloadParseErrorExpOutOfRange => {
                "Jwt payload [exp] field is not a positive 64 bit integer"
            }
            JwtPayloadParseErrorJtiNotString => "Jwt payload [jti] field is not a string",
            JwtPayloadParseErrorAudNotString => {
                "Jwt payload [aud] field is not a string or string list"
            }
            JwtSignatureParseErrorBadBase64 => "Jwt signature is an invalid Base64url encoded",
            JwtUnknownIssuer => "Jwt issuer is not configured",
            JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
            JwtVerificationFail => "Jwt verification fails",
            JwksParseError => "Jwks is an invalid JSON",
            JwksNoKeys => "Jwks does not have [keys] field",
            JwksBadKeys => "[keys] in Jwks is not an array",
            JwksNoValidKeys => "Jwks doesn't have any valid public key",
            JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            JwksFetchFail => "Jwks remote fetch is failed",
        }
    }
}

/// The algorithms Envoy verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Alg {
    Es256,
    Es384,
    Es512,
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    EdDsa,
}

impl Alg {
    /// The algorithm an `alg` names, if Envoy implements it.
    pub fn named(name: &str) -> Option<Alg> {
        Some(match name {
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// A parsed token (not yet verified).
#[derive(Debug, Clone)]
pub struct Jwt {
    /// What the signature signs: `header.payload` as received.
    signed: String,
    /// Where the payload segment starts in `signed`.
    payload_start: usize,
    /// `alg`.
    pub alg: Alg,
    /// `alg` as written (a key's own `alg` must equal it).
    pub alg_name: String,
    /// `kid`, empty when absent.
    pub kid: String,
    /// `iss`, empty when absent.
    pub iss: String,
    /// `nbf`, 0 when absent.
    pub nbf: u64,
    /// `exp`, 0 when absent.
    pub exp: u64,
    /// `aud`: one or a list.
    pub audiences: Vec<String>,
    /// The payload's claims.
    pub payload: Map<String, Value>,
    /// The signature's bytes.
    pub signature: Vec<u8>,
}

/// Base64url as absl decodes it: padding optional.
fn base64url() -> GeneralPurpose {
    GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

/// Decodes base64url (padded or not; whitespace skipped, as absl skips
/// it).
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        return base64url().decode(text).ok();
    }
    base64url().decode(text).ok()
}

/// A JSON object, or None.
fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A claim that must be a string when present: `Ok(None)` when absent.
fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

/// A time claim read as Envoy does (a JSON number, truncated): 0 when
/// absent; `(not a number, out of range)` statuses.
fn time_claim(
    claims: &Map<String, Value>,
    name: &str,
    bad: (Status, Status),
) -> Result<u64, Status> {
    match claims.get(name) {
        None => Ok(0),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if !(0.0..u64::MAX as f64).contains(&v) {
                return Err(bad.1);
            }
            Ok(v as u64)
        }
        Some(_) => Err(bad.0),
    }
}

impl Jwt {
    /// Parses `token` as Envoy's `Jwt::parseFromString` does: three
    /// non-empty dot-separated segments, header and payload JSON objects
    /// with well-typed registered claims, a base64url signature.
    pub fn parse(token: &str) -> Result<Jwt, Status> {
        let segments: Vec<&str> = token.split('.').filter(|s| !s.is_empty()).collect();
        let [header_b64, payload, signature] = segments[..] else {
            return Err(Status::JwtBadFormat);
        };
        let header = header_b64;
        let header = decode_base64url(header).ok_or(Status::JwtHeaderParseErrorBadBase64)?;
        let header = json_object(&header).ok_or(Status::JwtHeaderParseErrorBadJson)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(Status::JwtHeaderBadAlg),
        };
        let alg = Alg::named(&alg_name).ok_or(Status::JwtHeaderNotImplementedAlg)?;
        let kid = string_claim(&header, "kid").map_err(|()| Status::JwtHeaderBadKid)?;
        let kid = kid.unwrap_or_default().to_string();
        let claims = decode_base64url(payload).ok_or(Status::JwtPayloadParseErrorBadBase64)?;
        let claims = json_object(&claims).ok_or(Status::JwtPayloadParseErrorBadJson)?;
        let iss =
            string_claim(&claims, "iss").map_err(|()| Status::JwtPayloadParseErrorIssNotString)?;
        let iss = iss.unwrap_or_default().to_string();
        string_claim(&claims, "sub").map_err(|()| Status::JwtPayloadParseErrorSubNotString)?;
        use Status::*;
        time_claim(
            &claims,
            "iat",
            (
                JwtPayloadParseErrorIatNotInteger,
                JwtPayloadParseErrorIatOutOfRange,
            ),
        )?;
        let nbf = time_claim(
            &claims,
            "nbf",
            (
                JwtPayloadParseErrorNbfNotInteger,
                JwtPayloadParseErrorNbfOutOfRange,
            ),
        )?;
        let exp = time_claim(
            &claims,
            "exp",
            (
                JwtPayloadParseErrorExpNotInteger,
                JwtPayloadParseErrorExpOutOfRange,
            ),
        )?;
        string_claim(&claims, "jti").map_err(|()| JwtPayloadParseErrorJtiNotString)?;
        let audiences = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or(JwtPayloadParseErrorAudNotString)?,
            Some(_) => return Err(JwtPayloadParseErrorAudNotString),
        };
        let signature = decode_base64url(signature).ok_or(JwtSignatureParseErrorBadBase64)?;
        Result::Ok(Jwt {
            signed: format!("{header_b64}.{payload}"),
            payload_start: header_b64.len() + 1,
            alg,
            alg_name,
            kid,
            iss,
            nbf,
            exp,
            audiences,
            payload: claims,
            signature,
        })
    }

    /// What the signature signs: `header.payload` as received.
    pub fn signed_data(&self) -> &[u8] {
        self.signed.as_bytes()
    }

    /// The payload segment as received (base64url).
    pub fn payload_base64url(&self) -> &str {
        &self.signed[self.payload_start..]
    }

    /// `nbf` and `exp` against `now`, each allowed `clock_skew` seconds.
    pub fn check_time(&self, now: u64, clock_skew: u64) -> Status {
        if now.saturating_add(clock_skew) < self.nbf {
            Status::JwtNotYetValid
        } else if self.exp != 0 && now > self.exp.saturating_add(clock_skew) {
            Status::JwtExpired
        } else {
            Status::Ok
        }
    }

    /// A claim by name, `a.b` reaching into nested objects.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        let mut parts = name.split('.');
        let mut value = self.payload.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }
}

/// Allowed audiences, compared as Envoy compares them: without an
/// `http://` or `https://` scheme and a trailing `/`.
#[derive(Debug, Clone, Default)]
pub struct Audiences(HashSet<String>);

/// An audience without its scheme and trailing slash.
fn sanitize_audience(aud: &str) -> &str {
    let aud = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}

impl Audiences {
    /// The configured audiences.
    pub fn new<'a>(configured: impl IntoIterator<Item = &'a String>) -> Audiences {
        Audiences(
            configured
                .into_iter()
                .map(|a| sanitize_audience(a).to_string())
                .collect(),
        )
    }

    /// Whether a token for `audiences` is allowed: any configured one
    /// among them, or none configured.
    pub fn allow(&self, audiences: &[String]) -> bool {
        self.0.is_empty()
            || audiences
                .iter()
                .any(|a| self.0.contains(sanitize_audience(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn parse_errors_are_envoys_statuses() {
        let ok_header = r#"{"alg":"RS256","kid":"k"}"#;
        let cases = [
            ("a.b".to_string(), Status::JwtBadFormat),
            ("a.b.c.d".to_string(), Status::JwtBadFormat),
            ("a..c".to_string(), Status::JwtBadFormat),
            ("!!.b.c".to_string(), Status::JwtHeaderParseErrorBadBase64),
            (token("[1]", "{}"), Status::JwtHeaderParseErrorBadJson),
            (token("{}", "{}"), Status::JwtHeaderBadAlg),
            (
                token(r#"{"alg":"none"}"#, "{}"),
                Status::JwtHeaderNotImplementedAlg,
            ),
            (
                token(r#"{"alg":"RS256","kid":1}"#, "{}"),
                Status::JwtHeaderBadKid,
            ),
            (
                token(ok_header, "nope"),
                Status::JwtPayloadParseErrorBadJson,
            ),
            (
                token(ok_header, r#"{"iss":1}"#),
                Status::JwtPayloadParseErrorIssNotString,
            ),
            (
                token(ok_header, r#"{"exp":"1"}"#),
                Status::JwtPayloadParseErrorExpNotInteger,
            ),
            (
                token(ok_header, r#"{"exp":-1}"#),
                Status::JwtPayloadParseErrorExpOutOfRange,
            ),
            (
                token(ok_header, r#"{"aud":[1]}"#),
                Status::JwtPayloadParseErrorAudNotString,
            ),
            (
                format!("{}.{}.!", b64(ok_header), b64("{}")),
                Status::JwtSignatureParseErrorBadBase64,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(Jwt::parse(&t).map(|_| ()), Err(want), "{t}");
        }
    }

    #[test]
    fn a_good_token_parses_with_its_claims() {
        let t = token(
            r#"{"alg":"ES512"}"#,
            r#"{"iss":"i","aud":["a","b"],"nbf":10,"exp":20.9,"x":{"y":"z"}}"#,
        );
        let jwt = Jwt::parse(&t).expect("parses");
        assert_eq!(
            (jwt.alg, jwt.iss.as_str(), jwt.nbf, jwt.exp),
            (Alg::Es512, "i", 10, 20)
        );
        assert_eq!(jwt.audiences, ["a", "b"]);
        assert_eq!(jwt.claim("x.y"), Some(&Value::from("z")));
        assert_eq!(
            jwt.signed_data(),
            t.rsplit_once('.')
                .map(|(s, _)| s.as_bytes())
                .unwrap_or_default()
        );
        assert_eq!(jwt.check_time(5, 0), Status::JwtNotYetValid);
        assert_eq!(jwt.check_time(5, 5), Status::Ok);
        assert_eq!(jwt.check_time(81, 60), Status::JwtExpired);
    }

    #[test]
    fn audiences_compare_without_scheme_or_trailing_slash() {
        let allowed = Audiences::new(&["https://api.example.com/".to_string()]);
        assert!(allowed.allow(&["api.example.com".to_string()]));
        assert!(allowed.allow(&["http://api.example.com".to_string()]));
        assert!(!allowed.allow(&["other".to_string()]));
        assert!(!allowed.allow(&[]));
        assert!(Audiences::default().allow(&[]));
    }
}
