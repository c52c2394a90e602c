//! Reading a batch's files a piece at a time, for the batch loop's chunks.
//!
//! A file is read as its batch's list recorded it: its first `size` bytes (see
//! [`ListedFile`]). Newline-delimited JSON comes in ranged reads that end at a line end, CSV
//! in ranged reads that end at a record end (a quoted field may hold a newline), Parquet by
//! row groups, fetching only their column chunks. So a chunk, not a file, is what a batch
//! holds in memory, and pieces decode on all cores. The cuts depend only on the file's bytes,
//! so a replay cuts the same pieces.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use serde::{Deserialize, Serialize};
use weir_checkpoint::Location;
use weir_sql::config::FileFormat;

use crate::error::{ConnectorError, Result};

/// A file as a batch's list records it: what the batch reads, whenever it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedFile {
    /// Relative to the source directory.
    pub path: String,
    /// The batch reads the first `size` bytes.
    pub size: u64,
    /// The modification time, in milliseconds since the epoch.
    pub modified_ms: i64,
    /// The store's ETag (local files: inode, modification time and size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl ListedFile {
    /// The file `path` as `meta` describes it.
    pub fn new(path: String, meta: &ObjectMeta) -> Self {
        Self { path, size: meta.size, modified_ms: meta.last_modified.timestamp_millis(), etag: meta.e_tag.clone() }
    }

    /// Whether `meta` describes another version of the file than the one listed (of the same
    /// size). On local disk: another modification time (the ETag holds the inode too, and a
    /// file put back as it was, same bytes and time, is the listed file). On object storage:
    /// another ETag, or without ETags another modification time to the second (some stores
    /// list milliseconds but report whole seconds on a HEAD).
    fn rewritten(&self, meta: &ObjectMeta, local: bool) -> bool {
        let modified_ms = meta.last_modified.timestamp_millis();
        match (&self.etag, &meta.e_tag) {
            _ if local => self.modified_ms != modified_ms,
            (Some(listed), Some(now)) => listed != now,
            _ => self.modified_ms.div_euclid(1000) != modified_ms.div_euclid(1000),
        }
    }
}

/// A file of a batch's list: described, or a bare name (lists of version 1, and lists
/// reopened after their bytes failed to decode): such a file is read whole, as it is when
/// read, and recorded then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoggedFile {
    /// A name only.
    Name(String),
    /// The file as listed.
    Listed(ListedFile),
}

impl LoggedFile {
    /// Relative to the source directory.
    pub fn path(&self) -> &str {
        match self {
            Self::Name(path) | Self::Listed(ListedFile { path, .. }) => path,
        }
    }
}

/// A piece of a file, as read: what one chunk of a batch decodes.
#[derive(Debug)]
pub struct Piece {
    /// The file as messages show it.
    pub shown: String,
    /// The file's place in the batch's list.
    pub file_index: usize,
    /// The piece's place in the file (0 for the first).
    pub index: usize,
    /// Its bytes.
    pub body: Body,
}

impl Piece {
    /// The bytes read for it.
    pub fn len(&self) -> u64 {
        match &self.body {
            Body::Text { bytes, .. } => bytes.len() as u64,
            Body::Parquet { bytes, .. } => bytes.bytes.len() as u64,
        }
    }
}

/// The bytes of a [`Piece`].
#[derive(Debug)]
pub enum Body {
    /// Whole lines of newline-delimited JSON, or whole records of CSV. `header` is a CSV
    /// file's header record, for its pieces after the first (the first holds it).
    Text { bytes: Bytes, header: Option<Bytes> },
    /// Whole row groups of a Parquet file, with their column chunks.
    Parquet { metadata: ArrowReaderMetadata, row_groups: Vec<usize>, bytes: FileRange },
}

/// How to cut a file into pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The file format.
    pub format: FileFormat,
    /// CSV: the field delimiter.
    pub delimiter: u8,
    /// CSV: whether the first record is a header.
    pub header: bool,
    /// About this many bytes per piece (JSON, CSV: per read; Parquet: compressed row groups).
    pub piece_bytes: u64,
}

/// An error reading the file `shown` of a batch's list.
pub fn read_err(shown: &str, e: object_store::Error) -> ConnectorError {
    match e {
        object_store::Error::NotFound { .. } => ConnectorError::BadData(format!(
            "{shown}: the file was taken by an earlier batch but is gone; a replay needs it back"
        )),
        e => ConnectorError::Io(format!("cannot read {shown}: {e}")),
    }
}

/// What to do when a file has changed since its batch listed it.
const CHANGED_HINT: &str = "a file must not change once it is in the directory (write it under a name starting with '.' or '_' and rename it \
     when complete); put the file back as it was listed (the same bytes and modification time), or start the query over with a new checkpoint";

