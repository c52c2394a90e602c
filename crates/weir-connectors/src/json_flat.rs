//! Flat JSON objects decoded straight into Arrow arrays: the fast path of the file and
//! Kafka sources' JSON decoding.
//!
//! Most JSON sources are rows of one object whose values are strings, numbers, booleans and
//! timestamps as text. arrow-json decodes them in two passes (a tape of tokens, then a
//! decoder per column walking the tape) and parses every timestamp through chrono with a
//! time-zone lookup: about a fifth of a file → dedup → Delta pipeline's CPU. [`FlatJson`]
//! reads each object once, into the columns' buffers.
//!
//! It is a fast path only. It takes a text when arrow-json decodes it to the same arrays,
//! and gives up (`None`) at the first thing it does not decode exactly as arrow-json does:
//! an escape in a string, a nested value, a number arrow-json would coerce (`1.5` for a
//! BIGINT, `"7"` for a DOUBLE), a repeated key, a timestamp not in `YYYY-MM-DD`,
//! `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM]`, or a column type it does not build.
//! The caller then decodes the same text with arrow-json, which gives the rows or the
//! error and its line, as before. `tests::agrees_with_arrow_json` checks that claim on
//! generated texts, valid and broken.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, Float32Array, Float64Array, Int32Array, Int64Array, NullBufferBuilder,
    RecordBatch, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};

/// Decodes JSON objects into batches of `batch_size` rows of a schema (the last batch
/// holds the rest), as arrow-json's decoder with that batch size does.
pub(crate) struct FlatJson {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// A bit per column: the columns a row gave values for when it gave all.
    all: u64,
    batch_size: usize,
    /// Rows in the columns' buffers, not yet in `batches`.
    rows: usize,
    batches: Vec<RecordBatch>,
}

struct Column {
    name: Box<[u8]>,
    values: Values,
    nulls: NullBufferBuilder,
}

/// A column's values so far (a NULL holds a zero, or an empty string).
enum Values {
    Utf8 { offsets: Vec<i32>, data: Vec<u8> },
    Boolean(BooleanBufferBuilder),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    /// `unit`s since the Unix epoch, UTC; `tz` is the type's (none, or UTC).
    Timestamp { values: Vec<i64>, unit: TimeUnit, tz: Option<Arc<str>> },
}

impl FlatJson {
    /// A decoder for rows of `schema`, or `None` when a column's type is not one it builds
    /// (strings, 32- and 64-bit integers and floats, booleans, timestamps without a time
    /// zone or in UTC) or the schema has more than 64 columns.
    pub(crate) fn new(schema: &SchemaRef, batch_size: usize) -> Option<Self> {
        let fields = schema.fields();
        if fields.len() > 64 || batch_size == 0 {
            return None;
        }
        let mut columns: Vec<Column> = Vec::with_capacity(fields.len());
        for field in fields {
            let values = match field.data_type() {
                DataType::Utf8 => Values::Utf8 { offsets: vec![0], data: Vec::new() },
                DataType::Boolean => Values::Boolean(BooleanBufferBuilder::new(0)),
                DataType::Int32 => Values::Int32(Vec::new()),
                DataType::Int64 => Values::Int64(Vec::new()),
                DataType::Float32 => Values::Float32(Vec::new()),
                DataType::Float64 => Values::Float64(Vec::new()),
                DataType::Timestamp(unit, tz) if tz.as_deref().is_none_or(|tz| tz == "UTC") => {
                    Values::Timestamp { values: Vec::new(), unit: *unit, tz: tz.clone() }
                }
                _ => return None,
            };
            let name: Box<[u8]> = field.name().as_bytes().into();
            if columns.iter().any(|c| c.name == name) {
                return None;
            }
            columns.push(Column { name, values, nulls: NullBufferBuilder::new(0) });
        }
        let all = if fields.len() == 64 { u64::MAX } else { (1u64 << fields.len()) - 1 };
        Some(Self { schema: Arc::clone(schema), columns, all, batch_size, rows: 0, batches: Vec::new() })
    }

