-- The SQL baseline of `make bench`: a two-account transfer between random accounts, as
-- shared/reference/performance.md measured it (2 UPDATEs and an INSERT in one transaction,
-- 5 round trips with -M simple). Accounts are 1..:naccounts (-D naccounts=10000) of a
-- scale-1 pgbench database. Random pairs can deadlock (a→b while b→a); run with
-- --max-tries so pgbench retries them as the API's runner retries 40001/40P01.
\set from random(1, :naccounts)
\set to random(1, :naccounts)
\set amount random(1, 100)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance - :amount WHERE aid = :from;
UPDATE pgbench_accounts SET abalance = abalance + :amount WHERE aid = :to;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :from, :amount, CURRENT_TIMESTAMP);
END;