/// How many bytes of the file the batch reads: the listed size, once the file is found to
/// hold the listed bytes still. A file is read once, as listed: a text file that grew was
/// appended to, and the bytes past the listed size belong to no batch (a warning says so);
/// any other change would change the batch, and is an error naming the file.
fn size_to_read(shown: &str, file: &LoggedFile, meta: &ObjectMeta, local: bool, cut: &Cut, batch: u64, warnings: &Mutex<Vec<String>>) -> Result<u64> {
    let listed = match file {
        LoggedFile::Name(_) => return Ok(meta.size),
        LoggedFile::Listed(listed) => listed,
    };
    let changed = |what: &str, details: String| {
        Err(ConnectorError::BadData(format!(
            "{shown}: {what} since batch {batch} listed it ({details}); the batch cannot be read as it was: {CHANGED_HINT}"
        )))
    };
    if meta.size < listed.size {
        return changed("the file shrank or was replaced", format!("{} bytes when listed, {} now", listed.size, meta.size));
    }
    let appended = meta.size > listed.size && cut.format != FileFormat::Parquet;
    if !appended && (meta.size != listed.size || listed.rewritten(meta, local)) {
        let what = match cut.format {
            FileFormat::Parquet => "the Parquet file was replaced",
            _ => "the file was rewritten in place",
        };
        let etag = |e: &Option<String>| e.as_ref().map(|e| format!(", ETag {e}")).unwrap_or_default();
        return changed(
            what,
            format!(
                "{} bytes modified at {}{} when listed; now {} bytes modified at {}{}",
            listed.size,
            show_time(listed.modified_ms),
            etag(&listed.etag),
            meta.size,
                show_time(meta.last_modified.timestamp_millis()),
                etag(&meta.e_tag)
            ),
        );
    }
    if appended {
        let mut w = warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.push(format!(
            "{shown} grew from {} to {} bytes after batch {batch} listed it; the batch reads the first {} bytes, and no batch reads \
             the rest (a file is read once). Write files under a name starting with '.' or '_' and rename them when complete",
            listed.size, meta.size, listed.size
        ));
    }
    Ok(listed.size)
}

/// `ms` since the epoch as an ISO 8601 time in UTC.
fn show_time(ms: i64) -> String {
    arrow::temporal_conversions::timestamp_ms_to_datetime(ms).map_or_else(|| format!("{ms} ms"), |t| format!("{}Z", t.format("%Y-%m-%dT%H:%M:%S%.3f")))
}

/// The batch's files as it reads them: each file of the list checked against what the list
/// recorded (see [`size_to_read`]), a bare name taken as the file is now. Returns each file
/// as read, described, and how many of its bytes the batch reads.
pub async fn check_files(location: &Location, files: Vec<LoggedFile>, cut: Cut, batch: u64, warnings: &Mutex<Vec<String>>) -> Result<Vec<(ListedFile, u64)>> {
    let local = location.local_dir.is_some();
    futures::stream::iter(files)
        .map(|file| async move {
            let path = location.child(file.path());
            let shown = location.display(&path);
            let meta = location.store.head(&path).await.map_err(|e| read_err(&shown, e))?;
            let size = size_to_read(&shown, &file, &meta, local, &cut, batch, warnings)?;
            Ok(match file {
                LoggedFile::Listed(listed) => (listed, size),
                LoggedFile::Name(path) => (ListedFile::new(path, &meta), size),
            })
        })
        .buffered(16)
        .try_collect()
        .await
}

/// An error reading a file, and whether it is about bytes that were read as listed but do
/// not decode (an unreadable Parquet footer): then no run can have got past them.
pub type Failure = (ConnectorError, bool);

/// The first `size` bytes of the file `path`, the `file_index`th of its batch, a piece at a
/// time (see the module doc). A line or record longer than a read makes the read grow until
/// it ends.
pub fn read_pieces(location: Location, file_index: usize, path: Path, size: u64, cut: Cut) -> BoxStream<'static, std::result::Result<Piece, Failure>> {
    let shown = location.display(&path);
    let file = OpenFile { location, path, shown, file_index, size };
    match cut.format {
        FileFormat::Parquet => futures::stream::once(parquet_pieces(file, cut.piece_bytes)).try_flatten().boxed(),
        _ => text_pieces(file, cut).map_err(|e| (e, false)).boxed(),
    }
}

/// A file being read, and the bytes its batch reads.
#[derive(Debug, Clone)]
struct OpenFile {
    location: Location,
    path: Path,
    shown: String,
    file_index: usize,
    size: u64,
}

impl OpenFile {
    fn piece(&self, index: usize, body: Body) -> Piece {
        Piece { shown: self.shown.clone(), file_index: self.file_index, index, body }
    }

