//! A JSON Web Key Set and signature verification with it, as Envoy's
//! jwt_verify_lib reads keys (RSA, EC P-256/384/521, `oct` HMAC keys,
//! Ed25519 `OKP`, and the `{kid: X.509 PEM}` form) and tries them: a key
//! is tried when its `kid` and `alg` (where set) match the token's, and
//! its type decides the algorithm family, so an HS token never meets an
//! RSA key as a secret.

use super::{decode_base64url, Alg, Jwt, Status};
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};

/// A key set's usable keys.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<Key>,
}

/// One public key (or HMAC secret).
#[derive(Debug, Clone)]
struct Key {
    /// `kid`, empty when absent.
    kid: String,
    /// `alg`, empty when absent.
    alg: String,
    material: Material,
}

/// An elliptic curve Envoy verifies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of a coordinate.
    fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

#[derive(Clone)]
enum Material {
    /// A DER `RSAPublicKey`.
    Rsa(Vec<u8>),
    /// An uncompressed point on the curve.
    Ec(Curve, Vec<u8>),
    /// An HMAC secret.
    Oct(Vec<u8>),
    /// A raw Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Material::Rsa(_) => "Rsa",
            Material::Ec(..) => "Ec",
            Material::Oct(_) => "Oct",
            Material::Ed25519(_) => "Ed25519",
        })
    }
}

/// Appends a DER length.
fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends a DER INTEGER holding the unsigned big-endian `value`.
fn der_uint(out: &mut Vec<u8>, value: &[u8]) {
    let value = &value[value.iter().take_while(|b| **b == 0).count()..];
    let pad = value.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    der_length(out, value.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(value);
}

/// A DER SEQUENCE of two unsigned INTEGERs.
fn der_pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(a.len() + b.len() + 8);
    der_uint(&mut body, a);
    der_uint(&mut body, b);
    let mut out = vec![0x30];
    der_length(&mut out, body.len());
    out.extend(body);
    out
}

/// A string field of a key: `Ok(None)` when absent, `Err` when not a
/// string.
fn field<'a>(key: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ()> {
    match key.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

/// Whether aws-lc accepts `bytes` as a public key for `algorithm`.
fn parses(algorithm: &'static dyn VerificationAlgorithm, bytes: &[u8]) -> bool {
    UnparsedPublicKey::new(algorithm, bytes).parse().is_ok()
}

/// The ECDSA algorithm for a key's curve and the token's hash (BoringSSL
/// verifies any pairing; aws-lc has them all in the DER form).
fn ecdsa(curve: Curve, alg: Alg) -> &'static signature::EcdsaVerificationAlgorithm {
    use signature::*;
    match (curve, alg) {
        (Curve::P256, Alg::Es384) => &ECDSA_P256_SHA384_ASN1,
        (Curve::P256, Alg::Es512) => &ECDSA_P256_SHA512_ASN1,
        (Curve::P256, _) => &ECDSA_P256_SHA256_ASN1,
        (Curve::P384, Alg::Es384) => &ECDSA_P384_SHA384_ASN1,
        (Curve::P384, Alg::Es512) => &ECDSA_P384_SHA512_ASN1,
        (Curve::P384, _) => &ECDSA_P384_SHA256_ASN1,
        (Curve::P521, Alg::Es384) => &ECDSA_P521_SHA384_ASN1,
        (Curve::P521, Alg::Es512) => &ECDSA_P521_SHA512_ASN1,
        (Curve::P521, _) => &ECDSA_P521_SHA256_ASN1,
    }
}

fn rsa_key(key: &Map<String, Value>, alg: &str) -> Result<Material, ()> {
    if !alg.is_empty() && !alg.starts_with("RS") && !alg.starts_with("PS") {
        return Err(());
    }
    let n = field(key, "n")?.ok_or(())?;
    let e = field(key, "e")?.ok_or(())?;
    let n = decode_base64url(n).ok_or(())?;
    let e = decode_base64url(e).ok_or(())?;
    let e_value = e
        .iter()
        .try_fold(0u64, |v, b| v.checked_mul(256).map(|v| v + u64::from(*b)));
    if !matches!(e_value, Some(3 | 65537)) || n.iter().all(|b| *b == 0) {
        return Err(());
    }
    let der = der_pair(&n, &e);
    if !parses(&signature::RSA_PKCS1_2048_8192_SHA256, &der) {
        return Err(());
    }
    Ok(Material::Rsa(der))
}

