-- The daily limit's counter (issue 7). What a user sent today in an asset used to be summed over
-- today's outgoing transactions on every debit, a scan that grew with the sender's day (about a
-- quarter of the API's transfer throughput in make bench). The balance row now carries it:
-- daily_spent is the sum of amount + fee of the counted movements (transfer, payment, cash_out,
-- exchange; pending, processing or completed) the owner sent in this asset on the UTC day
-- daily_spent_on. Every debit that counts adds to it in the same UPDATE that moves the balance
-- (starting over on a new day); a cash-out hold released (cancelled, expired) takes itself off
-- when the counter is still on the day the hold was made. storage.DB.Reconcile proves the
-- counter against the transactions. Not indexed, so the balance UPDATE stays a HOT update on
-- PostgreSQL.
ALTER TABLE asset_balances
    ADD COLUMN daily_spent NUMERIC(20, 8) NOT NULL DEFAULT 0,
    ADD COLUMN daily_spent_on DATE,
    ADD CONSTRAINT asset_balances_daily_spent_not_negative CHECK (daily_spent >= 0);
