-- What the shipper's new streams need (sidecars/db/shipper.py): a stream's state beside its
-- watermark, orders keyed by where they are in the gateway's order journal, and a position
-- snapshot per fill keyed by the exec report that made it.

-- the rebuilt books of <rings>.book, the portfolios of <rings>.positions: committed with the rows
ALTER TABLE ship_watermarks ADD COLUMN state jsonb;

-- an entry of the order journal is one row: a duplicate client order id (refused, 4001) and a
-- new journal (its created ns) are rows of their own; queries by client order id keep an index
ALTER TABLE orders ADD COLUMN journal_created_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN journal_offset bigint NOT NULL DEFAULT 0;
ALTER TABLE orders DROP CONSTRAINT orders_pkey;
ALTER TABLE orders ADD PRIMARY KEY (venue, journal_created_ns, journal_offset);
CREATE INDEX orders_by_client_order_id ON orders (venue, strategy_id, client_order_id);

-- one snapshot per fill: two fills in one microsecond are two rows
ALTER TABLE position_snapshots ADD COLUMN ts_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE position_snapshots ADD COLUMN seq bigint NOT NULL DEFAULT 0;             -- the exec ring's position
ALTER TABLE position_snapshots ADD COLUMN ring_created_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE position_snapshots ADD COLUMN fills bigint NOT NULL DEFAULT 0;
ALTER TABLE position_snapshots DROP CONSTRAINT position_snapshots_pkey;
ALTER TABLE position_snapshots ADD PRIMARY KEY (venue, ring_created_ns, seq);
CREATE INDEX position_snapshots_by_strategy ON position_snapshots (venue, strategy_id, instrument_id, ts);

-- the tick journal is shipped as two streams, trades and quotes, each on its own connection:
-- an existing <rings>.ticks watermark (rows of both, committed together) becomes both
INSERT INTO ship_watermarks (stream, ring_created_ns, next_position, file, updated_at)
SELECT left(stream, -length('.ticks')) || suffix, ring_created_ns, next_position, file, updated_at
FROM ship_watermarks, (VALUES ('.trades'), ('.quotes')) AS s (suffix) WHERE stream LIKE '%.ticks';
DELETE FROM ship_watermarks WHERE stream LIKE '%.ticks';

-- Plain partitions: the day being written has a BRIN index on ts only, which costs next to
-- nothing per row (a B-tree on (venue, instrument_id, ts) would halve what COPY loads per
-- second); a day's B-tree for the queries by instrument and time is built once the day is over,
-- in one sort, by ttq_index_partitions (the shipper calls it with today's date).
DROP INDEX trades_by_instrument;
DROP INDEX quotes_by_instrument;
DROP INDEX book_snapshots_by_instrument;
CREATE INDEX trades_by_time ON trades USING brin (ts);
CREATE INDEX quotes_by_time ON quotes USING brin (ts);
CREATE INDEX book_snapshots_by_time ON book_snapshots USING brin (ts);

CREATE FUNCTION ttq_index_partitions(parent regclass, before date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    made integer := 0;
    part record;
    cutoff text := to_char(before, 'YYYYMMDD');
BEGIN
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = parent AND c.relname ~ '_p[0-9]{8}$' ORDER BY c.relname LOOP
        IF right(part.relname, 8) < cutoff AND to_regclass(part.relname || '_by_instrument') IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON %I (venue, instrument_id, ts)', part.relname || '_by_instrument',
                           part.relname);
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;