fn ec_key(key: &Map<String, Value>, alg: &str) -> Result<Material, ()> {
    if !alg.is_empty() && !alg.starts_with("ES") {
        return Err(());
    }
    let crv = field(key, "crv")?.unwrap_or_default();
    if !alg.is_empty()
        && !crv.is_empty()
        && !matches!(
            (alg, crv),
            ("ES256", "P-256") | ("ES384", "P-384") | ("ES512", "P-521")
        )
    {
        return Err(());
    }
    let curve = if alg == "ES256" || crv == "P-256" || (alg.is_empty() && crv.is_empty()) {
        Curve::P256
    } else if alg == "ES384" || crv == "P-384" {
        Curve::P384
    } else if alg == "ES512" || crv == "P-521" {
        Curve::P521
    } else {
        return Err(());
    };
    let x = decode_base64url(field(key, "x")?.ok_or(())?).ok_or(())?;
    let y = decode_base64url(field(key, "y")?.ok_or(())?).ok_or(())?;
    let size = curve.size();
    let mut point = vec![4u8];
    for coordinate in [&x, &y] {
        let value = &coordinate[coordinate.iter().take_while(|b| **b == 0).count()..];
        if value.len() > size {
            return Err(());
        }
        point.resize(point.len() + size - value.len(), 0);
        point.extend_from_slice(value);
    }
    if !parses(ecdsa(curve, Alg::Es256), &point) {
        return Err(());
    }
    Ok(Material::Ec(curve, point))
}

fn oct_key(key: &Map<String, Value>, alg: &str) -> Result<Material, ()> {
    if !matches!(alg, "" | "HS256" | "HS384" | "HS512") {
        return Err(());
    }
    let k = decode_base64url(field(key, "k")?.ok_or(())?).ok_or(())?;
    if k.is_empty() {
        return Err(());
    }
    Ok(Material::Oct(k))
}

fn okp_key(key: &Map<String, Value>, alg: &str) -> Result<Material, ()> {
    if !alg.is_empty() && alg != "EdDSA" {
        return Err(());
    }
    if field(key, "crv")? != Some("Ed25519") {
        return Err(());
    }
    let x = decode_base64url(field(key, "x")?.ok_or(())?).ok_or(())?;
    if x.len() != 32 {
        return Err(());
    }
    Ok(Material::Ed25519(x))
}

/// One JWK, or None when Envoy would skip it as invalid.
fn key(jwk: &Map<String, Value>) -> Option<Key> {
    let kty = field(jwk, "kty").ok()??;
    let text = |name| match jwk.get(name) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let (kid, alg) = (text("kid"), text("alg"));
    let material = match kty {
        "EC" => ec_key(jwk, &alg),
        "RSA" => rsa_key(jwk, &alg),
        "oct" => oct_key(jwk, &alg),
        "OKP" => okp_key(jwk, &alg),
        _ => Err(()),
    }
    .ok()?;
    Some(Key { kid, alg, material })
}

const CERT_BEGIN: &str = "-----BEGIN CERTIFICATE-----\n";
const CERT_END: &str = "\n-----END CERTIFICATE-----\n";

/// The `{kid: PEM certificate}` form: every value a PEM certificate with
/// an RSA key, or no keys.
fn x509_keys(set: &Map<String, Value>) -> Option<Result<Vec<Key>, Status>> {
    let all_certs = !set.is_empty()
        && set.iter().all(|(kid, v)| {
            !kid.is_empty()
                && v.as_str()
                    .is_some_and(|c| c.starts_with(CERT_BEGIN) && c.ends_with(CERT_END))
        });
    if !all_certs {
        return None;
    }
    let keys = set.iter().map(|(kid, pem)| {
        let pem = pem.as_str().unwrap_or_default();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        let cert = pem.parse_x509().ok()?;
        let spki = cert.public_key();
        let der = spki.subject_public_key.data.to_vec();
        let rsa = spki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1";
        (rsa && parses(&signature::RSA_PKCS1_2048_8192_SHA256, &der)).then(|| Key {
            kid: kid.clone(),
            alg: String::new(),
            material: Material::Rsa(der),
        })
    });
    Some(
        keys.collect::<Option<Vec<Key>>>()
            .ok_or(Status::JwksNoValidKeys),
    )
}

impl Jwks {
    /// Parses a JWKS document: its valid keys, or why there are none.
    pub fn parse(json: &[u8]) -> Result<Jwks, Status> {
        let set = match serde_json::from_slice(json) {
            Ok(Value::Object(set)) => set,
            _ => return Err(Status::JwksParseError),
        };
        let Some(keys) = set.get("keys") else {
            return match x509_keys(&set) {
                Some(keys) => keys.map(|keys| Jwks { keys }),
                None => Err(Status::JwksNoKeys),
            };
        };
        let Value::Array(keys) = keys else {
            return Err(Status::JwksBadKeys);
        };
        let keys: Vec<Key> = keys
            .iter()
            .filter_map(|k| k.as_object().and_then(key))
            .collect();
        if keys.is_empty() {
            return Err(Status::JwksNoValidKeys);
        }
        Ok(Jwks { keys })
    }

