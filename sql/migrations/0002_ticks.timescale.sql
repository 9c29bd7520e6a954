-- Ticks on TimescaleDB: the same tables and queries as 0002_ticks.plain.sql, as hypertables
-- chunked by day, compressed after 7 days, ticks kept 30 days (ttq.tick_retention_days), and a
-- continuous aggregate of 1-minute klines from trades. Used only where the extension exists.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE trades (
    venue text NOT NULL,
    instrument_id integer NOT NULL,
    ts timestamptz NOT NULL,
    ts_ns bigint NOT NULL,
    ts_exchange_ns bigint,
    price numeric NOT NULL,
    qty numeric NOT NULL,
    buyer_aggressor boolean NOT NULL,
    trade_id numeric(20),
    seq bigint NOT NULL,
    ring_created_ns bigint NOT NULL
);
SELECT create_hypertable('trades', 'ts', chunk_time_interval => interval '1 day');
CREATE INDEX trades_by_instrument ON trades (venue, instrument_id, ts);

CREATE TABLE quotes (
    venue text NOT NULL,
    instrument_id integer NOT NULL,
    ts timestamptz NOT NULL,
    ts_ns bigint NOT NULL,
    ts_exchange_ns bigint,
    bid_price numeric NOT NULL,
    bid_qty numeric NOT NULL,
    ask_price numeric NOT NULL,
    ask_qty numeric NOT NULL,
    from_book boolean NOT NULL,
    seq bigint NOT NULL,
    ring_created_ns bigint NOT NULL
);
SELECT create_hypertable('quotes', 'ts', chunk_time_interval => interval '1 day');
CREATE INDEX quotes_by_instrument ON quotes (venue, instrument_id, ts);

CREATE TABLE book_snapshots (
    venue text NOT NULL,
    instrument_id integer NOT NULL,
    ts timestamptz NOT NULL,
    ts_ns bigint NOT NULL,
    update_id numeric(20),
    bid_prices numeric[] NOT NULL,
    bid_qtys numeric[] NOT NULL,
    ask_prices numeric[] NOT NULL,
    ask_qtys numeric[] NOT NULL
);
SELECT create_hypertable('book_snapshots', 'ts', chunk_time_interval => interval '1 day');
CREATE INDEX book_snapshots_by_instrument ON book_snapshots (venue, instrument_id, ts);

ALTER TABLE trades SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, instrument_id');
ALTER TABLE quotes SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, instrument_id');
ALTER TABLE book_snapshots SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, instrument_id');
SELECT add_compression_policy('trades', interval '7 days');
SELECT add_compression_policy('quotes', interval '7 days');
SELECT add_compression_policy('book_snapshots', interval '7 days');
SELECT add_retention_policy('trades', interval '30 days');
SELECT add_retention_policy('quotes', interval '30 days');
SELECT add_retention_policy('book_snapshots', interval '30 days');

CREATE MATERIALIZED VIEW klines_1m WITH (timescaledb.continuous) AS
SELECT venue, instrument_id, time_bucket(interval '1 minute', ts) AS open_time,
       first(price, ts) AS open, max(price) AS high, min(price) AS low, last(price, ts) AS close,
       sum(qty) AS volume, count(*) AS trade_count
FROM trades GROUP BY venue, instrument_id, time_bucket(interval '1 minute', ts)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('klines_1m', start_offset => interval '1 hour',
                                       end_offset => interval '1 minute', schedule_interval => interval '1 minute');

-- the plain variant's partition helpers, as no-ops: callers need not know which variant runs
CREATE FUNCTION ttq_ensure_partitions(parent regclass, first_day date, days integer) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;
CREATE FUNCTION ttq_drop_partitions(parent regclass, keep_days integer) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;
