DROP TABLE IF EXISTS cash_out_details;
DROP TABLE IF EXISTS transaction_details;
DROP TABLE IF EXISTS ledger_entries;
DROP TABLE IF EXISTS transactions;
