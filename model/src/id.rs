//! Document ids: opaque strings, unique across all tables, that tell their table.
//!
//! An id is 20 bytes, the table's number (4 bytes, big-endian) then 16 bytes chosen by the
//! inserting transaction (`DocumentId::generated`: its time in milliseconds, then random
//! bytes), written as 36 lowercase base32 characters over those bytes plus a
//! 2-byte checksum, so a mistyped or truncated id is caught before any lookup.

use std::fmt;

pub const ID_BYTES: usize = 20;
const TEXT_LEN: usize = 36;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Each byte's value in `ALPHABET`, or `NOT_A_DIGIT`.
const DIGIT: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_A_DIGIT: u8 = 0xff;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId([u8; ID_BYTES]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    pub given: String,
    pub reason: &'static str,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.given.chars().take(64).collect();
        write!(f, "malformed document id {shown:?}: {}", self.reason)
    }
}

impl std::error::Error for IdError {}

impl DocumentId {
    pub fn new(table_number: u32, unique: [u8; 16]) -> Self {
        let mut bytes = [0u8; ID_BYTES];
        bytes[..4].copy_from_slice(&table_number.to_be_bytes());
        bytes[4..].copy_from_slice(&unique);
        DocumentId(bytes)
    }

    /// A new document's id: the table's number, the insert's time in milliseconds (48 bits,
    /// big-endian), then 80 random bits. A table's new documents sort after its older ones, so
    /// the store writes them and their `by_id` entries at the end of its key order, where an
    /// insert costs least: with ids random throughout, RocksDB's memtable insert was 9.7-15.2%
    /// of the server's samples in `bench --only chat-send` (median 10.6%), 5.7-10.5% with
    /// these (median 7.9%; BENCHMARKS.md).
    pub fn generated(table_number: u32, ms: u64, random: [u8; 10]) -> Self {
        let mut unique = [0u8; 16];
        unique[..6].copy_from_slice(&ms.min((1 << 48) - 1).to_be_bytes()[2..]);
        unique[6..].copy_from_slice(&random);
        Self::new(table_number, unique)
    }

    /// The id's last 8 bytes as a number: random in a generated id (the bytes before them may
    /// be shared by every insert of a millisecond), for spreading ids over shards.
    pub fn random_tail(&self) -> u64 {
        u64::from_le_bytes(self.0[12..].try_into().expect("8 of 20 bytes"))
    }

    pub fn table_number(&self) -> u32 {
        u32::from_be_bytes(self.0[..4].try_into().expect("4 bytes"))
    }

    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(DocumentId(bytes.try_into().ok()?))
    }

    /// Parses the string form, checking length, alphabet and checksum.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let fail = |reason| IdError {
            given: text.to_owned(),
            reason,
        };
        if text.len() != TEXT_LEN {
            return Err(fail("an id is 36 characters"));
        }
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut raw = [0u8; ID_BYTES + 2];
        let mut filled = 0;
        for c in text.bytes() {
            let v = DIGIT[c as usize];
            if v == NOT_A_DIGIT {
                return Err(fail("an id uses only 0-9 and lowercase base32 letters"));
            }
            bits = (bits << 5) | v as u32;
            nbits += 5;
            if nbits >= 8 {
                nbits -= 8;
                raw[filled] = (bits >> nbits) as u8;
                filled += 1;
                bits &= (1 << nbits) - 1;
            }
        }
        if bits != 0 || filled != ID_BYTES + 2 {
            return Err(fail("an id's padding bits must be zero"));
        }
        let (body, sum) = raw.split_at(ID_BYTES);
        if checksum(body) != [sum[0], sum[1]] {
            return Err(fail("checksum does not match"));
        }
        Ok(DocumentId(body.try_into().expect("20 bytes")))
    }
}

fn checksum(bytes: &[u8]) -> [u8; 2] {
    // Fletcher-16: catches every single-character change and every transposition of two.
    let (mut a, mut b) = (0u16, 0u16);
    for &byte in bytes {
        a = (a + byte as u16) % 255;
        b = (b + a) % 255;
    }
    [a as u8, b as u8]
}

impl fmt::Display for DocumentId {
    /// Without allocating: ids are written for every document a query returns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; ID_BYTES + 2];
        raw[..ID_BYTES].copy_from_slice(&self.0);
        raw[ID_BYTES..].copy_from_slice(&checksum(&self.0));
        let mut text = [0u8; TEXT_LEN];
        let mut written = 0;
        let mut bits: u32 = 0;
        let mut nbits = 0;
        for byte in raw {
            bits = (bits << 8) | byte as u32;
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                text[written] = ALPHABET[((bits >> nbits) & 31) as usize];
                written += 1;
            }
            bits &= (1 << nbits) - 1;
        }
        if nbits > 0 {
            text[written] = ALPHABET[((bits << (5 - nbits)) & 31) as usize];
            written += 1;
        }
        debug_assert_eq!(written, TEXT_LEN);
        f.write_str(std::str::from_utf8(&text).expect("the alphabet is ASCII"))
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_corruption() {
        let id = DocumentId::new(7, *b"0123456789abcdef");
        let text = id.to_string();
        // The text form is stored by apps and sent to clients: it never changes.
        assert_eq!(text, "000001sg64s36d1n6rvkgeb1c9hp8sb6dqrg");
        assert_eq!(DocumentId::parse(&text).unwrap(), id);
        assert_eq!(DocumentId::parse(&text).unwrap().table_number(), 7);
        let mut corrupted = text.clone().into_bytes();
        corrupted[10] = if corrupted[10] == b'a' { b'b' } else { b'a' };
        let err = DocumentId::parse(std::str::from_utf8(&corrupted).unwrap()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(DocumentId::parse("short").is_err());
        assert!(DocumentId::parse(&"U".repeat(36)).is_err());
        for table in [0, 1, u32::MAX] {
            for unique in [[0u8; 16], [0xff; 16], *b"\x01\x80\x7f\xfe0123456789ab"] {
                let id = DocumentId::new(table, unique);
                assert_eq!(DocumentId::parse(&id.to_string()), Ok(id), "{id:?}");
            }
        }
    }
}
