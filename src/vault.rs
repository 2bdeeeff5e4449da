//! The vault: seals users' provider keys with XChaCha20-Poly1305 under the master key,
//! bound to their row. The master key never leaves this module; old keys only open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use zeroize::Zeroizing;

use crate::config::Secret;

/// Format version byte at the head of every sealed value.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Salt for deriving a key from a passphrase VAULT_KEY (fixed: the passphrase is the
/// deployment's unique secret; the salt only separates this use from any other).
const KDF_SALT: &[u8] = b"vel_tutor vault key v1";

#[derive(Debug, PartialEq, Eq)]
pub enum VaultError {
    /// The master key setting is unusable.
    BadKey(String),
    /// Not a sealed value of a format this binary knows.
    Malformed,
    /// Sealed under a key id that is neither current nor previous.
    UnknownKey(String),
    /// Wrong key, tampered bytes, or a value copied from another row.
    Tampered,
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::BadKey(m) => write!(f, "vault key: {m}"),
            VaultError::Malformed => write!(f, "sealed value is malformed or of an unknown format"),
            VaultError::UnknownKey(id) => write!(
                f,
                "sealed under vault key {id}, which is not configured (add it to VAULT_KEYS_PREVIOUS)"
            ),
            VaultError::Tampered => write!(
                f,
                "sealed value failed authentication (wrong key, tampered, or moved)"
            ),
        }
    }
}

impl std::error::Error for VaultError {}

/// A sealed value: only `Vault::open` turns it back into a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl Sealed {
    /// The id of the key that sealed it (public: a hash prefix, not key material).
    pub fn key_id(&self) -> Option<String> {
        (self.0.len() > HEADER_LEN && self.0[0] == VERSION)
            .then(|| hex::encode(&self.0[1..1 + KEY_ID_LEN]))
    }
}

struct MasterKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

