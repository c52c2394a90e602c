//! Where a partition's part of a batch may end, and when the read of a range is done: the
//! rules that keep a batch exact when producers write transactionally.
//!
//! With `isolation.level = read_committed` (librdkafka's default, and so weir's) a consumer
//! gets no record at or past the partition's last stable offset (LSO), the first offset of the
//! oldest transaction still open, and its partition-EOF event fires there, not at the high
//! watermark. So planning ends a batch at the LSO, never past it, and the read loop takes an
//! EOF below a range's end as a reason to wait, never as a gap. The rules are kept apart from
//! librdkafka so that they can be tested on recorded sequences of what a consumer saw.

/// The offset a consumer can read a partition up to: the high watermark, or with
/// read_committed the last stable offset `stable` (never above the high watermark).
pub(crate) fn readable_end(high: i64, stable: Option<i64>) -> i64 {
    stable.map_or(high, |stable| stable.min(high))
}

/// The read of one partition's `[start, end)`: where it is, and when it stops.
#[derive(Debug)]
pub(crate) struct RangeRead {
    /// The next offset wanted.
    pub pos: i64,
    pub end: i64,
}

/// What a record means to a [`RangeRead`].
#[derive(Debug, PartialEq)]
pub(crate) enum OnRecord {
    /// Below the position: fetched before a seek back; not part of the range again.
    Stale,
    /// In the range: taken, and the position moves past it.
    Take,
    /// At or past the end: a gap straddled the end, and the range is done.
    Past,
}

/// What a trusted partition EOF means to a [`RangeRead`] that has not reached its end.
#[derive(Debug, PartialEq)]
pub(crate) enum OnEof {
    /// `[pos, end)` holds no record the consumer may deliver (compaction, transaction
    /// markers, aborted records): the range is done.
    Gap,
    /// The consumer may have stopped below the end: all that is known is that it stopped at
    /// `stable` or later, the last stable offset, so a transaction still open may hold
    /// `[stable, end)`. Wait for its records, or for a last stable offset known to be past the
    /// end before looking again; never skip.
    Wait { stable: i64 },
    /// The broker's log ends at `available`, before the end: offsets were lost.
    Lost { available: i64 },
}

impl RangeRead {
    pub fn new(start: i64, end: i64) -> Self {
        Self { pos: start, end }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.end
    }

    pub fn record(&mut self, offset: i64) -> OnRecord {
        if offset < self.pos {
            OnRecord::Stale
        } else if offset >= self.end {
            OnRecord::Past
        } else {
            self.pos = offset + 1;
            OnRecord::Take
        }
    }