    /// Bytes `range` of the file, all of them.
    async fn get_range(&self, range: std::ops::Range<u64>) -> Result<Bytes> {
        let bytes = self.location.store.get_range(&self.path, range.clone()).await.map_err(|e| read_err(&self.shown, e))?;
        if (bytes.len() as u64) < range.end - range.start {
            return Err(ConnectorError::BadData(format!(
                "{}: the file shrank while it was read ({} bytes were listed); {CHANGED_HINT}",
                self.shown, self.size
            )));
        }
        Ok(bytes)
    }
}

/// JSON and CSV pieces: ranged reads of about `cut.piece_bytes`, each cut at its last line
/// end (JSON) or record end (CSV), the next read starting there.
fn text_pieces(file: OpenFile, cut: Cut) -> BoxStream<'static, Result<Piece>> {
    struct At {
        pos: u64,
        index: usize,
        header: Option<Bytes>,
    }
    futures::stream::try_unfold(Some(At { pos: 0, index: 0, header: None }), move |at| {
        let file = file.clone();
        async move {
            let Some(At { pos, index, header }) = at else { return Ok(None) };
            if file.size == 0 {
                return Ok(Some((file.piece(0, Body::Text { bytes: Bytes::new(), header: None }), None)));
            }
            let csv_header = cut.format == FileFormat::Csv && cut.header && pos == 0;
            let mut want = cut.piece_bytes.max(1);
            loop {
                let end = pos.saturating_add(want).min(file.size);
                let bytes = file.get_range(pos..end).await?;
                let last = match cut.format {
                    _ if end == file.size => Some(bytes.len()),
                    FileFormat::Csv => csv::last_record_end(&bytes, cut.delimiter),
                    _ => bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1),
                };
                // The first piece of a CSV file with a header must hold the header whole.
                let header_end = if csv_header { csv::first_record_end(&bytes, cut.delimiter) } else { None };
                match last {
                    Some(last) if !csv_header || header_end.is_some_and(|h| h <= last) || end == file.size => {
                        let next_header = match header_end {
                            // A copy: a slice would keep the whole first read alive.
                            Some(h) => Some(Bytes::copy_from_slice(&bytes[..h])),
                            None => header.clone(),
                        };
                        let piece = file.piece(index, Body::Text { bytes: bytes.slice(..last), header });
                        let next = (end < file.size).then(|| At { pos: pos + last as u64, index: index + 1, header: next_header });
                        return Ok(Some((piece, next)));
                    }
                    _ => want = want.saturating_mul(2),
                }
            }
        }
    })
    .boxed()
}

/// The schema of the Parquet file `file` (the columns of a table that declares none).
pub async fn parquet_schema(location: &Location, file: &ListedFile) -> Result<SchemaRef> {
    let path = location.child(&file.path);
    let shown = location.display(&path);
    let file = OpenFile { location: location.clone(), path, shown, file_index: 0, size: file.size };
    Ok(Arc::clone(parquet_metadata(&file).await.map_err(|(e, _)| e)?.schema()))
}

/// The footer of the Parquet file `file`, with one ranged read (two for a footer over
/// 64 KiB).
async fn parquet_metadata(file: &OpenFile) -> std::result::Result<ArrowReaderMetadata, Failure> {
    let bad = |m: String| (ConnectorError::BadData(format!("{}: not a readable Parquet file: {m}", file.shown)), true);
    if file.size < 8 {
        return Err(bad(format!("{} bytes are too few", file.size)));
    }
    let tail_len = file.size.min(64 << 10);
    let tail = file.get_range(file.size - tail_len..file.size).await.map_err(|e| (e, false))?;
    let footer: [u8; 8] = tail[tail.len() - 8..].try_into().expect("the tail holds 8 bytes at least");
    let len = FooterTail::try_new(&footer).map_err(|e| bad(e.to_string()))?.metadata_length() as u64;
    if len + 8 > file.size {
        return Err(bad(format!("its footer says {len} bytes of metadata, more than the file's {} bytes", file.size)));
    }
    let bytes = match tail_len.checked_sub(len + 8) {
        Some(start) => tail.slice(start as usize..tail.len() - 8),
        None => file.get_range(file.size - 8 - len..file.size - 8).await.map_err(|e| (e, false))?,
    };
    let metadata = ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new()).map_err(|e| bad(e.to_string()))
}

