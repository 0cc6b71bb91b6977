//! JWT signing keys with key ids, rotation and an overlap window, and the revocation list.
//!
//! The configured key (`auth.hs256_secret_file` or the EdDSA pair, created under the data dir
//! when not configured) is the base of the ring: its id is `base-<fingerprint>`. `cadre token
//! rotate` adds a key of the same algorithm, stored in the shared store so every tier-0 replica
//! picks it up within a second; the newest key signs, and a key keeps verifying for
//! `auth.key_overlap_secs` after the next one was made. Tokens without a `kid` (issued before
//! key ids existed) are the base key's.
//!
//! The base key also signs node-to-node tokens (`kid` `node`), always accepted: it is the trust
//! root every node of a cluster is configured with (supervisor-only nodes have no store and
//! verify with it alone). Rotated keys are stored sealed with ChaCha20-Poly1305 under a key
//! derived from the base key, so read access to the database alone cannot mint tokens.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

use cadre_store::{Revocation, StoredSigningKey};

use crate::error::Error;

/// `N` random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::Unavailable(format!("no randomness: {e}")))?;
    Ok(buf)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `kid` of node-to-node tokens (signed with the base key).
pub const NODE_KID: &str = "node";

/// One key of the ring.
pub(crate) struct SigningKey {
    /// Its id (the JWT header's `kid`).
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// When it was made (0 for the base key), Unix milliseconds.
    pub created_at_ms: i64,
}

/// The keys in force: the base key and the rotated ones, oldest first.
pub(crate) struct KeyRing {
    pub algorithm: Algorithm,
    pub base: SigningKey,
    pub rotated: Vec<SigningKey>,
    pub overlap_ms: i64,
    /// Seals rotated keys in the store.
    wrap: [u8; 32],
}

fn bad(what: &str) -> Error {
    Error::Unavailable(format!("signing keys: {what}"))
}

impl KeyRing {
    /// A ring of the base key alone; `material` is its secret or private key bytes.
    pub fn new(
        algorithm: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        material: &[u8],
        overlap_secs: u64,
    ) -> Self {
        let fp = Sha256::new()
            .chain_update(b"cadre key id v1")
            .chain_update(material)
            .finalize();
        let wrap: [u8; 32] = Sha256::new()
            .chain_update(b"cadre signing-key wrap v1")
            .chain_update(material)
            .finalize()
            .into();
        KeyRing {
            algorithm,
            base: SigningKey {
                kid: format!("base-{}", &hex(&fp)[..12]),
                encoding,
                decoding,
                created_at_ms: 0,
            },
            rotated: Vec::new(),
            overlap_ms: (overlap_secs.min(i64::MAX as u64 / 1000) * 1000) as i64,
            wrap,
        }
    }

    /// The key that signs new tokens: the newest.
    pub fn signer(&self) -> &SigningKey {
        self.rotated.last().unwrap_or(&self.base)
    }

    /// The key that verifies a token with header `kid` at `now_ms`, or why none does.
    pub fn verifier(&self, kid: Option<&str>, now_ms: i64) -> Result<&DecodingKey, Error> {
        if kid == Some(NODE_KID) {
            return Ok(&self.base.decoding);
        }
        let kid = kid.unwrap_or(&self.base.kid);
        let keys = std::iter::once(&self.base).chain(self.rotated.iter());
        let Some(i) = keys.clone().position(|k| k.kid == kid) else {
            return Err(Error::Unauthenticated(format!(
                "invalid token: unknown signing key id {kid:?}"
            )));
        };
        let key = keys.clone().nth(i).expect("found above");
        if let Some(next) = keys.clone().nth(i + 1) {
            let retired = next.created_at_ms.saturating_add(self.overlap_ms);
            if now_ms >= retired {
                return Err(Error::Unauthenticated(format!(
                    "invalid token: signing key {kid} was rotated out at {} (Unix ms); get a new token",
                    retired
                )));
            }
        }
        Ok(&key.decoding)
    }

