-- Ticks on plain PostgreSQL: declarative range partitions by UTC day, made ahead by the shipper
-- (ttq_ensure_partitions) and dropped by retention (ttq_drop_partitions). The same tables and
-- queries as the TimescaleDB variant (0002_ticks.timescale.sql), which is used instead where
-- the extension is available.

CREATE TABLE trades (
    venue text NOT NULL,
    instrument_id integer NOT NULL,
    ts timestamptz NOT NULL,                    -- receive time
    ts_ns bigint NOT NULL,
    ts_exchange_ns bigint,
    price numeric NOT NULL,
    qty numeric NOT NULL,
    buyer_aggressor boolean NOT NULL,
    trade_id numeric(20),
    seq bigint NOT NULL,                        -- the tick ring's position
    ring_created_ns bigint NOT NULL
) PARTITION BY RANGE (ts);
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
    from_book boolean NOT NULL,                 -- the book's top (else the venue's ticker)
    seq bigint NOT NULL,
    ring_created_ns bigint NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX quotes_by_instrument ON quotes (venue, instrument_id, ts);

-- the book board's top levels, at its depth, best first
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
) PARTITION BY RANGE (ts);
CREATE INDEX book_snapshots_by_instrument ON book_snapshots (venue, instrument_id, ts);

CREATE FUNCTION ttq_ensure_partitions(parent regclass, first_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    made integer := 0;
    d date;
    name text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        name := format('%s_p%s', parent::text, to_char(d, 'YYYYMMDD'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                           name, parent, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

CREATE FUNCTION ttq_drop_partitions(parent regclass, keep_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    dropped integer := 0;
    part record;
    cutoff text := to_char((now() AT TIME ZONE 'UTC')::date - keep_days, 'YYYYMMDD');
BEGIN
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = parent AND c.relname ~ '_p[0-9]{8}$' LOOP
        IF right(part.relname, 8) < cutoff THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- 1-minute klines from trades, computed when read (TimescaleDB keeps them as a continuous aggregate)
CREATE VIEW klines_1m AS
SELECT venue, instrument_id, date_trunc('minute', ts) AS open_time,
       (array_agg(price ORDER BY ts, seq))[1] AS open, max(price) AS high, min(price) AS low,
       (array_agg(price ORDER BY ts DESC, seq DESC))[1] AS close, sum(qty) AS volume, count(*) AS trade_count
FROM trades GROUP BY venue, instrument_id, date_trunc('minute', ts);
