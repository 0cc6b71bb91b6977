//! Authentication and authorization.
//!
//! Every gRPC call and protected HTTP route carries `authorization: Bearer <credential>`, where
//! the credential is either a JWT (algorithm pinned by `auth.algorithm`; `exp`, `nbf`, `iss`,
//! `aud` checked with `auth.leeway_secs`) or an API key `cadre_<id>_<secret>` (stored only as a
//! salted SHA-256). [`Authenticator::authorize`] turns the header into a [`Principal`] and
//! checks its ring against [`Action::min_role`], the one permission table.
//!
//! On first start the node creates a commander API key and writes it to
//! `<data_dir>/credentials` (mode 0600); the CLI reads it from there.

pub mod keyring;
pub mod peer_share;
pub mod roles;
pub mod shared;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use roles::{Action, Principal, Role};
pub use shared::RevokeKind;

use crate::config::AuthConfig;
use crate::error::Error;
use cadre_proto::clock::now_ms;
use cadre_store::{ApiKeyRecord, Store};

use keyring::{KeyRing, NODE_KID, Revoked};
pub(crate) use keyring::{hex, random_bytes};

/// File in the data dir holding the bootstrap commander credential (clients read it by the same
/// name: `cadre_client::CREDENTIALS_FILE`).
pub const CREDENTIALS_FILE: &str = "credentials";
/// Prefix that tells API keys from JWTs.
const KEY_PREFIX: &str = "cadre_";

/// JWT claims cadre issues and accepts.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a user, service or agent name.
    pub sub: String,
    /// The tenant it works on.
    pub tenant: String,
    /// Its ring.
    pub role: Role,
    /// Issuer (must equal `auth.issuer`).
    pub iss: String,
    /// Audience (must equal `auth.audience`).
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not valid before, Unix seconds.
    pub nbf: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Token id, for revocation (tokens issued before ids existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A JWT just issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// Its id (`jti`), to revoke it.
    pub jti: String,
    /// The signing key's id (`kid`).
    pub kid: String,
}

/// Checks credentials and permissions; issues tokens and API keys.
pub struct Authenticator {
    disabled: bool,
    ring: RwLock<KeyRing>,
    revoked: RwLock<Revoked>,
    validation: Validation,
    issuer: String,
    audience: String,
    max_ttl: Duration,
    leeway_secs: u64,
    keys: RwLock<HashMap<String, ApiKeyRecord>>,
    /// The revocations and rotated keys as last read (tier 0), for supervisor nodes.
    shared: RwLock<keyring::SharedRows>,
    /// Where API keys live; None on supervisor nodes, which accept tokens only.
    store: Option<Arc<dyn Store>>,
}

fn salted_hash(salt: &str, secret: &str) -> String {
    hex(&Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize())
}

/// Equal-length comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_now() -> u64 {
    (now_ms().max(0) / 1000) as u64
}

/// Writes a secret file readable only by its owner.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).write(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub(crate) fn read_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<Vec<u8>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = create()?;
            write_private(path, &bytes)
                .map_err(|e| Error::Unavailable(format!("cannot write {}: {e}", path.display())))?;
            Ok(bytes)
        }
        Err(e) => Err(Error::Unavailable(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Loads (or, for files under the data dir, creates) the base signing and verifying keys; the
/// last item is the secret or private key bytes (the ring derives key ids and its seal from them).
fn key_material(
    cfg: &AuthConfig,
    data_dir: &Path,
) -> Result<(Algorithm, EncodingKey, DecodingKey, Vec<u8>), Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::FailedPrecondition(format!("auth: {what}: {e}"));
    let pick = |configured: &str, default: &str| -> PathBuf {
        if configured.is_empty() {
            data_dir.join("auth").join(default)
        } else {
            PathBuf::from(configured)
        }
    };
    match cfg.algorithm.as_str() {
        "HS256" => {
            let path = pick(&cfg.hs256_secret_file, "hs256.key");
            let secret = read_or_create(&path, || Ok(hex(&random_bytes::<32>()?).into_bytes()))?;
            let secret = String::from_utf8_lossy(&secret).trim().to_string();
            if secret.len() < 32 {
                return Err(bad("hs256 secret", &"must be at least 32 bytes"));
            }
            Ok((
                Algorithm::HS256,
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
                secret.into_bytes(),
            ))
        }
        "EdDSA" => {
            use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
            use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let private = pick(&cfg.eddsa_private_key_file, "ed25519-private.pem");
            let public = pick(&cfg.eddsa_public_key_file, "ed25519-public.pem");
            let pem = read_or_create(&private, || {
                let key = ed25519_dalek::SigningKey::from_bytes(&random_bytes::<32>()?);
                let pub_pem = key
                    .verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| bad("public key", &e))?;
                write_private(&public, pub_pem.as_bytes()).map_err(|e| bad("public key file", &e))?;
                Ok(key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| bad("private key", &e))?
                    .as_bytes()
                    .to_vec())
            })?;
            let pub_pem =
                std::fs::read(&public).map_err(|e| bad(&format!("cannot read {}", public.display()), &e))?;
            let enc = EncodingKey::from_ed_pem(&pem).map_err(|e| bad("ed25519 private key", &e))?;
            let dec = DecodingKey::from_ed_pem(&pub_pem).map_err(|e| bad("ed25519 public key", &e))?;
            Ok((Algorithm::EdDSA, enc, dec, pem))
        }
        other => Err(bad("algorithm", &format!("{other:?} is not HS256 or EdDSA"))),
    }
}