/// The current key (seals and opens) and previous keys (open only).
pub struct Vault {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

/// What a VAULT_KEY setting is.
enum KeyForm {
    Bytes(Zeroizing<[u8; 32]>),
    Passphrase,
}

/// 64 hex digits or base64 (standard or URL-safe) of exactly 32 bytes are key bytes;
/// anything else of 32+ characters is a passphrase.
fn key_form(raw: &str) -> Result<KeyForm, VaultError> {
    use base64::Engine;
    let mut out = Zeroizing::new([0u8; 32]);
    if raw.len() == 64 && hex::decode_to_slice(raw, out.as_mut()).is_ok() {
        return Ok(KeyForm::Bytes(out));
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for e in engines {
        if let Some(bytes) = e
            .decode(raw)
            .ok()
            .map(Zeroizing::new)
            .filter(|b| b.len() == 32)
        {
            out.copy_from_slice(&bytes);
            return Ok(KeyForm::Bytes(out));
        }
    }
    if raw.chars().count() < 32 {
        return Err(VaultError::BadKey(
            "must be 32 bytes as 64 hex digits or base64, or a passphrase of at least 32 characters (try `vel_tutor secret gen`)"
                .into(),
        ));
    }
    Ok(KeyForm::Passphrase)
}

/// Checks a VAULT_KEY setting without deriving anything (config validation).
pub fn check_key_format(raw: &str) -> Result<(), VaultError> {
    key_form(raw.trim()).map(|_| ())
}

/// Turns a VAULT_KEY setting into 32 key bytes; a passphrase goes through Argon2id.
pub fn parse_key(raw: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let raw = raw.trim();
    if let KeyForm::Bytes(b) = key_form(raw)? {
        return Ok(b);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    argon2::Argon2::default()
        .hash_password_into(raw.as_bytes(), KDF_SALT, out.as_mut())
        .map_err(|e| VaultError::BadKey(format!("key derivation failed: {e}")))?;
    Ok(out)
}

fn master(raw: &Secret) -> Result<MasterKey, VaultError> {
    use sha2::{Digest, Sha256};
    let bytes = parse_key(raw.expose())?;
    let digest = Sha256::digest(bytes.as_ref());
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    let cipher = XChaCha20Poly1305::new_from_slice(bytes.as_ref())
        .map_err(|_| VaultError::BadKey("bad length".into()))?;
    Ok(MasterKey { id, cipher })
}

/// What a sealed value is bound to: its row (user + provider) and its own header.
fn aad(binding: &str, header: &[u8]) -> Vec<u8> {
    let mut a = b"vel_tutor/integration/".to_vec();
    a.extend_from_slice(binding.as_bytes());
    a.push(0);
    a.extend_from_slice(header);
    a
}

/// The binding of an integration row.
pub fn binding(user_id: &str, provider: &str) -> String {
    format!("{user_id}/{provider}")
}

impl Vault {
    pub fn new(current: &Secret, previous: &[Secret]) -> Result<Vault, VaultError> {
        Ok(Vault {
            current: master(current)?,
            previous: previous.iter().map(master).collect::<Result<_, _>>()?,
        })
    }

    /// The current key's id (rows sealed under another id are rotated by `vault rotate`).
    pub fn current_key_id(&self) -> String {
        hex::encode(self.current.id)
    }

    /// Seals `plaintext` for the row `binding` with a fresh random nonce.
    pub fn seal(&self, plaintext: &str, binding: &str) -> Sealed {
        let mut header = [0u8; HEADER_LEN];
        header[0] = VERSION;
        header[1..1 + KEY_ID_LEN].copy_from_slice(&self.current.id);
        getrandom::fill(&mut header[1 + KEY_ID_LEN..])
            .expect("the operating system's random source failed");
        let nonce = XNonce::try_from(&header[1 + KEY_ID_LEN..]).expect("nonce is 24 bytes");
        let ct = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad(binding, &header),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut out = header.to_vec();
        out.extend_from_slice(&ct);
        Sealed(out)
    }

    /// Opens a value sealed for `binding` under the current or a previous key.
    pub fn open(&self, sealed: &Sealed, binding: &str) -> Result<Secret, VaultError> {
        let b = &sealed.0;
        if b.len() < HEADER_LEN + 16 || b[0] != VERSION {
            return Err(VaultError::Malformed);
        }
        let id = &b[1..1 + KEY_ID_LEN];
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| VaultError::UnknownKey(hex::encode(id)))?;
        let nonce =
            XNonce::try_from(&b[1 + KEY_ID_LEN..HEADER_LEN]).map_err(|_| VaultError::Malformed)?;
        let plain = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &b[HEADER_LEN..],
                    aad: &aad(binding, &b[..HEADER_LEN]),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Tampered)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Malformed)?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> Secret {
        Secret::new(std::iter::repeat_n(c, 64).collect::<String>())
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let v = Vault::new(&key('a'), &[]).unwrap();
        let a = v.seal("sk-live-123", "u1/openai");
        let b = v.seal("sk-live-123", "u1/openai");
        assert_ne!(a, b, "a fresh nonce per seal");
        assert!(!String::from_utf8_lossy(&a.0).contains("sk-live"));
        assert_eq!(v.open(&a, "u1/openai").unwrap().expose(), "sk-live-123");
        assert_eq!(a.key_id().unwrap(), v.current_key_id());
    }

    #[test]
    fn any_flipped_byte_is_an_error_not_garbage() {
        let v = Vault::new(&key('a'), &[]).unwrap();
        let s = v.seal("sk-live-123", "u1/openai");
        for i in 0..s.0.len() {
            let mut t = s.clone();
            t.0[i] ^= 0x01;
            let r = v.open(&t, "u1/openai");
            assert!(r.is_err(), "byte {i} flipped still opened");
        }
        assert_eq!(
            v.open(&Sealed(vec![1, 2, 3]), "u1/openai"),
            Err(VaultError::Malformed)
        );
    }

    #[test]
    fn a_value_copied_to_another_row_fails() {
        let v = Vault::new(&key('a'), &[]).unwrap();
        let s = v.seal("sk-live-123", "u1/openai");
        assert_eq!(v.open(&s, "u2/openai"), Err(VaultError::Tampered));
        assert_eq!(v.open(&s, "u1/groq"), Err(VaultError::Tampered));
    }

    #[test]
    fn previous_keys_open_and_unknown_keys_are_named() {
        let old = Vault::new(&key('a'), &[]).unwrap();
        let s = old.seal("gsk_old", "u/groq");
        let rotated = Vault::new(&key('b'), &[key('a')]).unwrap();
        assert_eq!(rotated.open(&s, "u/groq").unwrap().expose(), "gsk_old");
        let resealed = rotated.seal("gsk_old", "u/groq");
        assert_eq!(resealed.key_id().unwrap(), rotated.current_key_id());
        // After rotation the old key is no longer needed.
        let fresh = Vault::new(&key('b'), &[]).unwrap();
        assert_eq!(fresh.open(&resealed, "u/groq").unwrap().expose(), "gsk_old");
        match fresh.open(&s, "u/groq") {
            Err(VaultError::UnknownKey(id)) => assert_eq!(id, old.current_key_id()),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        // The same id but the wrong bytes cannot happen; a wrong key with a forged id fails auth.
        let mut forged = s.clone();
        forged.0[1..9].copy_from_slice(&hex::decode(fresh.current_key_id()).unwrap());
        assert_eq!(fresh.open(&forged, "u/groq"), Err(VaultError::Tampered));
    }

    #[test]
    fn key_formats() {
        let hex_key = "11".repeat(32);
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode([0x11u8; 32])
        };
        assert_eq!(*parse_key(&hex_key).unwrap(), [0x11; 32]);
        assert_eq!(*parse_key(&b64).unwrap(), [0x11; 32]);
        let pass = parse_key("correct horse battery staple, but longer than 32").unwrap();
        assert_ne!(*pass, [0u8; 32]);
        assert_eq!(
            *pass,
            *parse_key("correct horse battery staple, but longer than 32").unwrap()
        );
        assert!(matches!(parse_key("short"), Err(VaultError::BadKey(_))));
    }
}