    /// Verifies `jwt`'s signature (not its times or audiences): Ok with
    /// the first key that verifies it.
    pub fn verify(&self, jwt: &Jwt) -> Status {
        let data = jwt.signed_data();
        let sig = jwt.signature.as_slice();
        let mut kid_alg_matched = false;
        for key in &self.keys {
            if !jwt.kid.is_empty() && !key.kid.is_empty() && key.kid != jwt.kid {
                continue;
            }
            if !key.alg.is_empty() && key.alg != jwt.alg_name {
                continue;
            }
            kid_alg_matched = true;
            let verified = match &key.material {
                Material::Ec(curve, point) => {
                    let (r, s) = sig.split_at(sig.len() / 2);
                    let s = &s[..r.len()];
                    let der = der_pair(r, s);
                    UnparsedPublicKey::new(ecdsa(*curve, jwt.alg), point)
                        .verify(data, &der)
                        .is_ok()
                }
                Material::Rsa(der) => {
                    use signature::*;
                    let params: Option<&'static RsaParameters> = match jwt.alg {
                        Alg::Rs384 => Some(&RSA_PKCS1_2048_8192_SHA384),
                        Alg::Rs512 => Some(&RSA_PKCS1_2048_8192_SHA512),
                        Alg::Rs256 => Some(&RSA_PKCS1_2048_8192_SHA256),
                        Alg::Ps384 => Some(&RSA_PSS_2048_8192_SHA384),
                        Alg::Ps512 => Some(&RSA_PSS_2048_8192_SHA512),
                        Alg::Ps256 => Some(&RSA_PSS_2048_8192_SHA256),
                        _ => None,
                    };
                    params.is_some_and(|p| UnparsedPublicKey::new(p, der).verify(data, sig).is_ok())
                }
                Material::Oct(secret) => {
                    let algorithm = match jwt.alg {
                        Alg::Hs384 => hmac::HMAC_SHA384,
                        Alg::Hs512 => hmac::HMAC_SHA512,
                        _ => hmac::HMAC_SHA256,
                    };
                    hmac::verify(&hmac::Key::new(algorithm, secret), data, sig).is_ok()
                }
                Material::Ed25519(public) => {
                    if sig.len() != 64 {
                        return Status::JwtEd25519SignatureWrongLength;
                    }
                    UnparsedPublicKey::new(&signature::ED25519, public)
                        .verify(data, sig)
                        .is_ok()
                }
            };
            if verified {
                return Status::Ok;
            }
        }
        if kid_alg_matched {
            Status::JwtVerificationFail
        } else {
            Status::JwksKidAlgMismatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use base64::Engine;

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn signed(header: &str, payload: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> Jwt {
        let data = format!("{}.{}", b64(header), b64(payload));
        let sig = sign(data.as_bytes());
        Jwt::parse(&format!("{data}.{}", b64(sig))).expect("parses")
    }

    #[test]
    fn es512_hs256_and_eddsa_verify_and_tampering_fails() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, &rng)
            .expect("key");
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, pkcs8.as_ref())
                .expect("key");
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(66);
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        let ed = Ed25519KeyPair::from_pkcs8(ed.as_ref()).expect("key");
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-521","kid":"ec","x":"{}","y":"{}"}},
                {{"kty":"oct","kid":"hs","k":"{}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{}"}},
                {{"kty":"RSA","kid":"bad","n":"AQAB","e":"BQ"}}]}}"#,
            b64(x),
            b64(y),
            b64("secret"),
            b64(ed.public_key())
        );
        let jwks = Jwks::parse(jwks.as_bytes()).expect("jwks");
        assert_eq!(jwks.keys.len(), 3, "the bad RSA key is skipped");
        let es = signed(r#"{"alg":"ES512","kid":"ec"}"#, "{}", |d| {
            pair.sign(&rng, d).expect("signs").as_ref().to_vec()
        });
        assert_eq!(jwks.verify(&es), Status::Ok);
        let hs = signed(r#"{"alg":"HS256"}"#, "{}", |d| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"secret"), d)
                .as_ref()
                .to_vec()
        });
        assert_eq!(jwks.verify(&hs), Status::Ok);
        let ed_jwt = signed(r#"{"alg":"EdDSA","kid":"ed"}"#, "{}", |d| {
            ed.sign(d).as_ref().to_vec()
        });
        assert_eq!(jwks.verify(&ed_jwt), Status::Ok);
        let mut tampered = es.clone();
        tampered.signature[5] ^= 1;
        assert_eq!(jwks.verify(&tampered), Status::JwtVerificationFail);
        let unknown = signed(r#"{"alg":"ES512","kid":"other"}"#, "{}", |_| vec![0; 132]);
        assert_eq!(jwks.verify(&unknown), Status::JwksKidAlgMismatch);
    }

    #[test]
    fn bad_sets_are_envoys_statuses() {
        assert_eq!(
            Jwks::parse(b"nope").map(|_| ()),
            Err(Status::JwksParseError)
        );
        assert_eq!(Jwks::parse(b"{}").map(|_| ()), Err(Status::JwksNoKeys));
        assert_eq!(
            Jwks::parse(br#"{"keys":1}"#).map(|_| ()),
            Err(Status::JwksBadKeys)
        );
        assert_eq!(
            Jwks::parse(br#"{"keys":[{"kty":"EC","x":"AA","y":"AA"}]}"#).map(|_| ()),
            Err(Status::JwksNoValidKeys)
        );
    }
}