impl Authenticator {
    /// Sets up from config: key material under `<data_dir>/auth/` unless configured, API keys
    /// from the store (None: a supervisor node, which accepts tokens only).
    pub async fn open(
        cfg: &AuthConfig,
        data_dir: &Path,
        store: Option<Arc<dyn Store>>,
    ) -> Result<Self, Error> {
        let (algorithm, encoding, decoding, material) = key_material(cfg, data_dir)?;
        let validation = token_validation(cfg, algorithm);
        let overlap = match cfg.key_overlap_secs {
            0 => cfg.max_token_ttl_secs,
            n => n,
        };
        let ring = KeyRing::new(algorithm, encoding, decoding, &material, overlap);
        let keys = match &store {
            Some(store) => store
                .api_keys()
                .await?
                .into_iter()
                .map(|k| (k.id.clone(), k))
                .collect(),
            None => HashMap::new(),
        };
        Authenticator {
            disabled: cfg.mode == "none",
            ring: RwLock::new(ring),
            revoked: RwLock::new(Revoked::default()),
            validation,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            max_ttl: Duration::from_secs(cfg.max_token_ttl_secs),
            leeway_secs: cfg.leeway_secs,
            keys: RwLock::new(keys),
            shared: RwLock::default(),
            store,
        }
        .loaded()
        .await
    }

