-- weir quickstart: 100,000 generated payment events -> filter and enrich -> a Delta table.
-- Run: cargo run --release -p weir-cli -- run sql/examples/quickstart.sql --trigger available-now

CREATE TABLE payments (
  payment_id BIGINT NOT NULL,
  user_id    BIGINT,
  amount     DOUBLE,
  currency   STRING,
  ts         TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE
) WITH (
  connector = 'datagen',
  total_rows = 100000,
  max_rows_per_trigger = 25000,
  seed = 7,
  'fields.payment_id.kind' = 'sequence',
  'fields.user_id.max' = 999,
  'fields.amount.min' = 1,
  'fields.amount.max' = 500,
  'fields.currency.cardinality' = 3,
  'fields.currency.length' = 3
);

CREATE TABLE large_payments WITH (
  connector = 'delta',
  path = 'out/large_payments',
  partition_by = 'day'
);

INSERT INTO large_payments
SELECT payment_id,
       user_id,
       round(amount, 2)                                    AS amount,
       upper(currency)                                     AS currency,
       CASE WHEN amount > 400 THEN 'xl' ELSE 'l' END       AS size,
       ts,
       to_char(ts, '%Y-%m-%d')                             AS day
FROM payments
WHERE amount > 250;