/// Parquet pieces: whole row groups, consecutive ones together up to about `piece_bytes`
/// compressed, each with only the bytes of its column chunks (one ranged read). The footer
/// comes first, with ranged reads of its own.
async fn parquet_pieces(file: OpenFile, piece_bytes: u64) -> std::result::Result<BoxStream<'static, std::result::Result<Piece, Failure>>, Failure> {
    let metadata = parquet_metadata(&file).await?;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_bytes = 0u64;
    for (i, rg) in metadata.metadata().row_groups().iter().enumerate() {
        match groups.last_mut() {
            Some(group) if group_bytes < piece_bytes => group.push(i),
            _ => {
                groups.push(vec![i]);
                group_bytes = 0;
            }
        }
        group_bytes += rg.compressed_size().max(0) as u64;
    }
    let pieces = futures::stream::iter(groups.into_iter().enumerate()).then(move |(index, row_groups)| {
        let (file, metadata) = (file.clone(), metadata.clone());
        async move {
            let chunks = metadata.metadata().row_groups().iter().enumerate().filter(|(i, _)| row_groups.contains(i));
            let ranges = chunks.flat_map(|(_, rg)| rg.columns().iter().map(|c| c.byte_range())).map(|(start, len)| (start, start + len));
            let (start, end) = ranges.fold((u64::MAX, 0), |(s, e), (a, b)| (s.min(a), e.max(b)));
            let (start, end) = (start.min(end), end);
            if end > file.size {
                let e = format!("{}: not a readable Parquet file: its row groups end at byte {end}, past its {} bytes", file.shown, file.size);
                return Err((ConnectorError::BadData(e), true));
            }
            let bytes = file.get_range(start..end).await.map_err(|e| (e, false))?;
            let bytes = FileRange { len: file.size, start, bytes };
            Ok(file.piece(index, Body::Parquet { metadata, row_groups, bytes }))
        }
    });
    Ok(pieces.boxed())
}

/// Bytes `start..start + bytes.len()` of a Parquet file of `len` bytes: the column chunks
/// of the row groups a piece decodes.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The file's length.
    pub len: u64,
    /// Where `bytes` start in the file.
    pub start: u64,
    /// The bytes.
    pub bytes: Bytes,
}

impl FileRange {
    fn slice(&self, start: u64, length: Option<usize>) -> parquet::errors::Result<Bytes> {
        let outside = || ParquetError::General(format!("byte {start} is outside the row groups read ({} bytes from {})", self.bytes.len(), self.start));
        let from = start.checked_sub(self.start).and_then(|f| usize::try_from(f).ok()).filter(|f| *f <= self.bytes.len()).ok_or_else(outside)?;
        let to = match length {
            Some(length) => from.checked_add(length).filter(|t| *t <= self.bytes.len()).ok_or_else(outside)?,
            None => self.bytes.len(),
        };
        Ok(self.bytes.slice(from..to))
    }
}