    /// Makes a new key of the ring's algorithm: what to store, and the key itself.
    pub fn generate(&self, now_ms: i64) -> Result<(StoredSigningKey, SigningKey), Error> {
        let kid = format!("k{now_ms:x}{}", hex(&random_bytes::<4>()?));
        let (algorithm, material, public_pem) = match self.algorithm {
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
                use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
                let key = ed25519_dalek::SigningKey::from_bytes(&random_bytes::<32>()?);
                let private = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| bad(&e.to_string()))?
                    .as_bytes()
                    .to_vec();
                let public = key
                    .verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| bad(&e.to_string()))?;
                ("EdDSA", private, public)
            }
            _ => ("HS256", hex(&random_bytes::<32>()?).into_bytes(), String::new()),
        };
        let stored = StoredSigningKey {
            kid: kid.clone(),
            algorithm: algorithm.into(),
            sealed: self.seal(&kid, &material)?,
            public_pem,
            created_at_ms: now_ms,
        };
        let key = self.open_key(&stored)?;
        Ok((stored, key))
    }

    /// A stored key, unsealed.
    pub fn open_key(&self, k: &StoredSigningKey) -> Result<SigningKey, Error> {
        let material = self.unseal(&k.kid, &k.sealed)?;
        let (encoding, decoding) = match self.algorithm {
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(&material).map_err(|e| bad(&e.to_string()))?,
                DecodingKey::from_ed_pem(k.public_pem.as_bytes()).map_err(|e| bad(&e.to_string()))?,
            ),
            _ => (
                EncodingKey::from_secret(&material),
                DecodingKey::from_secret(&material),
            ),
        };
        Ok(SigningKey {
            kid: k.kid.clone(),
            encoding,
            decoding,
            created_at_ms: k.created_at_ms,
        })
    }

    /// Adds the stored keys of this ring's algorithm it does not hold yet (keys sealed under
    /// another base key are skipped with a warning). Keys are never removed: a read that
    /// started before this replica stored a key cannot take it back.
    pub fn load(&mut self, stored: &[StoredSigningKey]) {
        let name = match self.algorithm {
            Algorithm::EdDSA => "EdDSA",
            _ => "HS256",
        };
        let mut added = false;
        for k in stored.iter().filter(|k| k.algorithm == name) {
            if self.rotated.iter().any(|r| r.kid == k.kid) {
                continue;
            }
            match self.open_key(k) {
                Ok(key) => {
                    self.rotated.push(key);
                    added = true;
                }
                Err(e) => {
                    tracing::warn!(kid = %k.kid, error = %e, "skipping a signing key this node cannot open")
                }
            }
        }
        if added {
            self.rotated.sort_by(|a, b| {
                a.created_at_ms
                    .cmp(&b.created_at_ms)
                    .then_with(|| a.kid.cmp(&b.kid))
            });
        }
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.wrap).expect("a 32-byte key"))
    }

    fn seal(&self, kid: &str, material: &[u8]) -> Result<String, Error> {
        let nonce = random_bytes::<12>()?;
        let mut buf = material.to_vec();
        self.cipher()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| bad("cannot seal"))?;
        Ok(format!("{}{}", hex(&nonce), hex(&buf)))
    }

    fn unseal(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, Error> {
        let bytes = unhex(sealed).ok_or_else(|| bad("sealed key is not hex"))?;
        if bytes.len() < 12 + 16 {
            return Err(bad("sealed key is too short"));
        }
        let (nonce, rest) = bytes.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad("bad nonce"))?;
        let mut buf = rest.to_vec();
        let plain = self
            .cipher()
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| {
                bad("sealed under another base key (auth.hs256_secret_file or EdDSA key differs)")
            })?;
        Ok(plain.to_vec())
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The revocations in force.
#[derive(Default)]
pub(crate) struct Revoked {
    /// Token id -> when it was revoked.
    pub jtis: HashMap<String, i64>,
    /// Subject -> when its tokens were revoked (those issued at or before then).
    pub subjects: HashMap<String, i64>,
}

impl Revoked {
    /// The revocations of stored ones.
    pub fn from_stored(rows: &[Revocation]) -> Self {
        let mut r = Revoked::default();
        for row in rows {
            r.add(row);
        }
        r
    }

    /// The stored revocations plus those of `local` made since `since_ms` (written by this
    /// replica after the store was read).
    pub fn merged(rows: &[Revocation], local: &Revoked, since_ms: i64) -> Self {
        let mut r = Revoked::from_stored(rows);
        for (map, mine) in [(&mut r.jtis, &local.jtis), (&mut r.subjects, &local.subjects)] {
            for (k, at) in mine.iter().filter(|(_, at)| **at >= since_ms) {
                let e = map.entry(k.clone()).or_insert(*at);
                *e = (*e).max(*at);
            }
        }
        r
    }

    /// Adds one.
    pub fn add(&mut self, row: &Revocation) {
        let map = match row.kind.as_str() {
            "jti" => &mut self.jtis,
            "subject" => &mut self.subjects,
            _ => return,
        };
        map.insert(row.value.clone(), row.revoked_at_ms);
    }

