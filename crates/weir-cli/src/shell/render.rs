//! How the shell shows results: tables for statements that return rows, and the three
//! modes of a live preview (`SET result_mode`): a scrolling tail of rows, Flink's changelog
//! (`+I` per row), or a bounded table redrawn in place. On a terminal a status line (batch,
//! rows/s, watermark, lag) sits under the rows and is rewritten after each batch.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_runtime::QueryProgress;

/// How a live preview shows its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultMode {
    /// Each batch's rows as they come, under one header.
    Tail,
    /// Each row as `+I` (an insert), as Flink's changelog mode shows it.
    Changelog,
    /// The last rows as a table, redrawn after each batch.
    Table,
}

impl std::str::FromStr for ResultMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tail" => Ok(Self::Tail),
            "changelog" => Ok(Self::Changelog),
            "table" | "tableau" => Ok(Self::Table),
            other => Err(format!("result_mode '{other}': use tail, changelog or table")),
        }
    }
}

/// Rows a table-mode preview keeps on screen.
pub const TABLE_ROWS: usize = 20;

/// A record batch's rows as text cells.
fn cells(batch: &RecordBatch) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<ArrayFormatter<'_>> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("arrow formats every type weir produces"))
        .collect();
    (0..batch.num_rows()).map(|row| formatters.iter().map(|f| f.value(row).to_string()).collect()).collect()
}

/// `batches` as a boxed table (the header alone when there are no rows).
pub fn table(schema: &SchemaRef, batches: &[RecordBatch]) -> String {
    let rows: Vec<Vec<String>> = batches.iter().flat_map(cells).collect();
    boxed(schema, &rows)
}

