//! Untrusted credentials: arbitrary `authorization` header values through the bearer parser
//! and the pinned-algorithm JWT check. Must never panic, and never accept a token the key
//! did not sign.
#![no_main]

use cadre_core::auth::{Credential, decode_token, parse_bearer, token_validation};
use cadre_core::config::AuthConfig;
use jsonwebtoken::{Algorithm, DecodingKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let validation = token_validation(&AuthConfig::default(), Algorithm::HS256);
    let key = DecodingKey::from_secret(b"fuzzing-secret-fuzzing-secret-fuzzing");
    if let Ok(Credential::Jwt(token)) = parse_bearer(&header) {
        // Random input cannot carry a valid HMAC over this secret.
        assert!(decode_token(token, &key, &validation).is_err());
    }
});
