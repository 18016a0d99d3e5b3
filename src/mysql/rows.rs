//! Row images -> [`Row`]s, with per-table cached column metadata.
//!
//! A [`TableDecoder`] is built once per distinct TABLE_MAP (the binlog repeats the map before
//! every rows event; the cache compares its bytes, so a DDL that changes the table produces a
//! new decoder and an unchanged table costs a memcmp). Column names, primary key, signedness,
//! charsets and ENUM/SET members come from the table map's optional metadata
//! (binlog_row_metadata=FULL); what is missing there comes from [`ServerTable`]
//! (information_schema), and failing that from safe defaults (`@1`, `@2`… names, signed
//! integers, no key). Invariant: a decoded row has exactly one value per schema column.

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType as T;
use mysql_common::proto::MySerialize;

use crate::change::{Row, Value};
use crate::config::KeyMode;
use crate::mysql::charset::Collations;
use crate::mysql::types::{Codec, DecodeError, Reader};
use crate::schema::{Charset, Column, KeySource, SqlType, TableSchema};

/// What information_schema says about a table (the fallback when the binlog lacks metadata).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTable {
    pub columns: Vec<ServerColumn>,
    /// Primary-key column names in key order.
    pub primary_key: Vec<String>,
    /// TABLE_COLLATION: the table's default collation.
    pub collation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerColumn {
    pub name: String,
    /// information_schema.COLUMNS.COLUMN_TYPE, e.g. `int(10) unsigned`, `enum('a','b')`.
    pub column_type: String,
    /// MariaDB's JSON alias (LONGTEXT with a json_valid check).
    pub is_json: bool,
    /// DATA_TYPE, e.g. `int`, `varchar`, `datetime`.
    pub data_type: String,
    /// CHARACTER_SET_NAME (None for non-text columns).
    pub charset: Option<String>,
    /// COLLATION_NAME (None for non-text columns).
    pub collation: Option<String>,
    /// CHARACTER_OCTET_LENGTH.
    pub octet_length: Option<u64>,
    /// NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION.
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    pub fsp: Option<u64>,
    pub nullable: bool,
}

impl ServerColumn {
    /// The column's type as CREATE TABLE takes it: COLUMN_TYPE, with the character set and
    /// collation of text columns.
    pub fn declaration(&self) -> Arc<str> {
        if self.is_json {
            // MariaDB's JSON is LONGTEXT with a json_valid check; `json` re-creates both.
            return "json".into();
        }
        match (&self.charset, &self.collation) {
            (Some(cs), Some(coll)) => {
                format!("{} CHARACTER SET {cs} COLLATE {coll}", self.column_type).into()
            }
            _ => self.column_type.as_str().into(),
        }
    }
}

/// Decodes the rows of one table version.
#[derive(Debug)]
pub struct TableDecoder {
    pub schema: Arc<TableSchema>,
    codecs: Vec<Codec>,
    /// For each binlog column, its index in `schema.columns`, or None when excluded.
    keep: Vec<Option<usize>>,
    json_columns: usize,
    /// No primary key and `key = "skip"`: rows of this table are not emitted.
    pub skip: bool,
}

fn bad(detail: String) -> DecodeError {
    DecodeError::Invalid {
        what: "table map",
        detail,
    }
}