impl Length for FileRange {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for FileRange {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.slice(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// Where CSV records end, as arrow-csv (csv-core) reads them with weir's options: `"`
/// quotes a field that starts with it, `""` inside is a quote, and a quote elsewhere is an
/// ordinary character; `\n` and `\r` end a record outside quotes. Pieces are cut only after
/// a `\n`. `bytes` must start at a record's start. The scan goes from quote to quote at
/// memory speed: only quotes at a field's start and the quotes that end them count.
pub(crate) mod csv {
    use std::ops::Range;

    /// The first `b` in `bytes`: `contains` finds a byte with core's word-at-a-time memchr.
    fn find(bytes: &[u8], b: u8) -> Option<usize> {
        let mut at = 0;
        for block in bytes.chunks(4096) {
            if block.contains(&b) {
                return block.iter().position(|x| *x == b).map(|i| at + i);
            }
            at += block.len();
        }
        None
    }

    /// Calls `outside` with each range of `bytes` outside quoted fields, in order, until
    /// it returns false. Bytes that end inside a quoted field end with it.
    fn unquoted(bytes: &[u8], delimiter: u8, mut outside: impl FnMut(Range<usize>) -> bool) {
        let (mut from, mut at) = (0, 0);
        while let Some(quote) = find(&bytes[at..], b'"').map(|i| at + i) {
            at = quote + 1;
            let field_start = quote == 0 || matches!(bytes[quote - 1], b'\n' | b'\r') || bytes[quote - 1] == delimiter;
            if !field_start {
                continue;
            }
            if !outside(from..quote) {
                return;
            }
            // The quoted field ends at a lone quote.
            loop {
                match find(&bytes[at..], b'"').map(|i| at + i) {
                    Some(q) if bytes.get(q + 1) == Some(&b'"') => at = q + 2,
                    Some(q) => {
                        at = q + 1;
                        break;
                    }
                    None => return,
                }
            }
            from = at;
        }
        outside(from..bytes.len());
    }

    /// Calls `found` with the end (just past the `\n`) of each record ended by a `\n`, in
    /// order, until it returns false.
    fn record_ends(bytes: &[u8], delimiter: u8, mut found: impl FnMut(usize) -> bool) {
        unquoted(bytes, delimiter, |range| {
            let start = range.start;
            bytes[range].iter().enumerate().filter(|(_, b)| **b == b'\n').all(|(i, _)| found(start + i + 1))
        });
    }

    /// The records of `bytes`, without the `\n` that ends them; the last is what follows
    /// the last `\n` (empty when `bytes` ends with one).
    pub(crate) fn records(bytes: &[u8], delimiter: u8) -> Vec<&[u8]> {
        let (mut out, mut start) = (Vec::new(), 0);
        record_ends(bytes, delimiter, |end| {
            out.push(&bytes[start..end - 1]);
            start = end;
            true
        });
        out.push(&bytes[start..]);
        out
    }

    /// The end of the last record in `bytes` ended by a `\n`.
    pub(crate) fn last_record_end(bytes: &[u8], delimiter: u8) -> Option<usize> {
        let mut last = None;
        unquoted(bytes, delimiter, |range| {
            let start = range.start;
            if let Some(i) = bytes[range].iter().rposition(|b| *b == b'\n') {
                last = Some(start + i + 1);
            }
            true
        });
        last
    }

    /// The end of the first record in `bytes` that is not empty (the header), when a `\n`
    /// ends it.
    pub(crate) fn first_record_end(bytes: &[u8], delimiter: u8) -> Option<usize> {
        let (mut first, mut start) = (None, 0);
        record_ends(bytes, delimiter, |end| {
            if bytes[start..end].iter().any(|b| !matches!(b, b'\r' | b'\n')) {
                first = Some(end);
                return false;
            }
            start = end;
            true
        });
        first
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use futures::TryStreamExt;
    use weir_sql::config::FileConfig;

    use super::*;
    use crate::file::decode::tests::{config, schema};
    use crate::file::decode::{self, BadLine, decode_rows};

    fn cut(config: &FileConfig, piece_bytes: u64) -> Cut {
        Cut { format: config.format, delimiter: config.delimiter, header: config.header, piece_bytes }
    }

    fn location(dir: &std::path::Path) -> Location {
        Location::resolve(dir.to_str().unwrap(), false).unwrap()
    }

    /// The file `file` of `dir`, read as batch 7 reads it, in pieces.
    async fn pieces(dir: &std::path::Path, file: LoggedFile, cut: Cut) -> Result<Vec<Piece>> {
        read_logged(dir, file, cut, &Mutex::default()).await
    }

    async fn read_logged(dir: &std::path::Path, file: LoggedFile, cut: Cut, warnings: &Mutex<Vec<String>>) -> Result<Vec<Piece>> {
        let location = location(dir);
        let files = check_files(&location, vec![file], cut, 7, warnings).await?;
        let (file, size) = &files[0];
        read_pieces(location.clone(), 0, location.child(&file.path), *size, cut).map_err(|(e, _)| e).try_collect().await
    }

    fn piece_text(piece: &Piece) -> &Bytes {
        match &piece.body {
            Body::Text { bytes, .. } => bytes,
            Body::Parquet { .. } => panic!("not a text piece"),
        }
    }

    /// Decodes the pieces as the file source does: rows, bad lines numbered in the file, and
    /// (not collecting bad lines) the first error.
    fn decode_pieces(config: &FileConfig, schema: &SchemaRef, pieces: Vec<Piece>) -> (Vec<RecordBatch>, Vec<BadLine>, Option<String>) {
        let (mut rows, mut bad, mut lines_before, mut first_error) = (Vec::new(), Vec::new(), 0, None);
        for piece in pieces {
            let decode = || decode::decode_piece(config, schema, "f", clone_body(&piece.body)).unwrap();
            if let Err(e) = decode().placed("f", lines_before, false) {
                first_error.get_or_insert(e.to_string());
            }
            let d = decode();
            let lines = d.lines;
            let d = d.placed("f", lines_before, true).unwrap();
            lines_before += lines;
            rows.extend(d.batches);
            bad.extend(d.bad);
        }
        (rows, bad, first_error)
    }

    fn clone_body(body: &Body) -> Body {
        match body {
            Body::Text { bytes, header } => Body::Text { bytes: bytes.clone(), header: header.clone() },
            Body::Parquet { metadata, row_groups, bytes } => {
                Body::Parquet { metadata: metadata.clone(), row_groups: row_groups.clone(), bytes: bytes.clone() }
            }
        }
    }

    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches.iter().flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()).collect()
    }

    fn names(batches: &[RecordBatch]) -> Vec<Option<String>> {
        batches.iter().flat_map(|b| b.column(1).as_any().downcast_ref::<StringArray>().unwrap().iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>()).collect()
    }

    /// The file source reads newline-delimited JSON in pieces of whole lines; decoded one by
    /// one, they give the whole file's rows, and its bad lines by their line in the file.
    #[tokio::test]
    async fn json_files_are_read_in_pieces_of_whole_lines() {
        let mut text = String::new();
        for i in 0..1000 {
            text += &match i {
                700 => "{\"id\": \"x\"}\n".to_string(),
                300 => format!("{{\"id\": {i}, \"name\": \"{}\"}}\n", "n".repeat(2500)),
                _ => format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"),
            };
        }
        text.pop(); // no line end after the last line
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.json"), &text).unwrap();
        std::fs::write(dir.path().join("empty.json"), "").unwrap();
        let c = config(FileFormat::Json);
        let read = |name: &str| pieces(dir.path(), LoggedFile::Name(name.into()), cut(&c, 1000));
        let pieces = read("f.json").await.unwrap();
        assert!(pieces.len() > 10, "{}", pieces.len());
        assert_eq!(pieces.iter().flat_map(|p| piece_text(p).to_vec()).collect::<Vec<u8>>(), text.as_bytes());
        assert!(pieces[..pieces.len() - 1].iter().all(|p| piece_text(p).ends_with(b"\n")));
        assert!(pieces.iter().any(|p| piece_text(p).len() > 2500), "a line longer than a read comes whole");
        assert!(pieces.iter().enumerate().all(|(i, p)| p.index == i && p.shown.ends_with("f.json")));
        let (rows, bad, first_error) = decode_pieces(&c, &schema(), pieces);
        assert_eq!(ids(&rows).len(), 999);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [701]);
        let whole = decode_rows(&c, &schema(), "f", Bytes::from(text), false).unwrap_err().to_string();
        assert_eq!(first_error.as_deref(), Some(whole.as_str()));
        assert!(whole.starts_with("f:701: "), "{whole}");
        let empty = read("empty.json").await.unwrap();
        assert_eq!(empty.len(), 1);
        assert!(piece_text(&empty[0]).is_empty());
        let gone = read("gone.json").await.unwrap_err().to_string();
        assert!(gone.contains("gone.json: the file was taken by an earlier batch but is gone"), "{gone}");
    }