fn boxed(schema: &SchemaRef, rows: &[Vec<String>]) -> String {
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = format!("+{}+", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let line = |cells: &[String]| format!("| {} |", cells.iter().zip(&widths).map(|(c, w)| pad(c, *w)).collect::<Vec<_>>().join(" | "));
    let mut out = vec![rule.clone(), line(&header), rule.clone()];
    out.extend(rows.iter().map(|r| line(r)));
    if !rows.is_empty() {
        out.push(rule);
    }
    out.join("\n") + "\n"
}

fn pad(cell: &str, width: usize) -> String {
    format!("{cell}{}", " ".repeat(width.saturating_sub(cell.chars().count())))
}

/// Shows a preview's batches in one of the [`ResultMode`]s.
pub struct PreviewPrinter {
    mode: ResultMode,
    schema: SchemaRef,
    /// Column widths of the tail so far (they only grow, so columns stay aligned).
    widths: Vec<usize>,
    header_shown: bool,
    /// Table mode: the rows on screen, and how many lines the last drawing took.
    kept: Vec<Vec<String>>,
    drawn_lines: usize,
    /// On a terminal: redraw the table in place and keep a status line.
    terminal: bool,
    /// Rows seen so far.
    pub rows: u64,
}

impl PreviewPrinter {
    /// A printer for rows of `schema`.
    pub fn new(mode: ResultMode, schema: SchemaRef, terminal: bool) -> Self {
        let mut widths: Vec<usize> = schema.fields().iter().map(|f| f.name().chars().count().max(8)).collect();
        if mode == ResultMode::Changelog {
            widths.insert(0, 2);
        }
        Self { mode, schema, widths, header_shown: false, kept: Vec::new(), drawn_lines: 0, terminal, rows: 0 }
    }

    /// The text to print for one batch's rows (maybe none).
    pub fn batch(&mut self, rows: &[RecordBatch]) -> String {
        let mut new: Vec<Vec<String>> = rows.iter().flat_map(cells).collect();
        self.rows += new.len() as u64;
        match self.mode {
            ResultMode::Tail | ResultMode::Changelog => {
                if self.mode == ResultMode::Changelog {
                    for row in &mut new {
                        row.insert(0, "+I".to_string());
                    }
                }
                let mut out = String::new();
                if !self.header_shown {
                    self.header_shown = true;
                    let mut header: Vec<String> = self.schema.fields().iter().map(|f| f.name().clone()).collect();
                    if self.mode == ResultMode::Changelog {
                        header.insert(0, "op".to_string());
                    }
                    self.grow(&header);
                    out.push_str(&self.line(&header));
                    out.push_str(&format!("{}\n", self.widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-")));
                }
                for row in &new {
                    self.grow(row);
                    out.push_str(&self.line(row));
                }
                out
            }
            ResultMode::Table => {
                if new.is_empty() && self.drawn_lines > 0 {
                    return String::new();
                }
                self.kept.extend(new);
                let excess = self.kept.len().saturating_sub(TABLE_ROWS);
                self.kept.drain(..excess);
                if !self.terminal {
                    return String::new();
                }
                self.draw()
            }
        }
    }

    /// What is left to print when the preview ends (table mode off a terminal: the table).
    pub fn finish(&mut self) -> String {
        match self.mode {
            ResultMode::Table if !self.terminal => boxed(&self.schema, &self.kept),
            ResultMode::Tail | ResultMode::Changelog if !self.header_shown => self.batch(&[]),
            _ => String::new(),
        }
    }

    /// The table, after moving up over the last drawing and clearing it.
    fn draw(&mut self) -> String {
        let table = boxed(&self.schema, &self.kept);
        let mut out = String::new();
        if self.drawn_lines > 0 {
            out.push_str(&format!("\x1b[{}A\r\x1b[J", self.drawn_lines));
        }
        self.drawn_lines = table.lines().count();
        out.push_str(&table);
        out
    }

    fn grow(&mut self, row: &[String]) {
        for (w, cell) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    fn line(&self, row: &[String]) -> String {
        let cells: Vec<String> = row.iter().zip(&self.widths).map(|(c, w)| pad(c, *w)).collect();
        format!("{}\n", cells.join(" | ").trim_end())
    }
}

/// The status line of a preview: the last batch shown, rows so far, and from the query's
/// last progress (which comes just after its batch's rows) the rate, watermark and lag.
pub fn status_line(batch: Option<u64>, progress: Option<&QueryProgress>, rows: u64) -> String {
    let Some(batch) = batch.or(progress.map(|p| p.batch_id)) else { return "waiting for the first batch (Ctrl-C to stop)".to_string() };
    let mut parts = vec![format!("batch {batch}"), format!("{rows} rows")];
    let Some(p) = progress else { return format!("{} (Ctrl-C to stop)", parts.join(" · ")) };
    parts.push(format!("{:.0} rows/s", p.processed_rows_per_second));
    if let Some(e) = &p.event_time {
        parts.push(format!("watermark {}", e.watermark));
    }
    let lag: Vec<String> = p
        .sources
        .iter()
        .filter_map(|s| s.metrics.get("maxOffsetsBehindLatest").and_then(|v| v.as_str()).map(|l| format!("lag {l}")))
        .collect();
    parts.extend(lag);
    format!("{} (Ctrl-C to stop)", parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: &[i64], names: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))]).unwrap()
    }

    #[test]
    fn tail_prints_one_header_then_rows_as_they_come() {
        let b = batch(&[1], &[Some("a")]);
        let mut p = PreviewPrinter::new(ResultMode::Tail, b.schema(), false);
        assert_eq!(p.batch(&[]), "id       | name\n---------+---------\n");
        assert_eq!(p.batch(&[b]), "1        | a\n");
        assert_eq!(p.batch(&[batch(&[2], &[None])]), "2        | NULL\n");
        assert_eq!(p.rows, 2);
    }

    #[test]
    fn changelog_marks_each_row_as_an_insert() {
        let b = batch(&[7], &[Some("x")]);
        let mut p = PreviewPrinter::new(ResultMode::Changelog, b.schema(), false);
        assert_eq!(p.batch(&[b]), "op | id       | name\n---+----------+---------\n+I | 7        | x\n");
    }

    #[test]
    fn table_mode_keeps_the_last_rows_and_prints_them_at_the_end_off_a_terminal() {
        let b = batch(&[1, 2], &[Some("a"), Some("b")]);
        let mut p = PreviewPrinter::new(ResultMode::Table, b.schema(), false);
        assert_eq!(p.batch(&[b]), "");
        let ids: Vec<i64> = (3..=30).collect();
        let names = vec![Some("z"); ids.len()];
        p.batch(&[batch(&ids, &names)]);
        let out = p.finish();
        assert_eq!(out.lines().count(), TABLE_ROWS + 4, "{out}");
        assert!(out.contains("| 11 |") && !out.contains("| 10 |"), "{out}");
    }

    #[test]
    fn the_status_line_says_the_batch_before_its_progress_comes() {
        assert_eq!(status_line(None, None, 0), "waiting for the first batch (Ctrl-C to stop)");
        assert_eq!(status_line(Some(3), None, 12), "batch 3 · 12 rows (Ctrl-C to stop)");
    }

    #[test]
    fn boxed_table_pads_to_the_widest_cell() {
        let b = batch(&[1, 22], &[Some("a"), None]);
        assert_eq!(table(&b.schema(), &[b]), "+----+------+\n| id | name |\n+----+------+\n| 1  | a    |\n| 22 | NULL |\n+----+------+\n");
    }
}
