-- What the shipper and the operators keep beside the ticks: instruments as recorded, orders and
-- execution reports, position snapshots, strategy runs, an append-only audit log, and the
-- shipper's watermarks. Prices and quantities are exact (numeric at the instrument's precision);
-- every time is a timestamptz, with the ns integer beside it where records are keyed by it.

CREATE TABLE instruments (
    venue text NOT NULL,
    instrument_id integer NOT NULL,
    symbol text NOT NULL,
    market text NOT NULL,                       -- spot, linear_perpetual, ...
    base text NOT NULL,
    quote text NOT NULL,
    price_precision smallint NOT NULL,
    size_precision smallint NOT NULL,
    tick_size numeric NOT NULL,
    step_size numeric NOT NULL,
    multiplier numeric NOT NULL DEFAULT 1,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue, instrument_id)
);
CREATE INDEX instruments_symbol ON instruments (venue, symbol, market);

-- every order instruction the gateway took (its order journal), new, cancel, amend
CREATE TABLE orders (
    venue text NOT NULL,
    strategy_id bigint NOT NULL,
    client_order_id numeric(20) NOT NULL,       -- u64
    ts timestamptz NOT NULL,
    ts_ns bigint NOT NULL,
    instrument_id integer NOT NULL,
    action smallint NOT NULL,                   -- OrderAction
    side smallint NOT NULL,
    order_type smallint NOT NULL,
    price numeric,
    qty numeric,
    reduce_only boolean NOT NULL DEFAULT false,
    target_order_id numeric(20),
    reject_code integer,                        -- the gateway's own refusal, if any
    PRIMARY KEY (venue, strategy_id, client_order_id)
);
CREATE INDEX orders_by_time ON orders (venue, strategy_id, ts);
CREATE INDEX orders_by_instrument ON orders (venue, instrument_id, ts);

-- every execution report published on the exec ring
CREATE TABLE exec_reports (
    venue text NOT NULL,
    ts timestamptz NOT NULL,
    ts_ns bigint NOT NULL,                      -- ts_pub
    ts_exchange_ns bigint,
    seq bigint NOT NULL,                        -- the exec ring's position: unique per ring run
    ring_created_ns bigint NOT NULL,
    strategy_id bigint NOT NULL,
    client_order_id numeric(20) NOT NULL,
    venue_order_id numeric(20),
    instrument_id integer NOT NULL,
    status smallint NOT NULL,                   -- OrderStatus
    reject_code integer NOT NULL DEFAULT 0,
    side smallint,
    order_type smallint,
    price numeric,
    qty numeric,
    cum_qty numeric,
    leaves_qty numeric,
    last_price numeric,
    last_qty numeric,
    fee numeric,                                -- quote asset
    liquidity smallint,
    trade_id numeric(20),
    PRIMARY KEY (venue, ring_created_ns, seq)
);
CREATE INDEX exec_reports_by_strategy ON exec_reports (venue, strategy_id, ts);
CREATE INDEX exec_reports_by_order ON exec_reports (venue, strategy_id, client_order_id);
CREATE INDEX exec_reports_fills ON exec_reports (venue, instrument_id, ts) WHERE last_qty > 0;

CREATE TABLE position_snapshots (
    venue text NOT NULL,
    strategy_id bigint NOT NULL,
    instrument_id integer NOT NULL,
    ts timestamptz NOT NULL,
    qty numeric NOT NULL,
    cost numeric NOT NULL,
    realised numeric NOT NULL,
    fees numeric NOT NULL,
    PRIMARY KEY (venue, strategy_id, instrument_id, ts)
);

CREATE TABLE klines (
    venue text NOT NULL,
    instrument_id integer NOT NULL,
    interval_s integer NOT NULL,
    open_time timestamptz NOT NULL,
    close_time timestamptz NOT NULL,
    open numeric NOT NULL,
    high numeric NOT NULL,
    low numeric NOT NULL,
    close numeric NOT NULL,
    volume numeric NOT NULL,
    quote_volume numeric,
    trade_count bigint,
    PRIMARY KEY (venue, instrument_id, interval_s, open_time)
);

CREATE TABLE strategy_runs (
    run_id bigserial PRIMARY KEY,
    venue text NOT NULL,
    strategy text NOT NULL,                     -- its name (order rings' owner)
    strategy_id bigint NOT NULL,
    class text NOT NULL,
    config jsonb NOT NULL,
    code_version text NOT NULL,
    environment jsonb NOT NULL DEFAULT '{}',
    started_at timestamptz NOT NULL,
    stopped_at timestamptz,
    exit_code integer
);
CREATE INDEX strategy_runs_by_strategy ON strategy_runs (venue, strategy, started_at);

-- the kill switch, risk reloads, manual actions: rows are added, never changed
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    ts timestamptz NOT NULL DEFAULT now(),
    who text NOT NULL,
    host text NOT NULL,
    venue text,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (ts);

CREATE FUNCTION ttq_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ttq_audit_log_append_only();

-- how far the shipper got in each recorded stream, committed with the rows it loaded
CREATE TABLE ship_watermarks (
    stream text PRIMARY KEY,                    -- <rings>.<kind>, e.g. binance.ticks
    ring_created_ns bigint NOT NULL,
    next_position bigint NOT NULL,              -- the next ring position to load
    file text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
