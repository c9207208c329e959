//! `session_ticket_keys`: session tickets sealed with keys the operator
//! gives, so that every proxy holding them (and the same proxy after a
//! restart) resumes a client's session. Each key is Envoy's 80 bytes: a
//! 16-byte name, a 32-byte HMAC-SHA256 key and a 32-byte AES-256 key; the
//! first key seals new tickets, every key opens them (rotation). A ticket
//! is sealed as RFC 5077 recommends and BoringSSL does for Envoy: name,
//! IV, AES-256-CBC ciphertext, HMAC over all three.

use aws_lc_rs::cipher::{
    DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
    AES_256,
};
use aws_lc_rs::hmac;
use rustls::server::ProducesTickets;

/// Bytes in one key, as Envoy defines it.
pub const KEY_LEN: usize = 80;
const NAME_LEN: usize = 16;
const IV_LEN: usize = 16;
const MAC_LEN: usize = 32;
/// How long a ticket is good for: Envoy's default session timeout.
const LIFETIME_SECS: u32 = 7200;

struct Key {
    name: [u8; NAME_LEN],
    mac: hmac::Key,
    aes: [u8; 32],
}

/// Tickets sealed with the configured keys.
pub struct SharedKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedKeys({} keys)", self.keys.len())
    }
}

impl SharedKeys {
    /// Takes the keys' bytes; each must be exactly [`KEY_LEN`] long.
    pub fn new(keys: &[Vec<u8>]) -> Result<SharedKeys, String> {
        let keys = keys
            .iter()
            .map(|k| {
                if k.len() != KEY_LEN {
                    return Err(format!(
                        "Incorrect TLS session ticket key length. Length {}, expected length {KEY_LEN}.",
                        k.len()
                    ));
                }
                let mut name = [0u8; NAME_LEN];
                name.copy_from_slice(&k[..NAME_LEN]);
                let mut aes = [0u8; 32];
                aes.copy_from_slice(&k[48..]);
                Ok(Key {
                    name,
                    mac: hmac::Key::new(hmac::HMAC_SHA256, &k[NAME_LEN..48]),
                    aes,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("expected at least one session ticket key".into());
        }
        Ok(SharedKeys { keys })
    }
}

impl ProducesTickets for SharedKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let cipher = UnboundCipherKey::new(&AES_256, &key.aes).ok()?;
        let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(cipher).ok()?;
        let mut body = plain.to_vec();
        let DecryptionContext::Iv128(iv) = cipher.encrypt(&mut body).ok()? else {
            return None;
        };
        let mut out = Vec::with_capacity(NAME_LEN + IV_LEN + body.len() + MAC_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(iv.as_ref());
        out.extend_from_slice(&body);
        let tag = hmac::sign(&key.mac, &out);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + IV_LEN + MAC_LEN {
            return None;
        }
        let key = self.keys.iter().find(|k| ticket[..NAME_LEN] == k.name)?;
        let (sealed, tag) = ticket.split_at(ticket.len() - MAC_LEN);
        hmac::verify(&key.mac, sealed, tag).ok()?;
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&sealed[NAME_LEN..NAME_LEN + IV_LEN]);
        let cipher = UnboundCipherKey::new(&AES_256, &key.aes).ok()?;
        let cipher = PaddedBlockDecryptingKey::cbc_pkcs7(cipher).ok()?;
        let mut body = sealed[NAME_LEN + IV_LEN..].to_vec();
        let plain = cipher
            .decrypt(&mut body, DecryptionContext::Iv128(iv.into()))
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Vec<u8> {
        (0..KEY_LEN as u8).map(|i| i ^ fill).collect()
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = SharedKeys::new(&[key(1)]).expect("keys");
        let rotated = SharedKeys::new(&[key(2), key(1)]).expect("keys");
        let ticket = old.encrypt(b"session state").expect("sealed");
        assert_eq!(
            rotated.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        let newer = rotated.encrypt(b"later").expect("sealed");
        assert_eq!(old.decrypt(&newer), None, "an unknown key name");
        let mut forged = ticket.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(old.decrypt(&forged), None, "a bad MAC");
        assert_eq!(old.decrypt(&ticket[..40]), None, "too short");
    }

    #[test]
    fn keys_must_be_80_bytes() {
        let err = SharedKeys::new(&[vec![0; 79]]).expect_err("short key");
        assert!(err.contains("Length 79, expected length 80"), "{err}");
        assert!(SharedKeys::new(&[]).is_err());
    }
}
