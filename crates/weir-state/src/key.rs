//! Compact keys for keyed state.
//!
//! Key columns are encoded per row into a byte string (a null flag, then fixed-width bytes or
//! a length and bytes). [`Key`] is a key held on its own, outside the state table (the keys
//! of a state delta on their way to the checkpoint): inline up to 22 bytes, boxed beyond.
//! The table stores keys its own way (`table::DedupMap`).

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, BooleanArray, LargeBinaryArray, LargeStringArray,
    StringArray, StringViewArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::scalar::ScalarValue;

/// Inline capacity: with the length and the variant tag a `Key` is 24 bytes.
const INLINE: usize = 22;

/// An encoded key: inline when short, boxed otherwise.
#[derive(Clone)]
pub enum Key {
    /// Up to 22 bytes, stored in place.
    Inline {
        /// Bytes used.
        len: u8,
        /// The bytes (the first `len`).
        bytes: [u8; INLINE],
    },
    /// A longer key.
    Heap(Box<[u8]>),
}

impl Key {
    /// A key holding `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Self::Inline { len: bytes.len() as u8, bytes: inline }
        } else {
            Self::Heap(bytes.into())
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..*len as usize],
            Self::Heap(b) => b,
        }
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:02x?})", self.as_bytes())
    }
}