    /// A partition EOF that was the first event after a seek to `pos`: the consumer found
    /// nothing it may deliver from `pos` up to where it stopped. librdkafka does not say where
    /// that was (the rdkafka crate drops the event's offset), so it is bounded from below:
    /// - with read_uncommitted it stopped at the high watermark of its fetch, which is at
    ///   least the planned end unless the log was truncated: `high` (the high watermark now)
    ///   is then below the end;
    /// - with read_committed it stopped at the LSO of its fetch, which is at least
    ///   `stable_at_seek`: the position, or the LSO known before the seek if higher (the LSO
    ///   never goes back, and librdkafka drops fetch responses to fetches made before a
    ///   seek). An LSO learned after the seek proves nothing: the records it uncovered may
    ///   still be on their way.
    pub fn eof(&self, high: i64, stable_at_seek: Option<i64>) -> OnEof {
        if high < self.end {
            return OnEof::Lost { available: high };
        }
        match stable_at_seek {
            Some(stable) if stable < self.end => OnEof::Wait { stable },
            _ => OnEof::Gap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a partition queue yielded, as recorded.
    #[derive(Clone, Copy, Debug)]
    enum Seen {
        Record(i64),
        /// A trusted EOF, with the high watermark then and the LSO known before the seek.
        Eof { high: i64, stable_at_seek: Option<i64> },
    }
    use Seen::*;

    /// How a read of a range ended.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        /// The position reached the end, or a record past it came.
        Complete,
        Eof(OnEof),
        /// The sequence ran out before the range was done.
        Open,
    }

    /// Feeds `seen` to a read of `[start, end)` the way the read loop does (consumer.rs); the
    /// offsets taken, and how the read ended. A `Wait` is not an end: the loop waits, and
    /// the sequence goes on with what came later.
    fn read(start: i64, end: i64, seen: &[Seen]) -> (Vec<i64>, Outcome) {
        let mut range = RangeRead::new(start, end);
        let mut taken = Vec::new();
        let mut waited = None;
        for event in seen {
            if range.done() {
                break;
            }
            match *event {
                Record(offset) => match range.record(offset) {
                    OnRecord::Take => taken.push(offset),
                    OnRecord::Stale => {}
                    OnRecord::Past => return (taken, Outcome::Complete),
                },
                Eof { high, stable_at_seek } => match range.eof(high, stable_at_seek) {
                    wait @ OnEof::Wait { .. } => waited = Some(wait),
                    other => return (taken, Outcome::Eof(other)),
                },
            }
        }
        match (range.done(), waited) {
            (true, _) => (taken, Outcome::Complete),
            (false, Some(wait)) => (taken, Outcome::Eof(wait)),
            (false, None) => (taken, Outcome::Open),
        }
    }

    // Partition 0 of topic `t` as tansu 0.6.0 wrote it (probe of 2026-12-02, docs/kafka-research.md):
    // 0 p0, 1 p1, 2-4 transaction A (a0 a1 a2), 5 p2, 6 p3, 7 A's commit marker,
    // 8-9 transaction B (b0 b1), 10 p4, 11 B's abort marker, 12 p5.

    #[test]
    fn open_transaction_batch_ends_at_the_last_stable_offset() {
        // A open: fetch responses carried high watermark 7, LSO 2; read_committed got 0 and
        // 1, then EOF; read_uncommitted got 0-6.
        assert_eq!(readable_end(7, Some(2)), 2);
        assert_eq!(read(0, 2, &[Record(0), Record(1)]), (vec![0, 1], Outcome::Complete));
        assert_eq!(readable_end(7, None), 7, "read_uncommitted reads to the high watermark, as before");
        let all: Vec<Seen> = (0..7).map(Record).collect();
        assert_eq!(read(0, 7, &all), ((0..7).collect(), Outcome::Complete));
    }

    #[test]
    fn eof_below_the_end_waits_for_the_transaction() {
        // A range planned past the LSO (by an older weir, or under read_uncommitted before a
        // restart with read_committed): the EOF at the LSO is no gap.
        let while_open = [Record(0), Record(1), Eof { high: 7, stable_at_seek: Some(2) }];
        assert_eq!(read(0, 7, &while_open), (vec![0, 1], Outcome::Eof(OnEof::Wait { stable: 2 })));
        // A commits: the records come, and the range completes with every one of them.
        let then: Vec<Seen> = while_open.iter().copied().chain((2..7).map(Record)).collect();
        assert_eq!(read(0, 7, &then), ((0..7).collect(), Outcome::Complete));
        // Before the commit, an LSO older than the EOF keeps it waiting; once the LSO known
        // before a seek covers the range, the EOF is a gap.
        assert_eq!(read(5, 7, &[Eof { high: 8, stable_at_seek: Some(2) }]).1, Outcome::Eof(OnEof::Wait { stable: 2 }));
        assert_eq!(read(5, 7, &[Eof { high: 8, stable_at_seek: Some(8) }]).1, Outcome::Eof(OnEof::Gap));
    }

    #[test]
    fn committed_transaction_range_ends_in_its_marker() {
        // A committed: high watermark 8, LSO 8; the commit marker (7) is never delivered.
        assert_eq!(readable_end(8, Some(8)), 8);
        let seen = [Record(2), Record(3), Record(4), Record(5), Record(6), Eof { high: 8, stable_at_seek: Some(8) }];
        assert_eq!(read(2, 8, &seen), (vec![2, 3, 4, 5, 6], Outcome::Eof(OnEof::Gap)));
    }

    #[test]
    fn aborted_transaction_records_are_skipped_and_the_range_completes() {
        // B open (b0 b1 p4 written): high watermark 11, LSO 8: nothing new to plan from 8.
        assert_eq!(readable_end(11, Some(8)), 8);
        // B aborted, p5 written: high watermark 13, LSO 13. A broker that lists aborted
        // transactions (Kafka) lets librdkafka drop b0 and b1; the abort marker is never
        // delivered.
        assert_eq!(read(8, 13, &[Record(10), Record(12)]), (vec![10, 12], Outcome::Complete));
        // A range ending at the marker, planned before p5: the EOF after p4 is a gap.
        assert_eq!(read(8, 12, &[Record(10), Eof { high: 12, stable_at_seek: Some(12) }]), (vec![10], Outcome::Eof(OnEof::Gap)));
        // tansu 0.6.0 lists no aborted transactions, so librdkafka delivers b0 and b1 too:
        // still one pass over the range, each offset once.
        let seen = [Record(8), Record(9), Record(10), Record(12)];
        assert_eq!(read(8, 13, &seen), (vec![8, 9, 10, 12], Outcome::Complete));
    }

    #[test]
    fn stale_records_and_truncated_logs() {
        // Records fetched before a seek back are not taken again.
        assert_eq!(read(3, 6, &[Record(1), Record(2), Record(3), Record(5)]), (vec![3, 5], Outcome::Complete));
        // A record past the end (a gap straddled it) completes the range.
        assert_eq!(read(3, 6, &[Record(4), Record(9)]), (vec![4], Outcome::Complete));
        // The log now ends below the range: offsets were lost, whatever the LSO says.
        assert_eq!(read(3, 6, &[Eof { high: 4, stable_at_seek: Some(4) }]).1, Outcome::Eof(OnEof::Lost { available: 4 }));
        assert_eq!(read(3, 6, &[Eof { high: 4, stable_at_seek: None }]).1, Outcome::Eof(OnEof::Lost { available: 4 }));
        // read_uncommitted: an EOF with the high watermark at or past the end is a gap.
        assert_eq!(read(3, 6, &[Record(3), Eof { high: 6, stable_at_seek: None }]), (vec![3], Outcome::Eof(OnEof::Gap)));
    }
}
