//! Whether a JPEG byte stream reaches its end-of-image (EOI) marker.
//!
//! The `image` crate's JPEG decoder (zune-jpeg in non-strict mode) fills a stream that stops early
//! with grey and reports success, so a file cut off in transfer would decode "fine". This walks the
//! marker structure (segments by their length, entropy-coded scans byte by byte) and fails when the
//! data ends before EOI. Bytes after EOI are allowed (some cameras append data); an EXIF thumbnail's
//! own EOI inside an APP1 segment does not count, since segments are skipped by length.

/// Ok when `bytes` is a JPEG stream that reaches its EOI marker; otherwise a sentence saying where
/// it stops (no file name: the caller adds it).
pub fn check_jpeg_reaches_eoi(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG stream (no start-of-image marker)".into());
    }
    let n = bytes.len();
    let truncated = || {
        Err(format!(
            "JPEG data ends after {n} bytes without its end-of-image marker (truncated file)"
        ))
    };
    let mut i = 2;
    loop {
        // Decoders skip junk between segments up to the next 0xFF; so do we.
        while i < n && bytes[i] != 0xFF {
            i += 1;
        }
        // Any number of 0xFF fill bytes may precede a marker code.
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return truncated();
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Stand-alone markers without a length: restart markers, TEM, a stray SOI.
            0xD0..=0xD8 | 0x01 => continue,
            _ => {}
        }
        if i + 2 > n {
            return truncated();
        }
        let len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        if len < 2 {
            return Err(format!(
                "JPEG segment 0xFF{marker:02X} at byte {} has an invalid length {len}",
                i - 2
            ));
        }
        i += len;
        if i > n {
            return truncated();
        }
        if marker == 0xDA {
            // Start of scan: entropy-coded data up to the next marker that is not a stuffed
            // 0xFF00 or a restart marker.
            loop {
                if i + 1 >= n {
                    return truncated();
                }
                if bytes[i] == 0xFF {
                    let next = bytes[i + 1];
                    if next == 0x00 || (0xD0..=0xD7).contains(&next) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP1 segment holding an embedded EOI (a thumbnail), SOS with entropy data holding
    /// a stuffed 0xFF00 and a restart marker, then EOI.
    fn minimal_stream() -> Vec<u8> {
        let mut s = vec![0xFF, 0xD8];
        s.extend([0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00]);
        s.extend([0xFF, 0xDA, 0x00, 0x03, 0x00]);
        s.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        s.extend([0xFF, 0xD9]);
        s
    }

    #[test]
    fn complete_stream_passes_and_every_cut_fails() {
        let s = minimal_stream();
        assert_eq!(check_jpeg_reaches_eoi(&s), Ok(()));
        let mut trailing = s.clone();
        trailing.extend(b"appended");
        assert_eq!(check_jpeg_reaches_eoi(&trailing), Ok(()));
        for cut in 2..s.len() {
            let err = check_jpeg_reaches_eoi(&s[..cut]).unwrap_err();
            assert!(
                err.contains("truncated") || err.contains("length"),
                "{cut}: {err}"
            );
        }
        assert!(check_jpeg_reaches_eoi(b"\x89PNG").is_err());
    }
}
