//! W3C Bitstring Status List v1.0, for revocation: one bit per badge, set when the badge is
//! withdrawn. The list is published GZIP-compressed and multibase-encoded (base64url with
//! the `u` prefix); bit 0 is the most significant bit of the first byte. A list holds at
//! least 131,072 entries (16 KB), so that a verifier fetching it learns nothing of which
//! badge it is checking.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::io::{Read, Write};

/// Entries in one list: the specification's minimum.
pub const ENTRIES: u64 = 131_072;

/// The list a status index falls in (numbered from 1, as in `/badges/status/1`) and the
/// index within it.
pub fn place(status_index: u64) -> (u64, u64) {
    (status_index / ENTRIES + 1, status_index % ENTRIES)
}

/// The `encodedList` of a list whose set bits are `revoked` (indexes within the list;
/// others are ignored).
pub fn encode(revoked: impl IntoIterator<Item = u64>) -> String {
    let mut bits = vec![0u8; (ENTRIES / 8) as usize];
    for index in revoked.into_iter().filter(|i| *i < ENTRIES) {
        bits[(index / 8) as usize] |= 0x80 >> (index % 8);
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _written = gzip.write_all(&bits);
    let compressed = gzip.finish().unwrap_or_default();
    format!("u{}", URL_SAFE_NO_PAD.encode(compressed))
}

/// Why an `encodedList` could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable;

/// The bitstring of an `encodedList`.
pub fn decode(encoded: &str) -> Result<Vec<u8>, Undecodable> {
    let compressed = encoded
        .strip_prefix('u')
        .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        .ok_or(Undecodable)?;
    let mut bits = Vec::new();
    // A list is 16 KB; more than 16 MB is not a list this lab would publish.
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(16 << 20)
        .read_to_end(&mut bits)
        .map_err(|_| Undecodable)?;
    Ok(bits)
}

/// Whether bit `index` is set (false beyond the end).
pub fn is_set(bits: &[u8], index: u64) -> bool {
    usize::try_from(index / 8)
        .ok()
        .and_then(|byte| bits.get(byte))
        .is_some_and(|b| b & (0x80 >> (index % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bits_set_are_the_ones_read_back_most_significant_first() {
        let encoded = encode([0, 9, ENTRIES - 1, ENTRIES + 5]);
        assert!(encoded.starts_with('u'));
        let bits = decode(&encoded).unwrap();
        assert_eq!(bits.len() as u64, ENTRIES / 8);
        assert_eq!(bits[0], 0x80);
        assert_eq!(bits[1], 0x40);
        for i in [0, 9, ENTRIES - 1] {
            assert!(is_set(&bits, i));
        }
        assert!(!is_set(&bits, 1) && !is_set(&bits, ENTRIES + 5));
    }

    #[test]
    fn an_index_falls_in_its_list() {
        assert_eq!(place(0), (1, 0));
        assert_eq!(place(ENTRIES + 3), (2, 3));
    }

    proptest::proptest! {
        #[test]
        fn exactly_the_bits_set_are_read_back(
            set in proptest::collection::btree_set(0..ENTRIES, 0..200),
            probes in proptest::collection::vec(0..ENTRIES, 50),
        ) {
            let bits = decode(&encode(set.iter().copied())).unwrap();
            for i in set.iter().copied().chain(probes) {
                proptest::prop_assert_eq!(is_set(&bits, i), set.contains(&i));
            }
        }

        #[test]
        fn any_text_is_decoded_or_refused_without_a_panic(text in ".{0,200}") {
            let _ = decode(&text);
        }
    }

    #[test]
    fn garbage_is_not_a_list() {
        assert_eq!(decode("zabc"), Err(Undecodable));
        assert_eq!(decode("u!!"), Err(Undecodable));
        assert_eq!(decode("uAAAA"), Err(Undecodable));
    }
}
