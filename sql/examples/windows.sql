-- weir windows: 100,000 generated payment events (1,000 a second of event time) -> a count
-- and total per currency and 10 seconds (a tumbling event-time window, Spark's append mode)
-- -> a Delta table.
-- Run: cargo run --release -p weir-cli -- run sql/examples/windows.sql --trigger available-now
--
-- Each window's row is written once, in the batch whose watermark (the latest event time
-- seen minus 5 seconds) passes the window's end; the last windows stay open until more
-- data comes.

CREATE TABLE payments (
  payment_id BIGINT NOT NULL,
  amount     DOUBLE,
  currency   STRING,
  ts         TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'datagen',
  total_rows = 100000,
  max_rows_per_trigger = 25000,
  seed = 7,
  'fields.payment_id.kind' = 'sequence',
  'fields.amount.min' = 1,
  'fields.amount.max' = 500,
  'fields.currency.cardinality' = 3,
  'fields.currency.length' = 3
);

CREATE TABLE per_10s WITH (connector = 'delta', path = 'out/per_10s');

INSERT INTO per_10s
SELECT window_start,
       upper(currency)       AS currency,
       count(*)              AS payments,
       round(sum(amount), 2) AS total
FROM TUMBLE(payments, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end, currency;
