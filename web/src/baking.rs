//! Baked badges: a PNG image that carries its signed credential, as Open Badges 3.0 says
//! (an `iTXt` chunk with the keyword `openbadgecredential`, text not compressed), so that
//! the picture a holder posts or mails is itself the proof.

use std::io::{Read, Write};

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// The `iTXt` keyword of an Open Badges 3.0 credential.
pub const KEYWORD: &str = "openbadgecredential";
/// The largest PNG the verification page reads (a baked badge is a few kilobytes).
pub const MAX_PNG: usize = 4 << 20;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// The badge picture: a disc in the lab's blue with a white ring, 128 × 128, RGBA.
fn picture() -> Vec<u8> {
    const SIZE: usize = 128;
    let mut raw = Vec::with_capacity(SIZE * (SIZE * 4 + 1));
    for y in 0..SIZE {
        raw.push(0); // filter: none
        for x in 0..SIZE {
            let (dx, dy) = (x as f32 - 63.5, y as f32 - 63.5);
            let r = (dx * dx + dy * dy).sqrt();
            let pixel = if r < 50.0 {
                [0x1d, 0x4e, 0x89, 0xff]
            } else if r < 56.0 {
                [0xff, 0xff, 0xff, 0xff]
            } else if r < 62.0 {
                [0x1d, 0x4e, 0x89, 0xff]
            } else {
                [0, 0, 0, 0]
            };
            raw.extend_from_slice(&pixel);
        }
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _written = zlib.write_all(&raw);
    zlib.finish().unwrap_or_default()
}

/// A PNG of the badge with `credential` (the compact VC-JWT) baked in.
pub fn bake(credential: &str) -> Vec<u8> {
    let mut png = SIGNATURE.to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&128u32.to_be_bytes());
    ihdr.extend_from_slice(&128u32.to_be_bytes());
    // 8 bits per channel, RGBA, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // keyword, NUL, compression flag 0 (none), method 0, empty language tag and
    // translated keyword (each NUL-ended), then the text.
    let mut itxt = KEYWORD.as_bytes().to_vec();
    itxt.extend_from_slice(&[0, 0, 0, 0, 0]);
    itxt.extend_from_slice(credential.as_bytes());
    chunk(&mut png, b"iTXt", &itxt);
    chunk(&mut png, b"IDAT", &picture());
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Why no credential could be taken out of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbaked {
    /// Not a PNG, or a damaged one (a chunk cut short or a CRC that does not match).
    NotPng,
    /// A PNG without an `openbadgecredential` chunk.
    NoCredential,
}

/// The credential baked in a PNG: the text of its `iTXt` chunk `openbadgecredential`
/// (compressed text is read too, though Open Badges says not to compress it).
pub fn unbake(png: &[u8]) -> Result<String, Unbaked> {
    let mut rest = png.strip_prefix(SIGNATURE).ok_or(Unbaked::NotPng)?;
    loop {
        if rest.len() < 12 {
            // Cut short before IEND.
            return Err(Unbaked::NotPng);
        }
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = &rest[4..8];
        let end = length.checked_add(12).ok_or(Unbaked::NotPng)?;
        if rest.len() < end {
            return Err(Unbaked::NotPng);
        }
        let data = &rest[8..8 + length];
        let crc = u32::from_be_bytes([
            rest[8 + length],
            rest[9 + length],
            rest[10 + length],
            rest[11 + length],
        ]);
        let mut check = crc32fast::Hasher::new();
        check.update(kind);
        check.update(data);
        if check.finalize() != crc {
            return Err(Unbaked::NotPng);
        }
        if kind == b"iTXt"
            && let Some(text) = itxt_text(data)
        {
            return Ok(text);
        }
        if kind == b"IEND" {
            return Err(Unbaked::NoCredential);
        }
        rest = &rest[end..];
    }
}

/// The text of an `iTXt` chunk whose keyword is [`KEYWORD`].
fn itxt_text(data: &[u8]) -> Option<String> {
    let (keyword, rest) = split_nul(data)?;
    if keyword != KEYWORD.as_bytes() {
        return None;
    }
    let (&compressed, rest) = rest.split_first()?;
    let (_method, rest) = rest.split_first()?;
    let (_language, rest) = split_nul(rest)?;
    let (_translated, text) = split_nul(rest)?;
    if compressed == 0 {
        return String::from_utf8(text.to_vec()).ok();
    }
    let mut out = String::new();
    flate2::read::ZlibDecoder::new(text)
        .take(MAX_PNG as u64)
        .read_to_string(&mut out)
        .ok()?;
    Some(out)
}

fn split_nul(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|b| *b == 0)?;
    Some((&data[..at], &data[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baked_credential_comes_back_out() {
        let png = bake("a.b.c");
        assert!(png.starts_with(SIGNATURE));
        assert_eq!(unbake(&png), Ok("a.b.c".to_string()));
    }

    proptest::proptest! {
        #[test]
        fn any_credential_text_comes_back_out_whole(text in "\\PC{0,400}") {
            proptest::prop_assert_eq!(unbake(&bake(&text)), Ok(text));
        }

        #[test]
        fn any_bytes_after_the_signature_are_refused_or_read_without_a_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..2000,
        ) {
            let mut png = SIGNATURE.to_vec();
            png.extend_from_slice(&bytes);
            let _ = unbake(&png);
            let baked = bake("a.b.c");
            let _ = unbake(&baked[..cut.min(baked.len())]);
        }
    }

    #[test]
    fn a_damaged_or_plain_png_says_so() {
        let mut png = bake("a.b.c");
        // A letter of the credential, in the iTXt chunk after the 25 bytes of IHDR.
        let at = SIGNATURE.len() + 25 + 8 + KEYWORD.len() + 5;
        assert_eq!(png[at], b'a');
        png[at] = b'x';
        assert_eq!(unbake(&png), Err(Unbaked::NotPng));
        assert_eq!(unbake(b"GIF89a"), Err(Unbaked::NotPng));
        let mut plain = SIGNATURE.to_vec();
        chunk(&mut plain, b"IEND", &[]);
        assert_eq!(unbake(&plain), Err(Unbaked::NoCredential));
        assert_eq!(unbake(&png[..20]), Err(Unbaked::NotPng));
    }
}
