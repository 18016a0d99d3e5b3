//! Collation id -> character set, for decoding text columns losslessly.
//!
//! The binlog names a column's collation by id. Ids of the common charsets are known here;
//! on a live server the full table is read from information_schema.COLLATIONS, so every
//! collation the server has resolves. An id nobody knows yields [`Charset::Unknown`], whose
//! bytes are kept as bytes: binlake never guesses an encoding.

use std::collections::HashMap;

use crate::schema::Charset;

/// Maps collation ids to charsets.
#[derive(Debug, Clone, Default)]
pub struct Collations {
    from_server: HashMap<u16, Charset>,
}

impl Collations {
    /// Adds the server's `(ID, CHARACTER_SET_NAME)` rows.
    pub fn with_server_table(rows: impl IntoIterator<Item = (u16, String)>) -> Self {
        let from_server = rows
            .into_iter()
            .map(|(id, name)| (id, charset_by_name(&name).unwrap_or(Charset::Unknown(id))))
            .collect();
        Collations { from_server }
    }

    pub fn charset(&self, collation: u16) -> Charset {
        if let Some(c) = self.from_server.get(&collation) {
            return *c;
        }
        builtin(collation)
    }
}

/// A charset by its MySQL name.
pub fn charset_by_name(name: &str) -> Option<Charset> {
    Some(match name {
        "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
        "latin1" => Charset::Latin1,
        "binary" => Charset::Binary,
        other => {
            let label = match other {
                "cp1250" => "windows-1250",
                "cp1251" => "windows-1251",
                "cp1256" => "windows-1256",
                "cp1257" => "windows-1257",
                "latin2" => "iso-8859-2",
                "latin5" => "iso-8859-9",
                "latin7" => "iso-8859-13",
                "greek" => "iso-8859-7",
                "hebrew" => "iso-8859-8",
                "koi8r" => "koi8-r",
                "koi8u" => "koi8-u",
                "sjis" | "cp932" => "shift_jis",
                "ujis" | "eucjpms" => "euc-jp",
                "euckr" => "euc-kr",
                "gb2312" | "gbk" => "gbk",
                "gb18030" => "gb18030",
                "big5" => "big5",
                "utf16" => "utf-16be",
                "utf16le" => "utf-16le",
                _ => return None,
            };
            Charset::Other(encoding_rs::Encoding::for_label(label.as_bytes())?)
        }
    })
}

/// Collation ids known to mysql_common's table (MySQL's ids; MariaDB shares those below 2048),
/// and MariaDB's UCA-14 utf8mb3/utf8mb4 ids (2048 and up).
fn builtin(id: u16) -> Charset {
    use mysql_common::collations::{Collation, CollationId};
    let name = Collation::from(CollationId::from(id)).charset().to_owned();
    if let Some(c) = charset_by_name(&name) {
        return c;
    }
    match id {
        2048..=2815 => Charset::Utf8,
        _ => Charset::Unknown(id),
    }
}

/// Decodes text bytes in `charset`. `None` for bytes that are not valid in it (the caller
/// keeps them as bytes) and for non-text charsets.
pub fn decode(charset: Charset, bytes: &[u8]) -> Option<String> {
    match charset {
        Charset::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Charset::Latin1 => {
            // ASCII is the common case: skip the decoder.
            if bytes.is_ascii() {
                // SAFETY-free: ASCII is valid UTF-8.
                return std::str::from_utf8(bytes).ok().map(str::to_owned);
            }
            let (s, had_errors) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            (!had_errors).then(|| s.into_owned())
        }
        Charset::Other(enc) => {
            let (s, had_errors) = enc.decode_without_bom_handling(bytes);
            (!had_errors).then(|| s.into_owned())
        }
        Charset::Binary | Charset::Unknown(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_windows_1252() {
        assert_eq!(decode(Charset::Latin1, b"caf\xe9").as_deref(), Some("café"));
        assert_eq!(decode(Charset::Latin1, b"\x80").as_deref(), Some("€"));
    }

    #[test]
    fn invalid_utf8_is_not_text() {
        assert_eq!(decode(Charset::Utf8, b"\xff\x00"), None);
        assert_eq!(
            decode(Charset::Utf8, "😀".as_bytes()).as_deref(),
            Some("😀")
        );
    }

    #[test]
    fn server_table_overrides_builtin() {
        let c = Collations::with_server_table([(2049, "latin1".to_string())]);
        assert_eq!(c.charset(2049), Charset::Latin1);
        assert_eq!(c.charset(63), Charset::Binary);
        assert_eq!(c.charset(9999), Charset::Unknown(9999));
    }
}