    /// Decodes a text of JSON objects separated by white space (newline-delimited JSON),
    /// or `None` (see the module's text).
    pub(crate) fn decode_text(mut self, text: &[u8]) -> Option<Vec<RecordBatch>> {
        let mut at = skip_space(text, 0);
        while at < text.len() {
            at = self.object(text, at)?;
            at = skip_space(text, at);
        }
        self.finish()
    }

    /// Decodes one JSON object with nothing but white space around it (a Kafka message's
    /// value) as the next row, or `None` (then the decoder is not to be used further).
    pub(crate) fn push_value(&mut self, value: &[u8]) -> Option<()> {
        let end = self.object(value, skip_space(value, 0))?;
        (skip_space(value, end) == value.len()).then_some(())
    }

    /// The batches of all rows decoded.
    pub(crate) fn finish(mut self) -> Option<Vec<RecordBatch>> {
        if self.rows > 0 {
            self.flush()?;
        }
        Some(self.batches)
    }

    /// Decodes the object at `text[at]` as a row; returns where it ends.
    fn object(&mut self, text: &[u8], mut at: usize) -> Option<usize> {
        if text.get(at) != Some(&b'{') {
            return None;
        }
        at = skip_space(text, at + 1);
        let mut seen = 0u64;
        if text.get(at) != Some(&b'}') {
            // Keys mostly come in the same order in every row: look first at the column
            // after the last one found.
            let mut guess = 0;
            loop {
                let (key, after) = string(text, at)?;
                at = skip_space(text, after);
                if text.get(at) != Some(&b':') {
                    return None;
                }
                at = skip_space(text, at + 1);
                match self.find(key, guess) {
                    Some(i) => {
                        let bit = 1u64 << i;
                        if seen & bit != 0 {
                            return None;
                        }
                        seen |= bit;
                        at = self.columns[i].value(text, at)?;
                        guess = i + 1;
                    }
                    None => {
                        // arrow-json reads the keys it does not know as text too.
                        std::str::from_utf8(key).ok()?;
                        at = skip_scalar(text, at)?;
                    }
                }
                at = skip_space(text, at);
                match text.get(at) {
                    Some(b',') => at = skip_space(text, at + 1),
                    Some(b'}') => break,
                    _ => return None,
                }
            }
        }
        if seen != self.all {
            for (i, column) in self.columns.iter_mut().enumerate() {
                if seen & (1u64 << i) == 0 {
                    column.push_null();
                }
            }
        }
        self.rows += 1;
        if self.rows == self.batch_size {
            self.flush()?;
        }
        Some(at + 1)
    }

    fn find(&self, key: &[u8], guess: usize) -> Option<usize> {
        if self.columns.get(guess).is_some_and(|c| same_name(&c.name, key)) {
            return Some(guess);
        }
        self.columns.iter().position(|c| same_name(&c.name, key))
    }

    fn flush(&mut self) -> Option<()> {
        let rows = std::mem::take(&mut self.rows);
        let arrays = self.columns.iter_mut().map(|c| c.finish(rows)).collect::<Option<Vec<_>>>()?;
        // Fails for a NULL in a column declared NOT NULL, as arrow-json's batch does.
        self.batches.push(RecordBatch::try_new(Arc::clone(&self.schema), arrays).ok()?);
        Some(())
    }
}

