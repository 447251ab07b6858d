-- The hot-account baseline of `make bench`: the transfer of transfer_random.sql, but every
-- transfer credits account 1, so all clients queue on that one row's lock, like every payer
-- paying one merchant in the API's `hot` scenario. Run with -D naccounts=10000.
\set from random(2, :naccounts)
\set amount random(1, 100)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance - :amount WHERE aid = :from;
UPDATE pgbench_accounts SET abalance = abalance + :amount WHERE aid = 1;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :from, :amount, CURRENT_TIMESTAMP);
END;