/// Whether a column of this type can be part of a key.
pub fn supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// Appends the encoding of `column`'s value at each row to `out[row]`.
pub fn encode_column(column: &ArrayRef, out: &mut [Vec<u8>]) {
    macro_rules! prim {
        ($t:ty) => {{
            let a = column.as_primitive::<$t>();
            for (row, buf) in out.iter_mut().enumerate() {
                if a.is_null(row) {
                    buf.push(0);
                } else {
                    buf.push(1);
                    buf.extend_from_slice(&a.value(row).to_le_bytes());
                }
            }
        }};
    }
    macro_rules! float {
        ($t:ty, $f:ty) => {{
            let a = column.as_primitive::<$t>();
            for (row, buf) in out.iter_mut().enumerate() {
                if a.is_null(row) {
                    buf.push(0);
                } else {
                    let v = a.value(row);
                    let v: $f = if v == 0.0 { 0.0 } else if v.is_nan() { <$f>::NAN } else { v };
                    buf.push(1);
                    buf.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
        }};
    }
    macro_rules! var {
        ($t:ty) => {{
            let a = column.as_any().downcast_ref::<$t>().expect("type checked");
            for (row, buf) in out.iter_mut().enumerate() {
                if a.is_null(row) {
                    buf.push(0);
                } else {
                    let v: &[u8] = a.value(row).as_ref();
                    buf.push(1);
                    buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    buf.extend_from_slice(v);
                }
            }
        }};
    }
    match column.data_type() {
        DataType::Boolean => {
            let a = column.as_any().downcast_ref::<BooleanArray>().expect("type checked");
            for (row, buf) in out.iter_mut().enumerate() {
                buf.push(if a.is_null(row) { 0 } else if a.value(row) { 2 } else { 1 });
            }
        }
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        // -0.0 and 0.0 are one key, as are all NaNs (SQL equality for grouping).
        DataType::Float32 => float!(Float32Type, f32),
        DataType::Float64 => float!(Float64Type, f64),
        DataType::Decimal128(_, _) => prim!(Decimal128Type),
        DataType::Date32 => prim!(Date32Type),
        DataType::Date64 => prim!(Date64Type),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType),
        DataType::Utf8 => var!(StringArray),
        DataType::LargeUtf8 => var!(LargeStringArray),
        DataType::Utf8View => var!(StringViewArray),
        DataType::Binary => var!(BinaryArray),
        DataType::LargeBinary => var!(LargeBinaryArray),
        DataType::BinaryView => var!(BinaryViewArray),
        other => unreachable!("key type {other} is checked at planning"),
    }
}

/// The values of an encoded key ([`encode_column`] of each column of `types`, in order): for
/// reading state back (`weir checkpoint state`). Fails on bytes that are not such a key.
pub fn decode_key(types: &[DataType], key: &[u8]) -> Result<Vec<ScalarValue>, String> {
    let mut rest = key;
    let short = || format!("a key of {} bytes is too short for its columns ({types:?})", key.len());
    let mut take = |n: usize| -> Result<&[u8], String> {
        let (head, tail) = rest.split_at_checked(n).ok_or_else(short)?;
        rest = tail;
        Ok(head)
    };
    macro_rules! fixed {
        ($t:ty) => {
            <$t>::from_le_bytes(take(std::mem::size_of::<$t>())?.try_into().expect("the size taken"))
        };
    }
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        let flag = take(1)?[0];
        if flag == 0 {
            out.push(ScalarValue::try_from(t).map_err(|e| e.to_string())?);
            continue;
        }
        let value = match t {
            DataType::Boolean => ScalarValue::Boolean(Some(flag == 2)),
            DataType::Int8 => ScalarValue::Int8(Some(fixed!(i8))),
            DataType::Int16 => ScalarValue::Int16(Some(fixed!(i16))),
            DataType::Int32 => ScalarValue::Int32(Some(fixed!(i32))),
            DataType::Int64 => ScalarValue::Int64(Some(fixed!(i64))),
            DataType::UInt8 => ScalarValue::UInt8(Some(fixed!(u8))),
            DataType::UInt16 => ScalarValue::UInt16(Some(fixed!(u16))),
            DataType::UInt32 => ScalarValue::UInt32(Some(fixed!(u32))),
            DataType::UInt64 => ScalarValue::UInt64(Some(fixed!(u64))),
            DataType::Float32 => ScalarValue::Float32(Some(f32::from_bits(fixed!(u32)))),
            DataType::Float64 => ScalarValue::Float64(Some(f64::from_bits(fixed!(u64)))),
            DataType::Decimal128(p, s) => ScalarValue::Decimal128(Some(fixed!(i128)), *p, *s),
            DataType::Date32 => ScalarValue::Date32(Some(fixed!(i32))),
            DataType::Date64 => ScalarValue::Date64(Some(fixed!(i64))),
            DataType::Timestamp(unit, tz) => {
                let v = Some(fixed!(i64));
                match unit {
                    TimeUnit::Second => ScalarValue::TimestampSecond(v, tz.clone()),
                    TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v, tz.clone()),
                    TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v, tz.clone()),
                    TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v, tz.clone()),
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                let len = fixed!(u32) as usize;
                let bytes = take(len)?;
                match t {
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ScalarValue::Binary(Some(bytes.to_vec())),
                    _ => ScalarValue::Utf8(Some(String::from_utf8(bytes.to_vec()).map_err(|_| "a string key that is not UTF-8".to_string())?)),
                }
            }
            other => return Err(format!("keys of type {other} cannot be read back")),
        };
        out.push(value);
    }
    if !rest.is_empty() {
        return Err(format!("a key of {} bytes is longer than its columns ({types:?})", key.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn keys_distinguish_null_empty_and_values() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(1), Some(1)]));
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some("a"), None, Some("")]));
        let mut bufs = vec![Vec::new(); 4];
        encode_column(&ids, &mut bufs);
        encode_column(&names, &mut bufs);
        let keys: Vec<Key> = bufs.iter().map(|b| Key::new(b)).collect();
        for i in 0..4 {
            for j in 0..4 {
                assert_eq!(keys[i] == keys[j], i == j, "{i} {j}");
            }
        }
        // Each key reads back as its values.
        let types = [DataType::Int64, DataType::Utf8];
        let read: Vec<Vec<ScalarValue>> = bufs.iter().map(|b| decode_key(&types, b).unwrap()).collect();
        assert_eq!(read[0], vec![ScalarValue::Int64(Some(1)), ScalarValue::Utf8(Some("a".into()))]);
        assert_eq!(read[1], vec![ScalarValue::Int64(None), ScalarValue::Utf8(Some("a".into()))]);
        assert_eq!(read[2], vec![ScalarValue::Int64(Some(1)), ScalarValue::Utf8(None)]);
        assert_eq!(read[3], vec![ScalarValue::Int64(Some(1)), ScalarValue::Utf8(Some(String::new()))]);
        assert!(decode_key(&types, &bufs[0][..bufs[0].len() - 1]).is_err(), "a cut key is refused");
        assert!(decode_key(&[DataType::Int64], &bufs[0]).is_err(), "so is one with bytes left over");
        assert!(matches!(Key::new(&[7; 40]), Key::Heap(_)));
        assert!(matches!(Key::new(&[7; 22]), Key::Inline { .. }));
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn every_key_type_reads_back() {
        let columns: Vec<ScalarValue> = vec![
            ScalarValue::Boolean(Some(true)),
            ScalarValue::Boolean(Some(false)),
            ScalarValue::Int8(Some(-3)),
            ScalarValue::UInt32(Some(7)),
            ScalarValue::Float64(Some(-2.5)),
            ScalarValue::Float32(None),
            ScalarValue::Decimal128(Some(-12345), 10, 2),
            ScalarValue::Date32(Some(19_000)),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), Some("UTC".into())),
            ScalarValue::Binary(Some(vec![0, 255, 3])),
            ScalarValue::Utf8(Some("é ü".into())),
        ];
        let mut bufs = vec![Vec::new()];
        let mut types = Vec::new();
        for v in &columns {
            encode_column(&v.to_array().unwrap(), &mut bufs);
            types.push(v.data_type());
        }
        assert_eq!(decode_key(&types, &bufs[0]).unwrap(), columns);
    }
}