impl Column {
    /// Decodes the value at `text[at]` into this column; returns where it ends.
    fn value(&mut self, text: &[u8], at: usize) -> Option<usize> {
        if text.get(at) == Some(&b'n') {
            literal(text, at, b"null")?;
            self.push_null();
            return Some(at + 4);
        }
        let end = match &mut self.values {
            Values::Utf8 { offsets, data } => {
                let (s, end) = string(text, at)?;
                data.extend_from_slice(s);
                offsets.push(i32::try_from(data.len()).ok()?);
                end
            }
            Values::Boolean(values) => {
                let (value, end) = match text.get(at) {
                    Some(b't') => (true, literal(text, at, b"true")?),
                    Some(b'f') => (false, literal(text, at, b"false")?),
                    _ => return None,
                };
                values.append(value);
                end
            }
            Values::Int32(values) => push_number(values, text, at)?,
            Values::Int64(values) => push_number(values, text, at)?,
            Values::Float32(values) => push_number(values, text, at)?,
            Values::Float64(values) => push_number(values, text, at)?,
            Values::Timestamp { values, unit, .. } => {
                let (s, end) = string(text, at)?;
                values.push(timestamp(s, *unit)?);
                end
            }
        };
        self.nulls.append_non_null();
        Some(end)
    }

    fn push_null(&mut self) {
        match &mut self.values {
            Values::Utf8 { offsets, data } => offsets.push(data.len() as i32),
            Values::Boolean(values) => values.append(false),
            Values::Int32(values) => values.push(0),
            Values::Int64(values) => values.push(0),
            Values::Float32(values) => values.push(0.0),
            Values::Float64(values) => values.push(0.0),
            Values::Timestamp { values, .. } => values.push(0),
        }
        self.nulls.append_null();
    }

    /// The column's array of the `rows` rows so far; the buffers start again, sized for
    /// as many.
    fn finish(&mut self, rows: usize) -> Option<ArrayRef> {
        let nulls = self.nulls.finish();
        fn take<T>(values: &mut Vec<T>, rows: usize) -> ScalarBuffer<T>
        where
            T: arrow::datatypes::ArrowNativeType,
        {
            ScalarBuffer::from(std::mem::replace(values, Vec::with_capacity(rows)))
        }
        Some(match &mut self.values {
            Values::Utf8 { offsets, data } => {
                let taken = std::mem::replace(offsets, Vec::with_capacity(rows + 1));
                offsets.push(0);
                let bytes = data.len();
                let data = Buffer::from_vec(std::mem::replace(data, Vec::with_capacity(bytes)));
                // Checks the text is UTF-8, as arrow-json does.
                Arc::new(StringArray::try_new(OffsetBuffer::new(ScalarBuffer::from(taken)), data, nulls).ok()?)
            }
            Values::Boolean(values) => Arc::new(BooleanArray::new(values.finish(), nulls)),
            Values::Int32(values) => Arc::new(Int32Array::new(take(values, rows), nulls)),
            Values::Int64(values) => Arc::new(Int64Array::new(take(values, rows), nulls)),
            Values::Float32(values) => Arc::new(Float32Array::new(take(values, rows), nulls)),
            Values::Float64(values) => Arc::new(Float64Array::new(take(values, rows), nulls)),
            Values::Timestamp { values, unit, tz } => {
                let (values, tz) = (take(values, rows), tz.clone());
                match unit {
                    TimeUnit::Second => Arc::new(TimestampSecondArray::new(values, nulls).with_timezone_opt(tz)),
                    TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::new(values, nulls).with_timezone_opt(tz)),
                    TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone_opt(tz)),
                    TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::new(values, nulls).with_timezone_opt(tz)),
                }
            }
        })
    }
}

/// JSON's white space, as arrow-json's tape decoder skips it.
fn skip_space(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = text.get(at) {
        at += 1;
    }
    at
}

/// The string at `text[at]` (its bytes between the quotes) and where it ends; `None` for
/// one with an escape.
fn string(text: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let len = quote_or_backslash(text.get(start..)?)?;
    let end = start + len;
    (text[end] == b'"').then(|| (&text[start..end], end + 1))
}

/// Whether a key is a column's name: a short one compared a byte at a time in line (a
/// call to `memcmp` per key was 1.6% of a JSON file's run).
fn same_name(name: &[u8], key: &[u8]) -> bool {
    name.len() == key.len()
        && match name.len() <= 16 {
            true => name.iter().zip(key).all(|(a, b)| a == b),
            false => name == key,
        }
}