    /// CSV comes in pieces of whole records: a quoted field may hold line ends, delimiters
    /// and doubled quotes, a quote inside an unquoted field is an ordinary character, and a
    /// record longer than a read comes whole. Decoded one by one (each under the file's
    /// header), the pieces give the whole file's rows, and bad lines by their line in the file.
    #[tokio::test]
    async fn csv_files_are_read_in_pieces_of_whole_records() {
        let mut text = String::from("\r\nname,id\r\n");
        let mut want = Vec::new();
        for i in 0..3000i64 {
            let name = match i % 7 {
                _ if i == 1003 => format!("\"{}\n\"", "long\n".repeat(700)),
                0 => format!("\"multi\nline, \"\"quoted\"\"\n{i}\""),
                1 => format!("plain{i}"),
                2 => format!("in\"side{i}"),
                4 => "\"\"".to_string(),
                _ => format!("\"q{i}\""),
            };
            text += &format!("{name},{i}{}", if i % 2 == 0 { "\r\n" } else { "\n" });
            want.push(i);
        }
        text += "bad,x\nlast,3000";
        want.push(3000);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.csv"), &text).unwrap();
        let c = config(FileFormat::Csv);
        let pieces = pieces(dir.path(), LoggedFile::Name("f.csv".into()), cut(&c, 1000)).await.unwrap();
        assert!(pieces.len() > 20, "{}", pieces.len());
        assert_eq!(pieces.iter().flat_map(|p| piece_text(p).to_vec()).collect::<Vec<u8>>(), text.as_bytes());
        assert!(pieces.iter().any(|p| piece_text(p).len() > 3500), "a record longer than a read comes whole");
        for p in &pieces[1..] {
            let Body::Text { header, .. } = &p.body else { panic!() };
            assert_eq!(header.as_deref(), Some(&b"\r\nname,id\r\n"[..]), "later pieces carry the header");
        }
        let (rows, bad, first_error) = decode_pieces(&c, &schema(), pieces);
        let lines_to_bad = text[..text.find("bad,x").unwrap()].matches('\n').count() as u64 + 1;
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [lines_to_bad]);
        assert_eq!(ids(&rows), want);
        let mut good = text.clone().into_bytes();
        good.drain(text.find("bad,x").unwrap()..text.find("last,").unwrap());
        let whole = decode_rows(&c, &schema(), "f", Bytes::from(good), false).unwrap().batches;
        assert_eq!(names(&rows), names(&whole));
        assert_eq!(names(&rows)[0].as_deref(), Some("multi\nline, \"quoted\"\n0"));
        assert_eq!(names(&rows)[2].as_deref(), Some("in\"side2"));
        let whole_error = decode_rows(&c, &schema(), "f", Bytes::from(text), false).unwrap_err().to_string();
        assert_eq!(first_error.as_deref(), Some(whole_error.as_str()));
    }