impl TableDecoder {
    pub fn new(
        tme: &TableMapEvent<'_>,
        server: Option<&ServerTable>,
        collations: &Collations,
        key_mode: KeyMode,
        exclude: &dyn Fn(&str) -> bool,
    ) -> Result<Self, DecodeError> {
        let n = tme.columns_count() as usize;
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| bad(format!("optional metadata of {db}.{table}: {e}")))?;
        let logged_names: Vec<String> = meta
            .iter_column_name()
            .map(|r| r.map(|c| c.name().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let logged = logged_names.len() == n;
        // Column names are unique in a table, compared without case.
        let mut seen = std::collections::HashSet::with_capacity(logged_names.len());
        if let Some(a) = logged_names.iter().find(|a| !seen.insert(a.to_lowercase())) {
            return Err(bad(format!(
                "{db}.{table}: the table map names two columns `{a}`"
            )));
        }
        // The server's table now may have columns added or dropped since this event: with
        // names in the binlog its columns are found by name, without them only by position,
        // and only while the column count agrees.
        let by_name = server.filter(|_| logged);
        let server = server.filter(|s| s.columns.len() == n);

        let names: Vec<String> = {
            if logged {
                logged_names
            } else if let Some(s) = server {
                s.columns.iter().map(|c| c.name.clone()).collect()
            } else {
                (1..=n).map(|i| format!("@{i}")).collect()
            }
        };

        let mut enum_values = Vec::new();
        let mut set_values = Vec::new();
        let mut dims = Vec::new();
        for field in tme.iter_optional_meta() {
            match field.map_err(|e| bad(e.to_string()))? {
                OptionalMetadataField::EnumStrValue(v) => {
                    check_members(&raw(&v), "ENUM")?;
                    for e in v.iter_values() {
                        let e = e.map_err(|e| bad(e.to_string()))?;
                        enum_values.push(members(e.values().iter().map(|x| x.value_raw())));
                    }
                }
                OptionalMetadataField::SetStrValue(v) => {
                    check_members(&raw(&v), "SET")?;
                    for e in v.iter_values() {
                        let e = e.map_err(|e| bad(e.to_string()))?;
                        set_values.push(members(e.values().iter().map(|x| x.value_raw())));
                    }
                }
                OptionalMetadataField::Dimensionality(d) => {
                    for x in d.iter_dimensionalities() {
                        dims.push(x.map_err(|e| bad(e.to_string()))? as u32);
                    }
                }
                _ => {}
            }
        }
        let (mut enum_values, mut set_values, mut dims) = (
            enum_values.into_iter(),
            set_values.into_iter(),
            dims.into_iter(),
        );

        let mut signedness = meta.iter_signedness();
        let has_signedness = meta.iter_signedness().next().is_some();
        let mut charsets = meta.iter_charset();
        let mut enum_charsets = meta.iter_enum_and_set_charset();
        let nullable = tme.null_bitmask();

        let mut codecs = Vec::with_capacity(n);
        let mut columns = Vec::with_capacity(n);
        let mut keep = Vec::with_capacity(n);
        let mut json_columns = 0;
        for (i, name) in names.iter().enumerate() {
            let raw = tme
                .get_raw_column_type(i)
                .map_err(|e| bad(format!("{db}.{table} column {name}: {e}")))?
                .ok_or_else(|| bad(format!("{db}.{table}: no type for column {i}")))?;
            let md = tme.get_column_metadata(i).unwrap_or(&[]);
            let server_col = match by_name {
                Some(s) => s.columns.iter().find(|c| &c.name == name),
                None => server.map(|s| &s.columns[i]),
            };
            let real = real_type(raw, md);
            if raw == T::MYSQL_TYPE_JSON {
                json_columns += 1;
            }
            let unsigned = if real.is_numeric_type() {
                match signedness.next() {
                    Some(u) => u,
                    None if !has_signedness => server_col
                        .map(|c| c.column_type.contains("unsigned"))
                        .unwrap_or(false),
                    None => false,
                }
            } else {
                false
            };
            let charset_id = if is_character_column(real) {
                charsets
                    .next()
                    .transpose()
                    .map_err(|e| bad(e.to_string()))?
            } else if real.is_enum_or_set_type() {
                enum_charsets
                    .next()
                    .transpose()
                    .map_err(|e| bad(e.to_string()))?
            } else {
                None
            };
            let charset = charset_id
                .map(|id| collations.charset(id))
                // Without charset metadata, text is assumed UTF-8 and kept as bytes if not.
                .unwrap_or(Charset::Utf8);
            let is_json_text = server_col.map(|c| c.is_json).unwrap_or(false);
            let (codec, ty) = codec_for(
                real,
                md,
                unsigned,
                charset,
                is_json_text,
                &mut enum_values,
                &mut set_values,
                &mut dims,
                server_col,
            )
            .map_err(|e| match e {
                DecodeError::UnsupportedType(t) => bad(format!(
                    "{db}.{table} column `{name}` has binlog type {t}, which binlake cannot \
                     decode (nor skip: its length is unknown). Leave the table out \
                     ([capture] exclude = [\"{db}.{table}\"]) and restart from this position"
                )),
                DecodeError::Invalid { detail, .. } => {
                    bad(format!("{db}.{table} column `{name}`: {detail}"))
                }
                e => e,
            })?;
            codecs.push(codec);
            if exclude(name) {
                keep.push(None);
            } else {
                // The server's declaration, if it describes this binlog's column (and not
                // the column after a later DDL).
                let declared = server_col
                    .filter(|c| &c.name == name)
                    .filter(|c| crate::mysql::select::sql_type(c).is_ok_and(|t| ty.agrees_with(&t)))
                    .map(ServerColumn::declaration);
                keep.push(Some(columns.len()));
                columns.push(Column {
                    name: name.clone(),
                    ty,
                    nullable: nullable.get(i).map(|b| *b).unwrap_or(true),
                    declared,
                });
            }
        }

        // Primary key: from the table map, else from information_schema.
        let mut pk_binlog: Vec<usize> = Vec::new();
        for k in meta.iter_primary_key() {
            let k = k.map_err(|e| bad(e.to_string()))? as usize;
            // A table has each column once in its primary key; anything else is corrupt
            // metadata, and would give the key schema two fields of one name.
            if k >= names.len() || pk_binlog.contains(&k) {
                return Err(bad(format!(
                    "{db}.{table}: the table map's primary key names column {k} {}",
                    if k >= names.len() {
                        "beyond the table's columns"
                    } else {
                        "twice"
                    }
                )));
            }
            pk_binlog.push(k);
        }
        if pk_binlog.is_empty() {
            if let Some(s) = server.or(by_name) {
                pk_binlog = s
                    .primary_key
                    .iter()
                    .filter_map(|k| names.iter().position(|n| n == k))
                    .collect();
            }
        }
        let pk: Vec<usize> = pk_binlog
            .iter()
            .filter_map(|&i| keep.get(i).copied().flatten())
            .collect();
        let (key, key_source, skip) = if !pk.is_empty() && pk.len() == pk_binlog.len() {
            (pk, KeySource::PrimaryKey, false)
        } else {
            match key_mode {
                KeyMode::AllColumns => ((0..columns.len()).collect(), KeySource::AllColumns, false),
                KeyMode::None => (Vec::new(), KeySource::None, false),
                KeyMode::Skip => (Vec::new(), KeySource::None, true),
            }
        };

        Ok(TableDecoder {
            schema: Arc::new(TableSchema {
                db,
                table,
                columns,
                key,
                key_source,
                collation: server.or(by_name).and_then(|s| s.collation.clone()),
            }),
            codecs,
            keep,
            json_columns,
            skip,
        })
    }

    /// Which columns a rows event's image carries, computed once per event.
    pub fn image_columns(&self, bits: &bitvec::slice::BitSlice<u8>) -> Image {
        let present: Vec<bool> = (0..self.codecs.len())
            .map(|i| bits.get(i).map(|b| *b).unwrap_or(false))
            .collect();
        let count = present.iter().filter(|b| **b).count();
        Image { present, count }
    }

    /// Decodes one row image. `image` marks the columns it carries; `partial` is set for the
    /// after image of a PARTIAL_UPDATE_ROWS event.
    pub fn decode_row(
        &self,
        r: &mut Reader<'_>,
        image: &Image,
        partial: bool,
    ) -> Result<Row, DecodeError> {
        let mut partial_bits: Option<&[u8]> = None;
        if partial {
            let options = r.lenenc()?;
            if options & 1 != 0 {
                partial_bits = Some(r.take(self.json_columns.div_ceil(8))?);
            }
        }
        let nulls = r.take(image.count.div_ceil(8))?;
        let mut row = vec![Value::Absent; self.schema.columns.len()];
        let mut image_idx = 0usize;
        let mut json_idx = 0usize;
        for (i, codec) in self.codecs.iter().enumerate() {
            let is_json = matches!(codec, Codec::Json { binary: true, .. });
            let json_partial = is_json
                && partial_bits
                    .map(|b| b[json_idx / 8] & (1 << (json_idx % 8)) != 0)
                    .unwrap_or(false);
            if is_json {
                json_idx += 1;
            }
            if !image.present[i] {
                continue;
            }
            let is_null = nulls[image_idx / 8] & (1 << (image_idx % 8)) != 0;
            image_idx += 1;
            let v = if is_null {
                Value::Null
            } else if json_partial {
                let len = u32::from_le_bytes(
                    r.take(4)?
                        .try_into()
                        .map_err(|_| bad("JSON diff length".into()))?,
                ) as usize;
                Value::JsonDiff(super::json::diffs_to_text(r.take(len)?)?)
            } else {
                codec.decode(r)?
            };
            if let Some(j) = self.keep[i] {
                row[j] = v;
            }
        }
        Ok(row)
    }
}

/// The columns present in a row image.
#[derive(Debug, Clone)]
pub struct Image {
    present: Vec<bool>,
    count: usize,
}

/// Checks the ENUM/SET member lists of a table map's optional metadata (per column: a count,
/// then that many length-prefixed strings) before mysql_common parses them: it reserves the
/// count up front, so a damaged count aborts ("capacity overflow") or allocates without bound.
fn check_members(raw: &[u8], what: &str) -> Result<(), DecodeError> {
    let mut r = Reader::new(raw);
    let e = |e: DecodeError| bad(format!("{what} member lists: {e}"));
    while !r.buf.is_empty() {
        let n = r.lenenc().map_err(e)?;
        if n > r.buf.len() as u64 {
            return Err(bad(format!(
                "{what} member lists: {n} members in {} bytes",
                r.buf.len()
            )));
        }
        for _ in 0..n {
            let len = r.lenenc().map_err(e)?;
            r.take(usize::try_from(len).unwrap_or(usize::MAX))
                .map_err(e)?;
        }
    }
    Ok(())
}

/// The bytes of an optional metadata field, as the table map holds them.
fn raw(field: &impl MySerialize) -> Vec<u8> {
    let mut out = Vec::new();
    field.serialize(&mut out);
    out
}

fn members<'a>(raw: impl Iterator<Item = &'a [u8]>) -> Arc<[String]> {
    raw.map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .into()
}