/// Where the first `"` or `\` of `bytes` is. Keys and most string values are a few words
/// long: those are looked at eight bytes at a time in line (a call to `memchr2` and its
/// set-up cost more than the search there, 4.7% of a JSON file's run), the rest of a long
/// string by `memchr2`.
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `word` equal to `byte`, and perhaps of bytes after the
    // first such one (a borrow carries up): the lowest bit set is always exact.
    let equal = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGH
    };
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = equal(word, b'"') | equal(word, b'\\');
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
        if at == 32 {
            return memchr::memchr2(b'"', b'\\', &bytes[at..]).map(|i| at + i);
        }
    }
    bytes[at..].iter().position(|&b| b == b'"' || b == b'\\').map(|i| at + i)
}

/// A number's text at `text[at]` as arrow-json's tape decoder takes it (a `-` or a digit,
/// then digits, signs, points and exponents; its parse decides), and where it ends.
fn number(text: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if !matches!(text.get(at), Some(b'-' | b'0'..=b'9')) {
        return None;
    }
    let len = text[at..].iter().position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).unwrap_or(text.len() - at);
    Some((&text[at..at + len], at + len))
}

/// Parses the number at `text[at]` (see [`number`]) onto `values`; returns where it ends.
fn push_number<T: lexical_core::FromLexical>(values: &mut Vec<T>, text: &[u8], at: usize) -> Option<usize> {
    let (n, end) = number(text, at)?;
    values.push(lexical_core::parse(n).ok()?);
    Some(end)
}

/// Where the literal `word` at `text[at]` ends.
fn literal(text: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    (text.get(at..at + word.len()) == Some(word)).then_some(at + word.len())
}

/// Where the value of a key no column has ends: a string, number or literal (nested
/// values are left to arrow-json).
fn skip_scalar(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => {
            let (s, end) = string(text, at)?;
            std::str::from_utf8(s).ok()?;
            Some(end)
        }
        b't' => literal(text, at, b"true"),
        b'f' => literal(text, at, b"false"),
        b'n' => literal(text, at, b"null"),
        _ => number(text, at).map(|(_, end)| end),
    }
}

