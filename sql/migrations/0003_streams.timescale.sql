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

-- TimescaleDB keeps its B-trees per chunk: nothing to build later (the plain variant's helper, as a no-op)
CREATE FUNCTION ttq_index_partitions(parent regclass, before date) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;