    /// The record-end scan agrees with arrow-csv: for many texts of two-field records (fields
    /// plain, quoted with delimiters, line ends and doubled quotes inside, or with a quote
    /// inside an unquoted field; lines ended by `\n` or `\r\n`; blank lines), a text cut
    /// at the scan's last record end before any point decodes, in two parts, into the rows
    /// of the whole.
    #[test]
    fn csv_record_ends_agree_with_arrow_csv() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Utf8, true)]));
        let mut c = config(FileFormat::Csv);
        c.header = false;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let cells = |text: &[u8]| -> Vec<[Option<String>; 2]> {
            let batches = decode_rows(&c, &schema, "f", Bytes::copy_from_slice(text), false).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(text))).batches;
            let column = |b: &RecordBatch, i: usize, r: usize| {
                let a = b.column(i).as_any().downcast_ref::<StringArray>().unwrap();
                a.is_valid(r).then(|| a.value(r).to_string())
            };
            batches.iter().flat_map(|b| (0..b.num_rows()).map(|r| [column(b, 0, r), column(b, 1, r)]).collect::<Vec<_>>()).collect()
        };
        for _ in 0..150 {
            let mut text = Vec::new();
            for _ in 0..1 + next(8) {
                for field in 0..2 {
                    let quoted_bits = [&b"x"[..], b",", b"\n", b"\r\n", b"\"\"", b"\r"];
                    match next(5) {
                        0 => text.extend_from_slice(b"x"),
                        1 => text.extend_from_slice(b"x\"y"),
                        2 => {}
                        3 => text.extend_from_slice(b"\"a\"b"),
                        _ => {
                            text.push(b'"');
                            for _ in 0..next(5) {
                                text.extend_from_slice(quoted_bits[next(quoted_bits.len() as u64) as usize]);
                            }
                            text.push(b'"');
                        }
                    }
                    text.extend_from_slice(if field == 0 { b"," } else if next(2) == 0 { b"\n" } else { b"\r\n" });
                }
                if next(6) == 0 {
                    text.push(b'\n');
                }
            }
            let whole = cells(&text);
            let records = csv::records(&text, b',');
            assert_eq!(records.iter().filter(|r| !r.is_empty() && *r != b"\r").count(), whole.len(), "{:?}", String::from_utf8_lossy(&text));
            for at in 1..text.len() {
                let Some(end) = csv::last_record_end(&text[..at], b',') else { continue };
                let mut parts = cells(&text[..end]);
                parts.extend(cells(&text[end..]));
                assert_eq!(parts, whole, "{:?} cut at {end}", String::from_utf8_lossy(&text));
            }
        }
    }

    fn event_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]))
    }

    /// A Parquet file of `rows` rows in row groups of 1,000; row `null_ts` has no event time.
    fn write_parquet(path: &std::path::Path, rows: i64, null_ts: Option<i64>) {
        let schema = event_schema();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), Arc::clone(&schema), Some(props)).unwrap();
        for start in (0..rows).step_by(700) {
            let ids: Vec<i64> = (start..(start + 700).min(rows)).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(StringArray::from(ids.iter().map(|i| format!("n{i}")).collect::<Vec<_>>())),
                    Arc::new(TimestampMicrosecondArray::from(ids.iter().map(|i| (Some(*i) != null_ts).then_some(*i)).collect::<Vec<_>>()).with_timezone("UTC")),
                ],
            )
            .unwrap();
            writer.write(&batch).unwrap();
        }
        writer.close().unwrap();
    }

    /// Parquet comes by row groups, a few per piece, each piece holding only its row
    /// groups' bytes; a row without an event time is named by its row in the file.
    #[tokio::test]
    async fn parquet_files_are_read_by_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        write_parquet(&dir.path().join("f.parquet"), 20_500, Some(12_345));
        let size = std::fs::metadata(dir.path().join("f.parquet")).unwrap().len();
        let c = config(FileFormat::Parquet);
        let pieces = pieces(dir.path(), LoggedFile::Name("f.parquet".into()), cut(&c, 20_000)).await.unwrap();
        assert!(pieces.len() >= 5, "{}", pieces.len());
        let mut groups = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let Body::Parquet { row_groups, bytes, .. } = &p.body else { panic!() };
            assert_eq!(p.index, i);
            assert!((bytes.bytes.len() as u64) < size / 3, "a piece holds its row groups, not the file");
            groups.extend(row_groups.iter().copied());
        }
        assert_eq!(groups, (0..21).collect::<Vec<_>>(), "every row group once, in order");
        let (rows, _, _) = decode_pieces(&c, &event_schema(), pieces);
        assert_eq!(ids(&rows), (0..20_500).collect::<Vec<_>>());
        let mut c = c;
        c.event_time = Some("ts".into());
        let pieces = super::tests::pieces(dir.path(), LoggedFile::Name("f.parquet".into()), cut(&c, 20_000)).await.unwrap();
        let errors: Vec<String> = pieces.into_iter().filter_map(|p| decode::decode_piece(&c, &event_schema(), "f", p.body).err()).map(|e| e.to_string()).collect();
        assert_eq!(errors, ["f: row 12346: the event-time column 'ts' is NULL or missing"]);
    }

    fn listed(dir: &std::path::Path, name: &str) -> LoggedFile {
        let meta = std::fs::metadata(dir.join(name)).unwrap();
        let etag = {
            use std::os::unix::fs::MetadataExt;
            let mtime = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
            format!("{:x}-{:x}-{:x}", meta.ino(), mtime.as_micros(), meta.len())
        };
        let modified = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        LoggedFile::Listed(ListedFile { path: name.into(), size: meta.len(), modified_ms: modified, etag: Some(etag) })
    }

    /// A batch reads the bytes its list recorded: a file that grew is read up to its listed
    /// size (with a warning), and one that shrank or was rewritten stops the batch with an
    /// error naming it. Lists of names only read the file as it is.
    #[tokio::test]
    async fn a_batch_reads_the_listed_bytes_or_names_the_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
        let file = listed(dir.path(), "f.json");
        let json = cut(&config(FileFormat::Json), 4);
        let root = dir.path();
        let read = |file: LoggedFile| async move {
            let warnings = Mutex::default();
            let pieces = read_logged(root, file, json, &warnings).await;
            (pieces.map(|p| p.iter().flat_map(|p| piece_text(p).to_vec()).collect::<Vec<u8>>()), warnings.into_inner().unwrap())
        };
        let (bytes, warnings) = read(file.clone()).await;
        assert_eq!(bytes.unwrap(), b"{\"id\": 1}\n{\"id\": 2}\n");
        assert!(warnings.is_empty());

        std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n").unwrap();
        let (bytes, warnings) = read(file.clone()).await;
        assert_eq!(bytes.unwrap(), b"{\"id\": 1}\n{\"id\": 2}\n", "appended bytes are no part of the batch");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("f.json grew from 20 to 30 bytes after batch 7 listed it"), "{}", warnings[0]);
        let (bytes, _) = read(LoggedFile::Name("f.json".into())).await;
        assert_eq!(bytes.unwrap().len(), 30, "a list of names reads the file as it is");

        std::fs::write(&path, "{\"id\": 1}\n").unwrap();
        let err = read(file.clone()).await.0.unwrap_err().to_string();
        assert!(err.contains("f.json: the file shrank or was replaced since batch 7 listed it (20 bytes when listed, 10 now)"), "{err}");

        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "{\"id\": 5}\n{\"id\": 6}\n").unwrap();
        let err = read(file.clone()).await.0.unwrap_err().to_string();
        assert!(err.contains("f.json: the file was rewritten in place since batch 7 listed it (20 bytes modified at "), "{err}");
        assert!(err.contains("; the batch cannot be read as it was: "), "{err}");

        write_parquet(&dir.path().join("f.parquet"), 10, None);
        let file = listed(dir.path(), "f.parquet");
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_parquet(&dir.path().join("f.parquet"), 2000, None);
        let c = config(FileFormat::Parquet);
        let err = pieces(dir.path(), file, cut(&c, 4)).await.unwrap_err().to_string();
        assert!(err.contains("f.parquet: the Parquet file was replaced since batch 7 listed it ("), "{err}");
    }

    /// Lists keep their JSON form: version 1 names, version 2 descriptions.
    #[test]
    fn logged_files_read_names_and_descriptions() {
        let files: Vec<LoggedFile> =
            serde_json::from_str(r#"["a.json", {"path": "b.json", "size": 3, "modifiedMs": 5, "etag": "e"}, {"path": "c.json", "size": 1, "modifiedMs": 2}]"#).unwrap();
        assert_eq!(files[0], LoggedFile::Name("a.json".into()));
        assert_eq!(files[1], LoggedFile::Listed(ListedFile { path: "b.json".into(), size: 3, modified_ms: 5, etag: Some("e".into()) }));
        assert_eq!(files[2].path(), "c.json");
        assert_eq!(serde_json::to_string(&files[2]).unwrap(), r#"{"path":"c.json","size":1,"modifiedMs":2}"#);
    }
}