/// A timestamp's text as arrow-cast's `string_to_datetime` reads it in UTC, in `unit`s
/// since the epoch, for the forms `YYYY-MM-DD` and `YYYY-MM-DD[T|t| ]HH:MM:SS`, with a
/// fraction of 1 to 9 digits and `Z`, `z` or `±HH:MM` after it; `None` for any other text
/// (arrow-cast reads some of those, or says what is wrong).
fn timestamp(s: &[u8], unit: TimeUnit) -> Option<i64> {
    let digit = |i: usize| -> Option<i64> {
        let d = s.get(i)?.wrapping_sub(b'0');
        (d < 10).then_some(i64::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let year = two(0)? * 100 + two(2)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return None;
    }
    let (month, day) = (two(5)?, two(8)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut nanos = 0;
    if s.len() > 10 {
        if !matches!(s[10], b'T' | b't' | b' ') || s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
            return None;
        }
        let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        seconds += hour * 3600 + minute * 60 + second;
        let mut at = 19;
        if s.get(at) == Some(&b'.') {
            let first = at + 1;
            at = first;
            while let Some(d) = digit(at) {
                if at - first == 9 {
                    return None;
                }
                nanos = nanos * 10 + d;
                at += 1;
            }
            if at == first {
                return None;
            }
            nanos *= 10i64.pow(9 - (at - first) as u32);
        }
        match &s[at..] {
            [] | [b'Z' | b'z'] => {}
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (hours, minutes) = (two(at + 1)?, two(at + 4)?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let offset = hours * 3600 + minutes * 60;
                seconds -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return None,
        }
    }
    match unit {
        TimeUnit::Second => Some(seconds),
        TimeUnit::Millisecond => Some(seconds * 1_000 + nanos / 1_000_000),
        TimeUnit::Microsecond => Some(seconds * 1_000_000 + nanos / 1_000),
        TimeUnit::Nanosecond => seconds.checked_mul(1_000_000_000)?.checked_add(nanos),
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    /// A small deterministic generator (SplitMix64): the same texts on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }

    /// The word-at-a-time search finds what a byte-by-byte one finds, wherever the quote or
    /// backslash is (in a word, across words, past the words looked at in line, nowhere) and
    /// whatever bytes come before it (bytes of multi-byte characters included).
    #[test]
    fn quote_or_backslash_finds_the_first() {
        let mut rng = Rng(21);
        // Besides the two, bytes one bit away from them (`"` and `\` with the high bit set,
        // `#`, `]`), bytes of multi-byte characters, and the bytes at the ends of the range.
        let (found, others): (&[u8], &[u8]) = (b"\"\\", b"ab~#]\x00\x01\x7f\x80\xa2\xdc\xc3\xa9\xff");
        for _ in 0..20_000 {
            let (len, percent) = (rng.below(80), [1, 5, 20][rng.below(3)]);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.chance(percent) {
                    true => found[rng.below(found.len())],
                    false => others[rng.below(others.len())],
                })
                .collect();
            let want = bytes.iter().position(|&b| b == b'"' || b == b'\\');
            assert_eq!(quote_or_backslash(&bytes), want, "{bytes:?}");
        }
    }

    fn arrow_json(schema: &SchemaRef, mut text: &[u8], batch_size: usize) -> Result<Vec<RecordBatch>, String> {
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema)).with_batch_size(batch_size).build_decoder().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        loop {
            let read = decoder.decode(text).map_err(|e| e.to_string())?;
            text = &text[read..];
            if (text.is_empty() || read == 0)
                && let Some(batch) = decoder.flush().map_err(|e| e.to_string())?
            {
                out.push(batch);
            }
            if text.is_empty() {
                return Ok(out);
            }
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("i", DataType::Int32, true),
            Field::new("x", DataType::Float64, true),
            Field::new("f", DataType::Float32, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("ms", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("s", DataType::Timestamp(TimeUnit::Second, None), true),
            Field::new("must", DataType::Utf8, false),
        ]))
    }

    fn timestamp_text(rng: &mut Rng) -> String {
        let year = rng.pick(&["2024", "1970", "1969", "2000", "1900", "0000", "0001", "9999", "2262", "1677", "2023", "2100"]);
        let month = rng.pick(&["01", "02", "03", "06", "09", "11", "12", "00", "13", "1"]);
        let day = rng.pick(&["01", "15", "28", "29", "30", "31", "00", "32"]);
        let mut s = format!("{year}-{month}-{day}");
        if rng.chance(90) {
            s.push_str(rng.pick(&["T", "T", " ", "t", "X", "_"]));
            s.push_str(rng.pick(&["00", "01", "12", "23", "24", "9"]));
            s.push_str(rng.pick(&[":", ":", ":", "-"]));
            s.push_str(rng.pick(&["00", "30", "59", "60"]));
            s.push(':');
            s.push_str(rng.pick(&["00", "07", "59", "60", "61"]));
            if rng.chance(60) {
                s.push('.');
                for _ in 0..rng.below(12) {
                    s.push(char::from(b'0' + rng.below(10) as u8));
                }
            }
            s.push_str(rng.pick(&["", "Z", "Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59", "+24:00", "-05:75", "+0530", "+05", " +05:00", "ZZ", "Q", "+05:00:00"]));
        }
        s
    }

    fn number_text(rng: &mut Rng) -> String {
        let mut s = rng.pick(&["0", "7", "-3", "42", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "2147483647", "2147483648", "1.5", "-0.0", "1e3", "1E-2", "2.5e+10", "01", "-", "1.", ".5", "1e", "1-2", "1e400", "123456789.123456789", "0.1", "3.4028236e38", "-0", "17.000"]).to_string();
        if rng.chance(10) {
            s.push_str(rng.pick(&["x", "\"", "]"]));
        }
        s
    }

    /// A value for `column`: one of its kind, or with `noise` percent chance anything that
    /// breaks the fast path or arrow-json (escapes, coercions, bad timestamps, nesting).
    fn value_text(rng: &mut Rng, column: &str, noise: usize) -> String {
        if rng.chance(noise) {
            return match rng.below(6) {
                0 => rng.pick(&["true", "false", "nul", "truex", "[1]", "{\"a\":1}", "\"\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"open"]).into(),
                1 | 2 => number_text(rng),
                3 => format!("\"{}\"", number_text(rng)),
                _ => format!("\"{}\"", timestamp_text(rng)),
            };
        }
        if rng.chance(5) {
            return "null".into();
        }
        match column {
            "id" | "must" => format!("\"{}\"", rng.pick(&["evt-1", "", "é日本", "tab\there", "x y", "line\nend", "k-000000000017"])),
            "n" | "i" => rng.pick(&["0", "7", "-3", "42", "2147483647", "-2147483648", "-0", "1000000"]).into(),
            "x" | "f" => rng.pick(&["0", "0.25", "-3.5", "1e3", "1E-2", "2.5e+10", "0.1", "123456789.123456789", "17.000", "-0.0"]).into(),
            "ok" => rng.pick(&["true", "false"]).into(),
            _ => {
                let mut s = format!(
                    "{}-{}-{}",
                    rng.pick(&["2024", "1970", "1969", "2000", "1900", "2023"]),
                    rng.pick(&["01", "02", "03", "06", "09", "11", "12"]),
                    rng.pick(&["01", "09", "15", "28"])
                );
                if rng.chance(95) {
                    s.push_str(&format!("{}{}:{}:{}", rng.pick(&["T", " ", "t"]), rng.pick(&["00", "09", "23"]), rng.pick(&["00", "30", "59"]), rng.pick(&["00", "07", "59"])));
                    if rng.chance(70) {
                        s.push('.');
                        for _ in 0..1 + rng.below(9) {
                            s.push(char::from(b'0' + rng.below(10) as u8));
                        }
                    }
                    s.push_str(rng.pick(&["", "Z", "Z", "z", "+05:30", "-08:00", "+00:00"]));
                }
                format!("\"{s}\"")
            }
        }
    }

    fn object_text(rng: &mut Rng, noise: usize) -> String {
        let mut names = vec!["id", "n", "i", "x", "f", "ok", "ts", "ms", "ns", "s", "must"];
        if rng.chance(20) {
            // Another order.
            let k = rng.below(names.len());
            names.rotate_left(k);
        }
        let mut parts = Vec::new();
        for name in names {
            if rng.chance(8) && (name != "must" || rng.chance(noise)) {
                continue;
            }
            parts.push(format!("\"{name}\":{}", value_text(rng, name, noise)));
            if rng.chance(noise / 4) {
                parts.push(format!("\"{name}\":{}", value_text(rng, name, noise)));
            }
        }
        if rng.chance(10) {
            let clean = ["\"other\":1", "\"other\":\"x\"", "\"other\":null", "\"Id\":\"x\"", "\"other\":1-2", "\"other\":false"];
            let noisy = ["\"other\":[1,2]", "\"other\":{\"a\":1}", "\"o\\u0074her\":1", "\"other\":tru", "\"other\":\"\\n\""];
            let extra = if rng.chance(noise) { rng.pick(&noisy) } else { rng.pick(&clean) };
            let at = rng.below(parts.len() + 1);
            parts.insert(at, extra.into());
        }
        let space = |rng: &mut Rng| rng.pick(&["", "", "", " ", "\t", "\r\n"]).to_string();
        let mut s = format!("{{{}", space(rng));
        for (k, p) in parts.iter().enumerate() {
            if k > 0 {
                s.push_str(&format!("{},{}", space(rng), space(rng)));
            }
            s.push_str(p);
        }
        s.push_str(&space(rng));
        s.push('}');
        if rng.chance(noise / 5) {
            s = rng.pick(&["[1]", "3", "null", "{", "{\"id\":\"a\",}", "{}{}", "{\"id\" \"a\"}"]).into();
        }
        s
    }

    /// The claim of the module: when the fast path gives batches, they are arrow-json's.
    /// And it does give them for plain rows, so that this test can fail.
    #[test]
    fn agrees_with_arrow_json() {
        let schema = schema();
        let mut rng = Rng(21);
        let (mut taken, mut texts) = (0, 0);
        for _ in 0..4000 {
            let rows = 1 + rng.below(6);
            let noise = [0, 1, 3, 10, 30][rng.below(5)];
            let text: String = (0..rows).map(|_| object_text(&mut rng, noise) + rng.pick(&["\n", "\n", " ", "\n\n", "\r\n", ""])).collect();
            let batch_size = 1 + rng.below(4);
            let expected = arrow_json(&schema, text.as_bytes(), batch_size);
            let fast = FlatJson::new(&schema, batch_size).and_then(|d| d.decode_text(text.as_bytes()));
            texts += 1;
            if let Some(fast) = fast {
                taken += 1;
                assert_eq!(Ok(fast), expected, "{text}");
            }
        }
        assert!(taken * 4 > texts, "the fast path took {taken} of {texts} texts");
    }

    #[test]
    fn plain_rows_take_the_fast_path() {
        let schema = schema();
        let text = "{\"id\":\"evt-1\",\"n\":1,\"i\":-2,\"x\":0.25,\"f\":1e3,\"ok\":true,\"ts\":\"2024-01-01T01:00:00.005Z\",\"ms\":\"2024-02-29 23:59:59.999\",\"ns\":\"1969-12-31T23:59:59.999999999-05:00\",\"s\":\"2024-01-01\",\"must\":\"é\"}\n\
                    {\"must\":\"\",\"other\":[1],\"id\":null}\n";
        assert!(FlatJson::new(&schema, 2).unwrap().decode_text(text.as_bytes()).is_none(), "a nested value is arrow-json's");
        let text = text.replace("[1]", "\"x\"");
        let fast = FlatJson::new(&schema, 2).unwrap().decode_text(text.as_bytes()).expect("plain rows");
        assert_eq!(fast, arrow_json(&schema, text.as_bytes(), 2).unwrap());
        assert_eq!(fast[0].num_rows(), 2);
    }

    #[test]
    fn timestamps_read_as_arrow_cast_reads_them() {
        let mut rng = Rng(7);
        let mut read = 0;
        for _ in 0..20_000 {
            let s = timestamp_text(&mut rng);
            let Some(fast) = timestamp(s.as_bytes(), TimeUnit::Nanosecond) else { continue };
            read += 1;
            let expected = arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, &s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .timestamp_nanos_opt();
            assert_eq!(Some(fast), expected, "{s}");
            for unit in [TimeUnit::Second, TimeUnit::Millisecond, TimeUnit::Microsecond] {
                let date = arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, &s).unwrap();
                let expected = match unit {
                    TimeUnit::Second => date.timestamp(),
                    TimeUnit::Millisecond => date.timestamp_millis(),
                    _ => date.timestamp_micros(),
                };
                assert_eq!(timestamp(s.as_bytes(), unit), Some(expected), "{s} {unit:?}");
            }
        }
        assert!(read > 500, "read {read}");
        for s in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "0001-03-01", "1600-02-29"] {
            let date = arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, s).unwrap();
            assert_eq!(timestamp(s.as_bytes(), TimeUnit::Microsecond), Some(date.timestamp_micros()), "{s}");
        }
    }
}
