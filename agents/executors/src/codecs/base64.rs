//! Base64 (RFC 4648, standard alphabet) for binary params and results such as images and audio.
//!
//! Decoding is lenient where senders differ and strict where data would be lost: it accepts a
//! `data:<mime>;base64,` prefix, ASCII whitespace (line-wrapped output), the URL-safe alphabet
//! and missing padding, and rejects anything else with the offset of the offending character.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes` as padded standard base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 text (see the module doc for what is accepted). The error says what is wrong
/// and where, for an `InvalidParams` message.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let body = strip_data_url(text);
    let offset = text.len() - body.len();
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut padding_at: Option<usize> = None;
    for (i, c) in body.bytes().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            padding_at.get_or_insert(i);
            continue;
        }
        if let Some(p) = padding_at {
            return Err(format!("data after '=' padding at offset {}", offset + p));
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => {
                return Err(format!(
                    "invalid base64 character {:?} at offset {}",
                    char::from(c),
                    offset + i
                ));
            }
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 6 leftover bits cannot hold a byte: the text was cut inside a 4-character group.
    if bits >= 6 {
        return Err("truncated base64: the last group has a single character".into());
    }
    Ok(out)
}

/// Drops a `data:...;base64,` prefix (as in a data URL) if there is one.
fn strip_data_url(text: &str) -> &str {
    let t = text.trim_start();
    if t.starts_with("data:")
        && let Some(comma) = t.find(',')
        && t[..comma].ends_with(";base64")
    {
        return &t[comma + 1..];
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..40 {
            let enc = encode(&data[..n]);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(decode(&enc).unwrap(), &data[..n], "length {n}");
            assert_eq!(decode(enc.trim_end_matches('=')).unwrap(), &data[..n]);
        }
        assert_eq!(decode(&encode(&data)).unwrap(), data);
    }

    #[test]
    fn known_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn lenient_forms() {
        assert_eq!(decode("Zm9v\nYmFy\r\n").unwrap(), b"foobar");
        assert_eq!(decode("data:image/png;base64,Zm9v").unwrap(), b"foo");
        assert_eq!(decode("-_8=").unwrap(), decode("+/8=").unwrap());
    }

    #[test]
    fn random_text_never_panics() {
        let mut rng = crate::support::test_support::Rng::new(7);
        let alphabet: Vec<char> = "AZaz09+/-_= \n=\u{e9}*".chars().collect();
        for _ in 0..2000 {
            let s: String = (0..rng.below(20))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if let Ok(bytes) = decode(&s) {
                // Whatever decodes re-encodes to the same bytes.
                assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            decode("Zm9v*").unwrap_err(),
            "invalid base64 character '*' at offset 4"
        );
        assert!(decode("Zg==Zg").unwrap_err().contains("after '=' padding"));
        assert!(decode("Zm9vY").unwrap_err().contains("truncated"));
        assert!(decode("data:x;base64,Zm9v!").unwrap_err().contains("offset 18"));
    }
}