    fn key_store(&self) -> Result<&Arc<dyn Store>, Error> {
        self.store.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "this node keeps no API keys (supervisor role); use the orchestrator".into(),
            )
        })
    }

    /// Whether `auth.mode = "none"` (every caller is an anonymous commander).
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Makes sure a commander credential exists in `<data_dir>/credentials`; returns its path.
    pub async fn bootstrap(&self, data_dir: &Path) -> Result<PathBuf, Error> {
        let path = data_dir.join(CREDENTIALS_FILE);
        if let Ok(existing) = std::fs::read_to_string(&path)
            && self
                .authenticate(Some(&format!("Bearer {}", existing.trim())))
                .is_ok_and(|p| p.role == Role::Commander)
        {
            return Ok(path);
        }
        let (_, key) = self
            .create_key("bootstrap-commander", "default", Role::Commander, None)
            .await?;
        write_private(&path, format!("{key}\n").as_bytes())
            .map_err(|e| Error::Unavailable(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Authenticates an `authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Error> {
        if self.disabled {
            return Ok(Principal::anonymous());
        }
        let header = header.ok_or_else(|| {
            Error::Unauthenticated(
                "missing credential: send `authorization: Bearer <token or API key>`".into(),
            )
        })?;
        match parse_bearer(header)? {
            Credential::ApiKey(rest) => self.check_key(rest),
            Credential::Jwt(token) => self.check_jwt(token),
        }
    }

    /// Verifies a JWT with the key its `kid` names, then checks the revocations.
    fn check_jwt(&self, token: &str) -> Result<Principal, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Error::Unauthenticated(format!("invalid token: {e}")))?;
        let claims = {
            let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
            let key = ring.verifier(header.kid.as_deref(), now_ms())?;
            decode_claims(token, key, &self.validation)?
        };
        if header.kid.as_deref() != Some(NODE_KID) {
            self.revoked.read().unwrap_or_else(|e| e.into_inner()).check(
                claims.jti.as_deref(),
                &claims.sub,
                claims.iat,
            )?;
        }
        Ok(Principal {
            subject: claims.sub,
            tenant: claims.tenant,
            role: claims.role,
        })
    }

    fn check_key(&self, rest: &str) -> Result<Principal, Error> {
        let invalid = || Error::Unauthenticated("invalid API key".into());
        let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.get(id).ok_or_else(invalid)?;
        if key.revoked_at_ms.is_some() {
            return Err(Error::Unauthenticated(format!("API key {id} is revoked")));
        }
        if !constant_time_eq(salted_hash(&key.salt, secret).as_bytes(), key.hash.as_bytes()) {
            return Err(invalid());
        }
        if key.expires_at_ms.is_some_and(|at| at <= now_ms()) {
            return Err(Error::Unauthenticated(format!("API key {id} expired")));
        }
        Ok(Principal {
            subject: key.name.clone(),
            tenant: key.tenant.clone(),
            role: key.role,
        })
    }

    /// Authenticates, then checks the ring against `action`.
    pub fn authorize(&self, header: Option<&str>, action: Action) -> Result<Principal, Error> {
        let p = self.authenticate(header)?;
        Self::check(&p, action)?;
        Ok(p)
    }

    /// Checks the principal's ring against `action`.
    pub fn check(p: &Principal, action: Action) -> Result<(), Error> {
        if p.may(action) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "{} ({}) may not {}: it needs the {} role",
            p.subject,
            p.role,
            action.name(),
            action.min_role()
        )))
    }

    /// Issues a JWT for `subject` in `tenant` with `role`, valid for `ttl` (at most `auth.max_token_ttl_secs`).
    pub fn issue_token(
        &self,
        subject: &str,
        tenant: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<String, Error> {
        self.issue(subject, tenant, role, ttl, false).map(|i| i.token)
    }

    /// Issues a node-to-node token (commander of `default`, signed with the configured key,
    /// `kid` `node`): what every node of a cluster accepts whatever was rotated.
    pub fn issue_node_token(&self, subject: &str, ttl: Duration) -> Result<String, Error> {
        self.issue(subject, "default", Role::Commander, ttl, true)
            .map(|i| i.token)
    }

    /// Issues a JWT signed with the newest key (`node`: with the configured key as a node token).
    pub fn issue(
        &self,
        subject: &str,
        tenant: &str,
        role: Role,
        ttl: Duration,
        node: bool,
    ) -> Result<Issued, Error> {
        if ttl.is_zero() || ttl > self.max_ttl {
            return Err(cadre_proto::SpecError::invalid(
                "ttl_secs",
                format!("must be between 1 s and {} s", self.max_ttl.as_secs()),
            )
            .into());
        }
        validate_name("tenant", tenant)?;
        validate_name("subject", subject)?;
        let now = unix_now();
        let claims = Claims {
            sub: subject.into(),
            tenant: tenant.into(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: Some(hex(&random_bytes::<16>()?)),
        };
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        let (kid, key) = if node {
            (NODE_KID, &ring.base.encoding)
        } else {
            let k = ring.signer();
            (k.kid.as_str(), &k.encoding)
        };
        let mut header = Header::new(ring.algorithm);
        header.kid = Some(kid.to_string());
        let token = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| Error::Unavailable(format!("cannot sign token: {e}")))?;
        Ok(Issued {
            token,
            jti: claims.jti.unwrap_or_default(),
            kid: kid.to_string(),
        })
    }

    /// Creates an API key, working for `ttl` (None: until revoked); returns its record and the
    /// key itself, which is never stored.
    pub async fn create_key(
        &self,
        name: &str,
        tenant: &str,
        role: Role,
        ttl: Option<Duration>,
    ) -> Result<(ApiKeyRecord, String), Error> {
        validate_name("name", name)?;
        validate_name("tenant", tenant)?;
        let id = hex(&random_bytes::<6>()?);
        let secret = hex(&random_bytes::<24>()?);
        let salt = hex(&random_bytes::<16>()?);
        let created_at_ms = now_ms();
        let record = ApiKeyRecord {
            hash: salted_hash(&salt, &secret),
            id: id.clone(),
            name: name.into(),
            tenant: tenant.into(),
            role,
            salt,
            created_at_ms,
            revoked_at_ms: None,
            expires_at_ms: ttl.map(|t| created_at_ms.saturating_add(t.as_millis() as i64)),
        };
        self.key_store()?.insert_api_key(&record).await?;
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), record.clone());
        Ok((record, format!("{KEY_PREFIX}{id}_{secret}")))
    }

    /// Every API key (without secrets), oldest first.
    pub fn list_keys(&self) -> Vec<ApiKeyRecord> {
        let mut keys: Vec<ApiKeyRecord> = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        keys
    }

    /// Revokes an API key; it stops working at once.
    pub async fn revoke_key(&self, id: &str) -> Result<ApiKeyRecord, Error> {
        let at = now_ms();
        if !self.key_store()?.revoke_api_key(id, at).await? {
            return Err(Error::NotFound(format!("no active API key {id}")));
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("no API key {id}")))?;
        key.revoked_at_ms = Some(at);
        Ok(key.clone())
    }
}

/// What an `authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A JWT.
    Jwt(&'a str),
    /// An API key, after its `cadre_` prefix (`<id>_<secret>`).
    ApiKey(&'a str),
}

/// The credential of an `Authorization` value `Bearer <credential>`: the scheme in any case
/// (RFC 7235), spaces around either part ignored; None when the value is not one.
pub fn bearer_credential(header: &str) -> Option<&str> {
    let (scheme, cred) = header.trim().split_once(' ')?;
    let cred = cred.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !cred.is_empty()).then_some(cred)
}

/// Parses `Bearer <credential>` (untrusted input; never panics).
pub fn parse_bearer(header: &str) -> Result<Credential<'_>, Error> {
    let cred = bearer_credential(header)
        .ok_or_else(|| Error::Unauthenticated("authorization must be `Bearer <token or API key>`".into()))?;
    Ok(match cred.strip_prefix(KEY_PREFIX) {
        Some(rest) => Credential::ApiKey(rest),
        None => Credential::Jwt(cred),
    })
}

/// The JWT checks cadre applies: the one pinned algorithm, `exp`, `nbf`, `iss`, `aud` and `sub`
/// required, `auth.leeway_secs` of clock skew.
pub fn token_validation(cfg: &AuthConfig, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = cfg.leeway_secs;
    validation.validate_nbf = true;
    validation.validate_exp = true;
    validation.set_issuer(&[&cfg.issuer]);
    validation.set_audience(&[&cfg.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation
}

/// Verifies and decodes a JWT's claims (untrusted input; never panics).
fn decode_claims(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, Error> {
    Ok(jsonwebtoken::decode::<Claims>(token, key, validation)
        .map_err(|e| Error::Unauthenticated(format!("invalid token: {e}")))?
        .claims)
}

/// Verifies and decodes a JWT into a principal (untrusted input; never panics).
pub fn decode_token(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Principal, Error> {
    let c = decode_claims(token, key, validation)?;
    Ok(Principal {
        subject: c.sub,
        tenant: c.tenant,
        role: c.role,
    })
}

/// Tenants, subjects and key names: 1-64 of `[A-Za-z0-9_.@-]`.
fn validate_name(field: &str, value: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(
            cadre_proto::SpecError::invalid(field, format!("{value:?} must be 1-64 of A-Z a-z 0-9 _ . @ -"))
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_credential_is_found_whatever_the_scheme_case_and_spaces() {
        assert_eq!(bearer_credential("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credential("bearer  abc "), Some("abc"));
        assert_eq!(bearer_credential(" BEARER abc"), Some("abc"));
        assert_eq!(bearer_credential("Basic abc"), None);
        assert_eq!(bearer_credential("Bearer"), None);
        assert_eq!(bearer_credential("Bearer   "), None);
        assert!(matches!(
            parse_bearer("BEARER cadre_x_y"),
            Ok(Credential::ApiKey("x_y"))
        ));
        assert!(matches!(
            parse_bearer("Bearer a.b.c"),
            Ok(Credential::Jwt("a.b.c"))
        ));
        assert!(parse_bearer("Token a.b.c").is_err());
    }
}
