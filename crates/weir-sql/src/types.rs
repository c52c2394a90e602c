//! SQL column types to Arrow types.
//!
//! Types follow what Spark and Delta users write. `TIMESTAMP` is Delta's `timestamp`
//! (microseconds, UTC-adjusted); `TIMESTAMP_NTZ` and `TIMESTAMP WITHOUT TIME ZONE` are
//! Delta's `timestamp_ntz`.

use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};
use sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType, ExactNumberInfo, TimezoneInfo};

/// The Arrow type for a SQL type, or a message naming the type that is not supported.
pub fn arrow_type(t: &SqlType) -> Result<DataType, String> {
    use SqlType as S;
    Ok(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) | S::Int8(_) => DataType::Int8,
        S::SmallInt(_) | S::Int2(_) | S::Int16 => DataType::Int16,
        S::Int(_) | S::Integer(_) | S::Int4(_) | S::Int32 => DataType::Int32,
        S::BigInt(_) | S::Int64 => DataType::Int64,
        S::Float(ExactNumberInfo::None) | S::Real | S::Float4 | S::Float32 => DataType::Float32,
        S::Float(_) | S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => DataType::Float64,
        S::Decimal(info) | S::Numeric(info) | S::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            let p = u8::try_from(p).ok().filter(|p| (1..=38).contains(p));
            let s = i8::try_from(s).ok().filter(|s| *s >= 0);
            match (p, s) {
                (Some(p), Some(s)) if s as u8 <= p => DataType::Decimal128(p, s),
                _ => return Err(format!("{t}: precision must be 1 to 38 and scale 0 to precision")),
            }
        }
        S::String(_) | S::Varchar(_) | S::Text | S::Char(_) | S::Character(_) | S::CharacterVarying(_)
        | S::CharVarying(_) | S::Nvarchar(_) | S::Uuid | S::JSON => DataType::Utf8,
        S::Binary(_) | S::Varbinary(_) | S::Bytea | S::Blob(_) | S::Bytes(_) => DataType::Binary,
        S::Date => DataType::Date32,
        S::Timestamp(_, TimezoneInfo::WithoutTimeZone) | S::TimestampNtz(_) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        S::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        S::Datetime(_) => DataType::Timestamp(TimeUnit::Microsecond, None),
        S::Array(ArrayElemTypeDef::AngleBracket(inner))
        | S::Array(ArrayElemTypeDef::SquareBracket(inner, _))
        | S::Array(ArrayElemTypeDef::Parenthesis(inner)) => {
            DataType::List(Arc::new(Field::new("element", arrow_type(inner)?, true)))
        }
        S::Struct(fields, _) => {
            let mut out = Vec::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                let name = f.field_name.as_ref().map(|n| n.value.clone()).unwrap_or_else(|| format!("c{i}"));
                out.push(Field::new(name, arrow_type(&f.field_type)?, true));
            }
            DataType::Struct(out.into())
        }
        S::Map(k, v) => {
            let entries = Field::new(
                "key_value",
                DataType::Struct(
                    vec![Field::new("key", arrow_type(k)?, false), Field::new("value", arrow_type(v)?, true)].into(),
                ),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
        S::Custom(name, _) if name.to_string().eq_ignore_ascii_case("long") => DataType::Int64,
        other => {
            return Err(format!(
                "type {other} is not supported; use BOOLEAN, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), STRING, BINARY, DATE, TIMESTAMP, TIMESTAMP_NTZ, ARRAY<..>, STRUCT<..> or MAP<..>"
            ));
        }
    })
}

/// The SQL spelling of an Arrow type, for messages to SQL users.
pub fn sql_name(t: &DataType) -> String {
    match t {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BINARY".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP_NTZ".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::FixedSizeList(f, _) => {
            format!("ARRAY<{}>", sql_name(f.data_type()))
        }
        DataType::Struct(fields) => format!(
            "STRUCT<{}>",
            fields.iter().map(|f| format!("{} {}", f.name(), sql_name(f.data_type()))).collect::<Vec<_>>().join(", ")
        ),
        DataType::Map(f, _) => match f.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP<{}, {}>", sql_name(kv[0].data_type()), sql_name(kv[1].data_type()))
            }
            _ => "MAP".into(),
        },
        DataType::Dictionary(_, v) => sql_name(v),
        other => other.to_string(),
    }
}
