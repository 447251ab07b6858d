ALTER TABLE asset_balances
    DROP CONSTRAINT asset_balances_daily_spent_not_negative,
    DROP COLUMN daily_spent_on,
    DROP COLUMN daily_spent;
