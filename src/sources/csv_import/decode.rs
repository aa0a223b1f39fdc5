//! Bytes to records: the file's encoding (a BOM for UTF-8 and UTF-16, or UTF-16 without one
//! recognised by its zero bytes; else UTF-8 with Latin-1 rows decoded per row), its delimiter
//! (comma, tab as Google's "CSV (Excel)" writes it, or semicolon), and a record reader that
//! never holds more than one record.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, WINDOWS_1252};
use encoding_rs_io::DecodeReaderBytesBuilder;
use std::io::{self, Read};

/// How many bytes are looked at to tell the encoding and the delimiter.
const SNIFF_BYTES: usize = 64 * 1024;

/// The encoding a file was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEncoding {
    /// UTF-8 (rows that are not valid UTF-8 are read as Latin-1, see [`Fields`]).
    Utf8,
    Utf16Le,
    Utf16Be,
}

impl FileEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            FileEncoding::Utf8 => "UTF-8",
            FileEncoding::Utf16Le => "UTF-16LE",
            FileEncoding::Utf16Be => "UTF-16BE",
        }
    }
}

/// Tell the encoding from the first bytes.
pub fn sniff_encoding(head: &[u8]) -> FileEncoding {
    if let Some((enc, _)) = Encoding::for_bom(head) {
        return if enc == UTF_16LE {
            FileEncoding::Utf16Le
        } else if enc == UTF_16BE {
            FileEncoding::Utf16Be
        } else {
            FileEncoding::Utf8
        };
    }
    // Without a BOM, UTF-16 text of Latin script has a zero in every other byte; CSV text in
    // UTF-8 has none at all.
    let n = head.len().min(4096) & !1;
    if n >= 4 {
        let pairs = n / 2;
        let even_zero = (0..pairs).filter(|i| head[2 * i] == 0).count();
        let odd_zero = (0..pairs).filter(|i| head[2 * i + 1] == 0).count();
        if odd_zero * 10 >= pairs * 4 && even_zero * 10 < pairs {
            return FileEncoding::Utf16Le;
        }
        if even_zero * 10 >= pairs * 4 && odd_zero * 10 < pairs {
            return FileEncoding::Utf16Be;
        }
    }
    FileEncoding::Utf8
}

/// A reader of UTF-8 bytes (UTF-16 transcoded on the fly; UTF-8 passed through untouched so
/// that a Latin-1 row can be recognised and decoded on its own), plus the first bytes of that
/// stream for sniffing.
pub struct Decoded {
    pub encoding: FileEncoding,
    pub head: Vec<u8>,
    pub rest: Box<dyn Read>,
}

pub fn decode(mut raw: impl Read + 'static) -> io::Result<Decoded> {
    let mut first = Vec::with_capacity(4096);
    (&mut raw).take(4096).read_to_end(&mut first)?;
    let encoding = sniff_encoding(&first);
    // UTF-8 gets no explicit encoding: only then does the decoder pass the bytes through
    // untouched (a Latin-1 row stays recognisable instead of becoming U+FFFD)
    let enc: Option<&'static Encoding> = match encoding {
        FileEncoding::Utf8 => None,
        FileEncoding::Utf16Le => Some(UTF_16LE),
        FileEncoding::Utf16Be => Some(UTF_16BE),
    };
    let stream = io::Cursor::new(first).chain(raw);
    let mut reader: Box<dyn Read> = Box::new(
        DecodeReaderBytesBuilder::new()
            .encoding(enc)
            .bom_override(true)
            .strip_bom(true)
            .utf8_passthru(true)
            .build(stream),
    );
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut reader)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(Decoded {
        encoding,
        head,
        rest: reader,
    })
}

/// The fields of one record as text, and how the record was decoded.
pub struct Fields {
    pub fields: Vec<String>,
    /// The record was not valid UTF-8 and was read as Latin-1 (Windows-1252).
    pub latin1: bool,
    /// Fields that held a byte sequence the file's UTF-16 could not decode (replaced by U+FFFD).
    pub undecodable: Option<usize>,
}

/// Decode one record's fields. Fields over `max_field_bytes` come back as `Err(index)` so the
/// caller can name the column; they are not copied.
pub fn fields(
    rec: &csv::ByteRecord,
    encoding: FileEncoding,
    max_field_bytes: usize,
) -> Result<Fields, usize> {
    if let Some(i) = rec.iter().position(|f| f.len() > max_field_bytes) {
        return Err(i);
    }
    let utf8 = std::str::from_utf8(rec.as_slice()).is_ok();
    let mut undecodable = None;
    let fields = rec
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if utf8 {
                let s = String::from_utf8_lossy(f).into_owned();
                if encoding != FileEncoding::Utf8 && s.contains('\u{fffd}') {
                    undecodable.get_or_insert(i);
                }
                s
            } else {
                WINDOWS_1252.decode_without_bom_handling(f).0.into_owned()
            }
        })
        .collect();
    Ok(Fields {
        fields,
        latin1: !utf8,
        undecodable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
        for u in s.encode_utf16() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out
    }

    #[test]
    fn utf16_with_and_without_bom_becomes_utf8() {
        for bom in [true, false] {
            let d = decode(io::Cursor::new(utf16le("Campaña\tDía\n", bom))).unwrap();
            assert_eq!(d.encoding, FileEncoding::Utf16Le);
            assert_eq!(String::from_utf8(d.head).unwrap(), "Campaña\tDía\n");
        }
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("Día".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let d = decode(io::Cursor::new(be)).unwrap();
        assert_eq!(d.encoding, FileEncoding::Utf16Be);
        assert_eq!(d.head, "Día".as_bytes());
    }

    #[test]
    fn utf8_bom_is_stripped_and_latin1_rows_pass_through() {
        let d = decode(io::Cursor::new(
            b"\xEF\xBB\xBFa,b\nS\xE3o Paulo,1\n".to_vec(),
        ))
        .unwrap();
        assert_eq!(d.encoding, FileEncoding::Utf8);
        assert_eq!(d.head, b"a,b\nS\xE3o Paulo,1\n");
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&d.head[..]);
        let recs: Vec<csv::ByteRecord> = r.byte_records().map(Result::unwrap).collect();
        let f = fields(&recs[1], d.encoding, 100).unwrap();
        assert!(f.latin1);
        assert_eq!(f.fields[0], "São Paulo");
        assert_eq!(fields(&recs[1], d.encoding, 3).err(), Some(0));
    }
}