/// Columns that take a slot in the table map's (non-ENUM/SET) charset metadata. MySQL counts
/// GEOMETRY ("base class is blob") and VECTOR with the text types; mysql_common does not.
fn is_character_column(real: T) -> bool {
    real.is_character_type() || matches!(real, T::MYSQL_TYPE_GEOMETRY | T::MYSQL_TYPE_VECTOR)
}

/// MYSQL_TYPE_STRING hides ENUM, SET and CHAR lengths over 255 in its metadata.
fn real_type(raw: T, md: &[u8]) -> T {
    if raw == T::MYSQL_TYPE_STRING && md.len() == 2 {
        let b0 = md[0];
        if b0 & 0x30 != 0x30 {
            return T::MYSQL_TYPE_STRING;
        }
        match T::try_from(b0) {
            Ok(t @ (T::MYSQL_TYPE_ENUM | T::MYSQL_TYPE_SET)) => t,
            _ => T::MYSQL_TYPE_STRING,
        }
    } else {
        raw
    }
}

fn md_u16(md: &[u8]) -> u16 {
    u16::from_le_bytes([
        md.first().copied().unwrap_or(0),
        md.get(1).copied().unwrap_or(0),
    ])
}

fn len_bytes_for(max: u32) -> u8 {
    if max > 255 {
        2
    } else {
        1
    }
}