    /// Why a token of `subject` issued at `iat` (Unix s) with id `jti` is revoked, if it is.
    pub fn check(&self, jti: Option<&str>, subject: &str, iat: u64) -> Result<(), Error> {
        if let Some(jti) = jti
            && let Some(at) = self.jtis.get(jti)
        {
            return Err(Error::Unauthenticated(format!(
                "token {jti} was revoked at {at} (Unix ms)"
            )));
        }
        if let Some(at) = self.subjects.get(subject)
            && (iat as i64).saturating_mul(1000) <= *at
        {
            return Err(Error::Unauthenticated(format!(
                "the tokens of subject {subject} issued until {at} (Unix ms) were revoked"
            )));
        }
        Ok(())
    }
}

/// The rows a tier-0 replica last read from the store (and has added since), kept for the
/// nodes.
#[derive(Default)]
pub(crate) struct SharedRows {
    /// Revocations in force, oldest first.
    pub revocations: Vec<Revocation>,
    /// Rotated signing keys, as stored (sealed).
    pub keys: Vec<StoredSigningKey>,
}

impl SharedRows {
    /// Adds a revocation made here (replacing one of the same token or subject).
    pub fn add_revocation(&mut self, row: &Revocation) {
        self.revocations
            .retain(|r| !(r.kind == row.kind && r.value == row.value));
        self.revocations.push(row.clone());
    }

    /// Adds a signing key made here unless it is known.
    pub fn add_key(&mut self, key: &StoredSigningKey) {
        if !self.keys.iter().any(|k| k.kid == key.kid) {
            self.keys.push(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(overlap_secs: u64) -> KeyRing {
        KeyRing::new(
            Algorithm::HS256,
            EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            b"0123456789abcdef0123456789abcdef",
            overlap_secs,
        )
    }

    #[test]
    fn a_rotated_out_key_verifies_only_during_the_overlap() {
        let mut r = ring(10);
        let base = r.base.kid.clone();
        assert!(r.verifier(None, 0).is_ok() && r.verifier(Some(&base), 0).is_ok());
        let (stored, _) = r.generate(1_000).unwrap();
        r.load(std::slice::from_ref(&stored));
        assert_eq!(r.signer().kid, stored.kid);
        assert!(r.verifier(Some(&base), 10_999).is_ok(), "inside the overlap");
        let e = r.verifier(None, 11_000).err().unwrap().to_string();
        assert!(e.contains("rotated out"), "{e}");
        assert!(r.verifier(Some(NODE_KID), i64::MAX).is_ok(), "node tokens always");
        assert!(
            r.verifier(Some(&stored.kid), i64::MAX).is_ok(),
            "the newest never retires"
        );
        assert!(r.verifier(Some("nope"), 0).is_err());
        // Another base key cannot open it.
        let mut other = KeyRing::new(
            Algorithm::HS256,
            EncodingKey::from_secret(b"x"),
            DecodingKey::from_secret(b"x"),
            b"another secret entirely, 32 bytes",
            10,
        );
        other.load(&[stored]);
        assert!(other.rotated.is_empty());
    }

    #[test]
    fn revocations_by_id_and_by_subject() {
        let r = Revoked::from_stored(&[
            Revocation {
                kind: "jti".into(),
                value: "t1".into(),
                revoked_at_ms: 5_000,
                expires_at_ms: 0,
                revoked_by: "ops".into(),
            },
            Revocation {
                kind: "subject".into(),
                value: "bob".into(),
                revoked_at_ms: 5_000,
                expires_at_ms: 0,
                revoked_by: "ops".into(),
            },
        ]);
        assert!(r.check(Some("t1"), "alice", 1).is_err());
        assert!(r.check(Some("t2"), "alice", 1).is_ok());
        assert!(r.check(None, "bob", 5).is_err(), "issued at the revocation");
        assert!(r.check(None, "bob", 6).is_ok(), "issued after");
    }

    fn revocation(kind: &str, value: &str, at: i64) -> Revocation {
        Revocation {
            kind: kind.into(),
            value: value.into(),
            revoked_at_ms: at,
            expires_at_ms: at + 1_000,
            revoked_by: "ops".into(),
        }
    }

    #[test]
    fn a_revocation_made_again_replaces_the_old_row() {
        let mut rows = SharedRows::default();
        rows.add_revocation(&revocation("jti", "t1", 1));
        rows.add_revocation(&revocation("subject", "t1", 2));
        rows.add_revocation(&revocation("jti", "t1", 3));
        let kept: Vec<_> = rows
            .revocations
            .iter()
            .map(|r| (r.kind.as_str(), r.revoked_at_ms))
            .collect();
        assert_eq!(kept, [("subject", 2), ("jti", 3)]);
    }
}
