-- Fills the counter of 000014 for the day the migration runs, so the limit holds on the day of
-- the upgrade too. A file of its own: golang-migrate runs a file as one implicit transaction, and
-- on CockroachDB DDL and DML must never share one (reference/cockroachdb.md §1.3).
UPDATE asset_balances b
SET daily_spent = s.spent, daily_spent_on = s.day
FROM (
    SELECT t.region, t.sender_id, t.asset_symbol, (now() AT TIME ZONE 'UTC')::date AS day,
           sum(t.amount + t.fee) AS spent
    FROM transactions t
    WHERE t.created_at >= (now() AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC'
      AND t.type IN ('transfer', 'payment', 'cash_out', 'exchange')
      AND t.status IN ('pending', 'processing', 'completed')
    GROUP BY t.region, t.sender_id, t.asset_symbol
) s
WHERE b.region = s.region AND b.user_id = s.sender_id AND b.asset_symbol = s.asset_symbol;