#[allow(clippy::too_many_arguments)]
fn codec_for(
    real: T,
    md: &[u8],
    unsigned: bool,
    charset: Charset,
    is_json_text: bool,
    enum_values: &mut impl Iterator<Item = Arc<[String]>>,
    set_values: &mut impl Iterator<Item = Arc<[String]>>,
    dims: &mut impl Iterator<Item = u32>,
    server_col: Option<&ServerColumn>,
) -> Result<(Codec, SqlType), DecodeError> {
    let b0 = md.first().copied().unwrap_or(0);
    let int = |bytes: u8| {
        (
            Codec::Int { bytes, unsigned },
            SqlType::Int { bytes, unsigned },
        )
    };
    // ENUM/SET members from the binlog, else parsed from information_schema's COLUMN_TYPE.
    let server_members = || server_col.and_then(|c| parse_members(&c.column_type));
    Ok(match real {
        T::MYSQL_TYPE_TINY => int(1),
        T::MYSQL_TYPE_SHORT => int(2),
        T::MYSQL_TYPE_INT24 => int(3),
        T::MYSQL_TYPE_LONG => int(4),
        T::MYSQL_TYPE_LONGLONG => int(8),
        T::MYSQL_TYPE_YEAR => (Codec::Year, SqlType::Year),
        T::MYSQL_TYPE_FLOAT => (Codec::Float, SqlType::Float),
        T::MYSQL_TYPE_DOUBLE => (Codec::Double, SqlType::Double),
        T::MYSQL_TYPE_NEWDECIMAL => {
            let (precision, scale) = (b0, md.get(1).copied().unwrap_or(0));
            // MySQL: scale up to 30; MariaDB: up to 38.
            if !(1..=65).contains(&precision) || scale > precision.min(38) {
                return Err(bad(format!("DECIMAL({precision},{scale})")));
            }
            (
                Codec::Decimal { precision, scale },
                SqlType::Decimal { precision, scale },
            )
        }
        T::MYSQL_TYPE_BIT => {
            let bits = md.get(1).copied().unwrap_or(0) as u16 * 8 + b0 as u16;
            if bits > 64 {
                return Err(bad(format!("BIT({bits})")));
            }
            (
                Codec::Bit {
                    bytes: bits.div_ceil(8) as u8,
                },
                SqlType::Bit { bits },
            )
        }
        T::MYSQL_TYPE_VARCHAR | T::MYSQL_TYPE_VAR_STRING => {
            let max = md_u16(md) as u32;
            (
                Codec::Var {
                    len_bytes: len_bytes_for(max),
                    charset,
                    pad_to: None,
                },
                SqlType::String {
                    charset,
                    max_bytes: max,
                    fixed: false,
                    blob: false,
                },
            )
        }
        T::MYSQL_TYPE_STRING => {
            let b1 = md.get(1).copied().unwrap_or(0) as u32;
            let max = (((b0 as u32 & 0x30) ^ 0x30) << 4) | b1;
            let binary = charset == Charset::Binary;
            (
                Codec::Var {
                    len_bytes: len_bytes_for(max),
                    charset,
                    pad_to: binary.then_some(max),
                },
                SqlType::String {
                    charset,
                    max_bytes: max,
                    fixed: true,
                    blob: false,
                },
            )
        }
        T::MYSQL_TYPE_ENUM | T::MYSQL_TYPE_SET => {
            let pack = md.get(1).copied().unwrap_or(1);
            // ENUM: 1 or 2 bytes (up to 65535 members); SET: 1, 2, 3, 4 or 8 (64 members).
            let valid: &[u8] = if real == T::MYSQL_TYPE_ENUM {
                &[1, 2]
            } else {
                &[1, 2, 3, 4, 8]
            };
            if !valid.contains(&pack) {
                return Err(bad(format!("ENUM/SET value size {pack}")));
            }
            if real == T::MYSQL_TYPE_ENUM {
                let values = enum_values.next().or_else(server_members);
                (
                    Codec::Enum {
                        pack,
                        values: values.clone(),
                    },
                    SqlType::Enum { values },
                )
            } else {
                let values = set_values.next().or_else(server_members);
                (
                    Codec::Set {
                        pack,
                        values: values.clone(),
                    },
                    SqlType::Set { values },
                )
            }
        }
        T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB
        | T::MYSQL_TYPE_BLOB => {
            let len_bytes = b0;
            if !(1..=4).contains(&len_bytes) {
                return Err(bad(format!("BLOB length size {len_bytes}")));
            }
            if is_json_text {
                (
                    Codec::Json {
                        len_bytes,
                        binary: false,
                    },
                    SqlType::Json,
                )
            } else {
                let max = match len_bytes {
                    1 => 255,
                    2 => 65_535,
                    3 => 16_777_215,
                    _ => u32::MAX,
                };
                (
                    Codec::Var {
                        len_bytes,
                        charset,
                        pad_to: None,
                    },
                    SqlType::String {
                        charset,
                        max_bytes: max,
                        fixed: false,
                        blob: true,
                    },
                )
            }
        }
        T::MYSQL_TYPE_JSON => (
            Codec::Json {
                len_bytes: b0.clamp(1, 4),
                binary: true,
            },
            SqlType::Json,
        ),
        T::MYSQL_TYPE_GEOMETRY => (
            Codec::Geometry {
                len_bytes: b0.clamp(1, 4),
            },
            SqlType::Geometry,
        ),
        T::MYSQL_TYPE_VECTOR => (
            Codec::Vector {
                len_bytes: b0.clamp(1, 4),
            },
            SqlType::Vector {
                dimensions: dims.next(),
            },
        ),
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => (Codec::Date, SqlType::Date),
        T::MYSQL_TYPE_DATETIME2 | T::MYSQL_TYPE_TIMESTAMP2 | T::MYSQL_TYPE_TIME2 if b0 > 6 => {
            return Err(bad(format!("fractional seconds precision {b0}")))
        }
        T::MYSQL_TYPE_DATETIME2 => (Codec::DateTime2 { fsp: b0 }, SqlType::DateTime { fsp: b0 }),
        T::MYSQL_TYPE_TIMESTAMP2 => (
            Codec::Timestamp2 { fsp: b0 },
            SqlType::Timestamp { fsp: b0 },
        ),
        T::MYSQL_TYPE_TIME2 => (Codec::Time2 { fsp: b0 }, SqlType::Time { fsp: b0 }),
        T::MYSQL_TYPE_DATETIME => (Codec::DateTimeOld, SqlType::DateTime { fsp: 0 }),
        T::MYSQL_TYPE_TIMESTAMP => (Codec::TimestampOld, SqlType::Timestamp { fsp: 0 }),
        T::MYSQL_TYPE_TIME => (Codec::TimeOld, SqlType::Time { fsp: 0 }),
        other => return Err(DecodeError::UnsupportedType(other as u8)),
    })
}

/// `enum('a','b''c')` -> [a, b'c].
pub(crate) fn parse_members(column_type: &str) -> Option<Arc<[String]>> {
    let open = column_type.find('(')?;
    let body = column_type.get(open + 1..column_type.rfind(')')?)?;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_str, c) {
            (false, '\'') => in_str = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                in_str = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (true, c) => cur.push(c),
            _ => {}
        }
    }
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_enum_members_with_quotes() {
        let m = parse_members("enum('a','b''c','')").unwrap();
        assert_eq!(&*m, &["a".to_string(), "b'c".into(), "".into()]);
    }

    #[test]
    fn string_metadata_hides_enum_and_long_char() {
        assert_eq!(
            real_type(T::MYSQL_TYPE_STRING, &[0xf7, 1]),
            T::MYSQL_TYPE_ENUM
        );
        assert_eq!(
            real_type(T::MYSQL_TYPE_STRING, &[0xf8, 1]),
            T::MYSQL_TYPE_SET
        );
        // CHAR(255) utf8mb4 = 1020 bytes: the high bits of the length live in byte 0.
        assert_eq!(
            real_type(T::MYSQL_TYPE_STRING, &[0xce, 0xfc]),
            T::MYSQL_TYPE_STRING
        );
    }
}
