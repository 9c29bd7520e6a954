-- Strategy runs as the strategies' run records have them (strategies/runtime.py: RunRecord, one
-- JSON file per run, shipped by the shipper's journal.runs), and the gateway's audit entries.

-- a run is its strategy's name and its start: the shipper upserts on it, so a record rewritten at
-- the stop (or shipped start-only after a SIGKILL, then never) updates its row
ALTER TABLE strategy_runs ADD COLUMN host text NOT NULL DEFAULT '';
ALTER TABLE strategy_runs ADD COLUMN venues jsonb NOT NULL DEFAULT '{}';        -- venue -> its rings
ALTER TABLE strategy_runs ADD COLUMN started_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE strategy_runs ADD COLUMN stopped_ns bigint;
ALTER TABLE strategy_runs ADD COLUMN code jsonb NOT NULL DEFAULT '{}';          -- ttquant, git, source_sha256
ALTER TABLE strategy_runs ADD COLUMN counts jsonb;                              -- events, orders, ... at the stop
ALTER TABLE strategy_runs ADD COLUMN record_file text;
CREATE UNIQUE INDEX strategy_runs_by_start ON strategy_runs (strategy, started_at);

-- audit_log by action and time: the kill switch's history, the risk reloads
CREATE INDEX audit_log_by_action ON audit_log (venue, action, ts);
