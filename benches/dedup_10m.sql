-- 10,000,000 generated events, one millisecond of event time apart, deduplicated on
-- event_id with a one-minute watermark. State must stay at about a minute of keys.
--   cargo run --release -p weir-cli -- run benches/dedup_10m.sql --trigger available-now --progress json --checkpoint /tmp/weir-10m/cp
CREATE TABLE events (
  event_id BIGINT, user_id BIGINT, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE
) WITH (
  connector = 'datagen', total_rows = 10000000, max_rows_per_trigger = 200000, seed = 1,
  'fields.event_id.max' = 9000000000, 'fields.user_id.max' = 99999, 'fields.ts.kind' = 'sequence'
);

CREATE TABLE deduped WITH (connector = 'delta', path = '/tmp/weir-10m/deduped');

INSERT INTO deduped SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts;
